/**
 * SQLite backend (better-sqlite3), for one host: several sipfleet processes may share one database file. WAL
 * lets readers run beside the one writer, and busy_timeout makes a writer wait for the lock instead of failing
 * with SQLITE_BUSY. better-sqlite3 is synchronous; each call is short (indexed, one row set), so the async
 * interface simply wraps it.
 */
import Database from 'better-sqlite3';
import { credentialFrom, ha1sFor, type Credential, type CredentialStore, type Ha1Values } from './credentials.ts';
import { StoreError, toStoreError } from './errors.ts';
import { bindingKey, normalizeBinding, type Binding, type LocationStore } from './location.ts';
import { resolveOptions, type ResolvedOptions, type StoreOptions, type Stores } from './options.ts';
import { startPurger, type Purger } from './purger.ts';
import { checkSessionKey, type SessionEntry, type SessionStore, type StoredTimer } from './sessions.ts';

const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sipfleet_bindings (
  aor TEXT NOT NULL,
  bkey TEXT NOT NULL,
  contact TEXT NOT NULL,
  call_id TEXT NOT NULL,
  cseq INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  q REAL NOT NULL,
  path TEXT NOT NULL,
  instance_id TEXT,
  reg_id INTEGER,
  received TEXT,
  updated_at INTEGER NOT NULL,
  node_id TEXT,
  PRIMARY KEY (aor, bkey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sipfleet_bindings_expires ON sipfleet_bindings (expires_at);
CREATE TABLE IF NOT EXISTS sipfleet_credentials (
  username TEXT NOT NULL,
  realm TEXT NOT NULL,
  ha1_md5 TEXT,
  ha1_sha256 TEXT,
  PRIMARY KEY (username, realm)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sipfleet_sessions (
  key TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  version INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sipfleet_sessions_expires ON sipfleet_sessions (expires_at);
CREATE TABLE IF NOT EXISTS sipfleet_timers (
  id TEXT PRIMARY KEY,
  session TEXT NOT NULL,
  owner TEXT NOT NULL,
  fire_at INTEGER NOT NULL,
  key INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sipfleet_timers_owner ON sipfleet_timers (owner);
`;

interface BindingRow {
  aor: string;
  contact: string;
  call_id: string;
  cseq: number;
  expires_at: number;
  q: number;
  path: string;
  instance_id: string | null;
  reg_id: number | null;
  received: string | null;
  updated_at: number;
  node_id: string | null;
}

const fromRow = (r: BindingRow): Binding => ({
  aor: r.aor,
  contact: r.contact,
  callId: r.call_id,
  cseq: r.cseq,
  expiresAt: r.expires_at,
  q: r.q,
  path: JSON.parse(r.path) as string[],
  instanceId: r.instance_id,
  regId: r.reg_id,
  received: r.received,
  updatedAt: r.updated_at,
  nodeId: r.node_id,
});

/** Creates the tables on first use, in one IMMEDIATE transaction so processes starting together don't race. */
function migrate(db: Database.Database, path: string): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS sipfleet_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)');
    const version = db.prepare('SELECT version FROM sipfleet_schema WHERE id = 1').pluck().get() as number | undefined;
    if (version !== undefined && version > SCHEMA_VERSION) {
      throw new StoreError('STORE_SCHEMA', `SQLite database "${path}" has schema version ${version}; this sipfleet knows up to ${SCHEMA_VERSION}`);
    }
    db.exec(SCHEMA);
    db.prepare('INSERT INTO sipfleet_schema (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version').run(SCHEMA_VERSION);
  }).immediate();
}

/** The open database, shared by the location and credential stores of one openSqliteStores() call. */
class SqliteHandle {
  closed = false;
  constructor(readonly db: Database.Database) {}

  /** Runs a synchronous operation, turning driver errors into StoreErrors. */
  run<T>(what: string, fn: () => T): T {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'SQLite store is closed');
    try {
      return fn();
    } catch (err) {
      throw toStoreError(err, 'STORE_UNAVAILABLE', `SQLite ${what} failed`);
    }
  }
}

export class SqliteLocationStore implements LocationStore {
  private readonly h: SqliteHandle;
  private readonly purger: Purger;
  private closed = false;
  private readonly stmt: {
    upsert: Database.Statement;
    remove: Database.Statement;
    removeAll: Database.Statement;
    lookup: Database.Statement;
    purge: Database.Statement;
    count: Database.Statement;
  };

  constructor(h: SqliteHandle, o: ResolvedOptions) {
    this.h = h;
    const db = h.db;
    this.stmt = {
      upsert: db.prepare(`
        INSERT INTO sipfleet_bindings (aor, bkey, contact, call_id, cseq, expires_at, q, path, instance_id, reg_id, received, updated_at, node_id)
        VALUES (@aor, @bkey, @contact, @callId, @cseq, @expiresAt, @q, @path, @instanceId, @regId, @received, @updatedAt, @nodeId)
        ON CONFLICT (aor, bkey) DO UPDATE SET
          contact = excluded.contact, call_id = excluded.call_id, cseq = excluded.cseq, expires_at = excluded.expires_at,
          q = excluded.q, path = excluded.path, instance_id = excluded.instance_id, reg_id = excluded.reg_id,
          received = excluded.received, updated_at = excluded.updated_at, node_id = excluded.node_id`),
      remove: db.prepare('DELETE FROM sipfleet_bindings WHERE aor = ? AND contact = ? RETURNING expires_at').pluck(),
      removeAll: db.prepare('DELETE FROM sipfleet_bindings WHERE aor = ? RETURNING expires_at').pluck(),
      lookup: db.prepare(
        'SELECT * FROM sipfleet_bindings WHERE aor = ? AND expires_at > ? ORDER BY q DESC, updated_at DESC, contact',
      ),
      purge: db.prepare('DELETE FROM sipfleet_bindings WHERE expires_at <= ?'),
      count: db.prepare('SELECT count(*) FROM sipfleet_bindings WHERE expires_at > ?').pluck(),
    };
    this.purger = startPurger(() => this.purgeExpired(), o.purgeIntervalMs, o.onError);
  }

  async put(binding: Binding): Promise<void> {
    const b = normalizeBinding(binding);
    this.exec('put', () => this.stmt.upsert.run({ ...b, bkey: bindingKey(b), path: JSON.stringify(b.path) }));
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const now = Date.now();
    const expiries = this.exec('remove', () => this.stmt.remove.all(aor, contact) as number[]);
    return expiries.some((e) => e > now);
  }

  async removeAll(aor: string): Promise<number> {
    const now = Date.now();
    const expiries = this.exec('removeAll', () => this.stmt.removeAll.all(aor) as number[]);
    return expiries.filter((e) => e > now).length;
  }

  async lookup(aor: string): Promise<Binding[]> {
    const rows = this.exec('lookup', () => this.stmt.lookup.all(aor, Date.now()) as BindingRow[]);
    return rows.map(fromRow);
  }

  async purgeExpired(): Promise<number> {
    return this.exec('purge', () => this.stmt.purge.run(Date.now()).changes);
  }

  async count(): Promise<number> {
    return this.exec('count', () => this.stmt.count.get(Date.now()) as number);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.purger.stop();
  }

  private exec<T>(what: string, fn: () => T): T {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'location store is closed');
    return this.h.run(what, fn);
  }
}

export class SqliteCredentialStore implements CredentialStore {
  private readonly h: SqliteHandle;
  private readonly stmt: { get: Database.Statement; set: Database.Statement; del: Database.Statement };

  constructor(h: SqliteHandle) {
    this.h = h;
    this.stmt = {
      get: h.db.prepare('SELECT ha1_md5, ha1_sha256 FROM sipfleet_credentials WHERE username = ? AND realm = ?'),
      set: h.db.prepare(`
        INSERT INTO sipfleet_credentials (username, realm, ha1_md5, ha1_sha256) VALUES (?, ?, ?, ?)
        ON CONFLICT (username, realm) DO UPDATE SET ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256`),
      del: h.db.prepare('DELETE FROM sipfleet_credentials WHERE username = ? AND realm = ?'),
    };
  }

  async get(username: string, realm: string): Promise<Credential | null> {
    const row = this.h.run('credential get', () => this.stmt.get.get(username, realm)) as
      | { ha1_md5: string | null; ha1_sha256: string | null }
      | undefined;
    return row === undefined ? null : credentialFrom(username, realm, row.ha1_md5, row.ha1_sha256);
  }

  async set(username: string, realm: string, secret: string | Ha1Values): Promise<void> {
    const h = ha1sFor(username, realm, secret);
    this.h.run('credential set', () => this.stmt.set.run(username, realm, h.ha1Md5 ?? null, h.ha1Sha256 ?? null));
  }

  async delete(username: string, realm: string): Promise<boolean> {
    return this.h.run('credential delete', () => this.stmt.del.run(username, realm).changes > 0);
  }
}

/**
 * Sessions in the shared file. better-sqlite3 is synchronous: when put() returns its promise the row is already
 * committed, so a caller sending a 2xx right after has its replica in place.
 */
export class SqliteSessionStore implements SessionStore {
  private readonly stmt;
  private readonly purgeTimer: NodeJS.Timeout | null;

  constructor(private readonly h: SqliteHandle, o: ResolvedOptions) {
    const db = h.db;
    this.stmt = {
      insert: db.prepare(`INSERT INTO sipfleet_sessions (key, data, version, expires_at) VALUES (?, ?, 1, ?)
        ON CONFLICT (key) DO UPDATE SET data = excluded.data, version = 1, expires_at = excluded.expires_at
        WHERE sipfleet_sessions.expires_at <= ?`),
      update: db.prepare('UPDATE sipfleet_sessions SET data = ?, version = version + 1, expires_at = ? WHERE key = ? AND version = ? AND expires_at > ?'),
      get: db.prepare('SELECT data, version FROM sipfleet_sessions WHERE key = ? AND expires_at > ?'),
      del: db.prepare('DELETE FROM sipfleet_sessions WHERE key = ?'),
      purge: db.prepare('DELETE FROM sipfleet_sessions WHERE expires_at <= ?'),
      putTimer: db.prepare('INSERT OR REPLACE INTO sipfleet_timers (id, session, owner, fire_at, key) VALUES (?, ?, ?, ?, ?)'),
      takeTimer: db.prepare('DELETE FROM sipfleet_timers WHERE id = ? AND owner = ?'),
      deleteTimer: db.prepare('DELETE FROM sipfleet_timers WHERE id = ?'),
      timersOf: db.prepare('SELECT id, session, owner, fire_at AS fireAt, key FROM sipfleet_timers WHERE owner = ?'),
      claimTimer: db.prepare('UPDATE sipfleet_timers SET owner = ? WHERE id = ? AND owner = ?'),
    };
    this.purgeTimer = o.purgeIntervalMs > 0 ? setInterval(() => {
      try {
        if (!this.h.closed) this.stmt.purge.run(Date.now());
      } catch (err) {
        o.onError(toStoreError(err, 'STORE_UNAVAILABLE', 'SQLite session purge failed'));
      }
    }, o.purgeIntervalMs) : null;
    this.purgeTimer?.unref();
  }

  async put(key: string, data: string, expected: number, ttlMs: number): Promise<number> {
    checkSessionKey(key);
    const now = Date.now();
    const changes = this.h.run('session put', () => (expected === 0
      ? this.stmt.insert.run(key, data, now + ttlMs, now)
      : this.stmt.update.run(data, now + ttlMs, key, expected, now)).changes);
    if (changes === 0) throw new StoreError('STORE_CONFLICT', `session ${key} was not at version ${expected}`);
    return expected + 1;
  }

  async get(key: string): Promise<SessionEntry | null> {
    checkSessionKey(key);
    const row = this.h.run('session get', () => this.stmt.get.get(key, Date.now()) as SessionEntry | undefined);
    return row ?? null;
  }

  async delete(key: string): Promise<void> {
    checkSessionKey(key);
    this.h.run('session delete', () => this.stmt.del.run(key));
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const k of keys) checkSessionKey(k);
    this.h.run('session delete', () => this.h.db.transaction(() => { for (const k of keys) this.stmt.del.run(k); })());
  }

  async putTimer(t: StoredTimer): Promise<void> {
    this.h.run('timer put', () => this.stmt.putTimer.run(t.id, t.session, t.owner, t.fireAt, t.key));
  }

  async takeTimer(id: string, owner: string): Promise<boolean> {
    return this.h.run('timer take', () => this.stmt.takeTimer.run(id, owner).changes > 0);
  }

  async deleteTimer(id: string): Promise<void> {
    this.h.run('timer delete', () => this.stmt.deleteTimer.run(id));
  }

  async timersOf(owner: string): Promise<StoredTimer[]> {
    return this.h.run('timer list', () => this.stmt.timersOf.all(owner) as StoredTimer[]);
  }

  async claimTimer(id: string, from: string, to: string): Promise<boolean> {
    return this.h.run('timer claim', () => this.stmt.claimTimer.run(to, id, from).changes > 0);
  }

  close(): void {
    if (this.purgeTimer !== null) clearInterval(this.purgeTimer);
  }
}

/** Opens (creating if absent) the database at path, or an in-memory one for ':memory:'. */
export function openSqliteStores(path: string, options: StoreOptions = {}): Stores {
  const o = resolveOptions(options);
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: o.operationTimeoutMs });
  } catch (err) {
    throw toStoreError(err, 'STORE_CONNECT', `cannot open SQLite database "${path}"`);
  }
  let h: SqliteHandle;
  let location: SqliteLocationStore;
  let credentials: SqliteCredentialStore;
  let sessions: SqliteSessionStore;
  try {
    // NORMAL is durable across process crashes in WAL mode; a power cut may lose the last commits, which
    // clients repair by re-registering.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(o.operationTimeoutMs))}`);
    migrate(db, path);
    h = new SqliteHandle(db);
    location = new SqliteLocationStore(h, o);
    credentials = new SqliteCredentialStore(h);
    sessions = new SqliteSessionStore(h, o);
  } catch (err) {
    db.close();
    throw toStoreError(err, 'STORE_CONNECT', `cannot initialise SQLite database "${path}"`);
  }
  return {
    location,
    credentials,
    sessions,
    async close() {
      await location.close();
      sessions.close();
      if (h.closed) return;
      h.closed = true;
      db.close();
    },
  };
}
