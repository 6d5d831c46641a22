/**
 * Options shared by every backend, and the bundle openStores() returns. Every field has a default suited to a
 * production node; tests shorten the timers and isolate their data with redisKeyPrefix / pgSchema.
 */
import type { CredentialStore } from './credentials.ts';
import type { StoreError } from './errors.ts';
import type { LocationStore } from './location.ts';
import type { SessionStore } from './sessions.ts';

export interface StoreOptions {
  /** How often expired bindings are deleted in the background, ms; 0 turns the timer off. Default 60 000. */
  purgeIntervalMs?: number;
  /** Bound on establishing a connection at start-up, ms. Default 5 000. */
  connectTimeoutMs?: number;
  /** Bound on one operation (Redis command, Postgres statement, SQLite lock wait), ms. Default 5 000. */
  operationTimeoutMs?: number;
  /** Redis: prefix of every key (no '{' or '}'). Default 'sipfleet:'. */
  redisKeyPrefix?: string;
  /** Postgres: schema holding the tables, created if absent. Default 'public'. */
  pgSchema?: string;
  /** Redis: the connection's name (CLIENT LIST), e.g. the node's id. Default none. */
  clientName?: string;
  /** Postgres: pool size. Default 10. */
  pgPoolSize?: number;
  /**
   * Redis: batches of replica writes start at most this often, ms (a commit delay). Under load a call's 2xx may
   * wait up to this long for its replica, so that many calls share one round trip; 0 sends each batch at once.
   * Default 20.
   */
  sessionBatchWindowMs?: number;
  /**
   * Failures no caller awaits: a background purge, a lost Redis/Postgres connection (reported once per outage).
   * Default: one line on stderr.
   */
  onError?: (err: StoreError) => void;
}

export interface Stores {
  location: LocationStore;
  credentials: CredentialStore;
  /** Replicated call state (dialogs, sessions); null on backends that do not keep it (PostgreSQL). */
  sessions: SessionStore | null;
  /** Stops the purge timer and closes the connection or file. Idempotent. */
  close(): Promise<void>;
}

export interface ResolvedOptions {
  purgeIntervalMs: number;
  connectTimeoutMs: number;
  operationTimeoutMs: number;
  redisKeyPrefix: string;
  pgSchema: string;
  pgPoolSize: number;
  sessionBatchWindowMs: number;
  clientName: string | undefined;
  onError: (err: StoreError) => void;
}

export const DEFAULT_SESSION_BATCH_WINDOW_MS = 20;

const logToStderr = (err: StoreError): void => {
  process.stderr.write(`sipfleet store: ${err.message}\n`);
};

export function resolveOptions(o: StoreOptions = {}): ResolvedOptions {
  return {
    purgeIntervalMs: o.purgeIntervalMs ?? 60_000,
    connectTimeoutMs: o.connectTimeoutMs ?? 5_000,
    operationTimeoutMs: o.operationTimeoutMs ?? 5_000,
    redisKeyPrefix: o.redisKeyPrefix ?? 'sipfleet:',
    pgSchema: o.pgSchema ?? 'public',
    pgPoolSize: o.pgPoolSize ?? 10,
    sessionBatchWindowMs: o.sessionBatchWindowMs ?? DEFAULT_SESSION_BATCH_WINDOW_MS,
    clientName: o.clientName,
    onError: o.onError ?? logToStderr,
  };
}
