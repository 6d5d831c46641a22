import { SipError } from '../errors.ts';
import { parseAddress, skipQuoted } from '../message/address.ts';
import { SipRequest, type HeaderField, type SipResponse } from '../message/message.ts';
import { isSipUri } from '../message/uri.ts';

export type DialogState = 'early' | 'confirmed' | 'terminated';

/**
 * Everything that defines a dialog (RFC 3261 §12.1), as plain data: what a replica needs to continue it
 * elsewhere. Addresses and URIs are kept as text, the form they travel in.
 */
export interface DialogRecord {
  role: 'uac' | 'uas';
  state: DialogState;
  callId: string;
  localTag: string;
  remoteTag: string;
  /** -1 when no request was sent yet in this dialog (a UAS before its first request). */
  localSeq: number;
  /** -1 when unknown (a UAC before the remote side sent a request). */
  remoteSeq: number;
  /** From/To values as sent in requests of this dialog (with our tag / their tag). */
  localUri: string;
  remoteUri: string;
  remoteTarget: string;
  /** Route set, in the order requests carry it. */
  routeSet: string[];
  secure: boolean;
  /** CSeq of the INVITE that created or last refreshed the dialog, for ACK/2xx matching. */
  inviteSeq: number;
}

export function dialogId(callId: string, localTag: string, remoteTag: string): string {
  return callId + '|' + localTag + '|' + remoteTag;
}

/** The URI of a name-addr or addr-spec exactly as written. A '<' inside a quoted display name is not the bracket. */
function uriTextOf(raw: string): string {
  const value = raw.trim();
  const lt = value.indexOf('<', value.startsWith('"') ? skipQuoted(value, 0, 'address') + 1 : 0);
  return lt === -1 ? value.split(';')[0]!.trim() : value.slice(lt + 1, value.indexOf('>', lt));
}

function firstContact(msg: SipRequest | SipResponse): string | null {
  const c = msg.contacts()[0];
  if (c === undefined) return null;
  // Keep the URI exactly as written: it is the target of our in-dialog requests.
  return uriTextOf(msg.getAll('contact')[0]!);
}

/**
 * The route set of a new dialog, each entry checked once now: it is peer input that every later request of the
 * dialog (some sent from a timer, with no one to answer) is built from. A bad entry is the request's fault (400)
 * or the response's, whose sender gets nothing from us (a UAC ignores that dialog).
 */
function routeSetOf(msg: SipRequest | SipResponse): string[] {
  const routes = msg.getAll('record-route');
  for (const r of routes) parseAddress(r, 'Record-Route');
  return routes;
}

function addressWithTag(value: string, tag: string): string {
  const a = parseAddress(value);
  if (a.params.get('tag') === tag) return value;
  return value + ';tag=' + tag;
}

/** One dialog, UAC or UAS side (§12, §13): early/confirmed/terminated, CSeqs, route set, target refresh. */
export class Dialog {
  readonly record: DialogRecord;

  constructor(record: DialogRecord) {
    this.record = record;
  }

  get id(): string {
    return dialogId(this.record.callId, this.record.localTag, this.record.remoteTag);
  }

  get state(): DialogState {
    return this.record.state;
  }

  /**
   * UAS side, from the request and the response with our To tag that creates the dialog (§12.1.1): the route
   * set is the request's Record-Route in order; the remote target its Contact.
   */
  static fromUas(req: SipRequest, res: SipResponse): Dialog {
    const localTag = res.toTag;
    const remoteTag = req.fromTag;
    if (localTag === null) throw new SipError('SIP_INVALID_STATE', 500, 'a dialog-creating response needs a To tag');
    const target = firstContact(req);
    if (target === null) throw new SipError('SIP_PARSE', 400, 'a dialog-creating request needs a Contact');
    const secure = isSipUri(req.uri) && req.uri.scheme === 'sips';
    return new Dialog({
      role: 'uas',
      state: res.status < 200 ? 'early' : 'confirmed',
      callId: req.callId,
      localTag,
      remoteTag: remoteTag ?? '',
      localSeq: -1,
      remoteSeq: req.cseq.seq,
      localUri: res.get('to')!,
      remoteUri: req.get('from')!,
      remoteTarget: target,
      routeSet: routeSetOf(req),
      secure,
      inviteSeq: req.cseq.seq,
    });
  }

  /**
   * UAC side, from our request and a 1xx/2xx with a To tag (§12.1.2): the route set is the response's
   * Record-Route in reverse order.
   */
  static fromUac(req: SipRequest, res: SipResponse): Dialog {
    const remoteTag = res.toTag;
    const localTag = req.fromTag;
    if (remoteTag === null || localTag === null) throw new SipError('SIP_INVALID_STATE', 500, 'a dialog needs both tags');
    const target = firstContact(res) ?? req.uriText;
    const secure = isSipUri(req.uri) && req.uri.scheme === 'sips';
    return new Dialog({
      role: 'uac',
      state: res.status < 200 ? 'early' : 'confirmed',
      callId: req.callId,
      localTag,
      remoteTag,
      localSeq: req.cseq.seq,
      remoteSeq: -1,
      localUri: req.get('from')!,
      remoteUri: res.get('to')!,
      remoteTarget: target,
      routeSet: routeSetOf(res).reverse(),
      secure,
      inviteSeq: req.cseq.seq,
    });
  }

  /** The dialog a message belongs to, from our side: (Call-ID, our tag, their tag). */
  static idForRequest(req: SipRequest): string | null {
    const toTag = req.toTag;
    if (toTag === null) return null;
    return dialogId(req.callId, toTag, req.fromTag ?? '');
  }

  static idForResponse(res: SipResponse): string | null {
    const toTag = res.toTag;
    const fromTag = res.fromTag;
    if (toTag === null || fromTag === null) return null;
    return dialogId(res.callId, fromTag, toTag);
  }

  /**
   * A request from the peer in this dialog (§12.2.2). Throws a 500 SipError for a CSeq lower than the last one
   * (the caller answers with it). Applies target refresh for re-INVITE and UPDATE.
   */
  receiveRequest(req: SipRequest): void {
    const r = this.record;
    const seq = req.cseq.seq;
    if (req.method !== 'ACK' && req.method !== 'CANCEL') {
      if (r.remoteSeq !== -1 && seq < r.remoteSeq) {
        throw new SipError('SIP_INVALID_STATE', 500, `CSeq ${seq} is lower than ${r.remoteSeq}`);
      }
      r.remoteSeq = seq;
    }
    if (req.method === 'INVITE') r.inviteSeq = seq;
    if ((req.method === 'INVITE' || req.method === 'UPDATE') && req.has('contact')) {
      r.remoteTarget = firstContact(req) ?? r.remoteTarget;
    }
    if (req.method === 'BYE') r.state = 'terminated';
  }

  /** A response to a request we sent in this dialog: confirms an early dialog, refreshes the target on 2xx. */
  receiveResponse(res: SipResponse): void {
    const r = this.record;
    const method = res.cseq.method;
    if (res.status >= 200 && res.status < 300) {
      if (method === 'INVITE' && r.state === 'early') {
        r.state = 'confirmed';
        // §13.2.2.4: the 2xx that confirms an early dialog sets its route set (reversed Record-Route, §12.1.2).
        if (r.role === 'uac') r.routeSet = res.getAll('record-route').reverse();
      }
      if ((method === 'INVITE' || method === 'UPDATE') && res.has('contact')) r.remoteTarget = firstContact(res) ?? r.remoteTarget;
    } else if (res.status >= 300 && method === 'INVITE' && r.state === 'early') {
      r.state = 'terminated';
    } else if (res.status === 481 || res.status === 408) {
      // §12.2.1.2: the dialog is gone at the peer.
      r.state = 'terminated';
    }
  }

  confirm(): void {
    if (this.record.state === 'early') this.record.state = 'confirmed';
  }

  terminate(): void {
    this.record.state = 'terminated';
  }

  /**
   * A request within this dialog (§12.2.1.1): To/From with tags, Call-ID, next local CSeq (ACK and CANCEL reuse
   * the INVITE's), Request-URI and Route from the route set with loose or strict routing, Max-Forwards 70.
   */
  createRequest(method: string, options: { contact?: string; seq?: number; headers?: HeaderField[]; body?: Buffer } = {}): SipRequest {
    const r = this.record;
    let seq: number;
    if (options.seq !== undefined) {
      seq = options.seq;
    } else if (method === 'ACK' || method === 'CANCEL') {
      seq = r.inviteSeq;
    } else {
      r.localSeq = r.localSeq === -1 ? Math.floor(Math.random() * 0x7fff) + 1 : r.localSeq + 1;
      seq = r.localSeq;
      if (method === 'INVITE') r.inviteSeq = seq;
    }
    let requestUri = r.remoteTarget;
    const routes: string[] = [];
    if (r.routeSet.length > 0) {
      const first = parseAddress(r.routeSet[0]!, 'Route');
      const loose = isSipUri(first.uri) && first.uri.params.has('lr');
      if (loose) {
        routes.push(...r.routeSet);
      } else {
        // Strict routing (§12.2.1.1): the first route becomes the Request-URI, the remote target the last Route.
        requestUri = uriTextOf(r.routeSet[0]!);
        routes.push(...r.routeSet.slice(1), `<${r.remoteTarget}>`);
      }
    }
    const headers: HeaderField[] = [];
    for (const route of routes) headers.push({ name: 'Route', key: 'route', value: route });
    headers.push(
      { name: 'Max-Forwards', key: 'max-forwards', value: '70' },
      { name: 'From', key: 'from', value: addressWithTag(r.localUri, r.localTag) },
      { name: 'To', key: 'to', value: addressWithTag(r.remoteUri, r.remoteTag) },
      { name: 'Call-ID', key: 'call-id', value: r.callId },
      { name: 'CSeq', key: 'cseq', value: `${seq} ${method}` },
    );
    if (options.contact !== undefined && method !== 'ACK' && method !== 'CANCEL' && method !== 'BYE') {
      headers.push({ name: 'Contact', key: 'contact', value: options.contact });
    }
    if (options.headers !== undefined) headers.push(...options.headers);
    return new SipRequest(method, requestUri, headers, options.body);
  }

  toJSON(): DialogRecord {
    return { ...this.record, routeSet: this.record.routeSet.slice() };
  }

  static fromJSON(record: DialogRecord): Dialog {
    return new Dialog({ ...record, routeSet: record.routeSet.slice() });
  }
}
