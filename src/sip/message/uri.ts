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

const SCHEME_RE = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?|[0-9.]+)$/;
// unreserved / escaped / user-unreserved (RFC 3261 §25.1), plus '%' checked separately
const USER_RE = /^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$/;
const PASSWORD_RE = /^(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*$/;
const PARAM_RE = /^(?:[A-Za-z0-9\-_.!~*'()[\]/:&+$]|%[0-9A-Fa-f]{2})+$/;

function uriError(text: string, why: string): SipParseError {
  return new SipParseError(`Bad URI "${text.length > 80 ? text.slice(0, 80) + '…' : text}": ${why}`, 400, 'SIP_BAD_URI');
}

/** Parses `;a=b;c` (the leading ';' already removed) into params; throws on an empty or malformed name. */
function parseUriParams(text: string, whole: string, into: Params): void {
  // callers only come here after a ';': an empty text is an empty parameter name, as in "sip:host;"
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? null : part.slice(eq + 1);
    if (!PARAM_RE.test(name)) throw uriError(whole, `bad parameter "${part}"`);
    if (value !== null && value.length > 0 && !PARAM_RE.test(value)) throw uriError(whole, `bad parameter value "${part}"`);
    into.set(name.toLowerCase(), value);
  }
}

export function parseUri(text: string): Uri {
  const colon = text.indexOf(':');
  if (colon <= 0) throw uriError(text, 'no scheme');
  const scheme = text.slice(0, colon).toLowerCase();
  if (!SCHEME_RE.test(scheme)) throw uriError(text, 'bad scheme');
  if (/[\s<>"]/.test(text)) throw uriError(text, 'illegal character');
  if (scheme === 'sip' || scheme === 'sips') return parseSipUri(text, scheme, colon + 1);
  if (scheme === 'tel') return parseTelUri(text, colon + 1);
  if (colon + 1 >= text.length) throw uriError(text, 'empty after scheme');
  return { scheme, raw: text };
}

function parseSipUri(text: string, scheme: 'sip' | 'sips', start: number): SipUri {
  let user: string | null = null;
  let password: string | null = null;
  let pos = start;
  const at = text.indexOf('@', start);
  if (at !== -1) {
    const userinfo = text.slice(start, at);
    const pc = userinfo.indexOf(':');
    user = pc === -1 ? userinfo : userinfo.slice(0, pc);
    if (pc !== -1) {
      password = userinfo.slice(pc + 1);
      if (!PASSWORD_RE.test(password)) throw uriError(text, 'bad password');
    }
    if (user.length === 0 || !USER_RE.test(user)) throw uriError(text, 'bad user part');
    pos = at + 1;
  }
  let hostEnd: number;
  let host: string;
  if (text.charCodeAt(pos) === 0x5b /* [ */) {
    const close = text.indexOf(']', pos);
    if (close === -1) throw uriError(text, 'unterminated IPv6 reference');
    hostEnd = close + 1;
  } else {
    hostEnd = pos;
    while (hostEnd < text.length) {
      const c = text.charCodeAt(hostEnd);
      if (c === 0x3a /* : */ || c === 0x3b /* ; */ || c === 0x3f /* ? */) break;
      hostEnd++;
    }
  }
  host = text.slice(pos, hostEnd);
  if (host.length === 0 || !HOST_RE.test(host)) throw uriError(text, 'bad host');
  pos = hostEnd;
  let port: number | null = null;
  if (text.charCodeAt(pos) === 0x3a) {
    let end = pos + 1;
    while (end < text.length && text.charCodeAt(end) >= 0x30 && text.charCodeAt(end) <= 0x39) end++;
    const digits = text.slice(pos + 1, end);
    if (digits.length === 0 || digits.length > 5 || Number(digits) > 65535) throw uriError(text, 'bad port');
    port = Number(digits);
    pos = end;
  }
  const params: Params = new Map();
  const headers: Array<[string, string]> = [];
  const q = text.indexOf('?', pos);
  const paramText = q === -1 ? text.slice(pos) : text.slice(pos, q);
  if (paramText.length > 0) {
    if (paramText.charCodeAt(0) !== 0x3b) throw uriError(text, 'unexpected text after host');
    parseUriParams(paramText.slice(1), text, params);
  }
  if (q !== -1) {
    for (const h of text.slice(q + 1).split('&')) {
      const eq = h.indexOf('=');
      if (eq <= 0) throw uriError(text, `bad header "${h}"`);
      headers.push([h.slice(0, eq), h.slice(eq + 1)]);
    }
  }
  return { scheme, user, password, host: host.toLowerCase(), port, params, headers };
}

function parseTelUri(text: string, start: number): TelUri {
  const semi = text.indexOf(';', start);
  const number = semi === -1 ? text.slice(start) : text.slice(start, semi);
  if (!/^\+?[0-9A-Fa-f*#().\-]+$/.test(number)) throw uriError(text, 'bad telephone number');
  const params: Params = new Map();
  if (semi !== -1) parseUriParams(text.slice(semi + 1), text, params);
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
    for (const name of new Set([...a.params.keys(), ...b.params.keys()])) {
      const av = a.params.get(name);
      const bv = b.params.get(name);
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
