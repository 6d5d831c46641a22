/**
 * In-memory stores, for unit tests only: the data lives in one process and dies with it, so a cluster of nodes
 * would each see different registrations. They follow the same contract as the real backends (the contract
 * suite runs against them too), which makes them a faithful stand-in for code built on top of the store.
 */
import { ha1sFor, type Credential, type CredentialStore, type Ha1Values } from './credentials.ts';
import { StoreError } from './errors.ts';
import { bindingKey, compareBindings, normalizeBinding, type Binding, type LocationStore } from './location.ts';
import { resolveOptions, type StoreOptions, type Stores } from './options.ts';
import { startPurger, type Purger } from './purger.ts';
import { checkSessionKey, type SessionEntry, type SessionStore, type StoredTimer } from './sessions.ts';

const copy = (b: Binding): Binding => ({ ...b, path: [...b.path] });

export class MemoryLocationStore implements LocationStore {
  private readonly aors = new Map<string, Map<string, Binding>>();
  private readonly purger: Purger;
  private closed = false;

  constructor(options: StoreOptions = {}) {
    const o = resolveOptions(options);
    this.purger = startPurger(() => this.purgeExpired(), o.purgeIntervalMs, o.onError);
  }

  async put(binding: Binding): Promise<void> {
    this.check();
    const b = normalizeBinding(binding);
    let bindings = this.aors.get(b.aor);
    if (bindings === undefined) this.aors.set(b.aor, (bindings = new Map()));
    bindings.set(bindingKey(b), b);
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    this.check();
    const bindings = this.aors.get(aor);
    if (bindings === undefined) return false;
    const now = Date.now();
    let removedLive = false;
    for (const [key, b] of bindings) {
      if (b.contact !== contact) continue;
      bindings.delete(key);
      if (b.expiresAt > now) removedLive = true;
    }
    if (bindings.size === 0) this.aors.delete(aor);
    return removedLive;
  }

  async removeAll(aor: string): Promise<number> {
    this.check();
    const bindings = this.aors.get(aor);
    if (bindings === undefined) return 0;
    this.aors.delete(aor);
    const now = Date.now();
    return [...bindings.values()].filter((b) => b.expiresAt > now).length;
  }

  async lookup(aor: string): Promise<Binding[]> {
    this.check();
    const now = Date.now();
    const live = [...(this.aors.get(aor)?.values() ?? [])].filter((b) => b.expiresAt > now);
    return live.sort(compareBindings).map(copy);
  }

  async purgeExpired(): Promise<number> {
    this.check();
    const now = Date.now();
    let n = 0;
    for (const [aor, bindings] of this.aors) {
      for (const [key, b] of bindings) {
        if (b.expiresAt <= now) {
          bindings.delete(key);
          n++;
        }
      }
      if (bindings.size === 0) this.aors.delete(aor);
    }
    return n;
  }

  async count(): Promise<number> {
    this.check();
    const now = Date.now();
    let n = 0;
    for (const bindings of this.aors.values()) for (const b of bindings.values()) if (b.expiresAt > now) n++;
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.purger.stop();
  }

  private check(): void {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'location store is closed');
  }
}

export class MemoryCredentialStore implements CredentialStore {
  // Keyed by JSON of the pair, so no separator character can make two different pairs collide.
  private readonly creds = new Map<string, Credential>();

  async get(username: string, realm: string): Promise<Credential | null> {
    const c = this.creds.get(JSON.stringify([username, realm]));
    return c === undefined ? null : { ...c };
  }

  async set(username: string, realm: string, secret: string | Ha1Values): Promise<void> {
    this.creds.set(JSON.stringify([username, realm]), { username, realm, ...ha1sFor(username, realm, secret) });
  }

  async delete(username: string, realm: string): Promise<boolean> {
    return this.creds.delete(JSON.stringify([username, realm]));
  }
}

/** Sessions of this process only (unit tests). */
export class MemorySessionStore implements SessionStore {
  readonly #records = new Map<string, { data: string; version: number; expiresAt: number }>();

  async put(key: string, data: string, expected: number, ttlMs: number): Promise<number> {
    checkSessionKey(key);
    const now = Date.now();
    const cur = this.#records.get(key);
    const version = cur === undefined || cur.expiresAt <= now ? 0 : cur.version;
    if (version !== expected) throw new StoreError('STORE_CONFLICT', `session ${key} is at version ${version}, not ${expected}`);
    this.#records.set(key, { data, version: version + 1, expiresAt: now + ttlMs });
    return version + 1;
  }

  async get(key: string): Promise<SessionEntry | null> {
    checkSessionKey(key);
    const cur = this.#records.get(key);
    if (cur === undefined || cur.expiresAt <= Date.now()) return null;
    return { data: cur.data, version: cur.version };
  }

  async delete(key: string): Promise<void> {
    checkSessionKey(key);
    this.#records.delete(key);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const k of keys) checkSessionKey(k);
    for (const k of keys) this.#records.delete(k);
  }

  readonly #timers = new Map<string, StoredTimer>();

  async putTimer(t: StoredTimer): Promise<void> {
    this.#timers.set(t.id, { ...t });
  }

  async takeTimer(id: string, owner: string): Promise<boolean> {
    const t = this.#timers.get(id);
    if (t === undefined || t.owner !== owner) return false;
    this.#timers.delete(id);
    return true;
  }

  async deleteTimer(id: string): Promise<void> {
    this.#timers.delete(id);
  }

  async timersOf(owner: string): Promise<StoredTimer[]> {
    return [...this.#timers.values()].filter((t) => t.owner === owner).map((t) => ({ ...t }));
  }

  async claimTimer(id: string, from: string, to: string): Promise<boolean> {
    const t = this.#timers.get(id);
    if (t === undefined || t.owner !== from) return false;
    t.owner = to;
    return true;
  }
}

export function openMemoryStores(options: StoreOptions = {}): Stores {
  const location = new MemoryLocationStore(options);
  return { location, credentials: new MemoryCredentialStore(), sessions: new MemorySessionStore(), close: () => location.close() };
}
