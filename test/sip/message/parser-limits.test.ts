import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError, type SipErrorCode } from '../../../src/sip/errors.ts';
import {
  DEFAULT_MAX_HEADER_LENGTH,
  DEFAULT_MAX_HEADERS,
  DEFAULT_MAX_MESSAGE_SIZE,
  parseHead,
  parseMessage,
  SipRequest,
} from '../../../src/sip/message/index.ts';

const BASE = [
  'OPTIONS sip:bob@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKlimits',
  'Max-Forwards: 70',
  'From: <sip:alice@example.com>;tag=1',
  'To: <sip:bob@example.com>',
  'Call-ID: limits@192.0.2.1',
  'CSeq: 1 OPTIONS',
];

function msg(lines: string[], body = ''): Buffer {
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body, 'latin1');
}

/** BASE plus `n` more fields, each `X-N: v` (the count of fields is then BASE.length - 1 + n). */
function withExtra(n: number): Buffer {
  const extra: string[] = [];
  for (let i = 0; i < n; i++) extra.push(`X-${i}: v`);
  return msg([...BASE, ...extra]);
}

function assertRefused(fn: () => unknown, status: number, code: SipErrorCode, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SipParseError, `a SipParseError, got ${String(e)}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    assert.match(e.message, re);
    return true;
  });
}

test('the defaults: 65535 bytes, 200 fields, 8 KiB per field', () => {
  assert.equal(DEFAULT_MAX_MESSAGE_SIZE, 65535);
  assert.equal(DEFAULT_MAX_HEADERS, 200);
  assert.equal(DEFAULT_MAX_HEADER_LENGTH, 8192);
});

test('maxHeaders: exactly the limit parses, one more is 513 SIP_TOO_MANY_HEADERS', () => {
  const fields = BASE.length - 1;
  const atLimit = withExtra(DEFAULT_MAX_HEADERS - fields);
  assert.equal(parseMessage(atLimit).headers.length, DEFAULT_MAX_HEADERS);
  assertRefused(() => parseMessage(withExtra(DEFAULT_MAX_HEADERS - fields + 1)), 513, 'SIP_TOO_MANY_HEADERS', /More than 200 header fields/);
  // a smaller limit given
  assert.equal(parseMessage(withExtra(4), { maxHeaders: fields + 4 }).headers.length, fields + 4);
  assertRefused(() => parseMessage(withExtra(5), { maxHeaders: fields + 4 }), 513, 'SIP_TOO_MANY_HEADERS', /More than 10 header fields/);
});

test('maxHeaderLength: a field of exactly the limit parses, one byte more is 513 SIP_HEADER_TOO_LONG naming it', () => {
  const field = (length: number): string => 'Subject: ' + 'x'.repeat(length - 'Subject: '.length);
  assert.equal(parseMessage(msg([...BASE, field(DEFAULT_MAX_HEADER_LENGTH)])).get('subject')!.length, DEFAULT_MAX_HEADER_LENGTH - 9);
  assertRefused(() => parseMessage(msg([...BASE, field(DEFAULT_MAX_HEADER_LENGTH + 1)])), 513, 'SIP_HEADER_TOO_LONG', /"Subject" of 8193 bytes is over the 8192-byte limit/);
  assertRefused(() => parseMessage(msg([...BASE, field(101)]), { maxHeaderLength: 100 }), 513, 'SIP_HEADER_TOO_LONG', /over the 100-byte limit/);
  // the trailing CR is not part of the field; a bare-LF message counts the same
  const lf = Buffer.from([...BASE, field(100)].join('\n') + '\n\n', 'latin1');
  assert.equal(parseMessage(lf, { maxHeaderLength: 100 }).get('subject')!.length, 91);
});

test('maxHeaderLength counts the field after unfolding, whatever the length of its lines', () => {
  // 30 lines of 10 bytes: each is short, the field is 9 + 30 * 10 - 1 (one space per fold) = 308 bytes
  const lines = ['Subject: ' + 'a'.repeat(9), ...Array.from({ length: 29 }, () => ' ' + 'b'.repeat(9))];
  const m = parseMessage(msg([...BASE, ...lines]), { maxHeaderLength: 308 });
  assert.equal(m.get('subject')!.length, 308 - 9);
  assertRefused(() => parseMessage(msg([...BASE, ...lines]), { maxHeaderLength: 307 }), 513, 'SIP_HEADER_TOO_LONG', /"Subject" of 308 bytes/);
});

test('folding: whitespace-only continuation lines and many folds keep the value (one space per fold)', () => {
  const m = parseMessage(msg([...BASE, 'Subject: a  ', ' \t', '   b', '\t', ' c ']));
  assert.equal(m.get('subject'), 'a b c');
  const many = parseMessage(msg([...BASE, 'Subject: x', ...Array.from({ length: 2000 }, () => ' y')]), { maxHeaderLength: 1e6 });
  assert.equal(many.get('subject'), 'x' + ' y'.repeat(2000));
});

test('the size limit comes first: an over-size message is 513 SIP_TOO_LARGE even with too many fields', () => {
  const big = withExtra(DEFAULT_MAX_HEADERS);
  assertRefused(() => parseMessage(big, { maxSize: big.length - 1 }), 513, 'SIP_TOO_LARGE', new RegExp(`Message of ${big.length} bytes`));
});

test('parseHead reads what a 513 needs from a message over the size limit: the body is ignored, Content-Length too', () => {
  const body = 'z'.repeat(5000);
  const big = msg([...BASE, `Content-Length: ${body.length + 100}`], body);
  assertRefused(() => parseMessage(big, { maxSize: 1000 }), 513, 'SIP_TOO_LARGE', /over the 1000-byte limit/);
  const head = parseHead(big, { maxSize: 1000 });
  assert.ok(head instanceof SipRequest);
  assert.equal(head.method, 'OPTIONS');
  assert.equal(head.callId, 'limits@192.0.2.1');
  assert.equal(head.body.length, 0);
  head.validate();
});

test('parseHead leaves out the fields past the limits and keeps the others', () => {
  const lines = [...BASE, 'Subject: ' + 'x'.repeat(500), 'Organization: kept'];
  for (let i = 0; i < 50; i++) lines.push(`X-${i}: v`);
  const buf = msg(lines);
  assertRefused(() => parseMessage(buf, { maxHeaderLength: 100 }), 513, 'SIP_HEADER_TOO_LONG', /Subject/);
  const head = parseHead(buf, { maxHeaderLength: 100, maxHeaders: 20 });
  assert.equal(head.headers.length, 20);
  assert.equal(head.get('subject'), undefined, 'the over-long field is left out');
  assert.equal(head.get('organization'), 'kept');
  assert.equal(head.get('x-12'), 'v');
  assert.equal(head.get('x-13'), undefined, 'fields past the count are left out');
  head.validate();
});

test('parseHead still refuses what is not a message', () => {
  assert.throws(() => parseHead(Buffer.from('garbage without a line end')), SipParseError);
  assert.throws(() => parseHead(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n')), SipParseError);
});
