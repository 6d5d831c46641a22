/**
 * Authorization / Proxy-Authorization parsing and WWW-Authenticate / Proxy-Authenticate formatting (RFC 3261
 * §20.7, §20.27, §20.28, §25.1; RFC 2617 §3.2; RFC 7235 §2.1 for several entries in one header field).
 *
 * Everything here is header text as SipMessage stores it: latin1, one character per byte, so a UTF-8 username
 * shows as its bytes. DigestAuthenticator converts at its boundary; this module only deals with syntax.
 */
import { DigestParseError } from './errors.ts';

/** One credentials or challenge entry: `Digest realm="x", nonce="y"` or `Basic QWxhZGRpbg==`. */
export interface AuthEntry {
  /** The scheme as written (`Digest`, `digest`): compare case-insensitively. */
  scheme: string;
  /** Parameters, names lower-cased, values unquoted with their quoted-pairs resolved. */
  params: Map<string, string>;
  /** The token68 form (`Basic QWxhZGRpbg==`) when the entry has one instead of parameters. */
  token68: string | null;
}

/** The parameters of a Digest response (RFC 3261 §25.1 `dig-resp`), values unquoted. */
export interface DigestCredentials {
  username: string;
  realm: string;
  nonce: string;
  uri: string;
  response: string;
  /** As written; null when absent (which means MD5, RFC 2617 §3.2.2). */
  algorithm: string | null;
  /** `auth` for RFC 2617 clients; null for RFC 2069 ones, which then send neither cnonce nor nc. */
  qop: string | null;
  cnonce: string | null;
  /** Nonce count, 8 hex digits as written. */
  nc: string | null;
  opaque: string | null;
  /** Every parameter, extensions included. */
  params: Map<string, string>;
}

export interface DigestChallenge {
  realm: string;
  nonce: string;
  opaque?: string;
  /** Written as a token (`algorithm=SHA-256`); omitted when undefined. */
  algorithm?: string;
  /** Quality-of-protection options, written as one quoted list (`qop="auth"`). */
  qop?: readonly string[];
  /** Written as `stale=true` when true, omitted otherwise. */
  stale?: boolean;
  /** Space-separated URIs of the protection space (RFC 2617 §3.2.1); omitted when undefined. */
  domain?: string;
}

// token (RFC 3261 §25.1) and token68 (RFC 7235 §2.1) characters, as bits of one table.
const C_TOKEN = 1;
const C_TOKEN68 = 2;
const CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") CHAR[c.charCodeAt(0)]! |= C_TOKEN;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/') CHAR[c.charCodeAt(0)]! |= C_TOKEN68;

function is(c: number, bit: number): boolean {
  return c < 128 && (CHAR[c]! & bit) !== 0;
}

function scan(s: string, i: number, bit: number): number {
  while (i < s.length && is(s.charCodeAt(i), bit)) i++;
  return i;
}

function skipWs(s: string, i: number): number {
  while (i < s.length && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
  return i;
}

/** A control character other than HTAB: never valid in a header value, quoted or not. */
function isCtl(c: number): boolean {
  return (c < 0x20 && c !== 0x09) || c === 0x7f;
}

function near(s: string, i: number): string {
  const rest = s.slice(i, i + 20);
  return i >= s.length ? 'end of header' : `"${rest}${s.length - i > 20 ? '…' : ''}"`;
}

/**
 * The quoted string opening at s[i] (a '"'): its value with quoted-pairs resolved, and the index just past the
 * closing quote.
 */
function quoted(s: string, i: number, name: string, what: string): [string, number] {
  let out = '';
  let from = i + 1;
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 0x22 /* " */) return [out + s.slice(from, j), j + 1];
    if (c === 0x5c /* \ */) {
      // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): anything but CR and LF, taken literally
      const next = s.charCodeAt(j + 1);
      if (j + 1 >= s.length || next === 0x0d || next === 0x0a) break;
      if (isCtl(next)) throw new DigestParseError(`Control character in the value of "${name}" in ${what}`);
      out += s.slice(from, j);
      from = j + 1;
      j++;
    } else if (isCtl(c)) {
      throw new DigestParseError(`Control character in the value of "${name}" in ${what}`);
    }
  }
  throw new DigestParseError(`Unterminated quoted string in the value of "${name}" in ${what}`);
}

/**
 * Parses an Authorization, Proxy-Authorization, WWW-Authenticate or Proxy-Authenticate value into its entries.
 * Several entries may share one field (`Digest a=1, b=2, Digest a=3`): a new one starts at a token followed by
 * whitespace and something other than '=' (RFC 7235 §2.1). Throws DigestParseError (400) naming the fault.
 */
export function parseAuthHeader(value: string, what = 'Authorization'): AuthEntry[] {
  const s = value;
  const n = s.length;
  const out: AuthEntry[] = [];
  let cur: AuthEntry | null = null;
  let i = skipWs(s, 0);
  if (i === n) throw new DigestParseError(`Empty ${what} header`);
  for (;;) {
    const start = i;
    const tokEnd = scan(s, i, C_TOKEN);
    if (tokEnd === start) {
      throw new DigestParseError(`Expected ${cur === null ? 'an auth scheme' : 'a parameter name'} at ${near(s, start)} in ${what}`);
    }
    i = skipWs(s, tokEnd);
    if (cur !== null && s.charCodeAt(i) === 0x3d /* = */) {
      if (cur.token68 !== null) throw new DigestParseError(`Parameter after a token68 value in ${what}`);
      i = param(s, start, tokEnd, i, cur, what);
    } else {
      // a new entry: the scheme, then nothing, a token68, or its first parameter
      if (cur === null && s.charCodeAt(i) === 0x3d) throw new DigestParseError(`Missing auth scheme before "${s.slice(start, tokEnd)}" in ${what}`);
      if (i === tokEnd && i < n && s.charCodeAt(i) !== 0x2c) {
        throw new DigestParseError(`Expected whitespace after the auth scheme at ${near(s, i)} in ${what}`);
      }
      cur = { scheme: s.slice(start, tokEnd), params: new Map(), token68: null };
      out.push(cur);
      if (i < n && s.charCodeAt(i) !== 0x2c /* , */) {
        const t68End = scan(s, i, C_TOKEN68);
        let eq = t68End;
        while (s.charCodeAt(eq) === 0x3d) eq++;
        const after = skipWs(s, eq);
        // Digest has no token68 form: "Digest username=, …" is a parameter without its value, not a token68
        const digest = tokEnd - start === 6 && s.slice(start, tokEnd).toLowerCase() === 'digest';
        if (!digest && t68End > i && (after >= n || s.charCodeAt(after) === 0x2c)) {
          cur.token68 = s.slice(i, eq);
          i = after;
        } else {
          const nameStart = i;
          const nameEnd = scan(s, i, C_TOKEN);
          if (nameEnd === nameStart) throw new DigestParseError(`Expected a parameter name at ${near(s, nameStart)} in ${what}`);
          i = skipWs(s, nameEnd);
          if (s.charCodeAt(i) !== 0x3d) throw new DigestParseError(`Expected "=" after "${s.slice(nameStart, nameEnd)}" in ${what}`);
          i = param(s, nameStart, nameEnd, i, cur, what);
        }
      }
    }
    // i is at the end or at the ',' that separates list elements
    if (i >= n) return out;
    i = skipWs(s, i + 1);
    if (i >= n || s.charCodeAt(i) === 0x2c) throw new DigestParseError(`Empty element in ${what}`);
  }
}

/**
 * Parses `= value` (s[eqAt] is the '=') of the parameter named s[nameStart, nameEnd) into entry; returns the index
 * of the ',' after it or the end.
 */
function param(s: string, nameStart: number, nameEnd: number, eqAt: number, entry: AuthEntry, what: string): number {
  const name = s.slice(nameStart, nameEnd).toLowerCase();
  let i = skipWs(s, eqAt + 1);
  let value: string;
  if (s.charCodeAt(i) === 0x22) {
    [value, i] = quoted(s, i, name, what);
  } else {
    // RFC 3261 wants a token here, but clients write unquoted URIs and the like: take any run of visible
    // characters and let the meaning checks judge it.
    const vs = i;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x2c || c === 0x22) break;
      if (isCtl(c)) throw new DigestParseError(`Control character in the value of "${name}" in ${what}`);
      i++;
    }
    if (i === vs) throw new DigestParseError(`Missing value for "${name}" in ${what}`);
    value = s.slice(vs, i);
  }
  i = skipWs(s, i);
  if (i < s.length && s.charCodeAt(i) !== 0x2c) throw new DigestParseError(`Unexpected ${near(s, i)} after the value of "${name}" in ${what}`);
  if (entry.params.has(name)) throw new DigestParseError(`Duplicate parameter "${name}" in ${what}`);
  entry.params.set(name, value);
  return i;
}

const LHEX8 = /^[0-9a-fA-F]{8}$/;

/**
 * The Digest response of a parsed entry, checked for the parameters RFC 3261 §25.1 / RFC 2617 §3.2.2 require
 * (username, realm, nonce, uri, response; cnonce and an 8-hex-digit nc when qop is given). Throws DigestParseError.
 */
export function digestCredentials(entry: AuthEntry, what = 'Authorization'): DigestCredentials {
  if (entry.scheme.toLowerCase() !== 'digest') throw new DigestParseError(`Not a Digest scheme: ${entry.scheme} in ${what}`);
  if (entry.token68 !== null) throw new DigestParseError(`Digest credentials without parameters in ${what}`);
  const p = entry.params;
  const required = (name: string): string => {
    const v = p.get(name);
    if (v === undefined) throw new DigestParseError(`Missing "${name}" in ${what}`);
    return v;
  };
  const creds: DigestCredentials = {
    username: required('username'),
    realm: required('realm'),
    nonce: required('nonce'),
    uri: required('uri'),
    response: required('response'),
    algorithm: p.get('algorithm') ?? null,
    qop: p.get('qop') ?? null,
    cnonce: p.get('cnonce') ?? null,
    nc: p.get('nc') ?? null,
    opaque: p.get('opaque') ?? null,
    params: p,
  };
  if (creds.qop !== null) {
    if (creds.cnonce === null) throw new DigestParseError(`Missing "cnonce" (required with qop) in ${what}`);
    if (creds.nc === null) throw new DigestParseError(`Missing "nc" (required with qop) in ${what}`);
    if (!LHEX8.test(creds.nc)) throw new DigestParseError(`Bad "nc" (8 hex digits expected): "${creds.nc}" in ${what}`);
  }
  return creds;
}

/**
 * The Digest credentials for `realm` among header values (every Authorization or Proxy-Authorization field of a
 * request), in order. Values of other schemes and Digest entries for other realms are skipped (RFC 3261 §22.3: a
 * proxy must not consume another realm's credentials), but every value must parse, and a Digest entry without a
 * realm is an error since it cannot be told apart from ours. Throws DigestParseError.
 */
export function findDigestCredentials(values: readonly string[], realm: string, what = 'Authorization'): DigestCredentials[] {
  const out: DigestCredentials[] = [];
  for (const v of values) {
    for (const entry of parseAuthHeader(v, what)) {
      if (entry.scheme.toLowerCase() !== 'digest') continue;
      const r = entry.params.get('realm');
      if (r === undefined) throw new DigestParseError(`Missing "realm" in ${what}`);
      if (r === realm) out.push(digestCredentials(entry, what));
    }
  }
  return out;
}

/** A quoted-string holding s; throws RangeError on characters a header cannot carry (CR, LF, controls, > 0xFF). */
export function quoteString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isCtl(c) || c > 0xff) throw new RangeError(`Character U+${c.toString(16).padStart(4, '0')} cannot be written in a quoted string`);
  }
  return '"' + s.replace(/(["\\])/g, '\\$1') + '"';
}

function tokenValue(name: string, s: string): string {
  if (s.length === 0 || scan(s, 0, C_TOKEN) !== s.length) throw new RangeError(`${name} must be a token: "${s}"`);
  return s;
}

/** A WWW-Authenticate / Proxy-Authenticate value: `Digest realm="…", nonce="…", opaque="…", algorithm=…, qop="auth"`. */
export function formatDigestChallenge(c: DigestChallenge): string {
  let out = `Digest realm=${quoteString(c.realm)}`;
  if (c.domain !== undefined) out += `, domain=${quoteString(c.domain)}`;
  out += `, nonce=${quoteString(c.nonce)}`;
  if (c.opaque !== undefined) out += `, opaque=${quoteString(c.opaque)}`;
  if (c.algorithm !== undefined) out += `, algorithm=${tokenValue('algorithm', c.algorithm)}`;
  if (c.qop !== undefined && c.qop.length > 0) out += `, qop=${quoteString(c.qop.map((q) => tokenValue('qop', q)).join(','))}`;
  if (c.stale === true) out += ', stale=true';
  return out;
}
