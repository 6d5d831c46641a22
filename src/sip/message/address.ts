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

const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

export function isToken(s: string): boolean {
  return TOKEN_RE.test(s);
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
    const name = text.slice(pos, end);
    if (!TOKEN_RE.test(name)) throw badMessage(`Bad parameter name "${name}" in ${what}`);
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
        value = text.slice(pos, end);
        if (value.length === 0 || !/^[A-Za-z0-9\-.!%*_+`'~:[\]]+$/.test(value)) {
          throw badMessage(`Bad value for parameter "${name}" in ${what}`);
        }
        pos = end;
      }
    }
    into.set(name.toLowerCase(), value);
  }
  return pos;
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
    displayName = text.slice(pos + 1, close).replace(/\\(.)/g, '$1');
    pos = close + 1;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
    if (text.charCodeAt(pos) !== 0x3c) throw badMessage(`Expected "<" after display name in ${what}`);
  } else if (lt !== -1 && (text.indexOf(';', pos) === -1 || lt < text.indexOf(';', pos))) {
    const dn = text.slice(pos, lt).trim();
    if (dn.length > 0) {
      // display-name = *(token LWS): RFC 4475 §3.1.2.15 (baddn) is rejected here.
      for (const word of dn.split(/[ \t]+/)) {
        if (!TOKEN_RE.test(word)) throw badMessage(`Display name in ${what} must be quoted: "${dn}"`);
      }
      displayName = dn;
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
      const part = value.slice(start, i).trim();
      if (part.length === 0) throw badMessage(`Empty element in ${what}`);
      out.push(part);
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last.length === 0) throw badMessage(`Empty element in ${what}`);
  out.push(last);
  return out;
}
