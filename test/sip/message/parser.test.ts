import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError } from '../../../src/sip/errors.ts';
import {
  createResponse,
  DEFAULT_MAX_MESSAGE_SIZE,
  findHeaderEnd,
  formatUri,
  parseMessage,
  SipRequest,
  SipResponse,
  type ParseOptions,
} from '../../../src/sip/message/index.ts';

/** Lines joined with CRLF, a blank line, then the body. */
function msg(lines: string[], body = '', eol = '\r\n'): Buffer {
  return Buffer.from(lines.join(eol) + eol + eol + body, 'latin1');
}

function request(buf: Buffer, options?: ParseOptions): SipRequest {
  const m = parseMessage(buf, options);
  assert.ok(m instanceof SipRequest, 'expected a request');
  return m;
}

function response(buf: Buffer): SipResponse {
  const m = parseMessage(buf);
  assert.ok(m instanceof SipResponse, 'expected a response');
  return m;
}

function assertStatus(fn: () => unknown, status: number, what: string): void {
  assert.throws(fn, (e: unknown) => e instanceof SipParseError && e.status === status, what);
}

const INVITE_HEADERS = [
  'INVITE sip:bob@biloxi.com SIP/2.0',
  'Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds',
  'Max-Forwards: 70',
  'To: Bob <sip:bob@biloxi.com>',
  'From: Alice <sip:alice@atlanta.com>;tag=1928301774',
  'Call-ID: a84b4c76e66710@pc33.atlanta.com',
  'CSeq: 314159 INVITE',
  'Contact: <sip:alice@pc33.atlanta.com>',
  'Content-Type: application/sdp',
];
const SDP = 'v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\ns=-\r\nc=IN IP4 pc33.atlanta.com\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\n';
const INVITE = msg([...INVITE_HEADERS, `Content-Length: ${SDP.length}`], SDP);

test('request: start line, headers, body', () => {
  const m = request(INVITE);
  assert.equal(m.isRequest, true);
  assert.equal(m.method, 'INVITE');
  assert.equal(m.uriText, 'sip:bob@biloxi.com');
  assert.equal(formatUri(m.uri), 'sip:bob@biloxi.com');
  assert.equal(m.headers.length, 9);
  assert.deepEqual(m.headers[0], { name: 'Via', key: 'via', value: 'SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds' });
  assert.equal(m.maxForwards, 70);
  assert.equal(m.callId, 'a84b4c76e66710@pc33.atlanta.com');
  assert.deepEqual(m.cseq, { seq: 314159, method: 'INVITE' });
  assert.equal(m.fromTag, '1928301774');
  assert.equal(m.toTag, null);
  assert.equal(m.from.displayName, 'Alice');
  assert.equal(m.topVia.branch, 'z9hG4bK776asdhds');
  assert.equal(m.contacts().length, 1);
  assert.equal(m.body.toString('latin1'), SDP);
  m.validate();
});

test('response: status, reason, empty reason, unusual reason bytes', () => {
  const base = ['Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>;tag=2', 'Call-ID: x', 'CSeq: 1 INVITE', 'Content-Length: 0'];
  const r = response(msg(['SIP/2.0 180 Ringing', ...base]));
  assert.equal(r.isRequest, false);
  assert.equal(r.status, 180);
  assert.equal(r.reason, 'Ringing');
  r.validate();
  assert.equal(response(msg(['SIP/2.0 200 ', ...base])).reason, '');
  assert.equal(response(msg(['SIP/2.0 200', ...base])).reason, '');
  assert.equal(response(msg(['SIP/2.0 404 Not  Found  here', ...base])).reason, 'Not  Found  here');
  assert.equal(response(msg(['SIP/2.0 699 \xc3\xa9t\xc3\xa9 "quoted" <x>', ...base])).reason, '\xc3\xa9t\xc3\xa9 "quoted" <x>');
  assert.equal(response(msg(['sip/2.0 100 Trying', ...base])).status, 100);
});

test('compact header names', () => {
  const m = request(
    msg([
      'OPTIONS sip:bob@biloxi.com SIP/2.0',
      'v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1',
      'f: <sip:alice@atlanta.com>;tag=88',
      't: <sip:bob@biloxi.com>',
      'i: callid-1',
      'CSeq: 1 OPTIONS',
      'm: <sip:alice@pc33.atlanta.com>',
      'k: timer',
      's: hello',
      'c: text/plain',
      'e: gzip',
      'o: presence',
      'r: <sip:carol@chicago.com>',
      'b: <sip:alice@atlanta.com>',
      'u: presence',
      'x: 1800',
      'l: 2',
    ], 'hi'),
  );
  m.validate();
  assert.equal(m.headers[0]!.name, 'v');
  assert.equal(m.headers[0]!.key, 'via');
  assert.equal(m.topVia.host, 'pc33.atlanta.com');
  assert.equal(m.fromTag, '88');
  assert.equal(m.callId, 'callid-1');
  assert.equal(m.get('Call-ID'), 'callid-1');
  assert.equal(m.get('i'), 'callid-1');
  assert.equal(m.contacts().length, 1);
  const expected: Record<string, string> = {
    Supported: 'timer', Subject: 'hello', 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip', Event: 'presence',
    'Refer-To': '<sip:carol@chicago.com>', 'Referred-By': '<sip:alice@atlanta.com>', 'Allow-Events': 'presence',
    'Session-Expires': '1800', 'Content-Length': '2',
  };
  for (const [name, value] of Object.entries(expected)) assert.equal(m.get(name), value, name);
  assert.equal(m.body.toString(), 'hi');
});

test('header names are case-insensitive; LWS before the colon', () => {
  const m = request(
    msg([
      'OPTIONS sip:bob@biloxi.com SIP/2.0',
      'VIA: SIP/2.0/UDP h;branch=z9hG4bK1',
      'fRoM: <sip:a@b>;tag=1',
      'TO  \t: <sip:c@d>',
      'call-ID:x',
      'cseq:   7   OPTIONS',
      'max-forwards: 5',
    ]),
  );
  m.validate();
  assert.equal(m.get('via'), 'SIP/2.0/UDP h;branch=z9hG4bK1');
  assert.equal(m.get('From'), '<sip:a@b>;tag=1');
  assert.equal(m.get('to'), '<sip:c@d>');
  assert.equal(m.headers[2]!.name, 'TO');
  assert.equal(m.callId, 'x');
  assert.deepEqual(m.cseq, { seq: 7, method: 'OPTIONS' });
  assert.equal(m.maxForwards, 5);
  assert.equal(m.get('Max-Forwards'), '5');
});

test('multi-value headers across fields and within fields', () => {
  const m = request(
    msg([
      'INVITE sip:bob@biloxi.com SIP/2.0',
      'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5070;branch=z9hG4bK2',
      'Record-Route: <sip:p1.example.com;lr>',
      'v: SIP/2.0/UDP c.example.com;branch=z9hG4bK3;received=192.0.2.1',
      'Route: <sip:r1.example.com;lr>, <sip:r2.example.com;lr>',
      'Route: <sip:r3.example.com;lr>',
      'Record-Route: <sip:p2.example.com;lr>,<sip:p3.example.com;lr>',
      'Contact: "Doe, John" <sip:j@a.com>;q=0.5, <sip:k@b.com>',
      'm: sip:l@c.com',
      'Allow: INVITE, ACK',
      'Allow: BYE',
      'From: <sip:a@b>;tag=1',
      'To: <sip:c@d>',
      'Call-ID: x',
      'CSeq: 1 INVITE',
      'Subject: a, b',
    ]),
  );
  m.validate();
  assert.deepEqual(m.vias.map((v) => v.branch), ['z9hG4bK1', 'z9hG4bK2', 'z9hG4bK3']);
  assert.deepEqual(m.vias.map((v) => v.host), ['a.example.com', 'b.example.com', 'c.example.com']);
  assert.equal(m.vias[1]!.port, 5070);
  assert.deepEqual(m.routes().map((r) => formatUri(r.uri)), ['sip:r1.example.com;lr', 'sip:r2.example.com;lr', 'sip:r3.example.com;lr']);
  assert.deepEqual(m.recordRoutes().map((r) => formatUri(r.uri)), ['sip:p1.example.com;lr', 'sip:p2.example.com;lr', 'sip:p3.example.com;lr']);
  const contacts = m.contacts();
  assert.deepEqual(contacts.map((c) => c.displayName), ['Doe, John', null, null]);
  assert.equal(contacts[0]!.params.get('q'), '0.5');
  assert.deepEqual(m.getAll('allow'), ['INVITE', 'ACK', 'BYE']);
  // not a list header: kept whole
  assert.deepEqual(m.getAll('subject'), ['a, b']);
  // get() returns the first field whole
  assert.equal(m.get('route'), '<sip:r1.example.com;lr>, <sip:r2.example.com;lr>');
});

test('Contact: * is not an address', () => {
  const m = request(msg(['REGISTER sip:registrar.biloxi.com SIP/2.0', 'Contact: *', 'Expires: 0']));
  assert.deepEqual(m.contacts(), []);
  assert.deepEqual(m.getAll('contact'), ['*']);
});

test('line folding joins continuation lines with one space', () => {
  const m = request(
    Buffer.from(
      'OPTIONS sip:bob@biloxi.com SIP/2.0\r\n' +
        'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n' +
        '   SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n' +
        'Subject: I know you\'re there,\r\n' +
        '         pick up the phone   \r\n' +
        '\tand talk to me!\r\n' +
        'To:\r\n <sip:c@d>\r\n' +
        'From: <sip:a@b>;tag=1\r\n' +
        'Call-ID: x\r\n' +
        'CSeq: 1\r\n  OPTIONS\r\n' +
        '\r\n',
      'latin1',
    ),
  );
  m.validate();
  assert.equal(m.get('subject'), "I know you're there, pick up the phone and talk to me!");
  assert.deepEqual(m.vias.map((v) => v.host), ['a.example.com', 'b.example.com']);
  assert.equal(m.get('to'), '<sip:c@d>');
  assert.deepEqual(m.cseq, { seq: 1, method: 'OPTIONS' });
  assert.equal(m.headers.length, 6);
});

test('folding keeps non-LWS bytes such as 0xA0 at the fold', () => {
  const m = request(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nSubject: a\xa0\r\n \xa0b\r\n\r\n', 'latin1'));
  assert.equal(m.get('subject'), 'a\xa0 \xa0b');
});

test('a header section that starts with a continuation line is 400', () => {
  assertStatus(() => parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n')), 400, 'leading fold');
  assertStatus(() => parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\n Via: x\r\n y\r\n\r\n')), 400, 'leading fold, folded');
});

test('bare LF line ends are tolerated, also mixed with CRLF', () => {
  const lf = request(msg([...INVITE_HEADERS, `Content-Length: ${SDP.length}`], SDP, '\n'));
  lf.validate();
  assert.equal(lf.headers.length, 9);
  assert.equal(lf.get('content-type'), 'application/sdp');
  assert.equal(lf.body.toString('latin1'), SDP);
  // headers with LF, body holding CRLF CRLF: the header section ends at the first blank line
  const body = 'ab\r\n\r\ncd';
  const mixed = request(Buffer.from(`OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nContent-Length: ${body.length}\n\n${body}`, 'latin1'));
  assert.equal(mixed.body.toString('latin1'), body);
  assert.equal(mixed.headers.length, 2);
  const mixed2 = request(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\nSubject: s\r\n\nxyz', 'latin1'));
  assert.equal(mixed2.get('subject'), 's');
  assert.equal(mixed2.body.toString(), 'xyz');
  const mixed3 = request(Buffer.from('OPTIONS sip:a@b SIP/2.0\nSubject: s\n\r\nxyz', 'latin1'));
  assert.equal(mixed3.body.toString(), 'xyz');
});

test('findHeaderEnd', () => {
  assert.equal(findHeaderEnd(Buffer.from('A\r\nB: c\r\n\r\nbody')), 11);
  assert.equal(findHeaderEnd(Buffer.from('A\nB: c\n\nbody')), 8);
  assert.equal(findHeaderEnd(Buffer.from('A\nB: c\n\r\nbody')), 9);
  assert.equal(findHeaderEnd(Buffer.from('A\nB: c\n\nbody\r\n\r\n')), 8);
  assert.equal(findHeaderEnd(Buffer.from('A\r\nB: c\r\n\r\nx\n\n')), 11);
  assert.equal(findHeaderEnd(Buffer.from('A\r\nB: c\r\n')), -1);
  assert.equal(findHeaderEnd(Buffer.from('')), -1);
  const two = Buffer.from('A\r\n\r\nB\r\n\r\n');
  assert.equal(findHeaderEnd(two, 5), 10);
});

test('leading CRLFs before the start line are skipped', () => {
  const m = request(Buffer.concat([Buffer.from('\r\n\r\n\n'), INVITE]));
  m.validate();
  assert.equal(m.method, 'INVITE');
  assert.equal(m.body.toString('latin1'), SDP);
});

test('Content-Length: datagram bytes past it are ignored (RFC 4475 §3.1.1.8)', () => {
  const m = request(Buffer.concat([INVITE, Buffer.from('INVITE sip:extra@example.com SIP/2.0\r\n\r\n')]));
  assert.equal(m.body.toString('latin1'), SDP);
  const z = request(msg(['OPTIONS sip:a@b SIP/2.0', 'Content-Length: 0'], 'trailing garbage'));
  assert.equal(z.body.length, 0);
  const t = request(msg(['OPTIONS sip:a@b SIP/2.0', 'l: 3'], 'abcdef'));
  assert.equal(t.body.toString(), 'abc');
});

test('Content-Length absent: the body is the rest of the datagram', () => {
  const m = request(msg(['OPTIONS sip:a@b SIP/2.0', 'Via: SIP/2.0/UDP h'], 'rest\r\nof it'));
  assert.equal(m.body.toString(), 'rest\r\nof it');
});

test('a body shorter than Content-Length is 400 (RFC 4475 §3.1.2.2)', () => {
  assertStatus(() => parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', 'Content-Length: 10'], 'short')), 400, 'short body');
  assertStatus(() => parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', 'Content-Length: 1'])), 400, 'no body');
  assertStatus(() => parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\n')), 400, 'no blank line');
});

test('bad or repeated Content-Length is 400', () => {
  for (const v of ['-1', 'abc', '1 2', '12345678901', '0x10', '+5', '']) {
    assertStatus(() => parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', `Content-Length: ${v}`], 'x'.repeat(20))), 400, v);
  }
  assertStatus(() => parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', 'Content-Length: 0', 'l: 0'])), 400, 'two');
});

test('unsupported SIP version is 505, a malformed one 400', () => {
  for (const line of ['OPTIONS sip:a@b SIP/3.0', 'OPTIONS sip:a@b SIP/2.1', 'OPTIONS sip:a@b SIP/7.0', 'SIP/1.0 200 OK']) {
    assertStatus(() => parseMessage(msg([line, 'Via: SIP/2.0/UDP h'])), 505, line);
  }
  for (const line of ['OPTIONS sip:a@b SIP/2', 'OPTIONS sip:a@b HTTP/1.1', 'OPTIONS sip:a@b SIP/2.0x', 'OPTIONS sip:a@b SIP/a.b']) {
    assertStatus(() => parseMessage(msg([line, 'Via: SIP/2.0/UDP h'])), 400, line);
  }
  const e = (() => {
    try {
      parseMessage(msg(['OPTIONS sip:a@b SIP/3.0']));
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  assert.ok(e instanceof SipParseError);
  assert.equal(e.code, 'SIP_VERSION');
});

test('too large is 513', () => {
  const big = msg(['MESSAGE sip:a@b SIP/2.0', `Content-Length: ${DEFAULT_MAX_MESSAGE_SIZE}`], 'x'.repeat(DEFAULT_MAX_MESSAGE_SIZE));
  assert.throws(
    () => parseMessage(big),
    (e: unknown) => e instanceof SipParseError && e.status === 513 && e.code === 'SIP_TOO_LARGE',
  );
  assertStatus(() => parseMessage(INVITE, { maxSize: INVITE.length - 1 }), 513, 'maxSize');
  assert.equal(request(INVITE, { maxSize: INVITE.length }).method, 'INVITE');
  const head = 'MESSAGE sip:a@b SIP/2.0\r\n\r\n';
  const atLimit = Buffer.from(head + 'x'.repeat(DEFAULT_MAX_MESSAGE_SIZE - head.length));
  assert.equal(atLimit.length, DEFAULT_MAX_MESSAGE_SIZE);
  assert.equal(request(atLimit).body.length, DEFAULT_MAX_MESSAGE_SIZE - head.length);
  assertStatus(() => parseMessage(Buffer.concat([atLimit, Buffer.from('x')])), 513, 'one over');
});

test('malformed start lines are 400', () => {
  for (const line of [
    '',
    'OPTIONS',
    'OPTIONS sip:a@b',
    'OPTIONS  sip:a@b SIP/2.0',
    ' OPTIONS sip:a@b SIP/2.0',
    'OPTIONS sip:a@b SIP/2.0 ',
    'OPTIONS sip:a@b  SIP/2.0',
    'OPTIONS sip:a @b SIP/2.0',
    'OPTIONS <sip:a@b> SIP/2.0',
    'OPT(IONS sip:a@b SIP/2.0',
    'OPTIONS\tsip:a@b\tSIP/2.0',
    'SIP/2.0 1000 Huge',
    'SIP/2.0 4294967301 better not break the receiver',
    'SIP/2.0 99 Low',
    'SIP/2.0 700 High',
    'SIP/2.0 099 Low',
    'SIP/2.0 20x OK',
    'SIP/2.0  200 OK',
    'SIP/2.0',
  ]) {
    assertStatus(() => parseMessage(msg([line, 'Via: SIP/2.0/UDP h'])), 400, JSON.stringify(line));
  }
});

test('malformed header lines are 400', () => {
  for (const line of ['NoColon', ': value', 'Bad Name: x', 'Bad"Name: x', 'Na,me: x', '\x00: x', 'Caf\xe9: x']) {
    assertStatus(() => parseMessage(msg(['OPTIONS sip:a@b SIP/2.0', line])), 400, JSON.stringify(line));
  }
});

test('empty or headless buffers are 400', () => {
  for (const text of ['', '\r\n', '\r\n\r\n', 'OPTIONS sip:a@b SIP/2.0', 'OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h']) {
    assertStatus(() => parseMessage(Buffer.from(text)), 400, JSON.stringify(text));
  }
  // ending right after the last header line (no blank line, no body) is accepted
  const m = request(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n'));
  assert.equal(m.get('via'), 'SIP/2.0/UDP h');
  assert.equal(m.body.length, 0);
});

test('the Request-URI is parsed lazily: a bad one fails on .uri and validate()', () => {
  const m = request(msg(['OPTIONS sip:a@b:99999 SIP/2.0', 'Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', 'CSeq: 1 OPTIONS']));
  assert.equal(m.uriText, 'sip:a@b:99999');
  assertStatus(() => m.uri, 400, 'uri');
  assertStatus(() => m.validate(), 400, 'validate');
});

const HEADERS_OK = ['Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', 'CSeq: 1 OPTIONS', 'Max-Forwards: 70'];

test('validate: required headers, CSeq, Max-Forwards, single-valued headers', () => {
  request(msg(['OPTIONS sip:a@b SIP/2.0', ...HEADERS_OK])).validate();
  for (let i = 0; i < 5; i++) {
    const headers = HEADERS_OK.filter((_, j) => j !== i);
    assertStatus(() => request(msg(['OPTIONS sip:a@b SIP/2.0', ...headers])).validate(), 400, `without ${HEADERS_OK[i]}`);
  }
  const bad = (replace: number, line: string): void => {
    const headers = HEADERS_OK.slice();
    headers[replace] = line;
    assertStatus(() => request(msg(['OPTIONS sip:a@b SIP/2.0', ...headers])).validate(), 400, line);
  };
  bad(4, 'CSeq: 1 INVITE');
  bad(4, 'CSeq: OPTIONS');
  bad(4, 'CSeq: 1');
  bad(4, 'CSeq: -1 OPTIONS');
  bad(4, 'CSeq: 2147483648 OPTIONS');
  bad(4, 'CSeq: 1 OPTIONS extra');
  bad(5, 'Max-Forwards: 256');
  bad(5, 'Max-Forwards: -1');
  bad(5, 'Max-Forwards: x');
  bad(3, 'Call-ID: ');
  bad(0, 'Via: ');
  bad(0, 'Via: SIP/2.0/UDP h;branch=z9hG4bK1,');
  bad(1, 'From: <sip:a@b');
  bad(2, 'To: "Bob <sip:c@d>');
  for (const dup of ['From: <sip:x@y>', 'To: <sip:x@y>', 'Call-ID: y', 'CSeq: 2 OPTIONS', 'Max-Forwards: 1', 'i: y', 'f: <sip:x@y>']) {
    assertStatus(() => request(msg(['OPTIONS sip:a@b SIP/2.0', ...HEADERS_OK, dup])).validate(), 400, `dup ${dup}`);
  }
  // 2**31 - 1 is the largest CSeq
  const max = HEADERS_OK.slice();
  max[4] = 'CSeq: 2147483647 OPTIONS';
  assert.equal(request(msg(['OPTIONS sip:a@b SIP/2.0', ...max])).cseq.seq, 2147483647);
});

test('every SipParseError status is 400 for semantic faults found by validate', () => {
  const r = response(msg(['SIP/2.0 200 OK', 'Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x']));
  assertStatus(() => r.validate(), 400, 'response without CSeq');
});

function canonicalRoundTrip(text: string): void {
  const input = Buffer.from(text, 'latin1');
  const m = parseMessage(input);
  const out = m.toBuffer();
  assert.ok(out.equals(input), `not byte-identical:\n${JSON.stringify(out.toString('latin1'))}\n${JSON.stringify(text)}`);
}

test('toBuffer of an unmodified canonical message is byte-identical', () => {
  canonicalRoundTrip(INVITE.toString('latin1'));
  canonicalRoundTrip(
    'SIP/2.0 200 OK\r\n' +
      'Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3, SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1\r\n' +
      'v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1\r\n' +
      'To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n' +
      'From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n' +
      'Call-ID: a84b4c76e66710\r\n' +
      'CSeq: 314159 INVITE\r\n' +
      'X-Odd:  ;;,,\t""\r\n'.replace(':  ', ': ') +
      'l: 4\r\n' +
      '\r\n' +
      '\x00\xff\r\n',
  );
  canonicalRoundTrip('SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 0\r\n\r\n');
  canonicalRoundTrip('NEWMETHOD sip:x@y;lr?a=b SIP/2.0\r\nContent-Length: 3\r\nSubject: \xe9\xe8\r\n\r\n\x80\x81\x82');
});

test('toBuffer normalises header layout', () => {
  const m = parseMessage(Buffer.from('\r\nOPTIONS sip:a@b SIP/2.0\nVia:SIP/2.0/UDP h\nSubject :  x \r\n folded\nContent-Length:  0\n\n'));
  assert.equal(m.toString(), 'OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nSubject: x folded\r\nContent-Length: 0\r\n\r\n');
});

test('toBuffer writes Content-Length from the body', () => {
  const m = request(INVITE);
  m.body = Buffer.from('changed');
  const text = m.toString();
  assert.match(text, /\r\nContent-Length: 7\r\n/);
  assert.ok(text.endsWith('\r\n\r\nchanged'));
  assert.equal(request(m.toBuffer()).body.toString(), 'changed');
  // compact name kept
  const c = request(msg(['OPTIONS sip:a@b SIP/2.0', 'l: 5'], '12345'));
  c.body = Buffer.alloc(0);
  assert.equal(c.toString(), 'OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n');
  // absent: appended after the other headers
  const a = request(msg(['OPTIONS sip:a@b SIP/2.0', 'Via: SIP/2.0/UDP h'], 'xyz'));
  assert.equal(a.toString(), 'OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 3\r\n\r\nxyz');
  // a wrong value set by hand is overwritten too
  a.set('Content-Length', 99);
  assert.match(a.toString(), /Content-Length: 3\r\n/);
  // and a duplicate added by hand is written once
  a.append('l', 1);
  assert.equal(a.toString().match(/Content-Length|\nl:/g)!.length, 1);
});

test('createResponse copies Via/From/To/Call-ID/CSeq and adds a To tag', () => {
  const req = request(
    msg([
      'INVITE sip:bob@biloxi.com SIP/2.0',
      'Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2',
      'v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK3;received=192.0.2.1;rport=5066',
      'Max-Forwards: 68',
      'Record-Route: <sip:p1.example.com;lr>',
      'To: Bob <sip:bob@biloxi.com>',
      'From: Alice <sip:alice@atlanta.com>;tag=1928301774',
      'Call-ID: a84b4c76e66710@pc33.atlanta.com',
      'CSeq: 314159 INVITE',
      'Contact: <sip:alice@pc33.atlanta.com>',
      'Timestamp: 54',
      'Content-Type: application/sdp',
    ], SDP),
  );
  req.validate();
  const r = createResponse(req, 180, undefined, 'abc123');
  assert.equal(r.status, 180);
  assert.equal(r.reason, 'Ringing');
  assert.deepEqual(r.vias.map((v) => v.branch), ['z9hG4bK1', 'z9hG4bK2', 'z9hG4bK3']);
  assert.equal(r.vias[2]!.rport, 5066);
  assert.equal(r.get('from'), req.get('from'));
  assert.equal(r.fromTag, '1928301774');
  assert.equal(r.toTag, 'abc123');
  assert.equal(r.get('to'), 'Bob <sip:bob@biloxi.com>;tag=abc123');
  assert.equal(r.callId, req.callId);
  assert.deepEqual(r.cseq, { seq: 314159, method: 'INVITE' });
  assert.equal(r.recordRoutes().length, 1);
  assert.equal(r.get('contact'), undefined);
  assert.equal(r.get('max-forwards'), undefined);
  assert.equal(r.get('timestamp'), undefined);
  assert.equal(r.get('content-type'), undefined);
  assert.equal(r.body.length, 0);
  r.validate();
  // the wire form parses back to the same thing
  const back = response(r.toBuffer());
  back.validate();
  assert.equal(back.toTag, 'abc123');
  assert.ok(back.toBuffer().equals(r.toBuffer()));
  assert.match(r.toString(), /^SIP\/2\.0 180 Ringing\r\n/);
  assert.match(r.toString(), /\r\nContent-Length: 0\r\n\r\n$/);
  // the response's header fields are its own
  r.headers[0]!.value = 'SIP/2.0/UDP changed';
  assert.equal(req.get('via'), 'SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2');

  // 100: no tag, Timestamp echoed, no Record-Route
  const t = createResponse(req, 100, undefined, 'ignored');
  assert.equal(t.toTag, null);
  assert.equal(t.get('timestamp'), '54');
  assert.equal(t.recordRoutes().length, 0);
  // final error: no Record-Route, custom reason
  const e = createResponse(req, 486, 'Busy Here Now', 'x1');
  assert.equal(e.reason, 'Busy Here Now');
  assert.equal(e.toTag, 'x1');
  assert.equal(e.recordRoutes().length, 0);
  // without a tag argument: To copied as is
  assert.equal(createResponse(req, 200).get('to'), 'Bob <sip:bob@biloxi.com>');
});

test('createResponse keeps an existing To tag (in-dialog request)', () => {
  const req = request(msg(['BYE sip:alice@pc33.atlanta.com SIP/2.0', 'Via: SIP/2.0/UDP h;branch=z9hG4bK9', 'To: <sip:alice@atlanta.com>;tag=orig', 'From: <sip:bob@biloxi.com>;tag=b', 'Call-ID: c', 'CSeq: 2 BYE']));
  const r = createResponse(req, 200, undefined, 'new');
  assert.equal(r.toTag, 'orig');
  assert.equal(r.get('to'), '<sip:alice@atlanta.com>;tag=orig');
});

test('createResponse on an addr-spec To adds the tag as a header parameter', () => {
  const req = request(msg(['OPTIONS sip:b@c SIP/2.0', 'Via: SIP/2.0/UDP h;branch=z9hG4bK9', 't: sip:bob@biloxi.com', 'From: <sip:a@b>;tag=1', 'Call-ID: c', 'CSeq: 1 OPTIONS']));
  const r = createResponse(req, 200, undefined, 'tt');
  assert.equal(r.toTag, 'tt');
  assert.equal(r.to.angle, false);
  assert.equal(formatUri(r.to.uri), 'sip:bob@biloxi.com');
});
