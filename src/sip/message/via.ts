import { badMessage } from '../errors.ts';
import { parseHeaderParams } from './address.ts';
import type { Params } from './uri.ts';

export const MAGIC_COOKIE = 'z9hG4bK';

/** One Via element (RFC 3261 §20.42, RFC 3581 rport). */
export interface Via {
  /** Upper-cased transport token: UDP, TCP, TLS, SCTP, WS, WSS or any other token. */
  transport: string;
  host: string;
  port: number | null;
  params: Params;
  branch: string | null;
  received: string | null;
  /** `rport` present without a value: -1; with a value: the port; absent: null. */
  rport: number | null;
  maddr: string | null;
  ttl: number | null;
}

const SENT_PROTOCOL_RE = /^[ \t]*SIP[ \t]*\/[ \t]*2\.0[ \t]*\/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+/i;

const V_TOKEN = 1;
const V_HOST = 2; // A-Z a-z 0-9 . -
const V_HEX6 = 4; // 0-9 A-F a-f : .
const VCHAR = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") VCHAR[c.charCodeAt(0)]! |= V_TOKEN;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-') VCHAR[c.charCodeAt(0)]! |= V_HOST;
for (const c of '0123456789ABCDEFabcdef:.') VCHAR[c.charCodeAt(0)]! |= V_HEX6;

function allOf(s: string, start: number, end: number, mask: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || (VCHAR[c]! & mask) === 0) return false;
  }
  return true;
}

/** sent-by host: an IPv6 reference "[hex : .]" or a name / IPv4 address of alnum . - */
function isSentByHost(s: string, start: number, end: number): boolean {
  if (end <= start) return false;
  if (s.charCodeAt(start) === 0x5b) return end - start >= 3 && s.charCodeAt(end - 1) === 0x5d && allOf(s, start + 1, end - 1, V_HEX6);
  return allOf(s, start, end, V_HOST);
}

export function parseVia(text: string): Via {
  // sent-protocol: SIP / 2.0 / transport, LWS allowed around the slashes
  let pos: number;
  let transport: string;
  let t = 8;
  while (t < text.length && text.charCodeAt(t) < 256 && (VCHAR[text.charCodeAt(t)]! & V_TOKEN) !== 0) t++;
  if (text.startsWith('SIP/2.0/') && t > 8 && (text.charCodeAt(t) === 0x20 || text.charCodeAt(t) === 0x09)) {
    // the usual spelling, without the regular expression
    transport = text.slice(8, t);
    pos = t + 1;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
  } else {
    const m = SENT_PROTOCOL_RE.exec(text);
    if (m === null) throw badMessage(`Bad Via sent-protocol in "${text.slice(0, 60)}"`);
    transport = m[1]!;
    pos = m[0].length;
  }
  const n = text.length;
  let end = pos;
  if (text.charCodeAt(pos) === 0x5b) {
    end = text.indexOf(']', pos);
    if (end === -1) throw badMessage('Unterminated IPv6 reference in Via');
    end++;
  } else {
    while (end < n) {
      const c = text.charCodeAt(end);
      if (c === 0x3a || c === 0x3b || c === 0x20 || c === 0x09) break;
      end++;
    }
  }
  if (!isSentByHost(text, pos, end)) throw badMessage(`Bad Via host "${text.slice(pos, end)}"`);
  const host = text.slice(pos, end);
  pos = end;
  while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
  let port: number | null = null;
  if (text.charCodeAt(pos) === 0x3a) {
    pos++;
    while (text.charCodeAt(pos) === 0x20 || text.charCodeAt(pos) === 0x09) pos++;
    end = pos;
    while (end < n && text.charCodeAt(end) >= 0x30 && text.charCodeAt(end) <= 0x39) end++;
    if (end === pos || end - pos > 5) throw badMessage('Bad Via port');
    port = Number(text.slice(pos, end));
    if (port > 65535) throw badMessage('Bad Via port');
    pos = end;
  }
  const params: Params = new Map();
  parseHeaderParams(text, pos, params, 'Via');
  const rportValue = params.get('rport');
  let rport: number | null = null;
  if (rportValue !== undefined) {
    if (rportValue === null) rport = -1;
    else if (/^\d{1,5}$/.test(rportValue) && Number(rportValue) <= 65535) rport = Number(rportValue);
    else throw badMessage('Bad Via rport');
  }
  const ttlValue = params.get('ttl');
  let ttl: number | null = null;
  if (ttlValue !== undefined) {
    if (ttlValue === null || !/^\d{1,3}$/.test(ttlValue) || Number(ttlValue) > 255) throw badMessage('Bad Via ttl');
    ttl = Number(ttlValue);
  }
  const branch = params.get('branch');
  if (branch === null) throw badMessage('Via branch without a value');
  return {
    transport: upperAscii(transport),
    host: lowerAscii(host),
    port,
    params,
    branch: branch ?? null,
    received: params.get('received') ?? null,
    rport,
    maddr: params.get('maddr') ?? null,
    ttl,
  };
}

export function defaultPort(transport: string): number {
  return transport === 'TLS' || transport === 'WSS' ? 5061 : 5060;
}

function upperAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x61 && c <= 0x7a) return s.toUpperCase();
  }
  return s;
}

function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}
