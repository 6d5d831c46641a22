import { StoreError } from './errors.ts';

/**
 * Replicated call state: one record per application session (its SIP sessions, dialogs, attributes), written by
 * the node serving the call and read by any node that must continue it. Writes are versioned compare-and-swap so
 * two nodes never silently overwrite each other; records expire on their own.
 */
export interface SessionEntry {
  data: string;
  version: number;
}

/** A persistent application timer, indexed by the node that owns (will fire) it. */
export interface StoredTimer {
  id: string;
  /** Application session id (the timer's info lives in its record). */
  session: string;
  owner: string;
  fireAt: number;
  /** The call's affinity hash: survivors share a dead node's timers by it, as balancers share its calls. */
  key: number;
}

export interface SessionStore {
  /**
   * Writes `data` under `key` if the stored version is `expected` (0: no live record). Resolves with the new
   * version; rejects with StoreError STORE_CONFLICT when another writer got there first.
   */
  put(key: string, data: string, expected: number, ttlMs: number): Promise<number>;
  get(key: string): Promise<SessionEntry | null>;
  delete(key: string): Promise<void>;
  /** Deletes several records at once (calls that ended together): one round trip where the backend allows. */
  deleteMany(keys: readonly string[]): Promise<void>;
  putTimer(t: StoredTimer): Promise<void>;
  /** Removes the timer if `owner` still owns it: true means the caller, and nobody else, fires it. */
  takeTimer(id: string, owner: string): Promise<boolean>;
  deleteTimer(id: string): Promise<void>;
  timersOf(owner: string): Promise<StoredTimer[]>;
  /** Moves a timer from a dead owner to `to`; false when someone else claimed it first. */
  claimTimer(id: string, from: string, to: string): Promise<boolean>;
}

/** Keys are application session ids (token characters); anything else is a caller bug. */
export function checkSessionKey(key: string): void {
  if (!/^[A-Za-z0-9._~!*+'`%_-]{1,128}$/.test(key)) throw new StoreError('STORE_INVALID', `bad session key "${key.slice(0, 140)}"`);
}
