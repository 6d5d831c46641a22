/**
 * Digest credentials. Stores keep HA1 = H(username ":" realm ":" password) for MD5 (RFC 2617) and SHA-256
 * (RFC 8760), never the password: HA1 is all a digest server needs, and a leaked HA1 is good for one realm only.
 */
import { createHash } from 'node:crypto';
import { StoreError } from './errors.ts';

export interface Credential {
  username: string;
  realm: string;
  /** Lowercase hex MD5 HA1. */
  ha1Md5?: string;
  /** Lowercase hex SHA-256 HA1. */
  ha1Sha256?: string;
  /** Only from a backend provisioned with plain passwords elsewhere; the stores here never write it. */
  password?: string;
}

/** HA1 values provisioned from elsewhere (e.g. migrated from another server), when the password is unknown. */
export interface Ha1Values {
  ha1Md5?: string;
  ha1Sha256?: string;
}

export interface CredentialStore {
  /** The credential of username in realm (both compared exactly), or null. */
  get(username: string, realm: string): Promise<Credential | null>;
  /** Creates or replaces the credential: from a password (both HA1s are stored, not it) or from HA1 values. */
  set(username: string, realm: string, secret: string | Ha1Values): Promise<void>;
  /** True if a credential was deleted. */
  delete(username: string, realm: string): Promise<boolean>;
}

export type DigestAlgorithm = 'MD5' | 'SHA-256';

/** HA1 for the plain (non "-sess") algorithms: H(username ":" realm ":" password), UTF-8, lowercase hex. */
export function computeHa1(algorithm: DigestAlgorithm, username: string, realm: string, password: string): string {
  return createHash(algorithm === 'MD5' ? 'md5' : 'sha256')
    .update(`${username}:${realm}:${password}`, 'utf8')
    .digest('hex');
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

/** What set() stores: validated, lowercase HA1 values (at least one). */
export function ha1sFor(username: string, realm: string, secret: string | Ha1Values): Ha1Values {
  if (typeof username !== 'string' || username === '') throw new StoreError('STORE_INVALID', 'credential username must be a non-empty string');
  if (typeof realm !== 'string') throw new StoreError('STORE_INVALID', 'credential realm must be a string');
  if (typeof secret === 'string') {
    return { ha1Md5: computeHa1('MD5', username, realm, secret), ha1Sha256: computeHa1('SHA-256', username, realm, secret) };
  }
  const md5 = secret?.ha1Md5?.toLowerCase();
  const sha = secret?.ha1Sha256?.toLowerCase();
  if (md5 === undefined && sha === undefined) throw new StoreError('STORE_INVALID', 'credential needs a password or an HA1 value');
  if (md5 !== undefined && !HEX32.test(md5)) throw new StoreError('STORE_INVALID', 'ha1Md5 must be 32 hex digits');
  if (sha !== undefined && !HEX64.test(sha)) throw new StoreError('STORE_INVALID', 'ha1Sha256 must be 64 hex digits');
  const out: Ha1Values = {};
  if (md5 !== undefined) out.ha1Md5 = md5;
  if (sha !== undefined) out.ha1Sha256 = sha;
  return out;
}

/** A Credential without absent fields, from nullable columns. */
export function credentialFrom(username: string, realm: string, md5: string | null, sha: string | null): Credential {
  const c: Credential = { username, realm };
  if (md5 !== null) c.ha1Md5 = md5;
  if (sha !== null) c.ha1Sha256 = sha;
  return c;
}
