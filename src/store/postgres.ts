/**
 * PostgreSQL backend (pg Pool), shared by every node of a cluster. Tables live in one schema (default
 * 'public', created if absent) and carry a sipfleet_ prefix, so they can sit beside other applications' tables.
 * Upserts are single INSERT … ON CONFLICT statements, atomic without an explicit transaction.
 */
import pg from 'pg';
import { credentialFrom, ha1sFor, type Credential, type CredentialStore, type Ha1Values } from './credentials.ts';
import { StoreError, toStoreError } from './errors.ts';
import { bindingKey, normalizeBinding, type Binding, type LocationStore } from './location.ts';
import { resolveOptions, type ResolvedOptions, type StoreOptions, type Stores } from './options.ts';
import { startPurger, type Purger } from './purger.ts';
import { redactStoreUrl } from './url.ts';

const SCHEMA_VERSION = 1;

interface BindingRow {
  aor: string;
  contact: string;
  call_id: string;
  cseq: string; // bigint columns arrive as strings
  expires_at: string;
  q: number;
  path: string[];
  instance_id: string | null;
  reg_id: number | null;
  received: string | null;
  updated_at: string;
  node_id: string | null;
}

const fromRow = (r: BindingRow): Binding => ({
  aor: r.aor,
  contact: r.contact,
  callId: r.call_id,
  cseq: Number(r.cseq),
  expiresAt: Number(r.expires_at),
  q: r.q,
  path: r.path,
  instanceId: r.instance_id,
  regId: r.reg_id,
  received: r.received,
  updatedAt: Number(r.updated_at),
  nodeId: r.node_id,
});

/** Table names qualified with the quoted schema. */
function tables(schema: string): { schema: string; bindings: string; credentials: string; version: string } {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreError('STORE_INVALID', `pgSchema "${schema}" must be a plain identifier (letters, digits, _)`);
  }
  const s = `"${schema}"`;
  return { schema: s, bindings: `${s}.sipfleet_bindings`, credentials: `${s}.sipfleet_credentials`, version: `${s}.sipfleet_schema` };
}

type Tables = ReturnType<typeof tables>;

/**
 * Creates the schema and tables on first use. An advisory lock serialises nodes starting together, whose
 * concurrent CREATE … IF NOT EXISTS could otherwise collide on the catalog's unique indexes.
 */
async function migrate(pool: pg.Pool, t: Tables, schemaName: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sipfleet schema ${schemaName}`]);
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
    await c.query(`CREATE TABLE IF NOT EXISTS ${t.version} (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)`);
    const v = await c.query<{ version: number }>(`SELECT version FROM ${t.version} WHERE id = 1`);
    const version = v.rows[0]?.version;
    if (version !== undefined && version > SCHEMA_VERSION) {
      throw new StoreError('STORE_SCHEMA', `PostgreSQL schema ${t.schema} has version ${version}; this sipfleet knows up to ${SCHEMA_VERSION}`);
    }
    await c.query(`
      CREATE TABLE IF NOT EXISTS ${t.bindings} (
        aor text NOT NULL,
        bkey text NOT NULL,
        contact text NOT NULL,
        call_id text NOT NULL,
        cseq bigint NOT NULL,
        expires_at bigint NOT NULL,
        q double precision NOT NULL,
        path text[] NOT NULL,
        instance_id text,
        reg_id integer,
        received text,
        updated_at bigint NOT NULL,
        node_id text,
        PRIMARY KEY (aor, bkey)
      )`);
    await c.query(`CREATE INDEX IF NOT EXISTS sipfleet_bindings_expires ON ${t.bindings} (expires_at)`);
    await c.query(`
      CREATE TABLE IF NOT EXISTS ${t.credentials} (
        username text NOT NULL,
        realm text NOT NULL,
        ha1_md5 text,
        ha1_sha256 text,
        PRIMARY KEY (username, realm)
      )`);
    if (version === undefined) await c.query(`INSERT INTO ${t.version} (id, version) VALUES (1, $1)`, [SCHEMA_VERSION]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

/** The pool, shared by the location and credential stores of one openPostgresStores() call. */
class PgHandle {
  closed = false;
  constructor(
    readonly pool: pg.Pool,
    readonly t: Tables,
    readonly where: string,
  ) {}

  async query<R extends pg.QueryResultRow>(what: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'PostgreSQL store is closed');
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw toStoreError(err, 'STORE_UNAVAILABLE', `PostgreSQL ${what} failed (${this.where})`);
    }
  }
}

export class PostgresLocationStore implements LocationStore {
  private readonly h: PgHandle;
  private readonly sql: Record<'upsert' | 'remove' | 'removeAll' | 'lookup' | 'purge' | 'count', string>;
  private readonly purger: Purger;
  private closed = false;

  constructor(h: PgHandle, o: ResolvedOptions) {
    this.h = h;
    const b = h.t.bindings;
    this.sql = {
      upsert: `
        INSERT INTO ${b} (aor, bkey, contact, call_id, cseq, expires_at, q, path, instance_id, reg_id, received, updated_at, node_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (aor, bkey) DO UPDATE SET
          contact = EXCLUDED.contact, call_id = EXCLUDED.call_id, cseq = EXCLUDED.cseq, expires_at = EXCLUDED.expires_at,
          q = EXCLUDED.q, path = EXCLUDED.path, instance_id = EXCLUDED.instance_id, reg_id = EXCLUDED.reg_id,
          received = EXCLUDED.received, updated_at = EXCLUDED.updated_at, node_id = EXCLUDED.node_id`,
      remove: `WITH d AS (DELETE FROM ${b} WHERE aor = $1 AND contact = $2 RETURNING expires_at)
        SELECT (count(*) FILTER (WHERE expires_at > $3))::int AS n FROM d`,
      removeAll: `WITH d AS (DELETE FROM ${b} WHERE aor = $1 RETURNING expires_at)
        SELECT (count(*) FILTER (WHERE expires_at > $2))::int AS n FROM d`,
      lookup: `SELECT * FROM ${b} WHERE aor = $1 AND expires_at > $2 ORDER BY q DESC, updated_at DESC, contact COLLATE "C"`,
      purge: `DELETE FROM ${b} WHERE expires_at <= $1`,
      count: `SELECT count(*)::int AS n FROM ${b} WHERE expires_at > $1`,
    };
    this.purger = startPurger(() => this.purgeExpired(), o.purgeIntervalMs, o.onError);
  }

  async put(binding: Binding): Promise<void> {
    const b = normalizeBinding(binding);
    await this.exec('put', this.sql.upsert, [
      b.aor, bindingKey(b), b.contact, b.callId, b.cseq, b.expiresAt, b.q, b.path, b.instanceId, b.regId, b.received, b.updatedAt, b.nodeId,
    ]);
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    const r = await this.exec<{ n: number }>('remove', this.sql.remove, [aor, contact, Date.now()]);
    return r.rows[0]!.n > 0;
  }

  async removeAll(aor: string): Promise<number> {
    const r = await this.exec<{ n: number }>('removeAll', this.sql.removeAll, [aor, Date.now()]);
    return r.rows[0]!.n;
  }

  async lookup(aor: string): Promise<Binding[]> {
    const r = await this.exec<BindingRow>('lookup', this.sql.lookup, [aor, Date.now()]);
    return r.rows.map(fromRow);
  }

  async purgeExpired(): Promise<number> {
    return (await this.exec('purge', this.sql.purge, [Date.now()])).rowCount ?? 0;
  }

  async count(): Promise<number> {
    return (await this.exec<{ n: number }>('count', this.sql.count, [Date.now()])).rows[0]!.n;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.purger.stop();
  }

  private exec<R extends pg.QueryResultRow>(what: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.closed) return Promise.reject(new StoreError('STORE_CLOSED', 'location store is closed'));
    return this.h.query<R>(what, text, values);
  }
}

export class PostgresCredentialStore implements CredentialStore {
  constructor(private readonly h: PgHandle) {}

  async get(username: string, realm: string): Promise<Credential | null> {
    const r = await this.h.query<{ ha1_md5: string | null; ha1_sha256: string | null }>(
      'credential get',
      `SELECT ha1_md5, ha1_sha256 FROM ${this.h.t.credentials} WHERE username = $1 AND realm = $2`,
      [username, realm],
    );
    const row = r.rows[0];
    return row === undefined ? null : credentialFrom(username, realm, row.ha1_md5, row.ha1_sha256);
  }

  async set(username: string, realm: string, secret: string | Ha1Values): Promise<void> {
    const h = ha1sFor(username, realm, secret);
    await this.h.query(
      'credential set',
      `INSERT INTO ${this.h.t.credentials} (username, realm, ha1_md5, ha1_sha256) VALUES ($1, $2, $3, $4)
       ON CONFLICT (username, realm) DO UPDATE SET ha1_md5 = EXCLUDED.ha1_md5, ha1_sha256 = EXCLUDED.ha1_sha256`,
      [username, realm, h.ha1Md5 ?? null, h.ha1Sha256 ?? null],
    );
  }

  async delete(username: string, realm: string): Promise<boolean> {
    const r = await this.h.query('credential delete', `DELETE FROM ${this.h.t.credentials} WHERE username = $1 AND realm = $2`, [
      username,
      realm,
    ]);
    return (r.rowCount ?? 0) > 0;
  }
}

/** "PostgreSQL at host:port/db" without credentials, for messages. */
function describe(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    return `PostgreSQL at ${u.host || u.searchParams.get('host') || 'localhost'}${u.pathname || '/'}`;
  } catch {
    return `PostgreSQL at ${redactStoreUrl(connectionString)}`;
  }
}

export async function openPostgresStores(connectionString: string, options: StoreOptions = {}): Promise<Stores> {
  const o = resolveOptions(options);
  const t = tables(o.pgSchema);
  const where = describe(connectionString);
  const pool = new pg.Pool({
    connectionString,
    max: o.pgPoolSize,
    connectionTimeoutMillis: o.connectTimeoutMs,
    statement_timeout: o.operationTimeoutMs,
    query_timeout: o.operationTimeoutMs + 1000, // client-side backstop if the server never answers
    idleTimeoutMillis: 30_000,
    application_name: 'sipfleet',
  });
  // An idle client's connection dying (server restart) is emitted here; unhandled, it would crash the process.
  pool.on('error', (err) => o.onError(toStoreError(err, 'STORE_UNAVAILABLE', `${where}: idle connection lost`)));
  try {
    await migrate(pool, t, o.pgSchema);
  } catch (err) {
    await pool.end().catch(() => {});
    throw toStoreError(err, 'STORE_CONNECT', `cannot connect to ${where}`);
  }
  const h = new PgHandle(pool, t, where);
  const location = new PostgresLocationStore(h, o);
  return {
    location,
    credentials: new PostgresCredentialStore(h),
    sessions: null,
    async close() {
      await location.close();
      if (h.closed) return;
      h.closed = true;
      await pool.end();
    },
  };
}
