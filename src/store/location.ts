/**
 * The location service's storage contract (RFC 3261 §10.3): the bindings of an address-of-record to the
 * contacts that registered for it, with the RFC 5626 (outbound) and RFC 5627 (GRUU) fields a registrar needs.
 * Plain data only: the registrar parses and canonicalises, the store keeps and expires.
 */
import { StoreError } from './errors.ts';

export interface Binding {
  /** Canonical address-of-record, 'sip:user@domain'. The registrar canonicalises; the store compares exactly. */
  aor: string;
  /** The Contact URI as registered. Compared as an exact string (the registrar keeps the form it stored). */
  contact: string;
  callId: string;
  cseq: number;
  /** Epoch milliseconds. A binding is live while expiresAt > now. */
  expiresAt: number;
  /** Contact q-value, 0..1 (1 when the Contact had none). */
  q: number;
  /** RFC 3327 Path header values, in the order they appeared in the REGISTER. */
  path: string[];
  /** +sip.instance (RFC 5626/5627), e.g. '<urn:uuid:…>', or null. */
  instanceId: string | null;
  /** RFC 5626 reg-id, only together with instanceId. */
  regId: number | null;
  /** Where the REGISTER came from, 'udp:1.2.3.4:5060' style, or null. */
  received: string | null;
  /** Epoch milliseconds of the last write. */
  updatedAt: number;
  /** The cluster node that accepted the registration (it holds the flow for RFC 5626), or null. */
  nodeId: string | null;
}

/**
 * Expired bindings are invisible to every method: lookup() and count() skip them, remove() and removeAll()
 * report only live bindings they removed. purgeExpired() reclaims their space; each store also runs it on a
 * timer (StoreOptions.purgeIntervalMs) until close().
 */
export interface LocationStore {
  /**
   * Inserts or replaces a binding. Its identity within the AOR is (instanceId, regId) when instanceId is set —
   * a re-registration of the same instance and reg-id replaces the old contact (RFC 5626 §6) — else the contact.
   */
  put(binding: Binding): Promise<void>;
  /** Removes the AOR's bindings with this exact contact; true if a live one was removed. */
  remove(aor: string, contact: string): Promise<boolean>;
  /** Removes every binding of the AOR (REGISTER with 'Contact: *'); the number of live ones removed. */
  removeAll(aor: string): Promise<number>;
  /** Live bindings of the AOR, highest q first, then most recently updated first. */
  lookup(aor: string): Promise<Binding[]>;
  /** Deletes expired bindings now; how many were deleted. */
  purgeExpired(): Promise<number>;
  /** Live bindings across all AORs. */
  count(): Promise<number>;
  /** Stops the purge timer; later calls fail with STORE_CLOSED. Idempotent. */
  close(): Promise<void>;
}

/**
 * A binding's identity inside its AOR. Instance bindings are keyed by reg-id and instance (reg-id is digits or
 * empty, so the form cannot collide); others by contact. Every backend uses this, so they all agree on upserts.
 */
export function bindingKey(b: Pick<Binding, 'contact' | 'instanceId' | 'regId'>): string {
  return b.instanceId !== null ? `i:${b.regId ?? ''}:${b.instanceId}` : `c:${b.contact}`;
}

/** Lookup order: q descending, then updatedAt descending, then contact, so results are deterministic. */
export function compareBindings(a: Binding, b: Binding): number {
  if (a.q !== b.q) return b.q - a.q;
  if (a.updatedAt !== b.updatedAt) return b.updatedAt - a.updatedAt;
  return a.contact < b.contact ? -1 : a.contact > b.contact ? 1 : 0;
}

function invalid(field: string, why: string): StoreError {
  return new StoreError('STORE_INVALID', `binding.${field} ${why}`);
}

const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';

/**
 * Checks a binding and returns a clean copy holding exactly the Binding fields, so a caller's later mutation
 * (or an extra property) never reaches the store.
 */
export function normalizeBinding(b: Binding): Binding {
  if (typeof b !== 'object' || b === null) throw new StoreError('STORE_INVALID', 'binding must be an object');
  if (typeof b.aor !== 'string' || b.aor === '') throw invalid('aor', 'must be a non-empty string');
  if (typeof b.contact !== 'string' || b.contact === '') throw invalid('contact', 'must be a non-empty string');
  if (typeof b.callId !== 'string') throw invalid('callId', 'must be a string');
  if (!Number.isInteger(b.cseq) || b.cseq < 0 || b.cseq > 0x7fffffff) throw invalid('cseq', 'must be an integer 0..2^31-1 (RFC 3261 §8.1.1.5)');
  if (!Number.isSafeInteger(b.expiresAt)) throw invalid('expiresAt', 'must be integer epoch milliseconds');
  if (!Number.isSafeInteger(b.updatedAt)) throw invalid('updatedAt', 'must be integer epoch milliseconds');
  if (typeof b.q !== 'number' || !(b.q >= 0 && b.q <= 1)) throw invalid('q', 'must be a number 0..1');
  if (!Array.isArray(b.path) || !b.path.every((p) => typeof p === 'string')) throw invalid('path', 'must be an array of strings');
  if (!isStringOrNull(b.instanceId) || b.instanceId === '') throw invalid('instanceId', 'must be a non-empty string or null');
  if (b.regId !== null && !(Number.isInteger(b.regId) && b.regId >= 1 && b.regId <= 0x7fffffff)) {
    throw invalid('regId', 'must be an integer 1..2^31-1 or null');
  }
  if (b.regId !== null && b.instanceId === null) throw invalid('regId', 'requires instanceId (RFC 5626 §4.2)');
  if (!isStringOrNull(b.received)) throw invalid('received', 'must be a string or null');
  if (!isStringOrNull(b.nodeId)) throw invalid('nodeId', 'must be a string or null');
  return {
    aor: b.aor,
    contact: b.contact,
    callId: b.callId,
    cseq: b.cseq,
    expiresAt: b.expiresAt,
    q: b.q,
    path: [...b.path],
    instanceId: b.instanceId,
    regId: b.regId,
    received: b.received,
    updatedAt: b.updatedAt,
    nodeId: b.nodeId,
  };
}
