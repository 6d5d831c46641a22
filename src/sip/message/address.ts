import { badMessage } from '../errors.ts';
import { formatUri, parseUri, type Params, type Uri } from './uri.ts';

/** name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route, Refer-To… */
export interface Address {
  displayName: string | null;
  uri: Uri;
  /** Header parameters (`;tag=…`, `;expires=…`), names lower-cased. */
  params: Params;
  /** Whether the URI was written in angle brackets (always so when formatted with params on a SIP URI). */
  angle: boolean;
}

// token (RFC 3261 §25.1) and gen-value characters (token, plus ':' '[' ']' of an IPv6 host), as table lookups.
const T_TOKEN = 1;
const T_VALUE = 2;
const T_LWS = 4;
const CHAR = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") CHAR[c.charCodeAt(0)] = T_TOKEN | T_VALUE;
for (const c of ':[]') CHAR[c.charCodeAt(0)] = T_VALUE;
CHAR[0x20] = T_LWS;
CHAR[0x09] = T_LWS;

function allOf(s: string, start: number, end: number, mask: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || (CHAR[c]! & mask) === 0) return false;
  }
  return true;
}

export function isToken(s: string): boolean {
  return s.length > 0 && allOf(s, 0, s.length, T_TOKEN);
}

/** Index of the end of the quoted string that opens at `start` (the index of the closing quote). */
export function skipQuoted(text: string, start: number, what: string): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c /* \ */) i++;
    else if (c === 0x22 /* " */) return i;
  }
  throw badMessage(`Unterminated quoted string in ${what}`);
}

/**
 * Parses `;a=b;c;d="x y"` from `pos`, stopping at `stop` (a ',' for list headers) or at the end.
 * Returns the index where it stopped.
 */
export function parseHeaderParams(text: string, pos: number, into: Params, what: string): number {
  const n = text.length;
  while (pos < n) {
    let c = text.charCodeAt(pos);
    while (c === 0x20 || c === 0x09) c = text.charCodeAt(++pos);
    if (pos >= n) break;
    if (c !== 0x3b /* ; */) throw badMessage(`Unexpected "${text[pos]}" in ${what} parameters`);
    pos++;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
    let end = pos;
    while (end < n) {
      const d = text.charCodeAt(end);
      if (d === 0x3d /* = */ || d === 0x3b || d === 0x20 || d === 0x09) break;
      end++;
    }
    if (end === pos || !allOf(text, pos, end, T_TOKEN)) throw badMessage(`Bad parameter name "${text.slice(pos, end)}" in ${what}`);
    const name = text.slice(pos, end);
    pos = end;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
    let value: string | null = null;
    if (text.charCodeAt(pos) === 0x3d) {
      pos++;
      while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
      if (text.charCodeAt(pos) === 0x22) {
        const close = skipQuoted(text, pos, what);
        value = text.slice(pos, close + 1);
        pos = close + 1;
      } else {
        end = pos;
        while (end < n) {
          const d = text.charCodeAt(end);
          if (d === 0x3b || d === 0x20 || d === 0x09) break;
          end++;
        }
        if (end === pos || !allOf(text, pos, end, T_VALUE)) throw badMessage(`Bad value for parameter "${name}" in ${what}`);
        value = text.slice(pos, end);
        pos = end;
      }
    }
    into.set(lowerAscii(name), value);
  }
  return pos;
}

/** toLowerCase, skipped when there is nothing to lower (the usual case for parameter names). */
function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}

/** Parses one name-addr / addr-spec with its parameters (no list splitting: see splitList). */
export function parseAddress(text: string, what = 'address'): Address {
  let pos = 0;
  const n = text.length;
  while (pos < n && (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09)) pos++;
  let displayName: string | null = null;
  let uriText: string;
  let angle = false;
  const first = text.charCodeAt(pos);
  const lt = text.indexOf('<', pos);
  if (first === 0x22 /* " */) {
    const close = skipQuoted(text, pos, what);
    displayName = text.slice(pos + 1, close);
    if (displayName.includes('\\')) displayName = displayName.replace(/\\(.)/g, '$1');
    pos = close + 1;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
    if (text.charCodeAt(pos) !== 0x3c) throw badMessage(`Expected "<" after display name in ${what}`);
  } else if (lt !== -1 && !(text.indexOf(';', pos) < lt && text.indexOf(';', pos) !== -1)) {
    // display-name = *(token LWS): RFC 4475 §3.1.2.15 (baddn) is rejected here.
    let dnEnd = lt;
    while (dnEnd > pos && (text.charCodeAt(dnEnd - 1) === 0x20 || text.charCodeAt(dnEnd - 1) === 0x09)) dnEnd--;
    if (dnEnd > pos) {
      if (!allOf(text, pos, dnEnd, T_TOKEN | T_LWS)) throw badMessage(`Display name in ${what} must be quoted: "${text.slice(pos, dnEnd)}"`);
      displayName = text.slice(pos, dnEnd);
    }
    pos = lt;
  }
  if (text.charCodeAt(pos) === 0x3c /* < */) {
    const gt = text.indexOf('>', pos);
    if (gt === -1) throw badMessage(`Missing ">" in ${what}`);
    uriText = text.slice(pos + 1, gt);
    angle = true;
    pos = gt + 1;
  } else {
    // addr-spec: the URI ends at the first ';' (its parameters would be header parameters, §20.10)
    let end = pos;
    while (end < n) {
      const c = text.charCodeAt(end);
      if (c === 0x3b || c === 0x20 || c === 0x09) break;
      end++;
    }
    uriText = text.slice(pos, end);
    pos = end;
  }
  const uri = parseUri(uriText);
  if (!angle && 'headers' in uri && uri.headers.length > 0) {
    throw badMessage(`A URI with headers must be in angle brackets in ${what}`);
  }
  const params: Params = new Map();
  parseHeaderParams(text, pos, params, what);
  return { displayName, uri, params, angle };
}

function quoteDisplayName(name: string): string {
  if (/^[A-Za-z0-9\-.!%*_+`'~ ]+$/.test(name) && !name.startsWith(' ')) return name;
  return '"' + name.replace(/(["\\])/g, '\\$1') + '"';
}

export function formatAddress(a: Address): string {
  let out = '';
  if (a.displayName !== null && a.displayName.length > 0) out += quoteDisplayName(a.displayName) + ' ';
  out += '<' + formatUri(a.uri) + '>';
  for (const [k, v] of a.params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}

/**
 * Splits a comma-separated header value into its elements, respecting quoted strings and <…>.
 * Throws on an empty element (`a,,b`), which no SIP list grammar allows.
 */
export function splitList(value: string, what: string): string[] {
  if (value.indexOf(',') === -1) return [value];
  const out: string[] = [];
  let start = 0;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x22) i = skipQuoted(value, i, what);
    else if (c === 0x3c) angle = true;
    else if (c === 0x3e) angle = false;
    else if (c === 0x2c && !angle) {
      out.push(element(value, start, i, what));
      start = i + 1;
    }
  }
  out.push(element(value, start, value.length, what));
  return out;
}

/** value[start, end) without surrounding LWS (SP / HTAB only); an empty element is a 400. */
function element(value: string, start: number, end: number, what: string): string {
  while (start < end && (value.charCodeAt(start) === 0x20 || value.charCodeAt(start) === 0x09)) start++;
  while (end > start && (value.charCodeAt(end - 1) === 0x20 || value.charCodeAt(end - 1) === 0x09)) end--;
  if (start === end) throw badMessage(`Empty element in ${what}`);
  return value.slice(start, end);
}
