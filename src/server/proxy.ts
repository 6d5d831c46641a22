import { parseAddress } from '../sip/message/address.ts';
import { createResponse, type SipRequest, type SipResponse } from '../sip/message/message.ts';
import { isSipUri, type Uri } from '../sip/message/uri.ts';
import type { ClientTransaction } from '../sip/transaction/client.ts';
import type { ServerTransaction } from '../sip/transaction/server.ts';
import type { SipStack } from '../sip/stack.ts';
import { uriDestination } from '../sip/transport/transport-layer.ts';
import type { Destination, ListenAddress, Source } from '../sip/transport/types.ts';
import { newBranch } from '../sip/transaction/keys.ts';

export interface ProxyOptions {
  /** Insert Record-Route in dialog-creating requests so in-dialog requests come back through us (§16.6 step 4). */
  recordRoute: boolean;
}

const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY']);

/** Where one branch goes: the next hop, and a new Request-URI when retargeting (a registered contact). */
export interface ProxyTarget {
  dest: Destination;
  requestUri?: string;
  /** Route headers to put on this branch (a registered contact's Path, RFC 3327), in order. */
  routes?: string[];
}

export interface ForwardOptions {
  /** All targets at once (default) or one after the other, the next on a non-2xx final or a timeout (§16.6). */
  parallel?: boolean;
  /** A branch without a final response after this long is cancelled and counts as a 408. 0: no limit. */
  branchTimeoutMs?: number;
  /** Overrides the core's Record-Route setting for this request. */
  recordRoute?: boolean;
  /** Appended to our Record-Route URI (e.g. `;sfa=KEY`), so in-dialog requests carry the app's session key. */
  recordRouteParams?: string;
  /** Called once with the status of the final response sent upstream. */
  onFinal?: (status: number) => void;
  /** Supervised mode: sees every response from every branch before it is relayed (or not). */
  onResponse?: (res: SipResponse, branch: ClientTransaction) => void;
  /**
   * Called once, at the first provisional response with a To tag (an early dialog), with the open branches; when
   * it returns a promise, that response is relayed once it settles (EarlyDialog: the replica exists before the
   * 1xx leaves).
   */
  onEarly?: (branches: ReadonlyArray<{ request: SipRequest; dest: Destination }>) => Promise<void> | void;
}

/** Options of a context whose final response has gone: no callbacks kept alive. */
const FINISHED: ForwardOptions = Object.freeze({});

/** One proxied request: the server transaction upstream and the client transaction(s) downstream (§16.2). */
interface ResponseContext {
  server: ServerTransaction;
  /** Kept only while targets remain to be tried: a context can live 64*T1. */
  request: SipRequest | null;
  branches: ClientTransaction[];
  /** Targets not tried yet (sequential forking). */
  pending: ProxyTarget[];
  options: ForwardOptions;
  /** Best final response so far (§16.7 step 6), forwarded once every branch has ended. */
  best: SipResponse | null;
  finalSent: boolean;
  /** Branches given up on by their timeout (late non-2xx responses ignored); null until one is. */
  timedOut: Set<ClientTransaction> | null;
  early?: boolean;
}

/**
 * A transaction-stateful proxy core (RFC 3261 §16): request validation (Max-Forwards, 483), route processing
 * with loose and strict routers (§16.4), Record-Route, parallel and sequential forking with branch timeouts,
 * response relaying with best-response selection (§16.7), CANCEL (§16.10), and stateless forwarding of ACK for 2xx
 * and of stray 2xx.
 */
export class ProxyCore {
  readonly #stack: SipStack;
  readonly #options: ProxyOptions;
  readonly #recordRoute = new Map<string, string>();
  readonly counters = { forwarded: 0, statelessForwarded: 0, cancelled: 0, rejected: 0 };

  constructor(stack: SipStack, options: ProxyOptions) {
    this.#stack = stack;
    this.#options = options;
    for (const p of ['UDP', 'TCP'] as const) {
      if (stack.transport.supports(p)) {
        this.#recordRoute.set(p, `sip:${stack.transport.sentBy(p)}${p === 'UDP' ? '' : ';transport=tcp'};lr`);
      }
    }
  }

  /** Whether this URI names this proxy (one of its listening addresses). */
  isLocal(uri: Uri): boolean {
    if (!isSipUri(uri)) return false;
    const host = uri.host.startsWith('[') ? uri.host.slice(1, -1) : uri.host;
    const port = uri.port ?? 5060;
    return this.#stack.transport.listening.some((l: ListenAddress) => l.port === port && l.host === host);
  }

  /**
   * Processes a request for proxying (§16.3, §16.4). Returns false when the request was answered here (error or
   * CANCEL/ACK handled), true when the caller should pick targets and call forward().
   */
  receive(req: SipRequest, tx: ServerTransaction | null, topRouteIsLocal?: boolean): boolean {
    const mf = req.maxForwards;
    if (mf === 0 && req.method !== 'ACK') {
      this.counters.rejected++;
      tx?.reply(req.method === 'OPTIONS' ? 200 : 483);
      return false;
    }
    if (tx !== null && req.has('proxy-require')) {
      const res = createResponse(req, 420);
      res.set('unsupported', req.getAll('proxy-require').join(', '));
      tx.respond(res);
      return false;
    }
    // §16.4: a strict router before us put our URI in the Request-URI; restore the real one from the last Route.
    if (this.isLocal(req.uri) && req.has('route')) {
      const routes = req.getAll('route');
      const last = routes.pop()!;
      req.uri = parseAddress(last, 'Route').uri;
      req.remove('route');
      for (const r of routes) req.append('route', r);
      topRouteIsLocal = undefined; // the Route set changed: read it again
    }
    if (topRouteIsLocal === true) {
      req.removeFirst('route'); // the caller already read it
    } else if (topRouteIsLocal === undefined) {
      const top = req.getAll('route')[0];
      if (top !== undefined && this.isLocal(parseAddress(top, 'Route').uri)) req.removeFirst('route');
    }
    if (req.method === 'CANCEL' && tx !== null) {
      this.#cancel(req, tx);
      return false;
    }
    return true;
  }

  /** Where the request goes when it has a Route left (loose routing), else null. */
  routeDestination(req: SipRequest): Destination | null {
    const top = req.getAll('route')[0];
    if (top === undefined) return null;
    return uriDestination(parseAddress(top, 'Route').uri, this.#stack.transport.defaultProtocol);
  }

  /**
   * Forwards a request (§16.6) to one target or forks it to several, each branch in a client transaction; the
   * responses come back through `tx`. An ACK for a 2xx (`tx` null) is forwarded statelessly to the first target.
   */
  forward(req: SipRequest, tx: ServerTransaction | null, targets: ProxyTarget | ProxyTarget[], options: ForwardOptions = {}): void {
    const list = Array.isArray(targets) ? targets : [targets];
    if (list.length === 0) {
      tx?.reply(480);
      return;
    }
    if (tx === null) {
      // ACK for a 2xx: end to end, forwarded statelessly (§16.11) with a branch of its own.
      this.counters.statelessForwarded++;
      this.#stack.transport.sendRequest(this.#prepare(req, list[0]!, options), list[0]!.dest, newBranch());
      return;
    }
    const ctx: ResponseContext = {
      server: tx, request: req, branches: [], pending: [], options, best: null, finalSent: false, timedOut: null,
    };
    tx.context = ctx;
    if (options.parallel === false) {
      ctx.pending = list.slice(1);
      this.#startBranch(ctx, list[0]!);
    } else {
      for (const t of list) this.#startBranch(ctx, t);
    }
    if (ctx.pending.length === 0) ctx.request = null;
  }

  /** The copy of the request a branch sends (§16.6 steps 1–5). */
  #prepare(req: SipRequest, target: ProxyTarget, options: ForwardOptions): SipRequest {
    const out = req.clone();
    if (target.requestUri !== undefined) out.uri = target.requestUri;
    if (target.routes !== undefined) for (let i = target.routes.length - 1; i >= 0; i--) out.prepend('route', target.routes[i]!);
    out.set('max-forwards', (req.maxForwards ?? 70) - 1);
    if ((options.recordRoute ?? this.#options.recordRoute) && req.toTag === null && DIALOG_CREATING.has(req.method)) {
      const rr = this.#recordRoute.get(target.dest.protocol) ?? this.#recordRoute.values().next().value!;
      out.prepend('record-route', options.recordRouteParams === undefined ? `<${rr}>` : `<${rr}${options.recordRouteParams}>`);
    }
    return out;
  }

  #startBranch(ctx: ResponseContext, target: ProxyTarget): void {
    this.counters.forwarded++;
    const client = this.#stack.transactions.request(this.#prepare(ctx.request!, target, ctx.options), target.dest, {
      onResponse: (res, ct) => this.#onResponse(ctx, res, ct),
    });
    ctx.branches.push(client);
    const timeout = ctx.options.branchTimeoutMs ?? 0;
    if (timeout > 0) {
      const timer = setTimeout(() => this.#branchTimeout(ctx, client), timeout);
      client.context = timer;
    }
  }

  #branchTimeout(ctx: ResponseContext, branch: ClientTransaction): void {
    if (!isOpen(branch) || ctx.finalSent) return;
    (ctx.timedOut ??= new Set()).add(branch);
    branch.cancel();
    const res = createResponse(branch.request, 408, 'Branch Timeout');
    res.removeFirst('via');
    this.#finalFromBranch(ctx, res);
  }

  #onResponse(ctx: ResponseContext, res: SipResponse, client: ClientTransaction): void {
    const status = res.status;
    if (status >= 200 && client.context !== null) {
      clearTimeout(client.context as NodeJS.Timeout);
      client.context = null;
    }
    if (status === 100) return;
    // Our own Via comes off (a 408/503 made by the client transaction copies the request we sent, so has it too).
    res.removeFirst('via');
    if (res.vias.length === 0) return;
    ctx.options.onResponse?.(res, client);
    if (status < 200) {
      if (ctx.finalSent || ctx.timedOut?.has(client) === true) return;
      if (ctx.early !== true && res.toTag !== null && ctx.options.onEarly !== undefined) {
        ctx.early = true;
        const written = ctx.options.onEarly(ctx.branches.filter(isOpen).map((b) => ({ request: b.request, dest: b.dest })));
        if (written !== undefined) {
          void written.then(() => { if (!ctx.finalSent) ctx.server.respond(res); });
          return;
        }
      }
      ctx.server.respond(res);
      return;
    }
    if (status < 300) {
      // 2xx (and its retransmissions, and forked 2xx) go upstream at once (§16.7 step 5); other branches are cancelled.
      if (!ctx.finalSent) ctx.options.onFinal?.(status);
      ctx.finalSent = true;
      ctx.pending = [];
      ctx.request = null;
      // The context lives on with the server transaction (64*T1): let go of what the caller's callbacks hold.
      ctx.options = FINISHED;
      ctx.server.respond(res);
      if (ctx.server.state === 'terminated') this.#stack.transport.sendResponse(res, ctx.server.source);
      for (const b of ctx.branches) if (b !== client) b.cancel();
      return;
    }
    if (ctx.timedOut?.has(client) === true) return;
    this.#finalFromBranch(ctx, res);
  }

  /** A branch ended without a 2xx: remember the best response, try the next target, or answer upstream. */
  #finalFromBranch(ctx: ResponseContext, res: SipResponse): void {
    if (ctx.finalSent) return;
    if (ctx.best === null || rank(res.status) < rank(ctx.best.status)) ctx.best = res;
    // A 6xx ends the search (§16.7 step 5): no further targets, the rest cancelled.
    if (res.status >= 600) {
      ctx.pending = [];
      for (const b of ctx.branches) b.cancel();
    }
    const next = ctx.pending.shift();
    if (next !== undefined) {
      this.#startBranch(ctx, next);
      if (ctx.pending.length === 0) ctx.request = null;
      return;
    }
    if (ctx.branches.some((b) => isOpen(b) && ctx.timedOut?.has(b) !== true)) return;
    ctx.finalSent = true;
    const best = ctx.best;
    // §16.7 step 6: a 503 from downstream becomes 500 upstream (the proxy itself is not unavailable).
    if (best.status === 503) {
      best.status = 500;
      best.reason = 'Server Internal Error';
    }
    ctx.server.respond(best);
    ctx.options.onFinal?.(best.status);
    ctx.options = FINISHED;
  }

  /**
   * Continues a proxied INVITE another node started (EarlyDialog failover): its server transaction towards the
   * caller and its client transactions towards the callees, rebuilt from their requests, in Proceeding. A CANCEL,
   * the callees' final responses and the caller's ACK are then handled as if this node had proxied it.
   */
  adopt(invite: SipRequest, source: Source, branches: ReadonlyArray<{ request: SipRequest; dest: Destination }>): ServerTransaction {
    const server = this.#stack.transactions.adoptServer(invite, source);
    if (server.context !== null) return server;
    const ctx: ResponseContext = {
      server, request: null, branches: [], pending: [], options: {}, best: null, finalSent: false, timedOut: null, early: true,
    };
    server.context = ctx;
    for (const b of branches) {
      ctx.branches.push(this.#stack.transactions.adoptClient(b.request, b.dest, { onResponse: (res, ct) => this.#onResponse(ctx, res, ct) }));
    }
    return server;
  }

  #cancel(cancel: SipRequest, tx: ServerTransaction): void {
    const invite = this.#stack.transactions.findInviteForCancel(cancel);
    if (invite === undefined) {
      tx.reply(481);
      return;
    }
    tx.reply(200);
    const ctx = invite.context as ResponseContext | null;
    this.counters.cancelled++;
    if (ctx === null || ctx.finalSent) return;
    const reason = cancel.get('reason');
    for (const b of ctx.branches) b.cancel(reason === undefined ? [] : [{ name: 'Reason', key: 'reason', value: reason }]);
  }

  /** A response matching no transaction (a 2xx retransmission after ours ended): forward it statelessly (§16.7). */
  forwardStray(res: SipResponse, _source: Source): void {
    const top = res.vias[0];
    if (top === undefined) return;
    res.removeFirst('via');
    if (res.vias.length === 0) return;
    this.counters.statelessForwarded++;
    this.#stack.transport.sendResponse(res, null);
  }
}

function isOpen(b: ClientTransaction): boolean {
  return b.state === 'calling' || b.state === 'trying' || b.state === 'proceeding';
}

/** Best-response order (§16.7 step 6), lower is better: 6xx, then challenges, then the lowest class, 503 last. */
function rank(status: number): number {
  if (status >= 600) return 0;
  // Authentication challenges are preferred so the caller can retry (§16.7 step 6).
  if (status === 401 || status === 407) return 1;
  if (status === 503) return 700;
  return status;
}
