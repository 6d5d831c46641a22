import { badMessage } from '../errors.ts';
import { isToken, parseAddress, splitList, type Address } from './address.ts';
import { canonicalName, headerKey, LIST_HEADERS, reasonPhrase } from './headers.ts';
import { cloneUri, formatUri, parseUri, type Uri } from './uri.ts';
import { parseVia, type Via } from './via.ts';

/**
 * One header field as received or added. `value` is the raw text (folding undone) so that a proxy forwards
 * what it does not touch unchanged; typed views are parsed on first read and cached on the message.
 */
export interface HeaderField {
  /** The name as written (`v`, `Via`, `VIA`). */
  name: string;
  /** Lower-cased long name (`via`). */
  key: string;
  value: string;
}

export interface CSeq {
  seq: number;
  method: string;
}

const EMPTY = Buffer.alloc(0);

/** The value of 1 to 10 decimal digits s[start, end), or -1. */
function digitsValue(s: string, start: number, end: number): number {
  if (end <= start || end - start > 10) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + (c - 0x30);
  }
  return value;
}

/** CSeq = 1*DIGIT LWS Method, with optional LWS around (folding already undone). */
function parseCSeq(v: string): CSeq {
  const n = v.length;
  let i = 0;
  while (i < n && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  const ds = i;
  while (i < n && v.charCodeAt(i) >= 0x30 && v.charCodeAt(i) <= 0x39) i++;
  const seq = digitsValue(v, ds, i);
  const sp = i;
  while (i < n && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  const ms = i;
  while (i < n && v.charCodeAt(i) !== 0x20 && v.charCodeAt(i) !== 0x09) i++;
  const method = v.slice(ms, i);
  while (i < n && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  if (seq < 0 || sp === ms || i !== n || !isToken(method)) throw badMessage('Bad CSeq header');
  if (seq > 0x7fffffff) throw badMessage('CSeq number too large');
  return { seq, method };
}

/** A bit for each single-valued header validate() checks for repetition, 0 for the others. */
function singleBit(key: string): number {
  switch (key) {
    case 'call-id': return 1;
    case 'from': return 2;
    case 'to': return 4;
    case 'cseq': return 8;
    case 'max-forwards': return 16;
    case 'content-length': return 32;
    default: return 0;
  }
}

export abstract class SipMessage {
  headers: HeaderField[];
  body: Buffer;
  // Parsed views, filled on first read, cleared when the header changes.
  #via: Via[] | undefined;
  #from: Address | undefined;
  #to: Address | undefined;
  #cseq: CSeq | undefined;

  constructor(headers: HeaderField[] = [], body: Buffer = EMPTY) {
    this.headers = headers;
    this.body = body;
  }

  abstract get isRequest(): boolean;
  abstract startLine(): string;

  #changed(key: string): void {
    switch (key) {
      case 'via': this.#via = undefined; break;
      case 'from': this.#from = undefined; break;
      case 'to': this.#to = undefined; break;
      case 'cseq': this.#cseq = undefined; break;
    }
  }

  /** The first value of a header (the whole field: list headers are not split here). */
  get(name: string): string | undefined {
    const key = headerKey(name);
    for (const h of this.headers) if (h.key === key) return h.value;
    return undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Every value of a header: fields in order, list headers split at their commas. */
  getAll(name: string): string[] {
    const key = headerKey(name);
    const out: string[] = [];
    const list = LIST_HEADERS.has(key);
    for (const h of this.headers) {
      if (h.key !== key) continue;
      if (list) for (const v of splitList(h.value, canonicalName(key))) out.push(v);
      else out.push(h.value);
    }
    return out;
  }

  /** Replaces every field of this header with one (appended where the first one was, or at the end). */
  set(name: string, value: string | number): this {
    const key = headerKey(name);
    const v = String(value);
    let done = false;
    for (let i = 0; i < this.headers.length; i++) {
      const h = this.headers[i]!;
      if (h.key !== key) continue;
      if (!done) {
        this.headers[i] = { name: h.name, key, value: v };
        done = true;
      } else {
        this.headers.splice(i--, 1);
      }
    }
    if (!done) this.headers.push({ name: canonicalName(key), key, value: v });
    this.#changed(key);
    return this;
  }

  append(name: string, value: string | number): this {
    const key = headerKey(name);
    this.headers.push({ name: canonicalName(key), key, value: String(value) });
    this.#changed(key);
    return this;
  }

  /** Adds a field before the first field of the same header (or before all headers when there is none). */
  prepend(name: string, value: string | number): this {
    const key = headerKey(name);
    let at = this.headers.findIndex((h) => h.key === key);
    if (at === -1) at = 0;
    this.headers.splice(at, 0, { name: canonicalName(key), key, value: String(value) });
    this.#changed(key);
    return this;
  }

  remove(name: string): this {
    const key = headerKey(name);
    this.headers = this.headers.filter((h) => h.key !== key);
    this.#changed(key);
    return this;
  }

  /** Removes the first element of a list header (top Via, top Route) and returns its text. */
  removeFirst(name: string): string | undefined {
    const key = headerKey(name);
    const i = this.headers.findIndex((h) => h.key === key);
    if (i === -1) return undefined;
    const h = this.headers[i]!;
    const parts = splitList(h.value, canonicalName(key));
    const first = parts.shift();
    if (parts.length === 0) this.headers.splice(i, 1);
    else this.headers[i] = { name: h.name, key, value: parts.join(', ') };
    this.#changed(key);
    return first;
  }

  /** Replaces the first element of a list header (the top Via, when received/rport are added). */
  replaceFirst(name: string, value: string): void {
    const key = headerKey(name);
    const i = this.headers.findIndex((h) => h.key === key);
    if (i === -1) return;
    const h = this.headers[i]!;
    const parts = splitList(h.value, canonicalName(key));
    parts[0] = value;
    this.headers[i] = { name: h.name, key, value: parts.join(', ') };
    this.#changed(key);
  }

  get vias(): Via[] {
    if (this.#via === undefined) this.#via = this.getAll('via').map(parseVia);
    return this.#via;
  }

  get topVia(): Via {
    const v = this.vias[0];
    if (v === undefined) throw badMessage('Missing Via header');
    return v;
  }

  get callId(): string {
    const v = this.get('call-id');
    if (v === undefined || v.length === 0) throw badMessage('Missing Call-ID header');
    return v;
  }

  get cseq(): CSeq {
    if (this.#cseq === undefined) {
      const v = this.get('cseq');
      if (v === undefined) throw badMessage('Missing CSeq header');
      this.#cseq = parseCSeq(v);
    }
    return this.#cseq;
  }

  get from(): Address {
    if (this.#from === undefined) {
      const v = this.get('from');
      if (v === undefined) throw badMessage('Missing From header');
      this.#from = parseAddress(v, 'From');
    }
    return this.#from;
  }

  get to(): Address {
    if (this.#to === undefined) {
      const v = this.get('to');
      if (v === undefined) throw badMessage('Missing To header');
      this.#to = parseAddress(v, 'To');
    }
    return this.#to;
  }

  get fromTag(): string | null {
    return this.from.params.get('tag') ?? null;
  }

  get toTag(): string | null {
    return this.to.params.get('tag') ?? null;
  }

  contacts(): Address[] {
    return this.getAll('contact').filter((c) => c !== '*').map((c) => parseAddress(c, 'Contact'));
  }

  routes(): Address[] {
    return this.getAll('route').map((r) => parseAddress(r, 'Route'));
  }

  recordRoutes(): Address[] {
    return this.getAll('record-route').map((r) => parseAddress(r, 'Record-Route'));
  }

  /**
   * Reads every header the stack relies on, so that a malformed message fails here (with a 400 naming the
   * fault) rather than deep in a transaction. Called once when a message arrives.
   */
  validate(): void {
    if (this.vias.length === 0) throw badMessage('Missing Via header');
    void this.callId;
    void this.cseq;
    // Requests parse From and To here (their tags pick transactions and dialogs); responses are only checked
    // for them, since a proxy relays most responses without reading either.
    if (this.isRequest) {
      void this.from;
      void this.to;
    } else {
      if (this.get('from') === undefined) throw badMessage('Missing From header');
      if (this.get('to') === undefined) throw badMessage('Missing To header');
    }
    // Single-valued headers the stack reads must appear once (RFC 4475 §3.3.8, §3.3.9).
    let seen = 0;
    for (const h of this.headers) {
      const bit = singleBit(h.key);
      if (bit === 0) continue;
      if ((seen & bit) !== 0) throw badMessage(`More than one ${canonicalName(h.key)} header`);
      seen |= bit;
    }
  }

  /** The wire form. Content-Length is written from the body, whatever the header said. */
  toBuffer(): Buffer {
    let head = this.startLine() + '\r\n';
    let sawLength = false;
    for (const h of this.headers) {
      if (h.key === 'content-length') {
        if (sawLength) continue;
        sawLength = true;
        head += h.name + ': ' + this.body.length + '\r\n';
      } else {
        head += h.name + ': ' + h.value + '\r\n';
      }
    }
    if (!sawLength) head += 'Content-Length: ' + this.body.length + '\r\n';
    head += '\r\n';
    // An exact-size buffer, not a slice of Node's shared 8 KB pool: transactions keep these bytes for up to
    // 64*T1, and one kept slice would pin the whole pool slab.
    const headLen = head.length; // latin1: one byte per character
    const out = Buffer.allocUnsafeSlow(headLen + this.body.length);
    out.write(head, 0, headLen, 'latin1');
    if (this.body.length > 0) this.body.copy(out, headLen);
    return out;
  }

  toString(): string {
    return this.toBuffer().toString('latin1');
  }

  /** A copy to change through this API: the header list is new; fields (replaced, never edited in place) and body are shared. */
  abstract clone(): SipMessage;
}

export class SipRequest extends SipMessage {
  method: string;
  #uriText: string;
  #uri: Uri | undefined;
  version = 'SIP/2.0';

  constructor(method: string, uri: string | Uri, headers?: HeaderField[], body?: Buffer) {
    super(headers, body);
    this.method = method;
    if (typeof uri === 'string') {
      this.#uriText = uri;
    } else {
      this.#uri = uri;
      this.#uriText = '';
    }
  }

  get isRequest(): boolean {
    return true;
  }

  /** The Request-URI, parsed on first read. */
  get uri(): Uri {
    if (this.#uri === undefined) this.#uri = parseUri(this.#uriText);
    return this.#uri;
  }

  set uri(uri: Uri | string) {
    if (typeof uri === 'string') {
      this.#uriText = uri;
      this.#uri = undefined;
    } else {
      this.#uri = uri;
      this.#uriText = '';
    }
  }

  get uriText(): string {
    if (this.#uriText === '' && this.#uri !== undefined) return formatUri(this.#uri);
    return this.#uriText;
  }

  startLine(): string {
    return `${this.method} ${this.uriText} SIP/2.0`;
  }

  override validate(): void {
    void this.uri;
    super.validate();
    if (this.cseq.method !== this.method) throw badMessage(`CSeq method ${this.cseq.method} does not match ${this.method}`);
    const mf = this.get('max-forwards');
    if (mf !== undefined) {
      const hops = digitsValue(mf, 0, mf.length);
      if (hops < 0) throw badMessage('Bad Max-Forwards header');
      if (hops > 255) throw badMessage('Max-Forwards over 255');
    }
  }

  get maxForwards(): number | null {
    const v = this.get('max-forwards');
    return v === undefined ? null : Number(v);
  }

  clone(): SipRequest {
    // The text as received when there is one (a proxy forwards it byte for byte); a parsed view is never shared.
    const uri = this.#uriText !== '' || this.#uri === undefined ? this.#uriText : cloneUri(this.#uri);
    return new SipRequest(this.method, uri, this.headers.map((h) => ({ ...h })), this.body);
  }
}

export class SipResponse extends SipMessage {
  status: number;
  reason: string;

  constructor(status: number, reason?: string, headers?: HeaderField[], body?: Buffer) {
    super(headers, body);
    this.status = status;
    this.reason = reason ?? reasonPhrase(status);
  }

  get isRequest(): boolean {
    return false;
  }

  startLine(): string {
    return `SIP/2.0 ${this.status} ${this.reason}`;
  }

  clone(): SipResponse {
    return new SipResponse(this.status, this.reason, this.headers.slice(), this.body);
  }
}

export type SipMessageAny = SipRequest | SipResponse;

const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY']);

/**
 * A response to `req` per RFC 3261 §8.2.6: Via, From, To, Call-ID and CSeq copied; a To tag added when given
 * and absent; Record-Route copied on 1xx/2xx to dialog-creating requests (§12.1.1); Timestamp echoed in 100.
 */
export function createResponse(req: SipRequest, status: number, reason?: string, toTag?: string): SipResponse {
  const headers: HeaderField[] = [];
  const rr = status > 100 && status < 300 && DIALOG_CREATING.has(req.method);
  for (const h of req.headers) {
    switch (h.key) {
      case 'via':
      case 'from':
      case 'call-id':
      case 'cseq':
        headers.push({ ...h });
        break;
      case 'to':
        if (toTag !== undefined && status > 100 && req.toTag === null) {
          headers.push({ name: h.name, key: 'to', value: h.value + ';tag=' + toTag });
        } else {
          headers.push({ ...h });
        }
        break;
      case 'record-route':
        if (rr) headers.push({ ...h });
        break;
      case 'timestamp':
        if (status === 100) headers.push({ ...h });
        break;
    }
  }
  return new SipResponse(status, reason, headers);
}
