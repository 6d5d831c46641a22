import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamFramer, type FrameEvent } from '../../../src/sip/transport/stream-framer.ts';

function msg(method: string, seq: number, body = '', lengthHeader = 'Content-Length'): string {
  return (
    `${method} sip:bob@127.0.0.1 SIP/2.0\r\n` +
    `Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKf${seq}\r\n` +
    'From: <sip:alice@127.0.0.1>;tag=a1\r\n' +
    'To: <sip:bob@127.0.0.1>\r\n' +
    `Call-ID: framer-${seq}\r\n` +
    `CSeq: ${seq} ${method}\r\n` +
    `${lengthHeader}: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    '\r\n' +
    body
  );
}

/** Pushes the chunks through one framer and returns what it emitted, messages as text. */
function frame(chunks: Array<string | Buffer>, maxSize = 65535): Array<{ kind: string; text?: string; status?: number }> {
  const framer = new StreamFramer(maxSize);
  const out: Array<{ kind: string; text?: string; status?: number }> = [];
  const emit = (ev: FrameEvent): void => {
    if (ev.kind === 'message') out.push({ kind: 'message', text: ev.data.toString('latin1') });
    else if (ev.kind === 'ping') out.push({ kind: 'ping' });
    else out.push({ kind: 'error', status: ev.error.status });
  };
  for (const c of chunks) framer.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c, emit);
  return out;
}

function bytes(s: string): string[] {
  return [...s];
}

describe('StreamFramer', () => {
  test('several messages in one chunk', () => {
    const a = msg('OPTIONS', 1);
    const b = msg('MESSAGE', 2, 'hello');
    const c = msg('INFO', 3, 'x=1\r\n\r\ny=2');
    const out = frame([a + b + c]);
    assert.deepEqual(out, [
      { kind: 'message', text: a },
      { kind: 'message', text: b },
      { kind: 'message', text: c },
    ]);
  });

  test('one message split over many chunks, including byte by byte', () => {
    const m = msg('MESSAGE', 7, 'a body of some length');
    for (const size of [1, 2, 3, 7, 50]) {
      const chunks: string[] = [];
      for (let i = 0; i < m.length; i += size) chunks.push(m.slice(i, i + size));
      assert.deepEqual(frame(chunks), [{ kind: 'message', text: m }], `chunks of ${size}`);
    }
  });

  test('two messages byte by byte come out whole and in order', () => {
    const a = msg('OPTIONS', 1, 'abc');
    const b = msg('OPTIONS', 2);
    assert.deepEqual(frame(bytes(a + b)), [
      { kind: 'message', text: a },
      { kind: 'message', text: b },
    ]);
  });

  test('a body split across chunks (and the blank line split from the body)', () => {
    const body = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n';
    const m = msg('INVITE', 1, body);
    const headEnd = m.indexOf('\r\n\r\n') + 4;
    const out = frame([m.slice(0, headEnd - 2), m.slice(headEnd - 2, headEnd), m.slice(headEnd, headEnd + 5), m.slice(headEnd + 5, headEnd + 20), m.slice(headEnd + 20)]);
    assert.deepEqual(out, [{ kind: 'message', text: m }]);
  });

  test('a message is not emitted before its whole body is there', () => {
    const framer = new StreamFramer(65535);
    const events: FrameEvent[] = [];
    const m = msg('MESSAGE', 1, '0123456789');
    framer.push(Buffer.from(m.slice(0, m.length - 1), 'latin1'), (e) => events.push(e));
    assert.equal(events.length, 0);
    framer.push(Buffer.from(m.slice(m.length - 1), 'latin1'), (e) => events.push(e));
    assert.equal(events.length, 1);
    assert.equal(events[0]!.kind, 'message');
  });

  test('CRLFCRLF between messages is a ping; a single CRLF is ignored', () => {
    const a = msg('OPTIONS', 1);
    const b = msg('OPTIONS', 2);
    assert.deepEqual(frame([a + '\r\n\r\n' + b]), [
      { kind: 'message', text: a },
      { kind: 'ping' },
      { kind: 'message', text: b },
    ]);
    assert.deepEqual(frame([a + '\r\n' + b]), [
      { kind: 'message', text: a },
      { kind: 'message', text: b },
    ]);
    assert.deepEqual(frame(['\r\n']), []);
    assert.deepEqual(frame(['\r\n\r\n']), [{ kind: 'ping' }]);
    assert.deepEqual(frame(['\r\n\r\n\r\n\r\n']), [{ kind: 'ping' }, { kind: 'ping' }]);
  });

  test('a ping split over chunks is still a ping (TCP may cut anywhere)', () => {
    assert.deepEqual(frame(bytes('\r\n\r\n')), [{ kind: 'ping' }]);
    assert.deepEqual(frame(['\r\n', '\r\n']), [{ kind: 'ping' }]);
    assert.deepEqual(frame(['\r\n\r', '\n']), [{ kind: 'ping' }]);
    const a = msg('OPTIONS', 1);
    assert.deepEqual(frame([a + '\r\n', '\r\n' + a]), [
      { kind: 'message', text: a },
      { kind: 'ping' },
      { kind: 'message', text: a },
    ]);
  });

  test('a lone CRLF (pong) before a message that arrives later is dropped, not glued to it', () => {
    const a = msg('OPTIONS', 1);
    assert.deepEqual(frame(['\r\n', a]), [{ kind: 'message', text: a }]);
  });

  test('leading CRLFs before the first message are skipped', () => {
    const a = msg('OPTIONS', 1, 'xy');
    assert.deepEqual(frame(['\r\n' + a]), [{ kind: 'message', text: a }]);
    assert.deepEqual(frame(['\n\n\n' + a]), [{ kind: 'message', text: a }]);
  });

  test('compact "l:" Content-Length (any case, with spaces)', () => {
    const a = msg('MESSAGE', 1, 'compact body', 'l');
    const b = msg('MESSAGE', 2, 'second', 'L ');
    const c = msg('MESSAGE', 3, 'third', 'content-LENGTH');
    assert.deepEqual(frame([a + b + c]), [
      { kind: 'message', text: a },
      { kind: 'message', text: b },
      { kind: 'message', text: c },
    ]);
  });

  test('a header whose name merely ends in "l" is not taken for Content-Length', () => {
    const m =
      'MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\nX-Level: 99\r\n' +
      'Content-Length: 3\r\n\r\nabc';
    assert.deepEqual(frame([m]), [{ kind: 'message', text: m }]);
  });

  test('a message over maxSize is error 513 (announced body, or headers that never end)', () => {
    const big = msg('MESSAGE', 1, 'x'.repeat(2000));
    const out = frame([big], 1024);
    assert.deepEqual(out, [{ kind: 'error', status: 513 }]);
    // The announced length alone is enough: no need to wait for the body.
    const head = big.slice(0, big.indexOf('\r\n\r\n') + 4);
    assert.deepEqual(frame([head], 1024), [{ kind: 'error', status: 513 }]);
    // Headers without an end, growing past the limit.
    const endless = 'OPTIONS sip:a@b SIP/2.0\r\n' + 'X-Filler: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n'.repeat(40);
    assert.deepEqual(frame([endless], 1024), [{ kind: 'error', status: 513 }]);
  });

  test('a message exactly at maxSize passes', () => {
    const m = msg('MESSAGE', 1, 'z'.repeat(100));
    assert.deepEqual(frame([m], m.length), [{ kind: 'message', text: m }]);
    assert.deepEqual(frame([m], m.length - 1), [{ kind: 'error', status: 513 }]);
  });

  test('missing Content-Length means an empty body: the next bytes start the next message', () => {
    const noLength =
      'OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK9\r\nCSeq: 1 OPTIONS\r\n\r\n';
    const b = msg('OPTIONS', 2);
    assert.deepEqual(frame([noLength + b]), [
      { kind: 'message', text: noLength },
      { kind: 'message', text: b },
    ]);
  });

  test('binary body bytes pass unchanged', () => {
    const body = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x80]);
    const head = Buffer.from(msg('MESSAGE', 1, 'x'.repeat(body.length)).replace(/x+$/, ''), 'latin1');
    const whole = Buffer.concat([head, body]);
    const framer = new StreamFramer(65535);
    const got: Buffer[] = [];
    for (let i = 0; i < whole.length; i++) framer.push(whole.subarray(i, i + 1), (e) => { if (e.kind === 'message') got.push(Buffer.from(e.data)); });
    assert.equal(got.length, 1);
    assert.ok(got[0]!.equals(whole));
  });

  test('the end of the header section is found wherever chunks cut it (CRLF or bare LF, after a ping)', () => {
    const crlf = msg('OPTIONS', 1, 'body');
    const lf = crlf.replace(/\r\n/g, '\n');
    for (const m of [crlf, lf]) {
      const end = m.indexOf(m === crlf ? '\r\n\r\n' : '\n\n');
      for (let cut = end - 3; cut <= end + 4; cut++) {
        // three pieces: the blank line's bytes land in different chunks, after a search found nothing
        const chunks = ['\r\n\r\n' + m.slice(0, cut - 2), m.slice(cut - 2, cut), m.slice(cut)];
        assert.deepEqual(frame(chunks), [{ kind: 'ping' }, { kind: 'message', text: m }], `cut at ${cut - end} from the blank line`);
      }
    }
  });
});
