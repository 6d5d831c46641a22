import { badMessage, SipParseError } from '../errors.ts';
import { headerKey, knownHeaderKey } from './headers.ts';
import { SipRequest, SipResponse, type HeaderField } from './message.ts';

export const DEFAULT_MAX_MESSAGE_SIZE = 65535;
/**
 * Header fields per message: room for a request that crossed 70 proxies (Max-Forwards) that each added a Via and a
 * Record-Route line, plus the usual ones. Real messages carry 10–40.
 */
export const DEFAULT_MAX_HEADERS = 200;
/** Bytes of one header field after unfolding, name and colon included (as Apache's LimitRequestFieldSize). */
export const DEFAULT_MAX_HEADER_LENGTH = 8192;

/** Messages up to this size are decoded whole in one go; larger ones have their header section found first. */
const WHOLE_DECODE_LIMIT = 4096;

export interface ParseOptions {
  /**
   * Larger messages are refused with 513. A body shorter than Content-Length is a 400 and bytes past it are
   * ignored (RFC 4475 §3.1.1.8); stream framing has already cut a TCP message at Content-Length.
   */
  maxSize?: number;
  /** More header fields (after unfolding) than this are refused with 513 (code SIP_TOO_MANY_HEADERS). */
  maxHeaders?: number;
  /** A longer header field (after unfolding) is refused with 513 (code SIP_HEADER_TOO_LONG). */
  maxHeaderLength?: number;
}

const TOKEN_CHARS = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") TOKEN_CHARS[c.charCodeAt(0)] = 1;

function isTokenText(s: string): boolean {
  return isTokenRange(s, 0, s.length);
}

function isTokenRange(s: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHARS[c] === 0) return false;
  }
  return true;
}

/** The value of 1 to 10 decimal digits, or -1. */
function decimal(s: string): number {
  if (s.length === 0 || s.length > 10) return -1;
  let value = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + (c - 0x30);
  }
  return value;
}

/**
 * Index just past the first blank line (the one that ends the header section), or -1. Accepts bare LF line ends,
 * also mixed with CRLF: the blank line is the first LF followed by LF or by CR LF.
 */
export function findHeaderEnd(buf: Buffer, from = 0): number {
  // "\r\n\r\n" contains "\n\r\n"; an earlier "\n\r\n" or "\n\n" is a blank line after a bare-LF line.
  const a = buf.indexOf('\n\r\n', from, 'latin1');
  const b = buf.indexOf('\n\n', from, 'latin1');
  if (a === -1) return b === -1 ? -1 : b + 2;
  return b !== -1 && b < a ? b + 2 : a + 3;
}

/** The field's name (or its first bytes) for an error message. */
function fieldStart(text: string, ls: number, le: number): string {
  const colon = text.indexOf(':', ls);
  return text.slice(ls, Math.min(colon === -1 || colon > le ? le : colon, ls + 40));
}

function trimLws(s: string, start: boolean): string {
  let a = 0;
  let b = s.length;
  while (start && a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Parses one SIP message. Throws SipParseError (status 400, 505 or 513) and nothing else. The start line and the
 * header fields are split here; individual header values are parsed when first read (see SipMessage).
 */
export function parseMessage(buf: Buffer, options: ParseOptions = {}): SipRequest | SipResponse {
  return parse(buf, options, false);
}

/**
 * The start line and header fields of a message refused for its size or its header limits, so that the refusal
 * can be answered: fields past the limits are left out rather than refused, `maxSize` is not applied and the body
 * is empty. Throws SipParseError when even that fails.
 */
export function parseHead(buf: Buffer, options: ParseOptions = {}): SipRequest | SipResponse {
  return parse(buf, options, true);
}

function parse(buf: Buffer, options: ParseOptions, headOnly: boolean): SipRequest | SipResponse {
  const maxSize = options.maxSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS;
  const maxHeaderLength = options.maxHeaderLength ?? DEFAULT_MAX_HEADER_LENGTH;
  if (buf.length > maxSize && !headOnly) throw new SipParseError(`Message of ${buf.length} bytes is over the ${maxSize}-byte limit`, 513, 'SIP_TOO_LARGE');
  let start = 0;
  // RFC 3261 §7.5: ignore CRLFs before the start line.
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  // A usual datagram is decoded whole, and the header loop below finds the blank line (one pass, where a
  // findHeaderEnd search first would cost two more scans of the buffer). A larger message has only its header
  // section decoded.
  let text: string;
  if (buf.length - start <= WHOLE_DECODE_LIMIT) {
    text = buf.toString('latin1', start, buf.length);
  } else {
    const end = findHeaderEnd(buf, start);
    text = buf.toString('latin1', start, end === -1 ? buf.length : end);
  }

  let lineEnd = text.indexOf('\n');
  if (lineEnd === -1) throw badMessage('No start line');
  const firstLine = text.charCodeAt(lineEnd - 1) === 0x0d ? text.slice(0, lineEnd - 1) : text.slice(0, lineEnd);
  const headText = text;
  /** Index in buf just past the blank line, or -1 while none was seen. */
  let headerEnd = -1;

  const headers: HeaderField[] = [];
  let pos = lineEnd + 1;
  const n = headText.length;
  let contentLength = -1;
  while (pos < n) {
    lineEnd = headText.indexOf('\n', pos);
    const terminated = lineEnd !== -1;
    if (!terminated) lineEnd = n;
    // The field is text[ls, le): headText itself when the line is not folded (no copy of the line is made).
    let text = headText;
    let ls = pos;
    let le = lineEnd > pos && headText.charCodeAt(lineEnd - 1) === 0x0d ? lineEnd - 1 : lineEnd;
    pos = lineEnd + 1;
    if (le === ls) {
      // the blank line (it needs its LF: a lone CR at the very end is not one)
      if (terminated) headerEnd = start + pos;
      break;
    }
    const next = headText.charCodeAt(pos);
    if (pos < n && (next === 0x20 || next === 0x09)) {
      // Folded continuation lines (§7.3.1): join with a single space. The pieces are joined once: appending to
      // the line and trimming it per piece copied the whole line each time (quadratic in the piece count).
      const pieces = [trimLws(headText.slice(ls, le), false)];
      while (pos < n) {
        const c = headText.charCodeAt(pos);
        if (c !== 0x20 && c !== 0x09) break;
        lineEnd = headText.indexOf('\n', pos);
        if (lineEnd === -1) lineEnd = n;
        const cont = headText.charCodeAt(lineEnd - 1) === 0x0d ? headText.slice(pos, lineEnd - 1) : headText.slice(pos, lineEnd);
        // Only SP and HTAB are LWS: String.prototype.trim would also eat bytes such as 0xA0 (NBSP in latin1).
        const piece = trimLws(cont, true);
        if (piece.length > 0) pieces.push(piece);
        pos = lineEnd + 1;
      }
      text = pieces.join(' ');
      ls = 0;
      le = text.length;
    }
    if (le - ls > maxHeaderLength) {
      if (headOnly) continue;
      throw new SipParseError(`Header field "${fieldStart(text, ls, le)}" of ${le - ls} bytes is over the ${maxHeaderLength}-byte limit`, 513, 'SIP_HEADER_TOO_LONG');
    }
    if (headers.length >= maxHeaders) {
      if (headOnly) continue;
      throw new SipParseError(`More than ${maxHeaders} header fields`, 513, 'SIP_TOO_MANY_HEADERS');
    }
    const colon = text.indexOf(':', ls);
    if (colon <= ls || colon >= le) throw badMessage(`Header line without a name: "${text.slice(ls, Math.min(le, ls + 40))}"`);
    let nameEnd = colon;
    while (nameEnd > ls && (text.charCodeAt(nameEnd - 1) === 0x20 || text.charCodeAt(nameEnd - 1) === 0x09)) nameEnd--;
    const name = text.slice(ls, nameEnd);
    // a usual spelling is a token; any other name is checked
    let key = knownHeaderKey(name);
    if (key === undefined) {
      if (!isTokenRange(text, ls, nameEnd)) throw badMessage(`Bad header name "${text.slice(ls, Math.min(nameEnd, ls + 40))}"`);
      key = headerKey(name);
    }
    let vs = colon + 1;
    while (vs < le && (text.charCodeAt(vs) === 0x20 || text.charCodeAt(vs) === 0x09)) vs++;
    let ve = le;
    while (ve > vs && (text.charCodeAt(ve - 1) === 0x20 || text.charCodeAt(ve - 1) === 0x09)) ve--;
    const value = text.slice(vs, ve);
    if (key === 'content-length') {
      if (contentLength !== -1) throw badMessage('More than one Content-Length header');
      contentLength = decimal(value);
      if (contentLength < 0) throw badMessage(`Bad Content-Length "${value.slice(0, 20)}"`);
    }
    headers.push({ name, key, value });
  }

  if (headerEnd === -1) {
    // A message with no body may end right after its last header line.
    if (!headText.endsWith('\n')) throw badMessage('Header section does not end with an empty line');
    headerEnd = buf.length;
  }
  let body: Buffer;
  const available = buf.length - headerEnd;
  if (headOnly) {
    body = buf.subarray(headerEnd, headerEnd);
  } else if (contentLength === -1) {
    body = buf.subarray(headerEnd);
  } else if (contentLength > available) {
    throw badMessage(`Content-Length ${contentLength} is larger than the ${available}-byte body`);
  } else {
    body = buf.subarray(headerEnd, headerEnd + contentLength);
  }

  return parseStartLine(firstLine, headers, body);
}

function parseStartLine(line: string, headers: HeaderField[], body: Buffer): SipRequest | SipResponse {
  if (line.startsWith('SIP/') || line.startsWith('sip/')) {
    const sp1 = line.indexOf(' ');
    if (sp1 === -1) throw badMessage('Bad status line');
    checkVersion(line.slice(0, sp1));
    const code = line.slice(sp1 + 1, sp1 + 4);
    if (!/^[1-6]\d\d$/.test(code) || (line.length > sp1 + 4 && line.charCodeAt(sp1 + 4) !== 0x20)) {
      throw badMessage(`Bad status code in "${line.slice(0, 40)}"`);
    }
    return new SipResponse(Number(code), line.slice(sp1 + 5), headers, body);
  }
  const sp1 = line.indexOf(' ');
  const sp2 = line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || line.indexOf(' ', sp2 + 1) !== -1 || sp2 === sp1 + 1) {
    throw badMessage('Request line must be "Method SP Request-URI SP SIP-Version"');
  }
  const method = line.slice(0, sp1);
  if (!isTokenText(method)) throw badMessage(`Bad method "${method.slice(0, 20)}"`);
  checkVersion(line.slice(sp2 + 1));
  const uri = line.slice(sp1 + 1, sp2);
  if (uri.charCodeAt(0) === 0x3c) throw badMessage('Request-URI must not be enclosed in <>');
  return new SipRequest(method, uri, headers, body);
}

function checkVersion(v: string): void {
  if (v === 'SIP/2.0') return;
  const m = /^SIP\/(\d+)\.(\d+)$/i.exec(v);
  if (m === null) throw badMessage(`Bad SIP version "${v.slice(0, 20)}"`);
  if (m[1] !== '2' || m[2] !== '0') throw new SipParseError(`SIP version ${v} is not supported`, 505, 'SIP_VERSION');
}
