/**
 * Stateless digest nonces that any node of the cluster can check.
 *
 *   nonce = base64url( timestamp (ms, uint64 BE, 8 bytes) | random (8 bytes) | HMAC-SHA256(secret, timestamp|random|realm)[0..16) )
 *
 * The HMAC covers only what the nonce itself carries (plus the realm, so a nonce for one realm is no good in
 * another) and the cluster secret: a node that shares the secret validates a nonce another node issued without
 * asking it anything. The cost of statelessness is replay: within its lifetime a nonce can be reused, and only a
 * node that saw an earlier request with it can notice (see NonceCountTracker).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthConfigError } from './errors.ts';

export type NonceStatus = 'ok' | 'stale' | 'invalid';

export const DEFAULT_NONCE_TTL_MS = 300_000;
/** How far in the future a nonce's timestamp may be: the clock difference tolerated between nodes. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 30_000;
export const MIN_SECRET_BYTES = 16;

const TS_BYTES = 8;
const RANDOM_BYTES = 8;
const MAC_BYTES = 16;
const NONCE_BYTES = TS_BYTES + RANDOM_BYTES + MAC_BYTES;
/** base64url of 32 bytes, unpadded. */
const NONCE_CHARS = Math.ceil((NONCE_BYTES * 4) / 3);
const NONCE_TEXT = /^[A-Za-z0-9_-]+$/;

export interface NonceOptions {
  /** The cluster secret: at least 16 bytes (a string counts its UTF-8 bytes). Every node needs the same one. */
  secret: string | Buffer;
  /** Lifetime of a nonce; older ones verify as 'stale'. Default 300 000 (5 minutes). */
  nonceTtlMs?: number;
  /** How far ahead of this node's clock a nonce's timestamp may be (another node's clock). Default 30 000. */
  maxClockSkewMs?: number;
  /** Clock, in ms since the epoch (tests). Default Date.now. */
  now?: () => number;
  /** Name of the secret in configuration, for errors. Default `auth.secret`. */
  secretKey?: string;
}

/** The secret as bytes; throws AuthConfigError (naming `key`) when it is not a string or Buffer of ≥ 16 bytes. */
export function secretBytes(secret: unknown, key = 'auth.secret'): Buffer {
  let bytes: Buffer;
  if (typeof secret === 'string') bytes = Buffer.from(secret, 'utf8');
  else if (Buffer.isBuffer(secret)) bytes = Buffer.from(secret); // a copy: the caller may wipe or reuse theirs
  else throw new AuthConfigError(key, 'expected a string or Buffer');
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new AuthConfigError(key, `must be at least ${MIN_SECRET_BYTES} bytes, got ${bytes.length}`);
  }
  return bytes;
}

function positiveMs(key: string, value: number | undefined, fallback: number, allowZero: boolean): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0 || (!allowZero && value === 0)) {
    throw new AuthConfigError(key, `expected a ${allowZero ? 'non-negative' : 'positive'} integer of milliseconds, got ${String(value)}`);
  }
  return value;
}

export class NonceManager {
  readonly ttlMs: number;
  readonly maxClockSkewMs: number;
  readonly #secret: Buffer;
  readonly #now: () => number;

  constructor(o: NonceOptions) {
    this.#secret = secretBytes(o.secret, o.secretKey);
    this.ttlMs = positiveMs('auth.nonceTtlMs', o.nonceTtlMs, DEFAULT_NONCE_TTL_MS, false);
    this.maxClockSkewMs = positiveMs('auth.maxClockSkewMs', o.maxClockSkewMs, DEFAULT_MAX_CLOCK_SKEW_MS, true);
    this.#now = o.now ?? Date.now;
  }

  #mac(head: Buffer, realm: string): Buffer {
    // timestamp and random are fixed-length, so head|realm is unambiguous without a separator
    return createHmac('sha256', this.#secret).update(head).update(realm, 'latin1').digest().subarray(0, MAC_BYTES);
  }

  /** A fresh nonce for `realm` (as written in the header: latin1 text). */
  issue(realm: string): string {
    const out = Buffer.alloc(NONCE_BYTES);
    out.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.#now()))), 0);
    randomBytes(RANDOM_BYTES).copy(out, TS_BYTES);
    this.#mac(out.subarray(0, TS_BYTES + RANDOM_BYTES), realm).copy(out, TS_BYTES + RANDOM_BYTES);
    return out.toString('base64url');
  }

  /** When the nonce was issued (ms since the epoch), or null when it is not one of ours (HMAC not checked). */
  static timestamp(nonce: string): number | null {
    if (nonce.length !== NONCE_CHARS || !NONCE_TEXT.test(nonce)) return null;
    return Number(Buffer.from(nonce, 'base64url').readBigUInt64BE(0));
  }

  /**
   * 'ok' when the HMAC is right (timing-safe compare) and the nonce is at most ttlMs old; 'stale' when the HMAC is
   * right but it is older (the client knows it came from us: it may retry without asking its user); 'invalid'
   * otherwise, a timestamp further in the future than maxClockSkewMs included.
   */
  verify(nonce: string, realm: string): NonceStatus {
    if (nonce.length !== NONCE_CHARS || !NONCE_TEXT.test(nonce)) return 'invalid';
    const bytes = Buffer.from(nonce, 'base64url');
    // Node's decoder ignores the unused low bits of the last character: only the canonical spelling is ours.
    if (bytes.length !== NONCE_BYTES || bytes.toString('base64url') !== nonce) return 'invalid';
    const mac = this.#mac(bytes.subarray(0, TS_BYTES + RANDOM_BYTES), realm);
    if (!timingSafeEqual(mac, bytes.subarray(TS_BYTES + RANDOM_BYTES))) return 'invalid';
    const age = this.#now() - Number(bytes.readBigUInt64BE(0));
    if (age < -this.maxClockSkewMs) return 'invalid';
    return age > this.ttlMs ? 'stale' : 'ok';
  }
}

export interface NonceCountTrackerOptions {
  /** How long a nonce is remembered after its first use: at least the nonce TTL plus clock skew. */
  retainMs: number;
  /** Nonces remembered at most; the oldest are forgotten first (their replays then go unnoticed). Default 10 000. */
  maxNonces?: number;
  now?: () => number;
}

/** Nonce counts accepted out of order, behind the highest one seen (requests of one client can cross). */
const WINDOW = 32;

interface NonceCounts {
  firstSeen: number;
  /** Highest nc seen. */
  top: number;
  /** Bit k set: nc top-k was seen (bit 0 is top itself). */
  seen: number;
}

/**
 * Optional replay limit (RFC 2617 §3.2.2 nonce-count): remembers which nc values each nonce was used with and
 * refuses a repeat, accepting counts up to 32 behind the highest one seen (requests of one client can arrive out
 * of order over UDP or over several connections).
 *
 * NOT CLUSTER-WIDE: this state lives in one node. A request replayed to another node (or to this one after a
 * restart, or after the nonce was evicted) is not detected; the stateless nonce still bounds a replay to the nonce
 * lifetime, to the same method and Request-URI, and to the same realm. Closing that gap needs shared state (or
 * routing every request of a client to one node), which this module deliberately does not assume.
 */
export class NonceCountTracker {
  readonly #retainMs: number;
  readonly #max: number;
  readonly #now: () => number;
  // Map keeps insertion order = first-use order, so expired entries are at the front.
  readonly #nonces = new Map<string, NonceCounts>();

  constructor(o: NonceCountTrackerOptions) {
    this.#retainMs = o.retainMs;
    this.#max = Math.max(1, o.maxNonces ?? 10_000);
    this.#now = o.now ?? Date.now;
  }

  get size(): number {
    return this.#nonces.size;
  }

  /** Records that `nonce` was used with count `nc`; false when that count was already used (a replay) or is too old. */
  use(nonce: string, nc: number): boolean {
    const now = this.#now();
    for (const [k, v] of this.#nonces) {
      if (now - v.firstSeen <= this.#retainMs) break;
      this.#nonces.delete(k);
    }
    const e = this.#nonces.get(nonce);
    if (e === undefined) {
      if (this.#nonces.size >= this.#max) this.#nonces.delete(this.#nonces.keys().next().value as string);
      this.#nonces.set(nonce, { firstSeen: now, top: nc, seen: 1 });
      return true;
    }
    if (nc > e.top) {
      const shift = nc - e.top;
      e.seen = shift >= WINDOW ? 1 : ((e.seen << shift) | 1) >>> 0;
      e.top = nc;
      return true;
    }
    const back = e.top - nc;
    if (back >= WINDOW) return false;
    const bit = (1 << back) >>> 0;
    if ((e.seen & bit) !== 0) return false;
    e.seen = (e.seen | bit) >>> 0;
    return true;
  }
}
