import { parseAddress } from '../message/address.ts';
import type { SipRequest, SipResponse } from '../message/message.ts';
import type { ClientHandler, ClientTransaction } from '../transaction/client.ts';
import { newBranch } from '../transaction/keys.ts';
import type { TransactionLayer } from '../transaction/layer.ts';
import type { ServerTransaction } from '../transaction/server.ts';
import { uriDestination } from '../transport/transport-layer.ts';
import type { Destination } from '../transport/types.ts';
import { Dialog } from './dialog.ts';

interface PendingAnswer {
  data: Buffer;
  dest: Destination;
  tx: ServerTransaction;
  timer: NodeJS.Timeout;
  interval: number;
  deadline: number;
  onAckTimeout: (() => void) | undefined;
}

/**
 * The dialog-related duties of a UA core (RFC 3261 §13, RFC 6026): keeps dialogs by id, retransmits a UAS's 2xx
 * until its ACK arrives (§13.3.1.4), sends the ACK for a 2xx as a UAC and repeats it for 2xx retransmissions
 * (§13.2.2.4), and routes in-dialog requests along the route set.
 */
export class DialogLayer {
  readonly transactions: TransactionLayer;
  readonly #dialogs = new Map<string, Dialog>();
  /** UAS 2xx awaiting ACK, by dialog id + CSeq. */
  readonly #answers = new Map<string, PendingAnswer>();
  /** UAC ACKs already sent, by dialog id + CSeq, replayed when the 2xx is retransmitted. */
  readonly #acks = new Map<string, { data: Buffer; dest: Destination; timer: NodeJS.Timeout }>();
  readonly counters = { ackTimeouts: 0, answerRetransmissions: 0 };

  constructor(transactions: TransactionLayer) {
    this.transactions = transactions;
  }

  get size(): number {
    return this.#dialogs.size;
  }

  /** Dialogs by state (for metrics: walks them all, so only when scraped). */
  countByState(): Record<'early' | 'confirmed' | 'terminated', number> {
    const counts = { early: 0, confirmed: 0, terminated: 0 };
    for (const d of this.#dialogs.values()) counts[d.state]++;
    return counts;
  }

  get(id: string): Dialog | undefined {
    return this.#dialogs.get(id);
  }

  add(dialog: Dialog): Dialog {
    this.#dialogs.set(dialog.id, dialog);
    return dialog;
  }

  remove(dialog: Dialog): void {
    dialog.terminate();
    this.#dialogs.delete(dialog.id);
    // Pending 2xx/ACK entries are keyed by the dialog's last INVITE; older ones end by their own timers.
    const key = dialog.id + '|' + dialog.record.inviteSeq;
    const answer = this.#answers.get(key);
    if (answer !== undefined) clearTimeout(answer.timer);
    this.#answers.delete(key);
    const ack = this.#acks.get(key);
    if (ack !== undefined) clearTimeout(ack.timer);
    this.#acks.delete(key);
  }

  /** The dialog an in-dialog request belongs to, or undefined (the caller answers 481, §12.2.2). */
  forRequest(req: SipRequest): Dialog | undefined {
    const id = Dialog.idForRequest(req);
    return id === null ? undefined : this.#dialogs.get(id);
  }

  forResponse(res: SipResponse): Dialog | undefined {
    const id = Dialog.idForResponse(res);
    return id === null ? undefined : this.#dialogs.get(id);
  }

  /**
   * UAS: sends a 2xx to an INVITE through its server transaction, then keeps retransmitting it (T1 doubling to T2)
   * until the ACK arrives or 64*T1 passes, when `onAckTimeout` runs (the UAS should then send BYE).
   */
  answer(tx: ServerTransaction, res: SipResponse, dialog: Dialog, onAckTimeout?: () => void): void {
    tx.respond(res);
    dialog.confirm();
    const { t1 } = this.transactions.timers;
    const key = dialog.id + '|' + res.cseq.seq;
    const pending: PendingAnswer = {
      data: res.toBuffer(),
      dest: this.transactions.transport.responseDestination(res),
      tx,
      interval: t1,
      deadline: Date.now() + 64 * t1,
      onAckTimeout,
      // Over a reliable transport the 2xx is not retransmitted, but the ACK is still awaited for 64*T1.
      timer: setTimeout(() => this.#retransmitAnswer(key), tx.reliable ? 64 * t1 : t1),
    };
    this.#answers.set(key, pending);
  }

  #retransmitAnswer(key: string): void {
    const p = this.#answers.get(key);
    if (p === undefined) return;
    // Over a reliable transport this timer is the 64*T1 deadline itself (a timer may fire a millisecond before
    // Date.now() reaches the deadline, which must not turn into a 2xx retransmission).
    if (p.tx.reliable || Date.now() >= p.deadline) {
      this.#answers.delete(key);
      this.counters.ackTimeouts++;
      p.onAckTimeout?.();
      return;
    }
    this.counters.answerRetransmissions++;
    this.transactions.transport.sendResponseData(p.data, p.dest, p.tx.source);
    p.interval = Math.min(p.interval * 2, this.transactions.timers.t2);
    p.timer = setTimeout(() => this.#retransmitAnswer(key), Math.min(p.interval, Math.max(1, p.deadline - Date.now())));
  }

  /** UAS: an ACK arrived for a dialog; stops the 2xx retransmission it answers. Returns whether one was pending. */
  receiveAck(ack: SipRequest, dialog: Dialog): boolean {
    const key = dialog.id + '|' + ack.cseq.seq;
    const p = this.#answers.get(key);
    if (p === undefined) return false;
    clearTimeout(p.timer);
    this.#answers.delete(key);
    return true;
  }

  /** Where an in-dialog request goes: the first Route when loose routing, else the Request-URI (§8.1.2). */
  destinationOf(req: SipRequest, fallback = this.transactions.transport.defaultProtocol): Destination {
    const route = req.getAll('route')[0];
    if (route !== undefined) {
      const a = parseAddress(route, 'Route');
      return uriDestination(a.uri, fallback);
    }
    return uriDestination(req.uri, fallback);
  }

  /** Sends a request built by `dialog.createRequest` in a client transaction. */
  send(req: SipRequest, handler: ClientHandler, dest?: Destination): ClientTransaction {
    return this.transactions.request(req, dest ?? this.destinationOf(req), handler);
  }

  /** UAC: sends the ACK for a 2xx (§13.2.2.4), a transaction of its own, and remembers it for 2xx retransmissions. */
  ack(dialog: Dialog, res: SipResponse, extra?: { body?: Buffer; contentType?: string }): void {
    const ack = dialog.createRequest('ACK', { seq: res.cseq.seq, body: extra?.body });
    if (extra?.contentType !== undefined) ack.set('content-type', extra.contentType);
    const dest = this.destinationOf(ack);
    const sent = this.transactions.transport.sendRequest(ack, dest, newBranch());
    const key = dialog.id + '|' + res.cseq.seq;
    const old = this.#acks.get(key);
    if (old !== undefined) clearTimeout(old.timer);
    // Kept for 64*T1, as long as the peer may retransmit its 2xx.
    const timer = setTimeout(() => this.#acks.delete(key), 64 * this.transactions.timers.t1);
    timer.unref();
    this.#acks.set(key, { data: sent.data, dest: sent.dest, timer });
  }

  /** UAC: a 2xx that matched no transaction: replay our ACK if we sent one. Returns whether it was handled. */
  receiveStray2xx(res: SipResponse): boolean {
    if (res.status < 200 || res.status >= 300 || res.cseq.method !== 'INVITE') return false;
    const dialog = this.forResponse(res);
    if (dialog === undefined) return false;
    const a = this.#acks.get(dialog.id + '|' + res.cseq.seq);
    if (a === undefined) return false;
    this.transactions.transport.send(a.data, a.dest);
    return true;
  }

  /** Stops all timers (shutdown). */
  shutdown(): void {
    for (const a of this.#answers.values()) clearTimeout(a.timer);
    for (const a of this.#acks.values()) clearTimeout(a.timer);
    this.#answers.clear();
    this.#acks.clear();
    this.#dialogs.clear();
  }
}

