import type { ReplicationLoad } from './cluster/heartbeat.ts';
import { OverloadMonitor, type LoadSource, type OverloadOptions, type OverloadReason } from './overload.ts';
import { SipStack, type StackOptions } from '../sip/stack.ts';
import { createResponse, type SipRequest, type SipResponse } from '../sip/message/message.ts';
import type { ServerTransaction } from '../sip/transaction/server.ts';
import type { TransactionUser } from '../sip/transaction/layer.ts';
import type { Source } from '../sip/transport/types.ts';

/**
 * What a node runs. This is the node's internal contract, which the bundled apps implement directly; the
 * SIP Servlets–style application API is built on top of it.
 */
export interface NodeApp {
  readonly name: string;
  /** Called once the node's stack is listening. */
  start?(node: SipNode): void | Promise<void>;
  /** A request that passed the node's checks. `tx` is null for an ACK that matched no transaction. */
  onRequest(req: SipRequest, tx: ServerTransaction | null, source: Source): void;
  /** A response that matched no client transaction (e.g. a 2xx retransmitted after its transaction ended). */
  onStrayResponse?(res: SipResponse, source: Source): void;
  stop?(): void | Promise<void>;
  /** Calls in progress and in-dialog requests for calls this node does not hold, reported to balancers. */
  load?(): NodeLoad;
}

export interface NodeLoad {
  calls: number;
  /** Calls being set up: initial INVITEs without a final response yet. */
  settingUp?: number;
  /** Of those, INVITEs with no response yet but 100 (a proxied one: no final response yet). */
  unanswered?: number;
  unknownDialogs: number;
  /** Replication: records written, bytes written, calls continued here after their node died. */
  replication?: ReplicationLoad;
}

export interface NodeOptions extends StackOptions {
  app: NodeApp;
  /** Overload control (see overload.ts); null: none (the heap limit alone is watched when this is omitted). */
  overload?: OverloadOptions | null;
}

const ALLOWED_SCHEMES = new Set(['sip', 'sips', 'tel']);
/** To tag prefix of the 503s sent statelessly: their ACKs match no transaction and are dropped by it. */
const SHED_TAG = 'sfol';
/** Overloaded for memory: the 503's transaction is dropped at once instead of living 64*T1. */
const STATELESS: ReadonlySet<OverloadReason> = new Set(['heap', 'transactions']);

/**
 * A SIP node: a stack and the app it serves. It answers what no app should have to: unsupported URI schemes (416,
 * RFC 4475 §3.3.2) and requests its handler throws on (500 with the reason), so a bug never drops a transaction.
 */
export class SipNode implements TransactionUser {
  readonly stack: SipStack;
  readonly app: NodeApp;
  /** Null when overload control is off. */
  readonly overload: OverloadMonitor | null;
  readonly #load: LoadSource;
  #shedTags = 0;

  private constructor(stack: SipStack, app: NodeApp, overload: OverloadMonitor | null) {
    this.stack = stack;
    this.app = app;
    this.overload = overload;
    this.#load = {
      settingUp: () => this.app.load?.().settingUp ?? 0,
      transactions: () => this.stack.transactions.serverCount,
    };
  }

  static async start(options: NodeOptions): Promise<SipNode> {
    // Built first: a bad limit fails before anything is bound.
    const overload = options.overload === null ? null : new OverloadMonitor(options.overload ?? {});
    const stack = await SipStack.start(options);
    const node = new SipNode(stack, options.app, overload);
    stack.transactions.setUser(node);
    try {
      await options.app.start?.(node);
    } catch (err) {
      await stack.close();
      throw err;
    }
    overload?.start(node.#load);
    return node;
  }

  onRequest(req: SipRequest, tx: ServerTransaction | null, source: Source): void {
    if (tx === null) {
      // The ACK of a 503 sent statelessly: its transaction is gone on purpose.
      if (req.method === 'ACK' && req.toTag !== null && req.toTag.startsWith(SHED_TAG)) return;
    } else if (!ALLOWED_SCHEMES.has(req.uri.scheme)) {
      tx.reply(416);
      return;
    } else if (this.overload !== null && req.method === 'INVITE' && req.toTag === null) {
      const reason = this.overload.admit(this.#load);
      if (reason !== null) {
        this.#refuse(tx, reason);
        return;
      }
    }
    try {
      this.app.onRequest(req, tx, source);
    } catch (err) {
      if (tx !== null && tx.state !== 'terminated' && tx.lastStatus < 200) {
        const status = typeof (err as { status?: unknown }).status === 'number' ? (err as { status: number }).status : 500;
        const reason = err instanceof Error ? err.message.replace(/[\r\n]+/g, ' ').slice(0, 100) : 'Server Internal Error';
        tx.reply(status >= 300 && status < 700 ? status : 500, reason);
      }
    }
  }

  /** A new call while overloaded: 503 with Retry-After, before the app sees it. */
  #refuse(tx: ServerTransaction, reason: OverloadReason): void {
    const res = createResponse(tx.request, 503, 'Overloaded', SHED_TAG + (++this.#shedTags).toString(36));
    res.set('retry-after', String(this.overload!.limits.retryAfterS));
    tx.respond(res);
    if (STATELESS.has(reason)) {
      this.overload!.counters.rejectedStateless++;
      tx.terminate();
    }
  }

  onStrayResponse(res: SipResponse, source: Source): void {
    try {
      this.app.onStrayResponse?.(res, source);
    } catch {
      // A response cannot be answered; a throwing handler only loses this one.
    }
  }

  async close(): Promise<void> {
    this.overload?.stop();
    await this.app.stop?.();
    await this.stack.close();
  }
}
