/**
 * Server side of SIP digest authentication (RFC 3261 §22; RFC 2617 with qop=auth, RFC 2069 without qop;
 * RFC 8760 algorithm names), for a cluster: nonces are stateless (nonce.ts), so any node with the shared secret
 * accepts a nonce another node issued.
 *
 * Not supported: qop=auth-int, the -sess algorithms, userhash (none is offered, so a client using one is
 * challenged again), and Authentication-Info on the success response.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SipError } from '../../sip/errors.ts';
import { createResponse, type SipRequest, type SipResponse } from '../../sip/message/message.ts';
import { parseUri, uriEquals } from '../../sip/message/uri.ts';
import { newTag } from '../../sip/transaction/keys.ts';
import { AuthConfigError } from './errors.ts';
import { findDigestCredentials, formatDigestChallenge, type DigestCredentials } from './header.ts';
import { NonceCountTracker, NonceManager, secretBytes } from './nonce.ts';

export type DigestAlgorithm = 'MD5' | 'SHA-256' | 'SHA-512-256';

const HASHES: Record<DigestAlgorithm, string> = { MD5: 'md5', 'SHA-256': 'sha256', 'SHA-512-256': 'sha512-256' };
const ALGORITHMS = Object.keys(HASHES) as DigestAlgorithm[];

/** The algorithm a name stands for (case-insensitive, RFC 8760 spellings), or null. */
export function digestAlgorithm(name: string): DigestAlgorithm | null {
  const upper = name.toUpperCase();
  for (const a of ALGORITHMS) if (a === upper) return a;
  return null;
}

/** What the user store knows of a user: HA1 = H(username:realm:password) per algorithm (hex), or the password. */
export interface StoredCredentials {
  ha1Md5?: string;
  ha1Sha256?: string;
  ha1Sha512_256?: string;
  password?: string;
}

/**
 * Looks a user up; null when unknown. `username` is the Unicode text of the username parameter (UTF-8 decoded),
 * `realm` the authenticator's realm. A rejection propagates out of authenticate() (a store failure is not a 401).
 */
export type CredentialLookup = (username: string, realm: string) => Promise<StoredCredentials | null>;

export interface DigestAuthenticatorOptions {
  realm: string;
  /** Cluster secret for nonces, ≥ 16 bytes; every node of the cluster needs the same one. */
  secret: string | Buffer;
  credentials: CredentialLookup;
  /** Algorithms offered, most preferred first: one challenge header each. Default ['SHA-256', 'MD5']. */
  algorithms?: DigestAlgorithm[];
  /** Nonce lifetime; older nonces get a stale=true challenge. Default 300 000. */
  nonceTtlMs?: number;
  /** Tolerated clock difference between nodes for nonce timestamps. Default 30 000. */
  maxClockSkewMs?: number;
  /** Challenge as a proxy: read Proxy-Authorization, answer 407 with Proxy-Authenticate. Default false (401). */
  proxy?: boolean;
  /**
   * Refuse a nonce count already used with the same nonce (qop=auth only). Per node, not cluster-wide: see
   * NonceCountTracker. Default false.
   */
  replayProtection?: boolean;
  /** Clock in ms since the epoch, for tests. Default Date.now. */
  now?: () => number;
}

/** Why authenticate() refused, for logs and metrics; never sent to the client. */
export type AuthFailure =
  | 'missing' // no Authorization (Proxy-Authorization) header at all
  | 'realm' // credentials only for other realms
  | 'algorithm'
  | 'qop'
  | 'uri'
  | 'opaque'
  | 'nonce' // not one of ours (or tampered with)
  | 'credentials' // unknown user or wrong password: the same answer for both
  | 'stale'
  | 'replay';

export type AuthResult =
  | { ok: true; username: string; algorithm: DigestAlgorithm }
  | { ok: false; reason: AuthFailure; challenge: SipResponse };

/** Hex digest of UTF-8 text. */
export function hashHex(algorithm: DigestAlgorithm, text: string): string {
  return createHash(HASHES[algorithm]).update(text, 'utf8').digest('hex');
}

/** HA1 = H(username:realm:password) (RFC 2617 §3.2.2.2), the form a user store should keep instead of passwords. */
export function computeHa1(algorithm: DigestAlgorithm, username: string, realm: string, password: string): string {
  return hashHex(algorithm, `${username}:${realm}:${password}`);
}

export interface DigestResponseInput {
  algorithm: DigestAlgorithm;
  /** Hex HA1 (see computeHa1). */
  ha1: string;
  nonce: string;
  method: string;
  /** The digest-uri as the client wrote it. */
  uri: string;
  /** 'auth', or null for the RFC 2069 form. */
  qop: string | null;
  nc?: string | null;
  cnonce?: string | null;
}

/**
 * The request-digest (RFC 2617 §3.2.2.1): HA2 = H(method:digest-uri); with qop H(HA1:nonce:nc:cnonce:qop:HA2),
 * without qop (RFC 2069) H(HA1:nonce:HA2).
 */
export function computeDigestResponse(i: DigestResponseInput): string {
  const ha2 = hashHex(i.algorithm, `${i.method}:${i.uri}`);
  const ha1 = i.ha1.toLowerCase();
  if (i.qop === null) return hashHex(i.algorithm, `${ha1}:${i.nonce}:${ha2}`);
  return hashHex(i.algorithm, `${ha1}:${i.nonce}:${i.nc ?? ''}:${i.cnonce ?? ''}:${i.qop}:${ha2}`);
}

/** Header text (latin1, one char per byte) → Unicode, decoding UTF-8; ASCII is returned as is. */
function fromWire(s: string): string {
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'latin1').toString('utf8');
}

/** Unicode → header text (its UTF-8 bytes, one char per byte). */
function toWire(s: string): string {
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'utf8').toString('latin1');
}

/** Timing-safe equality of two hex digests (case-insensitive); lengths are public (they follow the algorithm). */
function sameHex(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'latin1');
  const b = Buffer.from(given.toLowerCase(), 'latin1');
  return a.length === b.length && timingSafeEqual(a, b);
}

function storedHa1(algorithm: DigestAlgorithm, s: StoredCredentials): string | undefined {
  switch (algorithm) {
    case 'MD5': return s.ha1Md5;
    case 'SHA-256': return s.ha1Sha256;
    case 'SHA-512-256': return s.ha1Sha512_256;
  }
}

export class DigestAuthenticator {
  readonly realm: string;
  readonly proxy: boolean;
  readonly algorithms: readonly DigestAlgorithm[];
  /** The realm as it appears in headers (its UTF-8 bytes). */
  readonly #realmWire: string;
  readonly #lookup: CredentialLookup;
  readonly #nonces: NonceManager;
  readonly #counts: NonceCountTracker | null;
  /**
   * Opaque, the same on every node (derived from the secret): it carries no state, but RFC 2617 clients must echo
   * it, and a mismatching one marks credentials computed for someone else's challenge.
   */
  readonly #opaque: string;

  constructor(o: DigestAuthenticatorOptions) {
    if (typeof o.realm !== 'string' || o.realm.length === 0 || /[\x00-\x1f\x7f]/.test(o.realm)) {
      throw new AuthConfigError('auth.realm', 'expected a non-empty string without control characters');
    }
    if (typeof o.credentials !== 'function') throw new AuthConfigError('auth.credentials', 'expected a lookup function');
    const algorithms = o.algorithms ?? ['SHA-256', 'MD5'];
    if (!Array.isArray(algorithms) || algorithms.length === 0) throw new AuthConfigError('auth.algorithms', 'expected a non-empty list');
    for (const a of algorithms) {
      if (!ALGORITHMS.includes(a)) throw new AuthConfigError('auth.algorithms', `unknown algorithm "${String(a)}" (known: ${ALGORITHMS.join(', ')})`);
    }
    if (new Set(algorithms).size !== algorithms.length) throw new AuthConfigError('auth.algorithms', 'duplicate algorithm');
    this.realm = o.realm;
    this.#realmWire = toWire(o.realm);
    this.proxy = o.proxy ?? false;
    this.algorithms = Object.freeze([...algorithms]);
    this.#lookup = o.credentials;
    this.#nonces = new NonceManager({ secret: o.secret, nonceTtlMs: o.nonceTtlMs, maxClockSkewMs: o.maxClockSkewMs, now: o.now });
    this.#counts = o.replayProtection === true
      ? new NonceCountTracker({ retainMs: this.#nonces.ttlMs + this.#nonces.maxClockSkewMs, now: o.now })
      : null;
    this.#opaque = createHmac('sha256', secretBytes(o.secret)).update('sipfleet digest opaque\0').update(this.#realmWire, 'latin1').digest().subarray(0, 12).toString('base64url');
  }

  /**
   * Checks the request's Authorization (Proxy-Authorization when proxy) for this realm. ok with the username, or a
   * 401/407 challenge to send: stale=true when the nonce is only out of date (or its count reused) and the digest
   * is right, a fresh challenge otherwise. Unknown users and wrong passwords get the same answer.
   *
   * Throws DigestParseError (status 400) for a malformed header. ACK and CANCEL cannot be challenged (RFC 3261
   * §22.1): do not send a challenge for them.
   */
  async authenticate(req: SipRequest): Promise<AuthResult> {
    const what = this.proxy ? 'Proxy-Authorization' : 'Authorization';
    const values = req.getAll(what);
    if (values.length === 0) return this.#fail(req, 'missing');
    const all = findDigestCredentials(values, this.#realmWire, what);
    const creds = all.find((c) => this.#algorithm(c) !== null) ?? all[0];
    if (creds === undefined) return this.#fail(req, 'realm');
    const algorithm = this.#algorithm(creds);
    if (algorithm === null) return this.#fail(req, 'algorithm');
    if (creds.qop !== null && creds.qop.toLowerCase() !== 'auth') return this.#fail(req, 'qop');
    if (!sameUri(creds.uri, req)) return this.#fail(req, 'uri');
    if (creds.opaque !== null && creds.opaque !== this.#opaque) return this.#fail(req, 'opaque');
    const nonce = this.#nonces.verify(creds.nonce, this.#realmWire);
    if (nonce === 'invalid') return this.#fail(req, 'nonce');

    const username = fromWire(creds.username);
    const stored = await this.#lookup(username, this.realm);
    let ha1 = stored === null ? undefined : storedHa1(algorithm, stored);
    if (ha1 === undefined && stored !== null && stored.password !== undefined) {
      ha1 = computeHa1(algorithm, username, this.realm, stored.password);
    }
    // No user, or nothing to check against: do the same work as for a wrong password, and answer the same.
    const known = ha1 !== undefined;
    const expected = computeDigestResponse({
      algorithm,
      ha1: ha1 ?? randomBytes(32).toString('hex'),
      nonce: fromWire(creds.nonce),
      method: req.method,
      uri: fromWire(creds.uri),
      qop: creds.qop === null ? null : creds.qop.toLowerCase(),
      nc: creds.nc,
      cnonce: creds.cnonce === null ? null : fromWire(creds.cnonce),
    });
    if (!sameHex(expected, creds.response) || !known) return this.#fail(req, 'credentials');
    // Only now: stale=true tells the client its password was right (RFC 2617 §3.2.1), so it may retry silently.
    if (nonce === 'stale') return this.#fail(req, 'stale', true);
    if (this.#counts !== null && creds.nc !== null && !this.#counts.use(creds.nonce, parseInt(creds.nc, 16))) {
      return this.#fail(req, 'replay', true);
    }
    return { ok: true, username, algorithm };
  }

  /** A 401 (407 when proxy) to `req` with a fresh nonce and one WWW-Authenticate (Proxy-Authenticate) per algorithm. */
  challenge(req: SipRequest, stale = false): SipResponse {
    const res = createResponse(req, this.proxy ? 407 : 401, undefined, newTag());
    const header = this.proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate';
    // One nonce for all: it is not bound to an algorithm, and the client answers only one of the challenges.
    const nonce = this.#nonces.issue(this.#realmWire);
    for (const algorithm of this.algorithms) {
      res.append(header, formatDigestChallenge({ realm: this.#realmWire, nonce, opaque: this.#opaque, algorithm, qop: ['auth'], stale }));
    }
    return res;
  }

  #fail(req: SipRequest, reason: AuthFailure, stale = false): AuthResult {
    return { ok: false, reason, challenge: this.challenge(req, stale) };
  }

  /** The credentials' algorithm when we offer it (absent means MD5), else null. */
  #algorithm(c: DigestCredentials): DigestAlgorithm | null {
    const a = digestAlgorithm(c.algorithm ?? 'MD5');
    return a !== null && this.algorithms.includes(a) ? a : null;
  }
}

/** Whether the digest-uri names the Request-URI: the same text, or equal as RFC 3261 §19.1.4 URIs. */
function sameUri(digestUri: string, req: SipRequest): boolean {
  if (digestUri === req.uriText) return true;
  try {
    return uriEquals(parseUri(digestUri), req.uri);
  } catch (err) {
    if (err instanceof SipError) return false;
    throw err;
  }
}
