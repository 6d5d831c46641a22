import type { SipRequest, SipResponse } from '../message/message.ts';
import type { TransportLayer, TransportUser } from '../transport/transport-layer.ts';
import type { Destination, Source } from '../transport/types.ts';
import { ClientTransaction, type ClientContext, type ClientHandler } from './client.ts';
import { clientKey, isRfc3261Branch, newBranch, serverKey } from './keys.ts';
import { ServerTransaction, type TransactionContext } from './server.ts';
import { DEFAULT_TIMERS, validateTimers, type TimerSettings } from './timers.ts';

/** The transaction layer's user: a UA core, a proxy core, or the app server. */
export interface TransactionUser {
  /**
   * A new request. `tx` is its server transaction, or null for an ACK that matched none (the ACK for a 2xx,
   * which is end to end, §17.1.1.3) and for a CANCEL the TU must match itself.
   */
  onRequest(req: SipRequest, tx: ServerTransaction | null, source: Source): void;
  /** A response that matches no client transaction: a 2xx retransmitted after the transaction ended, for one. */
  onStrayResponse(res: SipResponse, source: Source): void;
}

export interface TransactionCounters {
  serverCreated: number;
  clientCreated: number;
  retransmissions: number;
  timeouts: number;
  /** Retransmitted requests absorbed by a server transaction. */
  absorbed: number;
}

/**
 * Matches messages to transactions (§17.1.3, §17.2.3) and owns them. Every new request other than ACK gets a
 * server transaction before the TU sees it; an INVITE the TU has not answered within `tryingDelayMs` gets a 100
 * Trying then (§17.2.1), so the previous hop stops retransmitting.
 */
export class TransactionLayer implements TransportUser, TransactionContext, ClientContext {
  readonly transport: TransportLayer;
  readonly timers: TimerSettings;
  readonly counters: TransactionCounters = { serverCreated: 0, clientCreated: 0, retransmissions: 0, timeouts: 0, absorbed: 0 };
  readonly #servers = new Map<string, ServerTransaction>();
  readonly #clients = new Map<string, ClientTransaction>();
  #user: TransactionUser | null = null;
  /** Whether INVITE server transactions answer 100 Trying themselves (a UAS that rings at once may not need it). */
  autoTrying = true;
  /** How long an INVITE may wait for the TU's first response before the 100 Trying goes (§17.2.1: 200 ms). */
  tryingDelayMs = 200;

  constructor(transport: TransportLayer, timers: Partial<TimerSettings> = {}) {
    this.transport = transport;
    this.timers = validateTimers({ ...DEFAULT_TIMERS, ...timers });
    transport.setUser(this);
  }

  setUser(user: TransactionUser): void {
    this.#user = user;
  }

  get serverCount(): number {
    return this.#servers.size;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  receiveRequest(req: SipRequest, source: Source): void {
    const key = serverKey(req);
    const tx = this.#servers.get(key);
    if (req.method === 'ACK') {
      // ACK for a non-2xx response belongs to the INVITE transaction; for RFC 2543 peers the To tag must also match.
      if (tx !== undefined && tx.state !== 'accepted' && (isRfc3261Branch(req.topVia.branch) || tx.lastToTag === req.toTag)) {
        tx.receive(req);
        return;
      }
      this.#user?.onRequest(req, null, source);
      return;
    }
    if (tx !== undefined) {
      this.counters.absorbed++;
      tx.receive(req);
      return;
    }
    const created = new ServerTransaction(key, req, source, this);
    this.#servers.set(key, created);
    this.counters.serverCreated++;
    if (req.method === 'INVITE' && this.autoTrying) created.tryingAfter(this.tryingDelayMs);
    if (this.#user === null) {
      created.reply(503, 'No Transaction User');
      return;
    }
    this.#user.onRequest(req, created, source);
  }

  receiveResponse(res: SipResponse, source: Source): void {
    const key = clientKey(res);
    const tx = key === null ? undefined : this.#clients.get(key);
    if (tx !== undefined) {
      tx.receive(res);
      return;
    }
    this.#user?.onStrayResponse(res, source);
  }

  /** The INVITE server transaction a CANCEL refers to (§9.2), if it is still there. */
  findInviteForCancel(cancel: SipRequest): ServerTransaction | undefined {
    return this.#servers.get(serverKey(cancel, 'INVITE'));
  }

  /** Creates a client transaction and sends the request (our Via with a new branch is added). */
  request(req: SipRequest, dest: Destination, handler: ClientHandler): ClientTransaction {
    const tx = new ClientTransaction(req, dest, this, handler);
    this.counters.clientCreated++;
    tx.start(newBranch());
    return tx;
  }

  /**
   * A server transaction for a request another node received and answered provisionally (EarlyDialog failover):
   * in Proceeding, the TU not told; it absorbs retransmissions and the ACK of the final response sent on it.
   */
  adoptServer(req: SipRequest, source: Source): ServerTransaction {
    const key = serverKey(req);
    const existing = this.#servers.get(key);
    if (existing !== undefined) return existing;
    const tx = new ServerTransaction(key, req, source, this);
    this.#servers.set(key, tx);
    return tx;
  }

  /** A client transaction for an INVITE another node sent (its Via on it), in Proceeding: see ClientTransaction.adopt. */
  adoptClient(req: SipRequest, dest: Destination, handler: ClientHandler): ClientTransaction {
    const tx = new ClientTransaction(req, dest, this, handler);
    this.counters.clientCreated++;
    tx.adopt();
    return tx;
  }

  sendCancel(invite: ClientTransaction, cancel: SipRequest): void {
    const tx = new ClientTransaction(cancel, invite.dest, this, { onResponse: () => {} });
    this.counters.clientCreated++;
    tx.start(invite.branch, true);
  }

  addClient(tx: ClientTransaction): void {
    this.#clients.set(tx.key, tx);
  }

  removeClient(tx: ClientTransaction): void {
    if (this.#clients.get(tx.key) === tx) this.#clients.delete(tx.key);
  }

  removeServer(tx: ServerTransaction): void {
    if (this.#servers.get(tx.key) === tx) this.#servers.delete(tx.key);
  }

  /** Ends every transaction (timers cleared), for shutdown. */
  shutdown(): void {
    for (const tx of [...this.#servers.values()]) tx.terminate();
    for (const tx of [...this.#clients.values()]) tx.terminate();
  }
}
