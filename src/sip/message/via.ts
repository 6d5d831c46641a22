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

const SENT_BY_HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$/;

export function parseVia(text: string): Via {
  // sent-protocol: SIP / 2.0 / transport, LWS allowed around the slashes
  const m = /^[ \t]*SIP[ \t]*\/[ \t]*2\.0[ \t]*\/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+/i.exec(text);
  if (m === null) throw badMessage(`Bad Via sent-protocol in "${text.slice(0, 60)}"`);
  let pos = m[0].length;
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
  const host = text.slice(pos, end);
  if (!SENT_BY_HOST_RE.test(host)) throw badMessage(`Bad Via host "${host}"`);
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
    transport: m[1]!.toUpperCase(),
    host: host.toLowerCase(),
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
