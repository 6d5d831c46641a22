/**
 * Replicated call state: one record per application session (its SIP sessions, dialogs, attributes), written by
 * the node serving the call and read by any node that must continue it. Writes are versioned compare-and-swap so
 * two nodes never silently overwrite each other; records expire on their own.
 */
export interface SessionEntry {
  data: string;
  version: number;
}

export interface SessionStore {
  /**
   * Writes `data` under `key` if the stored version is `expected` (0: no live record). Resolves with the new
   * version; rejects with StoreError STORE_CONFLICT when another writer got there first.
   */
  put(key: string, data: string, expected: number, ttlMs: number): Promise<number>;
  get(key: string): Promise<SessionEntry | null>;
  delete(key: string): Promise<void>;
}

/** Keys are application session ids (token characters); anything else is a caller bug. */
export function checkSessionKey(key: string): void {
  if (!/^[A-Za-z0-9._~!*+'`%-]{1,128}$/.test(key)) throw new TypeError(`bad session key "${key}"`);
}
