import { SipParseError } from '../errors.ts';

/** URI parameters, names lower-cased; a flag parameter (`;lr`) has the value null. */
export type Params = Map<string, string | null>;

export interface SipUri {
  readonly scheme: 'sip' | 'sips';
  user: string | null;
  password: string | null;
  /** Host as written; an IPv6 reference keeps its brackets. */
  host: string;
  port: number | null;
  params: Params;
  /** Header part (`?a=b&c=d`), names as written, values still escaped. */
  headers: Array<[string, string]>;
}

export interface TelUri {
  readonly scheme: 'tel';
  number: string;
  params: Params;
}

/** Any other absoluteURI: kept whole, so it can be carried and answered (416) but not routed. */
export interface OtherUri {
  readonly scheme: string;
  raw: string;
}

export type Uri = SipUri | TelUri | OtherUri;

export function isSipUri(uri: Uri): uri is SipUri {
  return uri.scheme === 'sip' || uri.scheme === 'sips';
}

export function isTelUri(uri: Uri): uri is TelUri {
  return uri.scheme === 'tel';
}

// Character classes of RFC 3261 §25.1, as bits of one table (parsing is on the receive path of every message:
// table lookups instead of regular expressions).
const C_ALNUM = 1; // A-Z a-z 0-9
const C_MARK = 2; // - _ . ! ~ * ' ( )          (unreserved = alphanum / mark)
const C_USER = 4; // & = + $ , ; ? /           (user-unreserved)
const C_PASS = 8; // & = + $ ,                 (password extras)
const C_PARAM = 16; // [ ] / : & + $           (param-unreserved)
const C_HEX = 32; // 0-9 A-F a-f
const C_HOST = 64; // A-Z a-z 0-9 . -
const C_ILLEGAL = 128; // whitespace (as /\s/ in latin1), < > "
const CHAR = new Uint8Array(256);
function classify(chars: string, bit: number): void {
  for (let i = 0; i < chars.length; i++) CHAR[chars.charCodeAt(i)]! |= bit;
}
const ALNUM_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
classify(ALNUM_CHARS, C_ALNUM | C_HOST);
classify("-_.!~*'()", C_MARK);
classify('&=+$,;?/', C_USER);
classify('&=+$,', C_PASS);
classify('[]/:&+$', C_PARAM);
classify('0123456789ABCDEFabcdef', C_HEX);
classify('.-', C_HOST);
classify('\t\n\v\f\r \u00a0<>"', C_ILLEGAL);

const UNRESERVED = C_ALNUM | C_MARK;
const USER_MASK = UNRESERVED | C_USER;
const PASSWORD_MASK = UNRESERVED | C_PASS;
const PARAM_MASK = UNRESERVED | C_PARAM;

function isHex(c: number): boolean {
  return c < 256 && (CHAR[c]! & C_HEX) !== 0;
}

/** Whether text[start, end) is made of characters in `mask` and %HH escapes. */
function escapedRun(text: string, start: number, end: number, mask: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25 /* % */) {
      if (i + 2 >= end) return false;
      if (!isHex(text.charCodeAt(i + 1)) || !isHex(text.charCodeAt(i + 2))) return false;
      i += 2;
    } else if (c > 255 || (CHAR[c]! & mask) === 0) {
      return false;
    }
  }
  return true;
}

/** Any whitespace, '<', '>' or '"' (characters no URI may hold, and that would break the header around it). */
function hasIllegal(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 256 ? (CHAR[c]! & C_ILLEGAL) !== 0 : /\s/.test(text[i]!)) return true;
  }
  return false;
}

/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
function isScheme(text: string, end: number): boolean {
  const first = text.charCodeAt(0);
  if (first > 255 || (CHAR[first]! & C_ALNUM) === 0 || (first >= 0x30 && first <= 0x39)) return false;
  for (let i = 1; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b || c === 0x2d || c === 0x2e) continue;
    if (c > 255 || (CHAR[c]! & C_ALNUM) === 0) return false;
  }
  return true;
}

function isAlnum(c: number): boolean {
  return c < 256 && (CHAR[c]! & C_ALNUM) !== 0;
}

/** host = hostname / IPv4address / IPv6reference, loosely: "[hex : .]", a name of alnum . - that starts and
 * ends with alnum (one trailing dot allowed), or digits and dots. */
function isHost(text: string, start: number, end: number): boolean {
  if (end <= start) return false;
  if (text.charCodeAt(start) === 0x5b /* [ */) {
    if (end - start < 3 || text.charCodeAt(end - 1) !== 0x5d) return false;
    for (let i = start + 1; i < end - 1; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x3a && c !== 0x2e && !isHex(c)) return false;
    }
    return true;
  }
  let digitsAndDots = true;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c > 255 || (CHAR[c]! & C_HOST) === 0) return false;
    if (c !== 0x2e && (c < 0x30 || c > 0x39)) digitsAndDots = false;
  }
  if (digitsAndDots) return true;
  const last = text.charCodeAt(end - 1) === 0x2e && end - 1 > start ? end - 2 : end - 1;
  return isAlnum(text.charCodeAt(start)) && isAlnum(text.charCodeAt(last));
}

function uriError(text: string, why: string): SipParseError {
  return new SipParseError(`Bad URI "${text.length > 80 ? text.slice(0, 80) + '…' : text}": ${why}`, 400, 'SIP_BAD_URI');
}

/** Parses `a=b;c` (after a ';') up to `end` into params; throws on an empty or malformed name or value. */
function parseUriParams(text: string, start: number, end: number, into: Params): void {
  // callers only come here after a ';': an empty text is an empty parameter name, as in "sip:host;"
  let pos = start;
  for (;;) {
    let semi = text.indexOf(';', pos);
    if (semi === -1 || semi > end) semi = end;
    let eq = text.indexOf('=', pos);
    if (eq === -1 || eq > semi) eq = -1;
    const nameEnd = eq === -1 ? semi : eq;
    if (nameEnd === pos || !escapedRun(text, pos, nameEnd, PARAM_MASK)) throw uriError(text, `bad parameter "${text.slice(pos, semi)}"`);
    if (eq !== -1 && !escapedRun(text, eq + 1, semi, PARAM_MASK)) throw uriError(text, `bad parameter value "${text.slice(pos, semi)}"`);
    into.set(text.slice(pos, nameEnd).toLowerCase(), eq === -1 ? null : text.slice(eq + 1, semi));
    if (semi >= end) return;
    pos = semi + 1;
  }
}

export function parseUri(text: string): Uri {
  const colon = text.indexOf(':');
  if (colon <= 0) throw uriError(text, 'no scheme');
  if (!isScheme(text, colon)) throw uriError(text, 'bad scheme');
  // the usual spellings without allocating a lower-cased copy; parseSipUri checks every character itself
  const c0 = text.charCodeAt(0) | 0x20;
  if (c0 === 0x73 /* s */ && (colon === 3 || colon === 4) && (text.charCodeAt(1) | 0x20) === 0x69 && (text.charCodeAt(2) | 0x20) === 0x70) {
    if (colon === 3) return parseSipUri(text, 'sip', 4);
    if ((text.charCodeAt(3) | 0x20) === 0x73) return parseSipUri(text, 'sips', 5);
  }
  if (hasIllegal(text, 0)) throw uriError(text, 'illegal character');
  const scheme = text.slice(0, colon).toLowerCase();
  if (scheme === 'tel') return parseTelUri(text, colon + 1);
  if (colon + 1 >= text.length) throw uriError(text, 'empty after scheme');
  return { scheme, raw: text };
}

function parseSipUri(text: string, scheme: 'sip' | 'sips', start: number): SipUri {
  let user: string | null = null;
  let password: string | null = null;
  let pos = start;
  const n = text.length;
  const at = text.indexOf('@', start);
  if (at !== -1) {
    let pc = text.indexOf(':', start);
    if (pc > at) pc = -1;
    const userEnd = pc === -1 ? at : pc;
    if (pc !== -1) {
      if (!escapedRun(text, pc + 1, at, PASSWORD_MASK)) throw uriError(text, 'bad password');
      password = text.slice(pc + 1, at);
    }
    if (userEnd === start || !escapedRun(text, start, userEnd, USER_MASK)) throw uriError(text, 'bad user part');
    user = text.slice(start, userEnd);
    pos = at + 1;
  }
  let hostEnd: number;
  if (text.charCodeAt(pos) === 0x5b /* [ */) {
    const close = text.indexOf(']', pos);
    if (close === -1) throw uriError(text, 'unterminated IPv6 reference');
    hostEnd = close + 1;
  } else {
    hostEnd = pos;
    while (hostEnd < n) {
      const c = text.charCodeAt(hostEnd);
      if (c === 0x3a /* : */ || c === 0x3b /* ; */ || c === 0x3f /* ? */) break;
      hostEnd++;
    }
  }
  if (!isHost(text, pos, hostEnd)) throw uriError(text, 'bad host');
  const host = text.slice(pos, hostEnd);
  pos = hostEnd;
  let port: number | null = null;
  if (text.charCodeAt(pos) === 0x3a) {
    let end = pos + 1;
    let value = 0;
    while (end < n) {
      const c = text.charCodeAt(end);
      if (c < 0x30 || c > 0x39) break;
      value = value * 10 + (c - 0x30);
      end++;
    }
    if (end === pos + 1 || end - pos - 1 > 5 || value > 65535) throw uriError(text, 'bad port');
    port = value;
    pos = end;
  }
  const params: Params = new Map();
  const headers: Array<[string, string]> = [];
  let q = text.indexOf('?', pos);
  if (q === -1) q = n;
  if (pos < q) {
    if (text.charCodeAt(pos) !== 0x3b) throw uriError(text, 'unexpected text after host');
    parseUriParams(text, pos + 1, q, params);
  }
  if (q < n) {
    // user, password, host, port and parameters were checked character by character above; the header part
    // (names and values as written, escapes kept) only must not hold whitespace, '<', '>' or '"'
    if (hasIllegal(text, q + 1)) throw uriError(text, 'illegal character');
    for (const h of text.slice(q + 1).split('&')) {
      const eq = h.indexOf('=');
      if (eq <= 0) throw uriError(text, `bad header "${h}"`);
      headers.push([h.slice(0, eq), h.slice(eq + 1)]);
    }
  }
  return { scheme, user, password, host: lowerAscii(host), port, params, headers };
}

/** toLowerCase, skipped when there is nothing to lower (the usual case for hosts). */
function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}

function parseTelUri(text: string, start: number): TelUri {
  const semi = text.indexOf(';', start);
  const number = semi === -1 ? text.slice(start) : text.slice(start, semi);
  if (!/^\+?[0-9A-Fa-f*#().\-]+$/.test(number)) throw uriError(text, 'bad telephone number');
  const params: Params = new Map();
  if (semi !== -1) parseUriParams(text, semi + 1, text.length, params);
  return { scheme: 'tel', number, params };
}

function formatParams(params: Params): string {
  let out = '';
  for (const [k, v] of params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}

export function formatUri(uri: Uri): string {
  if (isSipUri(uri)) {
    let out = uri.scheme + ':';
    if (uri.user !== null) out += uri.user + (uri.password !== null ? ':' + uri.password : '') + '@';
    out += uri.host;
    if (uri.port !== null) out += ':' + uri.port;
    out += formatParams(uri.params);
    if (uri.headers.length > 0) out += '?' + uri.headers.map(([k, v]) => `${k}=${v}`).join('&');
    return out;
  }
  if (isTelUri(uri)) return 'tel:' + uri.number + formatParams(uri.params);
  return (uri as OtherUri).raw;
}

/** A copy that can be changed without touching the original. */
export function cloneUri<T extends Uri>(uri: T): T {
  if (isSipUri(uri)) return { ...uri, params: new Map(uri.params), headers: uri.headers.slice() } as T;
  if (isTelUri(uri)) return { ...uri, params: new Map(uri.params) } as T;
  return { ...uri };
}

// RFC 3261 §19.1.4: characters outside RFC 2396's reserved set are equivalent to their %HH form. '%' itself is
// kept escaped too, so that "%253B" (the text "%3B") never compares equal to "%3B" (the character ';').
const KEEP_ESCAPED = ';/?:@&=+$,%';

function normalizeEscapes(s: string): string {
  if (!s.includes('%')) return s;
  return s.replace(/%([0-9A-Fa-f]{2})/g, (m: string, h: string) => {
    const c = String.fromCharCode(parseInt(h, 16));
    return KEEP_ESCAPED.includes(c) ? m.toUpperCase() : c;
  });
}

const DEFAULT_PARAMS = new Set(['user', 'ttl', 'method', 'maddr']);

/** Parameters keyed by their escape-normalised, lower-cased names (`;%6C%72` is `;lr`). */
function normalizedParams(params: Params): Params {
  let plain = true;
  for (const k of params.keys()) {
    if (k.includes('%') || k !== k.toLowerCase()) {
      plain = false;
      break;
    }
  }
  if (plain) return params;
  const out: Params = new Map();
  for (const [k, v] of params) out.set(normalizeEscapes(k).toLowerCase(), v);
  return out;
}

function headerSet(headers: Array<[string, string]>): string[] {
  return headers.map(([k, v]) => normalizeEscapes(k).toLowerCase() + '=' + normalizeEscapes(v).toLowerCase()).sort();
}

/**
 * URI equality per RFC 3261 §19.1.4: scheme, userinfo (case-sensitive, escapes normalised), host
 * (case-insensitive), port as written, the user/ttl/method/maddr/transport parameters when either side has them,
 * other parameters only when both do, and the header component (in any order) always.
 */
export function uriEquals(a: Uri, b: Uri): boolean {
  if (a.scheme !== b.scheme) return false;
  if (isSipUri(a) && isSipUri(b)) {
    if ((a.user === null) !== (b.user === null)) return false;
    if (normalizeEscapes(a.user ?? '') !== normalizeEscapes(b.user ?? '')) return false;
    if ((a.password === null) !== (b.password === null)) return false;
    if (normalizeEscapes(a.password ?? '') !== normalizeEscapes(b.password ?? '')) return false;
    if (a.host.toLowerCase() !== b.host.toLowerCase() || a.port !== b.port) return false;
    const ap = normalizedParams(a.params);
    const bp = normalizedParams(b.params);
    for (const name of new Set([...ap.keys(), ...bp.keys()])) {
      const av = ap.get(name);
      const bv = bp.get(name);
      if (av === undefined || bv === undefined) {
        if (DEFAULT_PARAMS.has(name) || name === 'transport') return false;
        continue;
      }
      if (normalizeEscapes(av ?? '').toLowerCase() !== normalizeEscapes(bv ?? '').toLowerCase()) return false;
    }
    if (a.headers.length !== b.headers.length) return false;
    if (a.headers.length > 0) {
      const ah = headerSet(a.headers);
      const bh = headerSet(b.headers);
      for (let i = 0; i < ah.length; i++) if (ah[i] !== bh[i]) return false;
    }
    return true;
  }
  return formatUri(a).toLowerCase() === formatUri(b).toLowerCase();
}
