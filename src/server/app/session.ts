import { newTag } from '../../sip/transaction/keys.ts';
import type { Dialog } from '../../sip/dialog/dialog.ts';
import { Attributes, type JsonValue } from './attributes.ts';
import type { ClientTransaction } from '../../sip/transaction/client.ts';
import type { IncomingRequest } from './messages.ts';

export type SessionRole = 'unset' | 'uas' | 'uac' | 'proxy';

/** Attributes of a leg or of a call: JSON values only, checked when set (they are what failover replicates). */
abstract class AttributeHolder {
  readonly attributes = new Attributes();

  getAttribute<T extends JsonValue = JsonValue>(name: string): T | undefined {
    return this.attributes.get<T>(name);
  }

  setAttribute(name: string, value: unknown): void {
    this.attributes.set(name, value);
  }

  removeAttribute(name: string): boolean {
    return this.attributes.remove(name);
  }
}

/**
 * One leg of a call (JSR 289 SipSession): a dialog (UAS or UAC side) or a proxied transaction chain. Its id
 * is carried in the messages themselves (our tag, or a Record-Route parameter), never only in a node's memory.
 */
export class SipSession extends AttributeHolder {
  readonly id: string;
  readonly appSession: SipApplicationSession;
  role: SessionRole = 'unset';
  /** The dialog, once a response with a To tag created it (UAS/UAC roles). */
  dialog: Dialog | null = null;
  /** The other leg of a B2BUA. */
  linked: SipSession | null = null;
  /**
   * The initial INVITE this leg received, from its first provisional response until its final one: what a handler
   * answers later (a ring timer). Under EarlyDialog a survivor rebuilds it, so a timer that fires there can answer.
   */
  pendingInvite: IncomingRequest | null = null;
  /** The INVITE this leg sent (UAC, B2BUA leg B) while it has no final response: what a CANCEL cancels. */
  outgoingInvite: ClientTransaction | null = null;
  #valid = true;

  constructor(id: string, appSession: SipApplicationSession) {
    super();
    this.id = id;
    this.appSession = appSession;
  }

  get valid(): boolean {
    return this.#valid;
  }

  get state(): 'initial' | 'early' | 'confirmed' | 'terminated' {
    if (!this.#valid) return 'terminated';
    return this.dialog === null ? 'initial' : this.dialog.state;
  }

  /** Ends this leg; the application session ends with its last leg. */
  invalidate(): void {
    if (!this.#valid) return;
    this.#valid = false;
    this.pendingInvite = null;
    this.outgoingInvite = null;
    this.dialog?.terminate();
    this.appSession.removeSession(this);
  }
}

/** Groups the legs of one call and carries the application's state (JSR 289 SipApplicationSession). */
export class SipApplicationSession extends AttributeHolder {
  readonly id: string;
  readonly appName: string;
  readonly sessions = new Map<string, SipSession>();
  readonly createdAt = Date.now();
  /** Epoch ms after which the session is invalidated by the container; 0: when its last leg ends. */
  expiresAt = 0;
  /** The affinity key of the call (see server/cluster/affinity.ts): set from the Call-ID that started it. */
  affinity: string | null = null;
  /** Persistent timers pending on this call (replicated with it): id → when and with what. */
  readonly timers = new Map<string, { fireAt: number; info: JsonValue }>();
  #valid = true;
  #manager: SessionManager;

  constructor(id: string, appName: string, manager: SessionManager) {
    super();
    this.id = id;
    this.appName = appName;
    this.#manager = manager;
  }

  get valid(): boolean {
    return this.#valid;
  }

  /** A new leg, with an id that starts with this session's id (so the message carries both). */
  createSession(id = `${this.id}.${newTag()}`): SipSession {
    const s = new SipSession(id, this);
    this.sessions.set(s.id, s);
    return s;
  }

  removeSession(s: SipSession): void {
    this.sessions.delete(s.id);
    if (this.sessions.size === 0 && this.expiresAt === 0) this.invalidate();
  }

  /** Keeps the session for `ms` even without legs (0: end with the last leg). */
  setExpires(ms: number): void {
    this.#manager.keepFor(this, ms);
  }

  invalidate(): void {
    if (!this.#valid) return;
    this.#valid = false;
    for (const s of [...this.sessions.values()]) s.invalidate();
    this.#manager.remove(this);
  }
}

/**
 * The node's application sessions by id. Today it is the node-local cache; with replication it is backed by the
 * shared store, and `find` is where a session of a failed node is loaded.
 */
export class SessionManager {
  readonly #sessions = new Map<string, SipApplicationSession>();
  /** Sessions with an expiry, checked by one sweep timer rather than a timer each (one per call is costly). */
  readonly #expiring = new Set<SipApplicationSession>();
  #sweeper: NodeJS.Timeout | null = null;
  readonly sweepIntervalMs: number;
  onCreated: ((s: SipApplicationSession) => void) | null = null;
  onDestroyed: ((s: SipApplicationSession) => void) | null = null;

  constructor(sweepIntervalMs = 5_000) {
    this.sweepIntervalMs = sweepIntervalMs;
  }

  get size(): number {
    return this.#sessions.size;
  }

  create(appName: string, id = newTag()): SipApplicationSession {
    // Ids are tags (token characters, no '.') so they can lead a To tag or sit in a URI parameter.
    const s = new SipApplicationSession(id, appName, this);
    this.#sessions.set(s.id, s);
    this.onCreated?.(s);
    return s;
  }

  /** The application session a key names: an app session id, or a leg id / tag starting with one. */
  find(key: string): SipApplicationSession | undefined {
    const dot = key.indexOf('.');
    return this.#sessions.get(dot === -1 ? key : key.slice(0, dot));
  }

  remove(s: SipApplicationSession): void {
    if (this.#sessions.get(s.id) !== s) return;
    this.#sessions.delete(s.id);
    this.#expiring.delete(s);
    this.onDestroyed?.(s);
  }

  /** Keeps `s` for `ms` from now even without legs, then invalidates it (0: no expiry, ends with its last leg). */
  keepFor(s: SipApplicationSession, ms: number): void {
    s.expiresAt = ms > 0 ? Date.now() + ms : 0;
    if (s.expiresAt === 0) {
      this.#expiring.delete(s);
      return;
    }
    this.#expiring.add(s);
    if (this.#sweeper === null) {
      this.#sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
      this.#sweeper.unref();
    }
  }

  /** Invalidates the sessions whose expiry has passed. */
  sweep(now = Date.now()): void {
    for (const s of this.#expiring) if (s.expiresAt <= now) s.invalidate();
  }

  clear(): void {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    this.#expiring.clear();
    this.#sessions.clear();
  }
}
