import { SipError } from '../errors.ts';
import { createResponse, SipRequest, type HeaderField, type SipResponse } from '../message/message.ts';
import type { TransportLayer } from '../transport/transport-layer.ts';
import { isReliable, type Destination } from '../transport/types.ts';
import type { TimerSettings } from './timers.ts';

export type ClientState = 'calling' | 'trying' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

export interface ClientContext {
  readonly transport: TransportLayer;
  readonly timers: TimerSettings;
  readonly counters: { retransmissions: number; timeouts: number };
  addClient(tx: ClientTransaction): void;
  removeClient(tx: ClientTransaction): void;
  /** Starts the CANCEL for an INVITE transaction (a non-INVITE client transaction of its own). */
  sendCancel(invite: ClientTransaction, cancel: SipRequest): void;
}

export interface ClientHandler {
  /**
   * Every response the TU must see: provisional, final, 2xx retransmissions and forked 2xx (RFC 6026 Accepted),
   * and the 408 (Timer B/F) or 503 (transport error) this transaction makes up when it fails.
   */
  onResponse(res: SipResponse, tx: ClientTransaction): void;
  onTerminated?(tx: ClientTransaction): void;
}

/**
 * INVITE and non-INVITE client transactions (RFC 3261 §17.1, RFC 6026). Timers A, B, D and M for INVITE;
 * E, F and K otherwise. Builds the ACK for a non-2xx final response itself (§17.1.1.3).
 */
export class ClientTransaction {
  key = '';
  branch = '';
  #request: SipRequest | null;
  readonly isInvite: boolean;
  state: ClientState;
  dest: Destination;
  readonly #ctx: ClientContext;
  readonly #handler: ClientHandler;
  #data: Buffer | null = null;
  #ack: Buffer | null = null;
  #retransmit: NodeJS.Timeout | null = null;
  #interval = 0;
  #timeout: NodeJS.Timeout | null = null;
  #end: NodeJS.Timeout | null = null;
  #cancelPending: SipRequest | null = null;
  #cancelled = false;
  /** The last provisional or final status seen (0 before any). */
  lastStatus = 0;
  /** Free for the TU. */
  context: unknown = null;

  constructor(request: SipRequest, dest: Destination, ctx: ClientContext, handler: ClientHandler) {
    this.#request = request;
    this.isInvite = request.method === 'INVITE';
    this.state = this.isInvite ? 'calling' : 'trying';
    this.dest = dest;
    this.#ctx = ctx;
    this.#handler = handler;
  }

  /** The request as sent. Released once a final response has been handled (see ServerTransaction.request). */
  get request(): SipRequest {
    if (this.#request === null) throw new SipError('SIP_INVALID_STATE', 500, 'the request of a completed transaction was released');
    return this.#request;
  }

  get reliable(): boolean {
    return isReliable(this.dest.protocol);
  }

  /**
   * Takes over an INVITE another node sent and that was answered with a provisional response (EarlyDialog
   * failover): the request carries that node's Via, nothing is sent now, responses to its branch land here. Lives
   * 64*T1 at most without a final response.
   */
  adopt(): void {
    this.branch = this.request.topVia.branch ?? '';
    this.key = this.branch + '|' + this.request.method;
    this.#ctx.addClient(this);
    this.#data = this.request.toBuffer();
    this.state = 'proceeding';
    this.lastStatus = 180;
    this.#timeout = setTimeout(() => { this.#timeout = null; if (this.state === 'proceeding') this.#fail(408, 'Request Timeout'); }, 64 * this.#ctx.timers.t1);
  }

  /** Sends the request. With `branch`, the request already carries our Via (a CANCEL copies the INVITE's). */
  start(branch: string, viaPresent = false): void {
    this.branch = branch;
    this.key = branch + '|' + this.request.method;
    this.#ctx.addClient(this);
    const onError = (err: Error): void => this.#transportError(err);
    if (viaPresent) {
      this.#data = this.request.toBuffer();
      this.#ctx.transport.send(this.#data, this.dest, onError);
    } else {
      const sent = this.#ctx.transport.sendRequest(this.request, this.dest, branch, onError, (dest, data) => {
        // Moved to TCP for its size, refused, sent over UDP after all: now it needs retransmissions.
        this.dest = dest;
        this.#data = data;
        this.#armRetransmit();
      });
      this.#data = sent.data;
      this.dest = sent.dest;
    }
    this.#armRetransmit();
    this.#timeout = setTimeout(() => this.#fireTimeout(), 64 * this.#ctx.timers.t1); // Timer B or F
  }

  #armRetransmit(): void {
    const s = this.state;
    if (this.reliable || this.#retransmit !== null || (s !== 'calling' && s !== 'trying')) return;
    this.#interval = this.#ctx.timers.t1;
    this.#retransmit = setTimeout(() => this.#fireRetransmit(), this.#interval); // Timer A or E
  }


  #fireRetransmit(): void {
    this.#retransmit = null;
    const s = this.state;
    if (s !== 'calling' && s !== 'trying' && s !== 'proceeding') return;
    if (this.#data === null) return;
    this.#ctx.counters.retransmissions++;
    this.#ctx.transport.send(this.#data, this.dest, (err) => this.#transportError(err));
    // Timer A doubles without limit; Timer E doubles up to T2, and stays at T2 once a provisional came (§17.1.2.2).
    this.#interval = this.isInvite ? this.#interval * 2 : s === 'proceeding' ? this.#ctx.timers.t2 : Math.min(this.#interval * 2, this.#ctx.timers.t2);
    this.#retransmit = setTimeout(() => this.#fireRetransmit(), this.#interval);
  }

  #fireTimeout(): void {
    this.#timeout = null;
    // Timer B applies in Calling only; Timer F in Trying and Proceeding.
    if (this.state === 'calling' || this.state === 'trying' || (!this.isInvite && this.state === 'proceeding')) {
      this.#ctx.counters.timeouts++;
      this.#fail(408, 'Request Timeout');
    }
  }

  #transportError(err: Error): void {
    if (this.state === 'terminated' || this.state === 'completed' || this.state === 'accepted') return;
    this.#fail(503, 'Service Unavailable', err);
  }

  #fail(status: number, reason: string, cause?: Error): void {
    const res = createResponse(this.request, status, reason);
    if (cause !== undefined) res.set('warning', `399 sipfleet "${(cause instanceof SipError ? cause.message : String(cause)).replace(/["\r\n]/g, "'")}"`);
    localResponses.add(res);
    this.terminate();
    this.#handler.onResponse(res, this);
  }

  /** A response that matched this transaction. */
  receive(res: SipResponse): void {
    const status = res.status;
    switch (this.state) {
      case 'calling':
      case 'trying':
      case 'proceeding':
        break;
      case 'accepted':
        if (status >= 200 && status < 300) this.#handler.onResponse(res, this); // retransmitted or forked 2xx
        return;
      case 'completed':
        if (this.isInvite && status >= 300 && this.#ack !== null) {
          this.#ctx.counters.retransmissions++;
          this.#ctx.transport.send(this.#ack, this.dest);
        }
        return;
      default:
        return;
    }
    this.lastStatus = status;
    if (status < 200) {
      if (this.state === 'calling' && this.#retransmit !== null) {
        clearTimeout(this.#retransmit); // provisional stops Timer A
        this.#retransmit = null;
      }
      this.state = 'proceeding';
      if (this.#cancelPending !== null) {
        const cancel = this.#cancelPending;
        this.#cancelPending = null;
        this.#ctx.sendCancel(this, cancel);
      }
      this.#handler.onResponse(res, this);
      return;
    }
    this.#stopTimers();
    this.#data = null; // no more retransmissions of the request
    if (this.isInvite) {
      if (status < 300) {
        this.state = 'accepted';
        this.#end = setTimeout(() => this.terminate(), 64 * this.#ctx.timers.t1); // Timer M
      } else {
        this.state = 'completed';
        this.#ack = this.#buildAck(res).toBuffer();
        this.#ctx.transport.send(this.#ack, this.dest);
        if (this.reliable) queueMicrotask(() => this.terminate());
        else this.#end = setTimeout(() => this.terminate(), 32_000); // Timer D: at least 32 s on UDP
      }
    } else {
      this.state = 'completed';
      if (this.reliable) queueMicrotask(() => this.terminate());
      else this.#end = setTimeout(() => this.terminate(), this.#ctx.timers.t4); // Timer K
    }
    if (this.#cancelPending !== null) this.#cancelPending = null; // a final response makes the CANCEL moot
    this.#handler.onResponse(res, this);
    this.#request = null;
  }

  /** §17.1.1.3: the ACK for a non-2xx final response, part of this transaction (same branch). */
  #buildAck(res: SipResponse): SipRequest {
    const req = this.request;
    const headers = sameTransactionHeaders(req, false);
    headers.push({ name: 'To', key: 'to', value: res.get('to') ?? req.get('to')! });
    headers.push({ name: 'CSeq', key: 'cseq', value: `${req.cseq.seq} ACK` });
    return new SipRequest('ACK', req.uriText, headers);
  }

  /**
   * Cancels this INVITE (§9.1): sent once a provisional response has arrived, right away if one has, and not at
   * all once a final response has. Returns whether a CANCEL was or will be sent.
   */
  cancel(extraHeaders: HeaderField[] = []): boolean {
    if (!this.isInvite || (this.state !== 'calling' && this.state !== 'proceeding') || this.#request === null) return false;
    if (this.#cancelled) return true; // one CANCEL per INVITE, however many reasons there are to send it
    this.#cancelled = true;
    const req = this.request;
    const headers = sameTransactionHeaders(req, true);
    headers.push({ name: 'CSeq', key: 'cseq', value: `${req.cseq.seq} CANCEL` });
    for (const h of extraHeaders) headers.push(h);
    const cancel = new SipRequest('CANCEL', req.uriText, headers);
    if (this.state === 'proceeding') this.#ctx.sendCancel(this, cancel);
    else this.#cancelPending = cancel;
    return true;
  }

  #stopTimers(): void {
    if (this.#retransmit !== null) clearTimeout(this.#retransmit);
    if (this.#timeout !== null) clearTimeout(this.#timeout);
    this.#retransmit = this.#timeout = null;
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.#stopTimers();
    if (this.#end !== null) clearTimeout(this.#end);
    this.#end = null;
    this.#data = null;
    this.#request = null;
    this.#ctx.removeClient(this);
    this.#handler.onTerminated?.(this);
  }
}

/**
 * The headers an ACK for a non-2xx or a CANCEL copies from the INVITE (§17.1.1.3, §9.1): only the top Via (same
 * branch), Call-ID, From, Route, Max-Forwards, and To for a CANCEL (the ACK takes the response's To).
 */
function sameTransactionHeaders(req: SipRequest, withTo: boolean): HeaderField[] {
  const headers: HeaderField[] = [];
  let viaDone = false;
  for (const h of req.headers) {
    if (h.key === 'via') {
      if (!viaDone) headers.push({ name: h.name, key: 'via', value: req.getAll('via')[0]! });
      viaDone = true;
    } else if (h.key === 'call-id' || h.key === 'from' || h.key === 'route' || h.key === 'max-forwards' || (withTo && h.key === 'to')) {
      headers.push(h);
    }
  }
  return headers;
}

/** Responses a client transaction made up itself (408 on timeout, 503 on transport error). */
const localResponses = new WeakSet<SipResponse>();

export function isLocalResponse(res: SipResponse): boolean {
  return localResponses.has(res);
}
