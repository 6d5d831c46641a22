/**
 * The storage layer's entry point: openStores(url) picks the backend from the `store` setting's scheme.
 * Backends are imported on demand, so a node on Redis never loads the SQLite native module (nor fails when it
 * could not be built), and vice versa.
 */
import { StoreError, toStoreError } from './errors.ts';
import type { StoreOptions, Stores } from './options.ts';
import { parseStoreUrl } from './url.ts';

export { StoreConfigError, StoreError, STORE_URL_FORMS, type StoreErrorCode } from './errors.ts';
export { bindingKey, compareBindings, type Binding, type LocationStore } from './location.ts';
export { computeHa1, type Credential, type CredentialStore, type DigestAlgorithm, type Ha1Values } from './credentials.ts';
export { DEFAULT_SESSION_BATCH_WINDOW_MS, type StoreOptions, type Stores } from './options.ts';
export type { SessionEntry, SessionStore } from './sessions.ts';
export { parseStoreUrl, redactStoreUrl, type StoreConfig } from './url.ts';

/**
 * Opens the location and credential stores named by url:
 *   sqlite:PATH | sqlite::memory:                       one host, one file (several processes may share it)
 *   redis://HOST:PORT/DB | rediss://…                   Redis, plain or TLS
 *   redis+sentinel://HOST:PORT,HOST:PORT/MASTER[/DB]    Redis behind Sentinel
 *   redis+cluster://HOST:PORT,HOST:PORT                 Redis Cluster
 *   postgres://… | postgresql://…                       PostgreSQL
 *   memory:                                             this process only (tests)
 * A malformed url throws StoreConfigError (naming the `store` setting); a backend that cannot be reached or
 * opened throws StoreError with code STORE_CONNECT.
 */
export async function openStores(url: string, options: StoreOptions = {}): Promise<Stores> {
  const cfg = parseStoreUrl(url);
  switch (cfg.kind) {
    case 'memory':
      return (await import('./memory.ts')).openMemoryStores(options);
    case 'sqlite': {
      let sqlite: typeof import('./sqlite.ts');
      try {
        sqlite = await import('./sqlite.ts');
      } catch (err) {
        throw toStoreError(err, 'STORE_CONNECT', 'cannot load better-sqlite3');
      }
      try {
        return sqlite.openSqliteStores(cfg.path, options);
      } catch (err) {
        throw withNativeHint(err);
      }
    }
    case 'redis':
      return (await import('./redis.ts')).openRedisStores(cfg, options);
    case 'postgres':
      return (await import('./postgres.ts')).openPostgresStores(cfg.connectionString, options);
  }
}

/** better-sqlite3 loads its compiled addon on first use; say how to build it when that is what failed. */
function withNativeHint(err: unknown): unknown {
  if (err instanceof StoreError && /bindings file|better_sqlite3\.node|NODE_MODULE_VERSION/.test(err.message)) {
    return new StoreError(
      'STORE_CONNECT',
      `${err.message} (better-sqlite3's native module is missing or built for another Node.js: ` +
        'run `npm rebuild better-sqlite3`; its install script must be allowed in package.json "allowScripts")',
      { cause: err },
    );
  }
  return err;
}
