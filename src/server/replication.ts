import { Dialog, type DialogRecord } from '../sip/dialog/dialog.ts';
import type { SipRequest } from '../sip/message/message.ts';
import { parseMessage } from '../sip/message/parser.ts';
import type { Destination, Source, TransportProtocol } from '../sip/transport/types.ts';
import type { DialogLayer } from '../sip/dialog/dialog-layer.ts';
import type { StoreError } from '../store/errors.ts';
import type { SessionStore, StoredTimer } from '../store/sessions.ts';
import { hashString, parseAffinityKey, pickNode } from './cluster/affinity.ts';
import type { JsonValue } from './app/attributes.ts';
import type { SessionManager, SessionRole, SipApplicationSession, SipSession } from './app/session.ts';
import type { ReplicationStrategy } from './cluster/replication.ts';

/** What a survivor needs to continue a call: the application session, its legs, their dialogs and attributes. */
export interface AppSessionRecord {
  v: 1;
  id: string;
  app: string;
  affinity: string | null;
  attributes: Record<string, JsonValue>;
  timers?: Array<{ id: string; fireAt: number; info: JsonValue }>;
  /** When the application session expires (setExpires); 0 or absent: with its last leg. */
  expiresAt?: number;
  legs: Array<{
    id: string; role: SessionRole; attributes: Record<string, JsonValue>; dialog: DialogRecord | null; linked: string | null;
    /** EarlyDialog: the INVITE this leg received and has not answered finally yet (its server transaction). */
    pending?: { invite: string; source: SourceRecord };
    /** EarlyDialog: the INVITE this leg sent (our Via on it) that has no final response yet (its client transaction). */
    outgoing?: { request: string; dest: Destination };
  }>;
}

type SourceRecord = { protocol: TransportProtocol; host: string; port: number };

/** A leg's transactions as a survivor rebuilds them (see Replicator.restore). */
export interface PendingTransactions {
  invite: { request: SipRequest; source: Source } | null;
  outgoing: { request: SipRequest; dest: Destination } | null;
}

export type StoreLatencyObserver = (op: keyof SessionStore, seconds: number, ok: boolean) => void;

export interface ReplicationCounters {
  writes: number;
  bytes: number;
  deletes: number;
  /** Calls continued here after their node died (records loaded from the store). */
  failovers: number;
  conflicts: number;
  errors: number;
  timersTakenOver: number;
}

/**
 * Keyed by an INVITE's branch (which its CANCEL shares), between its first 1xx with a To tag and its final response:
 * a proxied INVITE's transactions, or the application session that answers it (UAS, B2BUA leg).
 */
type EarlyRecord =
  | {
    v: 1;
    /** The INVITE as this node received it (the caller side's Vias on it). */
    invite: string;
    source: SourceRecord;
    /** Each open branch's INVITE as sent (this node's Via on it) and where it went. */
    branches: Array<{ request: string; dest: Destination }>;
  }
  | { v: 1; session: string };

export type EarlyEntry =
  | { kind: 'proxy'; invite: SipRequest; source: Source; branches: Array<{ request: SipRequest; dest: Destination }> }
  | { kind: 'session'; session: string };

/** Setup cannot take longer than an INVITE transaction lives (64*T1 and some). */
const EARLY_TTL_MS = 300_000;

/** How long ended calls' deletes wait to be sent together. */
const DELETE_BATCH_MS = 5;

/** How often writes that failed are tried again. */
const RETRY_MS = 250;

/** How long a record lives without a write (each write renews it). */
const RECORD_TTL_MS = 12 * 3_600_000;

/**
 * Replication of application sessions through the shared store. A record is written when a dialog is confirmed
 * (before the 2xx leaves: the caller awaits save()), then after a request in the dialog changed it (compared as
 * serialised, so an unchanged call costs no write), and deleted when the call ends. A node that receives a
 * request for a call it does not hold loads the record and carries on.
 */
export class Replicator {
  readonly strategy: ReplicationStrategy;
  readonly #store: SessionStore;
  readonly #written = new WeakMap<SipApplicationSession, { version: number; data: string }>();
  /** A session's write in progress: the next one waits for it (two writes of one call never race each other). */
  readonly #busy = new WeakMap<SipApplicationSession, Promise<void>>();
  readonly #unsaved = new Set<SipApplicationSession>();
  #retryTimer: NodeJS.Timeout | null = null;
  readonly counters: ReplicationCounters = { writes: 0, bytes: 0, deletes: 0, failovers: 0, conflicts: 0, errors: 0, timersTakenOver: 0 };
  onError: (err: unknown) => void = (err) => process.stderr.write(`sipfleet replication: ${(err as Error).message}\n`);

  /** This node's id (as balancers know it): the owner of the persistent timers it arms. */
  nodeId: string;

  /** `onStoreLatency` sees how long each store operation took (seconds), e.g. for a metrics histogram. */
  constructor(store: SessionStore, strategy: ReplicationStrategy, nodeId: string, onStoreLatency?: StoreLatencyObserver) {
    this.#store = onStoreLatency === undefined ? store : timedStore(store, onStoreLatency);
    this.strategy = strategy;
    this.nodeId = nodeId;
  }

  get store(): SessionStore {
    return this.#store;
  }

  static record(s: SipApplicationSession): AppSessionRecord {
    return {
      v: 1, id: s.id, app: s.appName, affinity: s.affinity, attributes: s.attributes.toJSON(),
      ...(s.expiresAt === 0 ? {} : { expiresAt: s.expiresAt }),
      ...(s.timers.size === 0 ? {} : { timers: [...s.timers].map(([id, t]) => ({ id, fireAt: t.fireAt, info: t.info })) }),
      legs: [...s.sessions.values()].map((leg) => {
        const invite = leg.pendingInvite;
        const outgoing = leg.outgoingInvite;
        return {
          id: leg.id, role: leg.role, attributes: leg.attributes.toJSON(),
          dialog: leg.dialog === null ? null : leg.dialog.toJSON(), linked: leg.linked?.id ?? null,
          ...(invite === null ? {} : { pending: { invite: invite.raw.toString(), source: sourceRecord(invite.source) } }),
          ...(outgoing === null ? {} : { outgoing: { request: outgoing.request.toString(), dest: outgoing.dest } }),
        };
      }),
    };
  }

  /** Writes the session if it changed since its last write. Never rejects: a failed write is counted and reported. */
  save(s: SipApplicationSession): Promise<void> {
    const busy = this.#busy.get(s);
    const p = busy === undefined ? this.#write(s) : busy.then(() => this.#write(s));
    this.#busy.set(s, p);
    void p.then(() => { if (this.#busy.get(s) === p) this.#busy.delete(s); });
    return p;
  }

  /** Whether a handler changed an attribute of the call (or of a leg) since its record was last serialised. */
  static attributesChanged(s: SipApplicationSession): boolean {
    if (s.attributes.dirty) return true;
    for (const leg of s.sessions.values()) if (leg.attributes.dirty) return true;
    return false;
  }

  /** Store write latency, exponentially weighted (ms). */
  lagMs = 0;

  /** Calls whose last write failed, waiting for a retry. */
  get pending(): number {
    return this.#unsaved.size;
  }

  async #write(s: SipApplicationSession): Promise<void> {
    const data = JSON.stringify(Replicator.record(s));
    s.attributes.dirty = false;
    for (const leg of s.sessions.values()) leg.attributes.dirty = false;
    const last = this.#written.get(s);
    if (last !== undefined && last.data === data) return;
    try {
      const started = performance.now();
      const version = await this.#store.put(s.id, data, last?.version ?? 0, RECORD_TTL_MS);
      this.lagMs += (performance.now() - started - this.lagMs) / 16;
      this.#written.set(s, { version, data });
      this.#unsaved.delete(s);
      this.counters.writes++;
      this.counters.bytes += data.length;
    } catch (err) {
      if ((err as StoreError).code === 'STORE_CONFLICT') {
        // Another node wrote it (it took the call over, or we did and it came back): take its version and retry once.
        this.counters.conflicts++;
        const cur = await this.#store.get(s.id).catch(() => null);
        if (cur !== null) {
          this.#written.set(s, { version: cur.version, data: cur.data });
          if (cur.data !== data) return this.#write(s);
          return;
        }
        if (last !== undefined) {
          // Gone (expired on a quiet call, or deleted): this node holds the call, so it writes it anew.
          this.#written.delete(s);
          return this.#write(s);
        }
      }
      this.counters.errors++;
      this.onError(err);
      this.#retryLater(s);
    }
  }

  /**
   * A call whose write failed (the store unreachable, a Sentinel switching primaries) is written again until it
   * succeeds: the call goes on meanwhile, and gets its replica as soon as the store is back.
   */
  #retryLater(s: SipApplicationSession): void {
    this.#unsaved.add(s);
    if (this.#retryTimer !== null) return;
    this.#retryTimer = setInterval(() => {
      for (const u of this.#unsaved) {
        if (!u.valid) this.#unsaved.delete(u);
        // A write still in flight (a store that hangs rather than fails) is not queued behind again: one per call.
        else if (!this.#busy.has(u)) void this.save(u);
      }
      if (this.#unsaved.size === 0 && this.#retryTimer !== null) {
        clearInterval(this.#retryTimer);
        this.#retryTimer = null;
      }
    }, RETRY_MS);
    this.#retryTimer.unref();
  }

  /**
   * Stores a new persistent timer (owned by this node) and, once the call has a replica (its strategy's point), the
   * record that carries the timer's info; before that, a survivor could not continue the call anyway.
   */
  async saveTimer(s: SipApplicationSession, id: string, fireAt: number): Promise<void> {
    const key = parseAffinityKey(s.affinity) ?? hashString(s.id);
    try {
      await this.#store.putTimer({ id, session: s.id, owner: this.nodeId, fireAt, key });
    } catch (err) {
      this.counters.errors++;
      this.onError(err);
    }
    if (this.#written.has(s) || this.#busy.has(s)) await this.save(s);
  }

  /**
   * True when this node still owned the timer (and now nobody does): the caller fires it, then saves the session
   * (one write for the timer gone and what its handler changed).
   */
  async takeTimer(id: string): Promise<boolean> {
    try {
      return await this.#store.takeTimer(id, this.nodeId);
    } catch (err) {
      // The store is unreachable: fire anyway rather than never (a survivor could only fire it once the store is back).
      this.counters.errors++;
      this.onError(err);
      return true;
    }
  }

  async cancelTimer(s: SipApplicationSession, id: string): Promise<void> {
    await this.#store.deleteTimer(id).catch((err: unknown) => { this.counters.errors++; this.onError(err); });
    if (s.valid && this.isReplicated(s)) await this.save(s);
  }

  /** Claims the dead node's timers that rendezvous hashing gives this node among the survivors. */
  async claimTimersOf(dead: string, survivors: string[]): Promise<StoredTimer[]> {
    let timers: StoredTimer[];
    try {
      timers = await this.#store.timersOf(dead);
    } catch (err) {
      this.counters.errors++;
      this.onError(err);
      return [];
    }
    const nodes = survivors.map((id) => ({ id, seed: hashString(id) }));
    const claimed: StoredTimer[] = [];
    for (const t of timers) {
      if (pickNode(nodes, t.key)?.id !== this.nodeId) continue;
      const won = await this.#store.claimTimer(t.id, dead, this.nodeId).catch((err: unknown) => {
        this.counters.errors++;
        this.onError(err);
        return false;
      });
      if (won) claimed.push(t);
    }
    this.counters.timersTakenOver += claimed.length;
    return claimed;
  }

  // ---- EarlyDialog: the transactions of a call being set up ----

  /** The store key of a proxied INVITE's early record: from its top Via branch, which its CANCEL shares. */
  static earlyKey(branch: string): string {
    return 'e.' + hashString(branch).toString(16).padStart(8, '0') + hashString(branch, 0x9747b28c).toString(16).padStart(8, '0');
  }

  /** Writes what a survivor needs to finish a proxied call's setup; never rejects. */
  saveEarly(invite: SipRequest, source: Source, branches: ReadonlyArray<{ request: SipRequest; dest: Destination }>): Promise<void> {
    return this.#putEarly(invite.topVia.branch ?? '', {
      v: 1,
      invite: invite.toString(),
      source: sourceRecord(source),
      branches: branches.map((b) => ({ request: b.request.toString(), dest: b.dest })),
    });
  }

  /**
   * A call this node answers (UAS, B2BUA leg A) sent its first 1xx with a To tag: the session is written with the
   * INVITE it has to answer, and indexed by the INVITE's branch so a CANCEL (no To tag) finds it on any node.
   */
  async saveEarlySession(s: SipApplicationSession, branch: string): Promise<void> {
    await Promise.all([this.save(s), this.#putEarly(branch, { v: 1, session: s.id })]);
  }

  async #putEarly(branch: string, rec: EarlyRecord): Promise<void> {
    const data = JSON.stringify(rec);
    try {
      await this.#store.put(Replicator.earlyKey(branch), data, 0, EARLY_TTL_MS);
      this.counters.writes++;
      this.counters.bytes += data.length;
    } catch (err) {
      this.counters.errors++;
      this.onError(err);
    }
  }

  deleteEarly(branch: string): Promise<void> {
    return this.#deleteLater(Replicator.earlyKey(branch));
  }

  /** The early record of the INVITE a CANCEL (or retransmission) belongs to, parsed; null when there is none. */
  async loadEarly(branch: string): Promise<EarlyEntry | null> {
    let entry;
    try {
      entry = await this.#store.get(Replicator.earlyKey(branch));
    } catch (err) {
      this.counters.errors++;
      this.onError(err);
      return null;
    }
    if (entry === null) return null;
    const rec = JSON.parse(entry.data) as EarlyRecord;
    if ('session' in rec) return { kind: 'session', session: rec.session };
    const invite = parseMessage(Buffer.from(rec.invite, 'latin1'));
    if (!invite.isRequest) return null;
    this.counters.failovers++;
    return {
      kind: 'proxy',
      invite: invite as SipRequest,
      source: toSource(rec.source),
      branches: rec.branches.map((b) => ({ request: parseMessage(Buffer.from(b.request, 'latin1')) as SipRequest, dest: b.dest })),
    };
  }

  /** Whether this session was ever written (so its end must delete the record). */
  isReplicated(s: SipApplicationSession): boolean {
    return this.#written.has(s);
  }

  /** Ended calls' records, deleted together a moment later (one store command for many calls). */
  #toDelete: string[] = [];
  #deleteTimer: NodeJS.Timeout | null = null;

  /**
   * Deletes an ended call's record, batched with the other calls ending within DELETE_BATCH_MS: a record outliving
   * its call by a few ms is harmless (a late retransmitted BYE is still answered), a store command per call is not.
   */
  delete(s: SipApplicationSession): Promise<void> {
    this.#written.delete(s);
    this.counters.deletes++;
    return this.#deleteLater(s.id);
  }

  #deleteLater(key: string): Promise<void> {
    this.#toDelete.push(key);
    if (this.#deleteTimer === null) {
      this.#deleteTimer = setTimeout(() => void this.flushDeletes(), DELETE_BATCH_MS);
      this.#deleteTimer.unref();
    }
    return Promise.resolve();
  }

  /** Sends the pending deletes now (also before the node closes its store). */
  async flushDeletes(): Promise<void> {
    if (this.#deleteTimer !== null) clearTimeout(this.#deleteTimer);
    this.#deleteTimer = null;
    const keys = this.#toDelete;
    if (keys.length === 0) return;
    this.#toDelete = [];
    await this.#store.deleteMany(keys).catch((err: unknown) => {
      this.counters.errors++;
      this.onError(err);
    });
  }

  /**
   * Loads the call a key (app session id or leg id) names and rebuilds it in `sessions` and `dialogs`. Resolves
   * with the rebuilt session, or null when no record exists (the call ended, or was never replicated). Legs that were
   * setting up (EarlyDialog) are handed to `rebuild` with their transactions' requests, for the container to adopt.
   */
  async restore(
    key: string, sessions: SessionManager, dialogs: DialogLayer, rebuild?: (leg: SipSession, pending: PendingTransactions) => void,
  ): Promise<SipApplicationSession | null> {
    const dot = key.indexOf('.');
    const id = dot === -1 ? key : key.slice(0, dot);
    const existing = sessions.find(id);
    if (existing !== undefined) return existing; // another request of the same call loaded it meanwhile
    let entry;
    try {
      entry = await this.#store.get(id);
    } catch (err) {
      this.counters.errors++;
      this.onError(err);
      return null;
    }
    if (entry === null) return null;
    const again = sessions.find(id);
    if (again !== undefined) return again;
    const rec = JSON.parse(entry.data) as AppSessionRecord;
    const s = sessions.create(rec.app, rec.id);
    s.affinity = rec.affinity;
    for (const t of rec.timers ?? []) s.timers.set(t.id, { fireAt: t.fireAt, info: t.info });
    if (rec.expiresAt !== undefined && rec.expiresAt > 0) sessions.keepFor(s, Math.max(1, rec.expiresAt - Date.now()));
    for (const [k, v] of Object.entries(rec.attributes)) s.attributes.set(k, v);
    for (const l of rec.legs) {
      const leg = s.createSession(l.id);
      leg.role = l.role;
      for (const [k, v] of Object.entries(l.attributes)) leg.attributes.set(k, v);
      if (l.dialog !== null) leg.dialog = dialogs.add(Dialog.fromJSON(l.dialog));
    }
    for (const l of rec.legs) {
      if (l.linked !== null) s.sessions.get(l.id)!.linked = s.sessions.get(l.linked) ?? null;
    }
    this.#written.set(s, { version: entry.version, data: entry.data });
    for (const l of rec.legs) {
      if (rebuild === undefined || (l.pending === undefined && l.outgoing === undefined)) continue;
      const invite = l.pending === undefined ? null : parseMessage(Buffer.from(l.pending.invite, 'latin1'));
      const outgoing = l.outgoing === undefined ? null : parseMessage(Buffer.from(l.outgoing.request, 'latin1'));
      rebuild(s.sessions.get(l.id)!, {
        invite: invite?.isRequest === true ? { request: invite as SipRequest, source: toSource(l.pending!.source) } : null,
        outgoing: outgoing?.isRequest === true ? { request: outgoing as SipRequest, dest: l.outgoing!.dest } : null,
      });
    }
    this.counters.failovers++;
    return s;
  }
}

function sourceRecord(source: Source): SourceRecord {
  return { protocol: source.protocol, host: source.host, port: source.port };
}

/** A stored source: the connection it came on is gone (the node that held it died); replies go by Via. */
function toSource(rec: SourceRecord): Source {
  return { ...rec, localHost: '', localPort: 0, connection: null };
}

/** The store, each operation timed (the observer runs when it settles, on success or failure). */
function timedStore(store: SessionStore, observe: StoreLatencyObserver): SessionStore {
  const timed = <K extends keyof SessionStore>(op: K) => (...args: Parameters<SessionStore[K]>): ReturnType<SessionStore[K]> => {
    const start = process.hrtime.bigint();
    const done = (ok: boolean): void => observe(op, Number(process.hrtime.bigint() - start) / 1e9, ok);
    const p = (store[op] as (...a: Parameters<SessionStore[K]>) => Promise<unknown>).apply(store, args);
    p.then(() => done(true), () => done(false));
    return p as ReturnType<SessionStore[K]>;
  };
  return {
    put: timed('put'), get: timed('get'), delete: timed('delete'), deleteMany: timed('deleteMany'), putTimer: timed('putTimer'), takeTimer: timed('takeTimer'),
    deleteTimer: timed('deleteTimer'), timersOf: timed('timersOf'), claimTimer: timed('claimTimer'),
  };
}
