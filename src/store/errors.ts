/**
 * Typed errors of the storage layer. Everything that leaves src/store is a StoreError with a stable code, so a
 * registrar can branch on data (answer 500/503, retry later) without reading driver-specific messages.
 */
export type StoreErrorCode =
  | 'STORE_CONFIG' // the `store` setting is malformed or names an unknown backend
  | 'STORE_CONNECT' // the backend could not be opened or reached at start-up
  | 'STORE_UNAVAILABLE' // an operation failed against an opened backend (connection lost, timeout, busy)
  | 'STORE_SCHEMA' // the database holds a schema this version does not know
  | 'STORE_INVALID' // a value handed to the store is malformed (caller bug)
  | 'STORE_CLOSED' // the store was used after close()
  | 'STORE_CONFLICT'; // a versioned write lost to another writer

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

/** The forms of the `store` setting, quoted in every configuration error so the fix is in the message. */
export const STORE_URL_FORMS =
  'sqlite:PATH, sqlite::memory:, redis://HOST:PORT/DB, rediss://HOST:PORT/DB, ' +
  'redis+sentinel://HOST:PORT,HOST:PORT/MASTER, redis+cluster://HOST:PORT,HOST:PORT, ' +
  'postgres://USER@HOST:PORT/DB (or postgresql://), memory:';

/** A bad `store` setting. `key` is the configuration key, so a CLI can point at the flag or field to fix. */
export class StoreConfigError extends StoreError {
  readonly key = 'store';
  constructor(problem: string) {
    super('STORE_CONFIG', `store: ${problem}; expected one of: ${STORE_URL_FORMS}`);
    this.name = 'StoreConfigError';
  }
}

/** Wraps a driver failure; StoreErrors pass through unchanged. */
export function toStoreError(err: unknown, code: StoreErrorCode, what: string): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError(code, `${what}: ${describe(err)}`, { cause: err });
}

function describe(err: unknown): string {
  // Node reports a refused connection to "localhost" (::1 and 127.0.0.1) as an AggregateError with no message.
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(describe).join('; ');
  if (err instanceof Error) return err.message || (err as { code?: string }).code || err.name;
  return String(err);
}
