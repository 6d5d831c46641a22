import { SipParseError } from '../errors.ts';
import { findHeaderEnd } from '../message/parser.ts';

/** What the framer found in the bytes so far. */
export type FrameEvent =
  | { kind: 'message'; data: Buffer }
  /** A double CRLF keep-alive ping (RFC 5626 §3.5.1): answer with a single CRLF. */
  | { kind: 'ping' }
  | { kind: 'error'; error: SipParseError };

const PING = Buffer.from('\r\n\r\n');

const CONTENT_LENGTH_RE = /\r?\n(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?\n/i;

/**
 * Cuts a byte stream into SIP messages by Content-Length (RFC 3261 §18.3). A state machine over one growing buffer:
 * it waits for a complete header section, reads Content-Length from it, then waits for the body. Several messages
 * in one chunk and one message over many chunks both work. CRLFs between messages are keep-alives.
 */
export class StreamFramer {
  #buf: Buffer = Buffer.alloc(0);
  /** Total length of the message being assembled once its headers are known, else -1. */
  #need = -1;
  /** Where the search for the end of the header section goes on: bytes before it were searched already. */
  #scanned = 0;
  readonly maxSize: number;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  push(chunk: Buffer, emit: (event: FrameEvent) => void): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      if (this.#need === -1) {
        // Keep-alives between messages: CRLFCRLF is a ping, a lone CRLF a pong (ignored). TCP may cut a ping
        // anywhere, so CR/LF bytes that could still grow into one wait for the next chunk.
        while (this.#buf.length > 0 && (this.#buf[0] === 0x0d || this.#buf[0] === 0x0a)) {
          if (this.#buf.length >= 4 && this.#buf.readUInt32BE(0) === 0x0d0a0d0a) {
            emit({ kind: 'ping' });
            this.#buf = this.#buf.subarray(4);
          } else if (this.#buf.length < 4 && PING.subarray(0, this.#buf.length).equals(this.#buf)) {
            return;
          } else {
            this.#buf = this.#buf.subarray(this.#buf[0] === 0x0d && this.#buf[1] === 0x0a ? 2 : 1);
          }
          this.#scanned = 0;
        }
        if (this.#buf.length === 0) return;
        // Searched again from where the last chunk ended (less a blank line's length, which may straddle chunks):
        // a header section dripping in byte by byte costs a scan per byte, not a scan of all bytes so far.
        const headerEnd = findHeaderEnd(this.#buf, this.#scanned);
        if (headerEnd === -1) {
          if (this.#buf.length > this.maxSize) this.#fail(emit, new SipParseError('Header section over the size limit', 513, 'SIP_TOO_LARGE'));
          else this.#scanned = Math.max(0, this.#buf.length - 3);
          return;
        }
        this.#scanned = 0;
        const head = this.#buf.toString('latin1', 0, headerEnd);
        const m = CONTENT_LENGTH_RE.exec(head);
        // A stream message must say its length (§18.3); without it, assume no body rather than wait forever.
        const bodyLength = m === null ? 0 : Number(m[1]);
        this.#need = headerEnd + bodyLength;
        if (this.#need > this.maxSize) {
          this.#fail(emit, new SipParseError(`Message of ${this.#need} bytes is over the ${this.maxSize}-byte limit`, 513, 'SIP_TOO_LARGE'));
          return;
        }
      }
      if (this.#buf.length < this.#need) return;
      const data = this.#buf.subarray(0, this.#need);
      this.#buf = this.#buf.subarray(this.#need);
      this.#need = -1;
      emit({ kind: 'message', data });
    }
  }

  #fail(emit: (event: FrameEvent) => void, error: SipParseError): void {
    // The stream cannot be resynchronised after a framing error: drop what we have; the owner closes.
    this.#buf = Buffer.alloc(0);
    this.#need = -1;
    this.#scanned = 0;
    emit({ kind: 'error', error });
  }
}
