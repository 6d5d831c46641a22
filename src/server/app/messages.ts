import { SipError } from '../../sip/errors.ts';
import type { Address } from '../../sip/message/address.ts';
import { createResponse, type SipRequest, type SipResponse } from '../../sip/message/message.ts';
import type { Uri } from '../../sip/message/uri.ts';
import type { ServerTransaction } from '../../sip/transaction/server.ts';
import type { Source } from '../../sip/transport/types.ts';
import type { SipApplicationSession, SipSession } from './session.ts';

/** A proxy target with the route to reach it (e.g. a registered contact behind a Path, RFC 3327). */
export interface ProxyBranch {
  uri: string;
  route?: string[];
}

export interface ProxyToOptions {
  /** Stay on the path of in-dialog requests (default true). */
  recordRoute?: boolean;
  /** Fork to all targets at once (default) or one after the other. */
  parallel?: boolean;
  /** Give up on a branch after this long (ms); with sequential forking the next target is tried. */
  branchTimeoutMs?: number;
  /** Responses reach the app's response handlers (default true). */
  supervised?: boolean;
  /** Send to this next hop (`HOST:PORT`) whatever the Request-URI says (an outbound proxy, a static route). */
  nextHop?: string;
}

export interface B2buaOptions {
  /** Request-URI of the outgoing leg (default: the incoming one). */
  requestUri?: string;
  /** Next hop for the outgoing leg, `HOST:PORT` (default: resolved from the Request-URI). */
  via?: string;
  from?: string;
  to?: string;
}

/** What the message wrappers ask of the container that made them. */
export interface ContainerOps {
  sendResponse(req: IncomingRequest, res: OutgoingResponse): void;
  proxy(req: IncomingRequest, targets: Array<string | ProxyBranch>, options: ProxyToOptions): void;
  b2bua(req: IncomingRequest, options: B2buaOptions): OutgoingRequest;
  send(req: OutgoingRequest): void;
  ack(res: IncomingResponse): void;
}

function headerList(msg: SipRequest | SipResponse, name: string): string[] {
  return msg.getAll(name);
}

/** A request received by the application (JSR 289 SipServletRequest, incoming side). */
export class IncomingRequest {
  readonly raw: SipRequest;
  readonly tx: ServerTransaction | null;
  readonly source: Source;
  #session: SipSession | (() => SipSession);
  /** The application handling this request. */
  readonly appName: string;
  /** True for a request that starts something (no To tag); false inside a dialog. */
  readonly isInitial: boolean;
  /** In-dialog request whose dialog this node does not know (the app may answer 481). */
  readonly unknownDialog: boolean;
  #ops: ContainerOps;
  #committed = false;

  /** `session` may be a factory: a request that never asks for its session (an ACK passed on) costs none. */
  constructor(
    raw: SipRequest, tx: ServerTransaction | null, source: Source, session: SipSession | (() => SipSession), ops: ContainerOps,
    appName: string, unknownDialog = false,
  ) {
    this.raw = raw;
    this.appName = appName;
    this.tx = tx;
    this.source = source;
    this.#session = session;
    this.isInitial = raw.toTag === null;
    this.unknownDialog = unknownDialog;
    this.#ops = ops;
  }

  get session(): SipSession {
    if (typeof this.#session === 'function') this.#session = this.#session();
    return this.#session;
  }

  /** Whether the session was created (or given): a request that never needed one leaves nothing behind. */
  get hasSession(): boolean {
    return typeof this.#session !== 'function';
  }

  get appSession(): SipApplicationSession {
    return this.session.appSession;
  }

  get method(): string {
    return this.raw.method;
  }

  get uri(): Uri {
    return this.raw.uri;
  }

  get uriText(): string {
    return this.raw.uriText;
  }

  get callId(): string {
    return this.raw.callId;
  }

  get from(): Address {
    return this.raw.from;
  }

  get to(): Address {
    return this.raw.to;
  }

  get body(): Buffer {
    return this.raw.body;
  }

  header(name: string): string | undefined {
    return this.raw.get(name);
  }

  headers(name: string): string[] {
    return headerList(this.raw, name);
  }

  /** Whether a final response was sent, or the request was proxied or handed to a B2BUA leg. */
  get committed(): boolean {
    return this.#committed || (this.tx !== null && this.tx.lastStatus >= 200);
  }

  markCommitted(): void {
    this.#committed = true;
  }

  createResponse(status: number, reason?: string): OutgoingResponse {
    if (this.raw.method === 'ACK') throw new SipError('SIP_INVALID_STATE', 500, 'an ACK is not answered');
    return new OutgoingResponse(this, createResponse(this.raw, status, reason), this.#ops);
  }

  /** Sends a response at once: `req.reply(486)`, `req.reply(200, 'OK', { 'Content-Type': … }, body)`. */
  reply(status: number, reason?: string, headers?: Record<string, string>, body?: Buffer | string): void {
    const res = this.createResponse(status, reason);
    for (const [k, v] of Object.entries(headers ?? {})) res.setHeader(k, v);
    if (body !== undefined) res.setBody(body);
    res.send();
  }

  /**
   * Proxies the request to one or more targets (SIP URIs, or URIs with the route to them); the container relays
   * responses and CANCELs.
   */
  proxyTo(targets: string | ProxyBranch | Array<string | ProxyBranch>, options: ProxyToOptions = {}): void {
    if (this.committed) throw new SipError('SIP_INVALID_STATE', 500, 'the request was already answered or proxied');
    this.#committed = true;
    this.#ops.proxy(this, Array.isArray(targets) ? targets : [targets], options);
  }

  /**
   * Acts as a B2BUA: creates the linked outgoing leg (new Call-ID and tags) and relays provisional and final
   * responses, ACK, CANCEL, BYE and re-INVITE/UPDATE between the legs. Returns the outgoing request, sent.
   */
  b2bua(options: B2buaOptions = {}): OutgoingRequest {
    if (this.committed) throw new SipError('SIP_INVALID_STATE', 500, 'the request was already answered or proxied');
    this.#committed = true;
    return this.#ops.b2bua(this, options);
  }
}

/** A response the application builds for a request it received. */
export class OutgoingResponse {
  readonly request: IncomingRequest;
  readonly raw: SipResponse;
  #ops: ContainerOps;
  #sent = false;

  constructor(request: IncomingRequest, raw: SipResponse, ops: ContainerOps) {
    this.request = request;
    this.raw = raw;
    this.#ops = ops;
  }

  get status(): number {
    return this.raw.status;
  }

  setHeader(name: string, value: string | number): this {
    this.raw.set(name, value);
    return this;
  }

  addHeader(name: string, value: string | number): this {
    this.raw.append(name, value);
    return this;
  }

  setBody(body: Buffer | string, contentType?: string): this {
    this.raw.body = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (contentType !== undefined) this.raw.set('content-type', contentType);
    return this;
  }

  send(): void {
    if (this.#sent) throw new SipError('SIP_INVALID_STATE', 500, 'response already sent');
    this.#sent = true;
    this.#ops.sendResponse(this.request, this);
  }
}

/** A request the application sends (UAC, or the outgoing leg of a B2BUA). */
export class OutgoingRequest {
  readonly raw: SipRequest;
  readonly session: SipSession;
  /** Next hop (`HOST:PORT`); default: resolved from the Route or Request-URI. */
  via: string | undefined;
  #ops: ContainerOps;
  #sent = false;

  constructor(raw: SipRequest, session: SipSession, ops: ContainerOps) {
    this.raw = raw;
    this.session = session;
    this.#ops = ops;
  }

  get method(): string {
    return this.raw.method;
  }

  setHeader(name: string, value: string | number): this {
    this.raw.set(name, value);
    return this;
  }

  setBody(body: Buffer | string, contentType?: string): this {
    this.raw.body = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (contentType !== undefined) this.raw.set('content-type', contentType);
    return this;
  }

  send(): void {
    if (this.#sent) throw new SipError('SIP_INVALID_STATE', 500, 'request already sent');
    this.#sent = true;
    this.#ops.send(this);
  }
}

/** A response the application receives: to a request it sent, or a proxied one (supervised). */
export class IncomingResponse {
  readonly raw: SipResponse;
  readonly session: SipSession;
  readonly proxied: boolean;
  #ops: ContainerOps;

  constructor(raw: SipResponse, session: SipSession, proxied: boolean, ops: ContainerOps) {
    this.raw = raw;
    this.session = session;
    this.proxied = proxied;
    this.#ops = ops;
  }

  get status(): number {
    return this.raw.status;
  }

  get reason(): string {
    return this.raw.reason;
  }

  get method(): string {
    return this.raw.cseq.method;
  }

  get appSession(): SipApplicationSession {
    return this.session.appSession;
  }

  header(name: string): string | undefined {
    return this.raw.get(name);
  }

  headers(name: string): string[] {
    return headerList(this.raw, name);
  }

  get body(): Buffer {
    return this.raw.body;
  }

  /** Sends the ACK for a 2xx to an INVITE this application sent (§13.2.2.4). */
  ack(): void {
    this.#ops.ack(this);
  }
}
