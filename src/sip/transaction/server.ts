import { SipError } from '../errors.ts';
import { createResponse, type SipRequest, type SipResponse } from '../message/message.ts';
import type { TransportLayer } from '../transport/transport-layer.ts';
import { isReliable, type Destination, type Source } from '../transport/types.ts';
import type { TimerSettings } from './timers.ts';

export type ServerState = 'trying' | 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';

/** What a transaction needs from its layer. */
export interface TransactionContext {
  readonly transport: TransportLayer;
  readonly timers: TimerSettings;
  readonly counters: { retransmissions: number; timeouts: number };
  removeServer(tx: ServerTransaction): void;
}

/**
 * INVITE and non-INVITE server transactions (RFC 3261 §17.2, RFC 6026 Accepted state) in one class: the INVITE
 * machine is proceeding → completed → confirmed, or proceeding → accepted; the non-INVITE one trying →
 * proceeding → completed. Timers G, H, I, J and L.
 */
export class ServerTransaction {
  readonly key: string;
  #request: SipRequest | null;
  readonly source: Source;
  readonly isInvite: boolean;
  state: ServerState;
  /** Status of the last response sent (0 before any) and its To tag (for RFC 2543 ACK matching). */
  lastStatus = 0;
  lastToTag: string | null = null;
  /**
   * The last response's bytes and destination, re-sent when the request is retransmitted. Only these are kept,
   * not the parsed response: a transaction lives up to 64*T1 and memory per call bounds the calls/s a node takes.
   */
  #lastData: Buffer | null = null;
  #lastDest: Destination | null = null;
  readonly #ctx: TransactionContext;
  #timerG: NodeJS.Timeout | null = null;
  #timerH: NodeJS.Timeout | null = null;
  #timerEnd: NodeJS.Timeout | null = null;
  #timerTrying: NodeJS.Timeout | null = null;
  #gInterval = 0;
  /** Set by the TU: called when a CANCEL matches this INVITE transaction (§9.2). */
  onCancel: ((cancel: SipRequest) => void) | null = null;
  /** Set by the TU: Timer H fired (no ACK for a final non-2xx response) or the response could not be sent. */
  onFailure: ((error: SipError) => void) | null = null;
  onTerminated: (() => void) | null = null;
  /** Free for the TU (e.g. the proxy context this transaction belongs to). */
  context: unknown = null;

  constructor(key: string, request: SipRequest, source: Source, ctx: TransactionContext) {
    this.key = key;
    this.#request = request;
    this.source = source;
    this.isInvite = request.method === 'INVITE';
    this.state = this.isInvite ? 'proceeding' : 'trying';
    this.#ctx = ctx;
  }

  /**
   * The request. Released once a final response is sent (the transaction may live 64*T1 longer, and memory per
   * call bounds the calls/s a node sustains); reading it after that is a TU bug.
   */
  get request(): SipRequest {
    if (this.#request === null) throw new SipError('SIP_INVALID_STATE', 500, 'the request of a completed transaction was released');
    return this.#request;
  }

  get reliable(): boolean {
    return isReliable(this.source.protocol);
  }

  /**
   * An INVITE gets 100 Trying after `ms` unless the TU has answered by then (§17.2.1 lets a server skip it when the
   * TU answers within 200 ms). Not sending it at once matters for failover: an INVITE whose node dies before any
   * response is retransmitted by a UDP caller and a survivor takes the call, while a 100 alone stops the caller's
   * retransmissions and nobody can continue a call of which nothing was replicated yet.
   */
  tryingAfter(ms: number): void {
    if (ms <= 0) {
      this.reply(100);
      return;
    }
    this.#timerTrying = setTimeout(() => {
      this.#timerTrying = null;
      if (this.lastStatus === 0 && this.state === 'proceeding') this.reply(100);
    }, ms);
  }

  /** Sends a response built by the caller, moving the state machine on. */
  respond(res: SipResponse): void {
    const status = res.status;
    if (this.#timerTrying !== null) {
      clearTimeout(this.#timerTrying);
      this.#timerTrying = null;
    }
    switch (this.state) {
      case 'trying':
      case 'proceeding':
        break;
      case 'accepted':
        // RFC 6026 §8.5: 2xx retransmissions from the TU (UAS core or a proxy) pass through in Accepted.
        if (status >= 200 && status < 300) {
          this.#send(res);
          return;
        }
        return;
      default:
        return;
    }
    this.#send(res);
    if (status < 200) {
      this.state = 'proceeding';
      return;
    }
    this.#request = null;
    if (this.isInvite) {
      if (status < 300) {
        this.state = 'accepted';
        this.#timerEnd = setTimeout(() => this.terminate(), 64 * this.#ctx.timers.t1); // Timer L
      } else {
        this.state = 'completed';
        if (!this.reliable) {
          this.#gInterval = this.#ctx.timers.t1;
          this.#timerG = setTimeout(() => this.#fireG(), this.#gInterval);
        }
        this.#timerH = setTimeout(() => this.#fireH(), 64 * this.#ctx.timers.t1);
      }
    } else {
      this.state = 'completed';
      if (this.reliable) this.terminate();
      else this.#timerEnd = setTimeout(() => this.terminate(), 64 * this.#ctx.timers.t1); // Timer J
    }
  }

  /** Builds and sends a response with the given status (To tag added when given). */
  reply(status: number, reason?: string, toTag?: string): SipResponse {
    const res = createResponse(this.request, status, reason, toTag);
    this.respond(res);
    return res;
  }

  /** A retransmission of the request arrived (or, for INVITE, an ACK to our non-2xx response). */
  receive(req: SipRequest): void {
    if (req.method === 'ACK') {
      if (this.state === 'completed') {
        this.state = 'confirmed';
        this.#clearG();
        if (this.#timerH !== null) clearTimeout(this.#timerH);
        this.#timerH = null;
        if (this.reliable) this.terminate();
        else this.#timerEnd = setTimeout(() => this.terminate(), this.#ctx.timers.t4); // Timer I
      }
      return;
    }
    this.#ctx.counters.retransmissions++;
    // The caller is still waiting and the TU has not answered: say we have the request now.
    if (this.#timerTrying !== null) this.reply(100);
    else if ((this.state === 'proceeding' || this.state === 'completed') && this.#lastData !== null) {
      this.#ctx.transport.sendResponseData(this.#lastData, this.#lastDest!, this.source);
    }
  }

  #send(res: SipResponse): void {
    this.lastStatus = res.status;
    if (res.status > 100) this.lastToTag = res.toTag;
    const sent = this.#ctx.transport.sendResponse(res, this.source, (err) => this.#transportError(err));
    // In Accepted, retransmissions of the INVITE are absorbed silently (RFC 6026 §7.1): no need for the bytes.
    this.#lastData = this.isInvite && res.status >= 200 && res.status < 300 ? null : sent.data;
    this.#lastDest = sent.dest;
  }

  #transportError(err: Error): void {
    // §17.2.4: the response could not be sent; tell the TU and give up on the transaction.
    this.onFailure?.(err instanceof SipError ? err : new SipError('SIP_TRANSPORT', 503, err.message));
    this.terminate();
  }

  #fireG(): void {
    if (this.state !== 'completed' || this.#lastData === null) return;
    this.#ctx.counters.retransmissions++;
    this.#ctx.transport.sendResponseData(this.#lastData, this.#lastDest!, this.source);
    this.#gInterval = Math.min(this.#gInterval * 2, this.#ctx.timers.t2);
    this.#timerG = setTimeout(() => this.#fireG(), this.#gInterval);
  }

  #fireH(): void {
    this.#timerH = null;
    if (this.state !== 'completed') return;
    this.#ctx.counters.timeouts++;
    this.onFailure?.(new SipError('SIP_TIMEOUT', 408, 'no ACK for the final response (Timer H)'));
    this.terminate();
  }

  #clearG(): void {
    if (this.#timerG !== null) clearTimeout(this.#timerG);
    this.#timerG = null;
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.#clearG();
    if (this.#timerH !== null) clearTimeout(this.#timerH);
    if (this.#timerEnd !== null) clearTimeout(this.#timerEnd);
    if (this.#timerTrying !== null) clearTimeout(this.#timerTrying);
    this.#timerH = this.#timerEnd = this.#timerTrying = null;
    this.#lastData = null;
    this.#request = null;
    this.#ctx.removeServer(this);
    this.onTerminated?.();
  }
}
