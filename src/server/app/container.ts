import { SipError } from '../../sip/errors.ts';
import { parseAddress } from '../../sip/message/address.ts';
import { SipRequest, type HeaderField, type SipResponse } from '../../sip/message/message.ts';
import { isSipUri, parseUri } from '../../sip/message/uri.ts';
import { Dialog } from '../../sip/dialog/dialog.ts';
import type { ClientTransaction } from '../../sip/transaction/client.ts';
import type { ServerTransaction } from '../../sip/transaction/server.ts';
import { uriDestination } from '../../sip/transport/transport-layer.ts';
import { parseHostPort, type Destination, type Source } from '../../sip/transport/types.ts';
import { AFFINITY_PARAM, affinityKey } from '../cluster/affinity.ts';
import { Replicator } from '../replication.ts';
import type { NodeApp, NodeLoad, SipNode } from '../node.ts';
import { ProxyCore, type ProxyTarget } from '../proxy.ts';
import { assertJson, type JsonValue } from './attributes.ts';
import { newTag } from '../../sip/transaction/keys.ts';
import {
  IncomingRequest, IncomingResponse, OutgoingRequest, OutgoingResponse,
  type B2buaOptions, type ContainerOps, type ProxyBranch, type ProxyToOptions,
} from './messages.ts';
import { AppRouter, type RouteRule } from './router.ts';
import { SILENT_LOG, type Log } from '../log.ts';
import { SessionManager, type SipApplicationSession, type SipSession } from './session.ts';
import { HANDLED_METHODS, type AppContext, type AppTimer, type HandledMethod, type ResponseHandler, type SipApplication } from './types.ts';

export interface ContainerOptions {
  apps: SipApplication[];
  /** Which app takes an initial request; default: the first app takes everything. */
  rules?: RouteRule[];
  /** Replicates call state through the shared store so another node can continue the calls (null: none). */
  replicator?: Replicator | null;
  /** Per-app options, handed to each app as `ctx.options`. */
  appOptions?: Record<string, unknown>;
  /** Idle lifetime of a record-routed proxy session (default one hour, refreshed by every request through it). */
  proxySessionTtlMs?: number;
  /** Where the container logs (handler failures, calls taken over, timers); default: nowhere. */
  log?: Log;
}

/** Our Record-Route parameter carrying the application session id of a proxied dialog. */
const RR_KEY = 'sfa';
const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER']);
/** Request method → handler name, without a toLowerCase per request. */
const HANDLER_OF: ReadonlyMap<string, HandledMethod> = new Map(HANDLED_METHODS.map((m) => [m.toUpperCase(), m]));

/**
 * EarlyDialog: the first 1xx with a To tag of an INVITE this node answers, held until the early replica is written.
 * A final response sent in the same handler run makes that write useless: the 1xx then waits for the final's.
 */
interface EarlyHold {
  /** Resolves once the 1xx has left (responses sent after it wait for this). */
  sent: Promise<void>;
  /** The final response's write (2xx) or nothing to wait for; null while none was sent. */
  final: Promise<void> | null;
  /** The early replica was written (so the final response deletes its index by branch). */
  written: boolean;
}

/** What a server transaction's context holds when the container answers it (UAS or B2BUA leg A). */
interface UasContext {
  kind: 'uas';
  request: IncomingRequest;
}

/**
 * Hosts applications on a node: turns stack events into handler calls, keeps the sessions (found again from keys
 * in the messages: our tag or our Record-Route parameter), and does for the applications what JSR 289 containers
 * do: proxying with forking, B2BUA relaying, CANCEL, 2xx retransmission and ACK, timers.
 */
export class AppContainer implements NodeApp, ContainerOps {
  readonly name: string;
  readonly sessions = new SessionManager();
  readonly #apps: Map<string, SipApplication>;
  readonly #router: AppRouter;
  readonly #appOptions: Record<string, unknown>;
  #node!: SipNode;
  #core!: ProxyCore;
  #contact = '';
  #localUri = '';
  /** EarlyDialog: an INVITE's first 1xx with a To tag, held until its replica is written; later responses follow it. */
  readonly #earlyHolds = new WeakMap<ServerTransaction, EarlyHold>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #nextHops = new Map<string, Destination>();
  /**
   * How long a record-routed proxy session is kept without a request passing (refreshed by each one): its BYE may
   * never come this way (a caller that ignores Record-Route, a node that took over).
   */
  #proxySessionTtlMs = 3_600_000;
  readonly #replicator: Replicator | null;
  readonly #log: Log;
  readonly counters = { requests: 0, handlerErrors: 0, sessionsCreated: 0, unknownDialogs: 0 };

  constructor(options: ContainerOptions) {
    if (options.apps.length === 0) throw new SipError('SIP_INVALID_STATE', 500, 'a container needs at least one app');
    this.#apps = new Map(options.apps.map((a) => [a.name, a]));
    this.name = options.apps.map((a) => a.name).join('+');
    this.#router = new AppRouter(options.rules ?? [], options.apps[0]!.name, [...this.#apps.keys()]);
    if (options.proxySessionTtlMs !== undefined) this.#proxySessionTtlMs = options.proxySessionTtlMs;
    this.#appOptions = options.appOptions ?? {};
    this.sessions.onCreated = (s) => {
      this.counters.sessionsCreated++;
      this.#apps.get(s.appName)?.sessionCreated?.(s);
    };
    this.#replicator = options.replicator ?? null;
    this.#log = options.log ?? SILENT_LOG;
    this.sessions.onDestroyed = (s) => {
      for (const id of s.timers.keys()) {
        clearTimeout(this.#timers.get(id));
        this.#timers.delete(id);
        void this.#replicator?.store.deleteTimer(id).catch(() => {});
      }
      if (this.#replicator?.isReplicated(s)) void this.#replicator.delete(s);
      this.#apps.get(s.appName)?.sessionDestroyed?.(s);
    };
  }

  async start(node: SipNode): Promise<void> {
    this.#node = node;
    this.#core = new ProxyCore(node.stack, { recordRoute: true });
    const proto = node.stack.transport.defaultProtocol;
    this.#localUri = `sip:${node.stack.transport.sentBy(proto)}${proto === 'TCP' ? ';transport=tcp' : ''}`;
    this.#contact = `<${this.#localUri}>`;
    for (const app of this.#apps.values()) await app.init?.(this.#context());
  }

  /** Initial INVITEs without a final response yet: calls being set up (what ConfirmedDialog does not cover). */
  readonly #inSetup = new WeakSet<ServerTransaction>();
  #settingUp = 0;
  /** Of those, INVITEs not answered at all yet (see #answered). */
  readonly #unanswered = new WeakSet<ServerTransaction>();
  #unansweredCount = 0;

  #setupStarted(tx: ServerTransaction, answered = false): void {
    if (this.#inSetup.has(tx)) return;
    this.#inSetup.add(tx);
    this.#settingUp++;
    if (answered) return;
    this.#unanswered.add(tx);
    this.#unansweredCount++;
  }

  /** The INVITE got its first response with a To tag (what makes a call early), or a final one. */
  #answered(tx: ServerTransaction): void {
    if (this.#unanswered.delete(tx)) this.#unansweredCount--;
  }

  #setupEnded(tx: ServerTransaction | null): void {
    if (tx === null) return;
    this.#answered(tx);
    if (this.#inSetup.delete(tx)) this.#settingUp--;
  }

  /** Calls in progress (application sessions alive), and in-dialog requests for calls not held here. */
  load(): NodeLoad {
    const r = this.#replicator?.counters;
    return {
      calls: this.sessions.size,
      settingUp: this.#settingUp,
      unanswered: this.#unansweredCount,
      unknownDialogs: this.counters.unknownDialogs,
      ...(r === undefined ? {} : { replication: { writes: r.writes, bytes: r.bytes, failovers: r.failovers, lagMs: Math.round(this.#replicator!.lagMs * 100) / 100, pending: this.#replicator!.pending } }),
    };
  }

  async stop(): Promise<void> {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    for (const app of this.#apps.values()) await app.destroy?.();
    this.sessions.clear();
  }

  /**
   * Our Contact for a call's legs, with the call's affinity key: a balancer sends the in-dialog requests of every
   * leg (a B2BUA's have their own Call-IDs) to the node the first leg's Call-ID picks, this one or its successor.
   */
  #contactFor(appSession: SipApplicationSession): string {
    const key = appSession.affinity;
    return key === null ? this.#contact : `<${this.#localUri};${AFFINITY_PARAM}=${key}>`;
  }

  #context(): AppContext {
    return {
      createRequest: (method, o) => this.#createUacRequest(method, o),
      createRequestInDialog: (session, method) => {
        if (session.dialog === null || session.dialog.state === 'terminated') {
          throw new SipError('SIP_INVALID_STATE', 500, `session ${session.id} has no dialog to send ${method} in`);
        }
        const raw = session.dialog.createRequest(method, { contact: this.#contactFor(session.appSession) });
        return new OutgoingRequest(raw, session, this);
      },
      createTimer: (s, ms, info, o) => this.#createTimer(s, ms, info, o?.persistent ?? false),
      createApplicationSession: () => this.sessions.create(this.#router.defaultApp),
      localUri: this.#localUri,
      options: this.#appOptions,
    };
  }

  // ---- requests from the stack ----

  onRequest(req: SipRequest, tx: ServerTransaction | null, source: Source): void {
    this.counters.requests++;
    this.#route(req, tx, source, this.#replicator !== null);
  }

  #route(req: SipRequest, tx: ServerTransaction | null, source: Source, mayRestore: boolean): void {
    if (req.method === 'CANCEL' && tx !== null) {
      this.#onCancel(req, tx);
      return;
    }
    // A proxied dialog: our Record-Route came back as the top Route, with the session key in it.
    const top = req.has('route') ? req.getAll('route')[0]! : undefined;
    if (top !== undefined) {
      const route = parseAddress(top, 'Route');
      if (this.#core.isLocal(route.uri) && isSipUri(route.uri) && route.uri.params.has(RR_KEY)) {
        this.#subsequentProxied(req, tx, source, route.uri.params.get(RR_KEY) ?? '');
        return;
      }
    }
    const toTag = req.toTag;
    if (toTag !== null) {
      const appSession = this.sessions.find(toTag);
      const session = appSession?.sessions.get(toTag);
      if (session !== undefined && session.dialog !== null) {
        this.#inDialog(req, tx, source, session);
        return;
      }
      // Not held here: a call whose node died is in the store (replication); load it and go on as its node would.
      if (mayRestore && appSession === undefined) {
        this.#restore(toTag).then(() => {
          this.#route(req, tx, source, false);
        }, () => this.#route(req, tx, source, false));
        return;
      }
      // Not ours (or gone): the app decides, e.g. a proxy routes it on, a UAS answers 481.
      if (req.method !== 'ACK') this.counters.unknownDialogs++;
    }
    const app = this.#apps.get(this.#router.route(req))!;
    const wrapped = new IncomingRequest(req, tx, source, () => {
      const appSession = this.sessions.create(app.name);
      appSession.affinity = affinityKey(req.callId);
      return appSession.createSession();
    }, this, app.name, toTag !== null);
    if (tx !== null) tx.context = { kind: 'uas', request: wrapped } satisfies UasContext;
    if (tx !== null && req.method === 'INVITE' && toTag === null) this.#setupStarted(tx);
    this.#dispatch(app, wrapped);
    // A session nothing holds on to (an ACK passed on, a request answered at once without a dialog) ends here.
    if (wrapped.hasSession) {
      const session = wrapped.session;
      if (session.role === 'unset' && (tx === null || tx.lastStatus >= 200)) session.invalidate();
    }
  }

  onStrayResponse(res: SipResponse, source: Source, mayRestore = true): void {
    if (this.#node.stack.dialogs.receiveStray2xx(res)) return;
    // EarlyDialog: the callee's answer to an INVITE a dead node sent for a call it answers (B2BUA leg B, its tag
    // ours): rebuild the call and its transactions from the store, then take the response as that node would have.
    const fromTag = res.fromTag;
    if (mayRestore && this.#replicator?.strategy === 'EarlyDialog' && fromTag !== null && fromTag.includes('.') && res.cseq.method === 'INVITE' &&
      this.sessions.find(fromTag) === undefined) {
      this.#restore(fromTag).then((restored) => {
        if (restored !== null && restored.sessions.get(fromTag)?.outgoingInvite != null) this.#node.stack.transactions.receiveResponse(res, source);
        else this.onStrayResponse(res, source, false);
      }, () => this.onStrayResponse(res, source, false));
      return;
    }
    this.#core.forwardStray(res, source);
  }

  /**
   * Loads a call from the store (see Replicator.restore), its pending transactions adopted by this node; the app's
   * sessionActivated listener hears of it once, whatever brought it here (a request, a response, a CANCEL, a timer).
   */
  #restore(key: string): Promise<SipApplicationSession | null> {
    const dot = key.indexOf('.');
    const held = this.sessions.find(dot === -1 ? key : key.slice(0, dot)) !== undefined;
    return this.#replicator!.restore(key, this.sessions, this.#node.stack.dialogs, (leg, pending) => {
      const appName = leg.appSession.appName;
      if (pending.invite !== null) {
        const { request, source } = pending.invite;
        const tx = this.#node.stack.transactions.adoptServer(request, source);
        const wrapped = tx.context === null ? new IncomingRequest(request, tx, source, leg, this, appName) : (tx.context as UasContext).request;
        tx.context = { kind: 'uas', request: wrapped } satisfies UasContext;
        leg.pendingInvite = wrapped;
        this.#earlyHolds.set(tx, { sent: Promise.resolve(), final: null, written: true }); // its final deletes the index
        this.#setupStarted(tx, true);
      }
      const inbound = leg.linked?.pendingInvite;
      if (pending.outgoing !== null && inbound != null) {
        leg.outgoingInvite = this.#node.stack.transactions.adoptClient(pending.outgoing.request, pending.outgoing.dest, {
          onResponse: this.#legResponses(leg, inbound),
        });
      }
    }).then((s) => {
      if (s !== null && !held) {
        const callIds = [...s.sessions.values()].flatMap((l) => (l.dialog === null ? [] : [l.dialog.record.callId]));
        this.#log.info({ callId: callIds[0], callIds, session: s.id, app: s.appName }, 'call continued here (loaded from the store: its node died)');
        const app = this.#apps.get(s.appName);
        if (app?.sessionActivated !== undefined) this.#run(null, () => app.sessionActivated!(s));
      }
      return s;
    });
  }

  #dispatch(app: SipApplication, req: IncomingRequest): void {
    const key = HANDLER_OF.get(req.method);
    const handler = (key === undefined ? undefined : app[key]) ?? app.request;
    if (handler === undefined) {
      if (req.method === 'ACK') return;
      if (req.unknownDialog) {
        req.reply(481);
        return;
      }
      if (req.method === 'BYE' && req.session.dialog !== null) {
        req.reply(200);
        return;
      }
      const res = req.createResponse(req.isInitial ? 405 : 501);
      res.setHeader('allow', this.#allow(app));
      res.send();
      return;
    }
    this.#run(req, () => handler.call(app, req));
  }

  /** Runs a handler; a throw or rejection answers the request 500 (or the error's status) when nothing else did. */
  #run(req: IncomingRequest | null, fn: () => unknown): void {
    try {
      const r = fn();
      if (r instanceof Promise) r.catch((err: unknown) => this.#handlerFailed(req, err));
    } catch (err) {
      this.#handlerFailed(req, err);
    }
  }

  #handlerFailed(req: IncomingRequest | null, err: unknown): void {
    this.counters.handlerErrors++;
    this.#log.warn({ callId: req?.callId, method: req?.method, err: err instanceof Error ? err.message : String(err) }, 'application handler failed');
    if (req === null || req.method === 'ACK' || req.committed) return;
    const status = err instanceof SipError && err.status >= 300 && err.status < 700 ? err.status : 500;
    const reason = err instanceof Error ? err.message.replace(/[\r\n]+/g, ' ').slice(0, 100) : 'Server Internal Error';
    try {
      req.reply(status, reason);
    } catch {
      // already answered in the meantime
    }
  }

  #allow(app: SipApplication): string {
    const methods = ['ACK', 'CANCEL', 'BYE'];
    for (const m of HANDLED_METHODS) {
      if (m !== 'ack' && m !== 'cancel' && m !== 'bye' && (app[m] !== undefined || app.request !== undefined)) methods.push(m.toUpperCase());
    }
    return methods.join(', ');
  }

  // ---- UAS: responses the application sends ----

  sendResponse(req: IncomingRequest, out: OutgoingResponse): void {
    const tx = req.tx;
    if (tx === null) throw new SipError('SIP_INVALID_STATE', 500, 'no transaction to answer');
    const res = out.raw;
    const session = req.session;
    const status = res.status;
    const creates = req.isInitial && DIALOG_CREATING.has(req.method) && status > 100 && status < 300;
    const hold = this.#earlyHolds.get(tx);
    if (hold !== undefined && status >= 200) {
      this.#earlyHolds.delete(tx);
      hold.final = Promise.resolve(); // a 2xx replaces it with its write, below
      // The call's record no longer needs the INVITE; its index by branch goes with it.
      if (hold.written) void this.#replicator!.deleteEarly(req.raw.topVia.branch ?? '');
    }
    if (creates) {
      if (res.toTag === null) res.set('to', `${res.get('to')!};tag=${session.id}`);
      if (!res.has('contact')) res.set('contact', this.#contactFor(session.appSession));
      if (session.dialog === null) {
        session.dialog = this.#node.stack.dialogs.add(Dialog.fromUas(req.raw, res));
        session.role = session.role === 'unset' ? 'uas' : session.role;
      }
    } else if (req.isInitial && status > 100 && res.toTag === null) {
      res.set('to', `${res.get('to')!};tag=${session.id}`); // §8.2.6.2: every response but 100 gets our tag
    }
    if (req.isInitial && req.method === 'INVITE') {
      if (status >= 200) session.pendingInvite = null;
      else if (status > 100 && session.pendingInvite === null && session.dialog !== null) {
        session.pendingInvite = req;
        const r = this.#replicator;
        if (r?.strategy === 'EarlyDialog') {
          // EarlyDialog: the replica of the early dialog and of the INVITE to answer exists before this 1xx leaves
          // (written once the handler's run is over, unless it answered the call meanwhile).
          const h: EarlyHold = { sent: Promise.resolve(), final: null, written: false };
          h.sent = Promise.resolve().then(() => {
            if (h.final !== null) return h.final;
            h.written = true;
            return r.saveEarlySession(session.appSession, req.raw.topVia.branch ?? '');
          }).then(() => {
            tx.respond(res);
            this.#answered(tx);
          });
          this.#earlyHolds.set(tx, h);
          return;
        }
      }
    }
    if (req.method === 'INVITE' && status >= 200 && status < 300 && session.dialog !== null) {
      const dialog = session.dialog;
      const answer = (): void => {
        this.#setupEnded(tx); // only now: a 2xx waiting for its replica is still a call being set up
        this.#node.stack.dialogs.answer(tx, res, dialog, () => this.#ackTimeout(session));
      };
      // ConfirmedDialog: the replica exists before the 2xx that confirms the dialog leaves this node, and records
      // it confirmed (as it is once the 2xx is out), so the ACK has nothing to change.
      if (this.#replicator !== null) {
        dialog.confirm();
        const written = this.#replicator.save(session.appSession);
        if (hold === undefined) void written.then(answer);
        else {
          hold.final = written;
          void Promise.all([written, hold.sent]).then(answer);
        }
      }
      else answer();
      return;
    }
    if (hold !== undefined) void hold.sent.then(() => tx.respond(res)); // after the 1xx still waiting for its write
    else tx.respond(res);
    if (status < 200) {
      if (hold === undefined && res.toTag !== null) this.#answered(tx);
      return;
    }
    this.#setupEnded(tx);
    if ((req.method === 'INVITE' && status >= 300 && req.isInitial) || req.method === 'BYE') this.#endSession(session);
    else if (session.dialog === null && session.role === 'unset') session.invalidate(); // nothing else to come
  }

  /** The 2xx was never ACKed (§13.3.1.4): the call cannot go on, so end it with a BYE. */
  #ackTimeout(session: SipSession): void {
    if (!session.valid || session.dialog === null) return;
    try {
      this.#sendInDialog(session, 'BYE', undefined, () => {});
    } catch (err) {
      // From a timer: nobody above to catch it, and the call ends either way.
      this.#log.warn({ callId: session.dialog.record.callId, err: err instanceof Error ? err.message : String(err) }, 'could not send the BYE ending an unacknowledged call');
    }
    this.#endSession(session);
  }

  #endSession(session: SipSession): void {
    if (session.dialog !== null) this.#node.stack.dialogs.remove(session.dialog);
    session.invalidate();
  }

  // ---- CANCEL ----

  #onCancel(cancel: SipRequest, tx: ServerTransaction, mayRestore = true): void {
    const invite = this.#node.stack.transactions.findInviteForCancel(cancel);
    const ctx = invite?.context as UasContext | { server: ServerTransaction } | null | undefined;
    if (invite === undefined && mayRestore && this.#replicator?.strategy === 'EarlyDialog') {
      // EarlyDialog: the INVITE may be a ringing call of a node that died; rebuild its transactions from the store.
      const branch = cancel.topVia.branch ?? '';
      void this.#replicator.loadEarly(branch).then(async (early) => {
        if (early?.kind === 'session') await this.#restore(early.session);
        else if (early !== null && this.#node.stack.transactions.findInviteForCancel(cancel) === undefined) {
          this.#core.adopt(early.invite, early.source, early.branches);
          void this.#replicator!.deleteEarly(branch);
        }
        this.#onCancel(cancel, tx, false);
      });
      return;
    }
    if (invite === undefined || ctx === null || ctx === undefined || !('kind' in ctx)) {
      // A proxied INVITE (or none): the proxy core answers the CANCEL and cancels the branches.
      this.#core.receive(cancel, tx);
      return;
    }
    tx.reply(200);
    const req = ctx.request;
    const session = req.session;
    const linked = session.linked;
    if (linked !== null) {
      // B2BUA: cancel the other leg; its 487 comes back and is relayed.
      linked.outgoingInvite?.cancel();
      return;
    }
    if (invite.lastStatus < 200) {
      const app = this.#apps.get(session.appSession.appName);
      if (app?.cancel !== undefined) {
        const wrapped = new IncomingRequest(cancel, null, req.source, session, this, session.appSession.appName);
        this.#run(null, () => app.cancel!(wrapped));
      }
      if (invite.lastStatus < 200) req.reply(487);
    }
  }

  // ---- proxying ----

  proxy(req: IncomingRequest, targets: Array<string | ProxyBranch>, options: ProxyToOptions): void {
    if (!this.#core.receive(req.raw, req.tx)) return;
    const routed = this.#core.routeDestination(req.raw);
    const list: ProxyTarget[] = targets.map((target) => {
      const t = typeof target === 'string' ? target : target.uri;
      const route = typeof target === 'string' || target.route === undefined || target.route.length === 0 ? undefined : target.route;
      // A branch with its own route goes to the first hop of it (loose routing), the rest as Route headers.
      const dest = options.nextHop !== undefined ? this.#nextHop(options.nextHop)
        : route !== undefined ? uriDestination(parseAddress(route[0]!, 'Route').uri)
        : routed ?? uriDestination(parseUri(t));
      const base: ProxyTarget = t === req.uriText ? { dest } : { dest, requestUri: t };
      if (route !== undefined) base.routes = route;
      return base;
    });
    const recordRoute = options.recordRoute ?? true;
    const app = this.#apps.get(req.appName)!;
    const early = this.#replicator?.strategy === 'EarlyDialog' && req.method === 'INVITE' && req.isInitial && req.tx !== null;
    const serverTx = req.tx;
    const inviteBranch = early ? req.raw.topVia.branch ?? '' : '';
    const supervised = options.supervised !== false && (app.provisionalResponse !== undefined || app.successResponse !== undefined || app.errorResponse !== undefined);
    // Only a record-routed dialog comes back through us: only then is the session kept (and its key sent along).
    const keep = recordRoute && req.isInitial;
    let session: SipSession | null = null;
    if (keep) {
      session = req.session;
      session.role = 'proxy';
      this.sessions.keepFor(session.appSession, this.#proxySessionTtlMs);
    }
    this.#core.forward(req.raw, req.tx, list, {
      parallel: options.parallel,
      branchTimeoutMs: options.branchTimeoutMs,
      recordRoute,
      recordRouteParams: session === null ? undefined : `;${RR_KEY}=${session.appSession.id}`,
      onResponse: supervised ? (res) => this.#responseHandler(app, new IncomingResponse(res, req.session, true, this)) : undefined,
      // A proxied call that failed leaves nothing to keep.
      onFinal: (status) => {
        this.#setupEnded(serverTx);
        if (early) void this.#replicator!.deleteEarly(inviteBranch);
        if (status >= 300) session?.appSession.invalidate();
      },
      // EarlyDialog: from the first 1xx with a To tag, a survivor can finish the setup (CANCEL, final responses).
      onEarly: early ? (branches) => this.#replicator!.saveEarly(req.raw, req.source, branches).then(() => this.#answered(serverTx!)) : undefined,
    });
  }

  #nextHop(hostPort: string): Destination {
    let dest = this.#nextHops.get(hostPort);
    if (dest === undefined) {
      const { host, port } = parseHostPort(hostPort);
      dest = { protocol: this.#node.stack.transport.defaultProtocol, host, port };
      if (this.#nextHops.size < 1000) this.#nextHops.set(hostPort, dest);
    }
    return dest;
  }

  /** An in-dialog request of a record-routed proxy session: route it on (any node can), then tell the app. */
  #subsequentProxied(req: SipRequest, tx: ServerTransaction | null, source: Source, key: string): void {
    if (!this.#core.receive(req, tx, true)) return;
    const dest = this.#core.routeDestination(req) ?? (this.#core.isLocal(req.uri) ? null : uriDestination(req.uri));
    if (dest === null) {
      tx?.reply(404, 'No Route');
      return;
    }
    this.#core.forward(req, tx, { dest });
    const appSession = this.sessions.find(key);
    const session = appSession?.sessions.values().next().value;
    if (appSession === undefined || session === undefined) {
      if (req.method !== 'ACK') this.counters.unknownDialogs++;
      return;
    }
    if (req.method !== 'BYE') this.sessions.keepFor(appSession, this.#proxySessionTtlMs);
    const app = this.#apps.get(appSession.appName);
    const hk = HANDLER_OF.get(req.method);
    const handler = hk === undefined ? undefined : app?.[hk];
    if (app !== undefined && handler !== undefined) {
      const wrapped = new IncomingRequest(req, tx, source, session, this, appSession.appName);
      wrapped.markCommitted();
      this.#run(null, () => handler.call(app, wrapped));
    }
    if (req.method === 'BYE') appSession.invalidate();
  }

  #responseHandler(app: SipApplication, res: IncomingResponse): void {
    const s = res.status;
    const h: ResponseHandler | undefined = s < 200 ? app.provisionalResponse : s < 300 ? app.successResponse : app.errorResponse;
    if (h !== undefined) this.#run(null, () => h.call(app, res));
  }

  // ---- in-dialog requests to a UAS/UAC leg (and B2BUA relaying) ----

  #inDialog(req: SipRequest, tx: ServerTransaction | null, source: Source, session: SipSession): void {
    const dialog = session.dialog!;
    if (req.method === 'ACK') {
      this.#node.stack.dialogs.receiveAck(req, dialog);
    } else {
      try {
        dialog.receiveRequest(req);
      } catch (err) {
        tx?.reply(err instanceof SipError ? err.status : 500, err instanceof Error ? err.message : undefined);
        return;
      }
    }
    const app = this.#apps.get(session.appSession.appName)!;
    const wrapped = new IncomingRequest(req, tx, source, session, this, app.name);
    if (tx !== null) tx.context = { kind: 'uas', request: wrapped } satisfies UasContext;
    // A B2BUA leg: the container relays to the other leg (the app saw the call when it was set up).
    if (session.linked !== null) this.#relayInDialog(wrapped, session.linked);
    else this.#dispatch(app, wrapped);
    // Later changes (CSeqs, target refresh, attributes) reach the replica (and a call whose first write failed, the
    // store being down, gets one now); an ended call's record is deleted. An ACK changes no dialog state (the 2xx
    // it acknowledges was replicated confirmed): only what its handler changed is written.
    const appSession = session.appSession;
    const r = this.#replicator;
    if (r !== null && appSession.valid && (req.method !== 'ACK' || !r.isReplicated(appSession) || Replicator.attributesChanged(appSession))) {
      void r.save(appSession);
    }
  }

  /** B2BUA: an in-dialog request on one leg becomes the same request on the other (§ issue: pass-through). */
  #relayInDialog(req: IncomingRequest, other: SipSession): void {
    if (req.method === 'ACK') return; // the other leg's 2xx was ACKed when it arrived
    if (req.method === 'BYE') {
      req.reply(200);
      this.#sendInDialog(other, 'BYE', undefined, () => {});
      this.#endSession(other);
      return;
    }
    const contentType = req.header('content-type');
    this.#sendInDialog(other, req.method, { body: req.body, contentType }, (res) => {
      if (res.status < 200 && res.status !== 100) {
        req.reply(res.status, res.reason);
        return;
      }
      if (res.status < 200) return;
      const out = req.createResponse(res.status, res.reason);
      if (res.body.length > 0) out.setBody(res.body, res.get('content-type'));
      out.send();
    });
  }

  /** Sends a request inside a leg's dialog; 2xx to INVITE are ACKed at once. */
  #sendInDialog(session: SipSession, method: string, content: { body: Buffer; contentType: string | undefined } | undefined, onFinal: (res: SipResponse) => void): void {
    const dialog = session.dialog;
    if (dialog === null || dialog.state === 'terminated') return;
    const out = dialog.createRequest(method, { contact: this.#contactFor(session.appSession), body: content?.body });
    if (content?.contentType !== undefined) out.set('content-type', content.contentType);
    this.#node.stack.dialogs.send(out, {
      onResponse: (res) => {
        dialog.receiveResponse(res);
        if (method === 'INVITE' && res.status >= 200 && res.status < 300) this.#node.stack.dialogs.ack(dialog, res);
        onFinal(res);
      },
    });
  }

  // ---- B2BUA ----

  b2bua(req: IncomingRequest, options: B2buaOptions): OutgoingRequest {
    const a = req.session;
    const b = a.appSession.createSession();
    a.role = 'uas';
    b.role = 'uac';
    a.linked = b;
    b.linked = a;
    const raw = req.raw;
    const headers: HeaderField[] = [
      { name: 'Max-Forwards', key: 'max-forwards', value: String((raw.maxForwards ?? 70) - 1) },
      { name: 'From', key: 'from', value: `${stripTag(options.from ?? raw.get('from')!)};tag=${b.id}` },
      { name: 'To', key: 'to', value: stripTag(options.to ?? raw.get('to')!) },
      { name: 'Call-ID', key: 'call-id', value: `${b.id}@sipfleet` },
      { name: 'CSeq', key: 'cseq', value: `1 ${raw.method}` },
      { name: 'Contact', key: 'contact', value: this.#contactFor(a.appSession) },
    ];
    const ct = raw.get('content-type');
    if (ct !== undefined) headers.push({ name: 'Content-Type', key: 'content-type', value: ct });
    const out = new OutgoingRequest(new SipRequest(raw.method, options.requestUri ?? raw.uriText, headers, raw.body), b, this);
    out.via = options.via;
    this.#startLeg(out, req);
    return out;
  }

  /** Sends the outgoing leg's INVITE and relays its responses to the incoming leg. */
  #startLeg(out: OutgoingRequest, inbound: IncomingRequest): void {
    const dest = out.via !== undefined ? this.#nextHop(out.via) : this.#node.stack.dialogs.destinationOf(out.raw);
    out.session.outgoingInvite = this.#node.stack.transactions.request(out.raw, dest, { onResponse: this.#legResponses(out.session, inbound) });
  }

  /** Leg B's responses, relayed to leg A (`inbound`, the INVITE it answers). */
  #legResponses(b: SipSession, inbound: IncomingRequest): (res: SipResponse, ct: ClientTransaction) => void {
    const a = inbound.session;
    const app = this.#apps.get(b.appSession.appName)!;
    return (res, ct) => {
      const status = res.status;
      if (status === 100) return;
      if (status >= 200) b.outgoingInvite = null;
      if (res.toTag !== null && status < 300 && b.dialog === null) {
        b.dialog = this.#node.stack.dialogs.add(Dialog.fromUac(ct.request, res));
      } else if (b.dialog !== null) {
        b.dialog.receiveResponse(res);
      }
      this.#responseHandler(app, new IncomingResponse(res, b, false, this));
      const answered = inbound.tx === null || inbound.tx.lastStatus >= 200;
      if (status >= 200 && status < 300) {
        this.#node.stack.dialogs.ack(b.dialog!, res);
        if (answered) {
          // The caller gave up (CANCEL crossed the 2xx): hang up the callee.
          this.#sendInDialog(b, 'BYE', undefined, () => {});
          this.#endSession(b);
          return;
        }
      }
      if (answered) return;
      const relay = inbound.createResponse(status, res.reason);
      if (res.body.length > 0) relay.setBody(res.body, res.get('content-type'));
      relay.send();
      if (status >= 300) {
        this.#endSession(b);
        this.#endSession(a);
      }
    };
  }

  // ---- UAC ----

  #createUacRequest(method: string, o: Parameters<AppContext['createRequest']>[1]): OutgoingRequest {
    const appSession = o.appSession ?? this.sessions.create(this.#router.defaultApp);
    const session = appSession.createSession();
    session.role = 'uac';
    appSession.affinity ??= affinityKey(`${session.id}@sipfleet`);
    const to = parseAddress(o.to, 'to');
    const headers: HeaderField[] = [
      { name: 'Max-Forwards', key: 'max-forwards', value: '70' },
      { name: 'From', key: 'from', value: `${stripTag(o.from)};tag=${session.id}` },
      { name: 'To', key: 'to', value: stripTag(o.to) },
      { name: 'Call-ID', key: 'call-id', value: `${session.id}@sipfleet` },
      { name: 'CSeq', key: 'cseq', value: `1 ${method}` },
      { name: 'Contact', key: 'contact', value: this.#contactFor(appSession) },
    ];
    for (const [k, v] of Object.entries(o.headers ?? {})) headers.push({ name: k, key: k.toLowerCase(), value: v });
    const body = o.body === undefined ? undefined : typeof o.body === 'string' ? Buffer.from(o.body, 'utf8') : o.body;
    if (o.contentType !== undefined) headers.push({ name: 'Content-Type', key: 'content-type', value: o.contentType });
    const uri = o.requestUri ?? (isSipUri(to.uri) ? o.to.replace(/^.*<|>.*$/g, '') : o.to);
    return new OutgoingRequest(new SipRequest(method, uri, headers, body), session, this);
  }

  send(out: OutgoingRequest): void {
    const session = out.session;
    const app = this.#apps.get(session.appSession.appName)!;
    const dest = out.via !== undefined ? this.#nextHop(out.via) : this.#node.stack.dialogs.destinationOf(out.raw);
    this.#node.stack.transactions.request(out.raw, dest, {
      onResponse: (res, ct) => {
        if (res.status === 100) return;
        if (out.method === 'BYE' && res.status >= 200) this.#endSession(session);
        if (res.toTag !== null && res.status < 300 && DIALOG_CREATING.has(out.method) && session.dialog === null) {
          session.dialog = this.#node.stack.dialogs.add(Dialog.fromUac(ct.request, res));
        } else {
          session.dialog?.receiveResponse(res);
        }
        this.#responseHandler(app, new IncomingResponse(res, session, false, this));
      },
    });
  }

  ack(res: IncomingResponse): void {
    const dialog = res.session.dialog;
    if (dialog === null || res.status < 200 || res.status >= 300) throw new SipError('SIP_INVALID_STATE', 500, 'only a 2xx to INVITE in a dialog is ACKed');
    this.#node.stack.dialogs.ack(dialog, res.raw);
  }

  // ---- timers ----

  #createTimer(appSession: SipApplicationSession, delayMs: number, info: unknown, persistent: boolean): AppTimer {
    assertJson('timer info', info);
    const id = `${appSession.id}.t${newTag()}`;
    const fireAt = Date.now() + Math.max(0, delayMs);
    // A persistent timer is stored with its call and indexed by its owner: if this node dies, a survivor fires it.
    const stored = persistent && this.#replicator !== null;
    if (stored) {
      appSession.timers.set(id, { fireAt, info: info as JsonValue });
      void this.#replicator!.saveTimer(appSession, id, fireAt);
    }
    return this.#armTimer(appSession, id, fireAt, info as JsonValue, persistent, stored);
  }

  #armTimer(appSession: SipApplicationSession, id: string, fireAt: number, info: JsonValue, persistent: boolean, stored: boolean): AppTimer {
    const timer: AppTimer = {
      id,
      info,
      appSession,
      persistent,
      cancel: () => {
        const t = this.#timers.get(id);
        if (t !== undefined) clearTimeout(t);
        this.#timers.delete(id);
        if (stored && appSession.timers.delete(id)) void this.#replicator!.cancelTimer(appSession, id);
      },
    };
    const fire = (): void => {
      if (!appSession.valid) return;
      const app = this.#apps.get(appSession.appName);
      if (app?.timeout !== undefined) this.#run(null, () => app.timeout!(timer));
    };
    this.#timers.set(id, setTimeout(() => {
      this.#timers.delete(id);
      if (!stored) {
        fire();
        return;
      }
      // Fires only if this node still owns it (exactly once across the cluster); one write then covers the timer
      // gone and what its handler changed (a 2xx it sent waits for that write, so it makes none of its own).
      appSession.timers.delete(id);
      const r = this.#replicator!;
      void r.takeTimer(id).then((mine) => {
        if (!mine) return;
        fire();
        if (appSession.valid && r.isReplicated(appSession)) void r.save(appSession);
      });
    }, Math.max(0, fireAt - Date.now())));
    return timer;
  }

  /**
   * A node died: take over the persistent timers it owned that fall to this node (the survivors share them by the
   * calls' affinity keys, as balancers share the calls), loading their calls from the store.
   */
  async takeOver(dead: string, survivors: string[]): Promise<number> {
    const r = this.#replicator;
    if (r === null) return 0;
    let taken = 0;
    for (const t of await r.claimTimersOf(dead, survivors)) {
      const s = await this.#restore(t.session);
      const pending = s?.timers.get(t.id);
      if (s === null || pending === undefined) {
        await r.store.deleteTimer(t.id).catch(() => {});
        continue;
      }
      if (!this.#timers.has(t.id)) this.#armTimer(s, t.id, pending.fireAt, pending.info, true, true);
      taken++;
    }
    return taken;
  }
}

function stripTag(value: string): string {
  return value.replace(/;\s*tag=[^;>]*/i, '');
}

