/**
 * Property tests of the message layer with fast-check.
 *
 * (a) Round trip: structurally valid requests and responses are generated as a model, serialised in the
 *     canonical layout (`Name: value`, CRLF), parsed, validated and serialised again; the bytes and the parsed
 *     views must match the model.
 * (b) Robustness: real-looking messages are mutated (byte flips, deletions, insertions of special characters,
 *     duplicated lines, truncation...). parseMessage, validate and every accessor may only throw SipParseError
 *     (status 400, 505 or 513); whatever parses re-serialises to a fixpoint.
 *
 * SIPFLEET_FUZZ_RUNS scales (b) (default 100000); SIPFLEET_FUZZ_SEED replays a reported seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SipParseError } from '../../../src/sip/errors.ts';
import {
  createResponse,
  formatUri,
  headerKey,
  parseMessage,
  SipRequest,
  SipResponse,
  type SipMessage,
} from '../../../src/sip/message/index.ts';

const MUTATION_RUNS = Number(process.env.SIPFLEET_FUZZ_RUNS ?? 100_000);
const ROUND_TRIP_RUNS = Math.max(200, Math.min(5_000, Math.round(MUTATION_RUNS / 40)));
const SEED = process.env.SIPFLEET_FUZZ_SEED !== undefined ? Number(process.env.SIPFLEET_FUZZ_SEED) : undefined;
const seedOption = SEED !== undefined ? { seed: SEED } : {};

// ---------------------------------------------------------------------------------------------------------------
// character sets (RFC 3261 §25.1)

const ALPHA_LOWER = 'abcdefghijklmnopqrstuvwxyz';
const ALPHA = ALPHA_LOWER + ALPHA_LOWER.toUpperCase();
const DIGIT = '0123456789';
const HEX = '0123456789abcdefABCDEF';
const TOKEN = ALPHA + DIGIT + "-.!%*_+`'~";
const MARK = "-_.!~*'()";
const UNRESERVED = ALPHA + DIGIT + MARK;
const USER_CHARS = UNRESERVED + '&=+$,;?/';
const PASSWORD_CHARS = UNRESERVED + '&=+$,';
const PARAM_CHARS = UNRESERVED + '[]/:&+$';
const PARAM_NAME_CHARS = ALPHA_LOWER + DIGIT + "-_.!~*'()[]/:&+$";
const HNV_CHARS = UNRESERVED + '[]/?:+$';
const WORD = ALPHA + DIGIT + "-.!%*_+`'~()<>:\\\"/[]?{}";
/** Printable ASCII, HTAB and the high half of latin1: anything a header value or reason may hold but CR/LF. */
const TEXT_CHARS = (() => {
  let s = '\t';
  for (let c = 0x20; c < 0x7f; c++) s += String.fromCharCode(c);
  for (let c = 0x80; c <= 0xff; c++) s += String.fromCharCode(c);
  return s;
})();

const chars = (set: string): fc.Arbitrary<string> => fc.constantFrom(...set.split(''));
const str = (set: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: chars(set), minLength, maxLength });
/** Characters of `set` or %HH escapes. */
const escapedStr = (set: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({
    unit: fc.oneof({ weight: 6, arbitrary: chars(set) }, { weight: 1, arbitrary: fc.tuple(chars(HEX), chars(HEX)).map(([a, b]) => '%' + a + b) }),
    minLength,
    maxLength,
  });

const token = (max = 16): fc.Arbitrary<string> => str(TOKEN, 1, max);

// ---------------------------------------------------------------------------------------------------------------
// model and canonical serialisation

const label = fc
  .tuple(chars(ALPHA_LOWER + DIGIT), str(ALPHA_LOWER + DIGIT + '-', 0, 8), chars(ALPHA_LOWER + DIGIT))
  .map(([a, mid, b]) => (mid.length === 0 ? a : a + mid + b));
const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 1, maxLength: 4 }).map((g) => '[2001:db8::' + g.map((x) => x.toString(16)).join(':') + ']');
const host = fc.oneof({ weight: 4, arbitrary: domain }, { weight: 2, arbitrary: ipv4 }, { weight: 1, arbitrary: ipv6 });
const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null });

interface UriModel {
  text: string;
  /** Usable outside angle brackets (addr-spec): no ';', '?' or ',' anywhere. */
  bare: boolean;
}

const uriParams = fc.uniqueArray(
  fc.tuple(str(PARAM_NAME_CHARS, 1, 8), fc.option(escapedStr(PARAM_CHARS, 0, 10), { nil: null })),
  { maxLength: 4, selector: ([name]) => name },
);
const uriHeaders = fc.array(fc.tuple(escapedStr(HNV_CHARS, 1, 8), escapedStr(HNV_CHARS, 0, 10)), { maxLength: 3 });

const sipUri = (withHeaders: boolean): fc.Arbitrary<UriModel> =>
  fc
    .record({
      scheme: fc.constantFrom('sip', 'sips'),
      user: fc.option(escapedStr(USER_CHARS, 1, 12), { nil: null }),
      password: fc.option(escapedStr(PASSWORD_CHARS, 0, 8), { nil: null }),
      host,
      port,
      params: uriParams,
      headers: withHeaders ? uriHeaders : fc.constant([] as Array<[string, string]>),
    })
    .map((u) => {
      let text = u.scheme + ':';
      if (u.user !== null) text += u.user + (u.password !== null ? ':' + u.password : '') + '@';
      text += u.host + (u.port !== null ? ':' + u.port : '');
      for (const [k, v] of u.params) text += v === null ? ';' + k : `;${k}=${v}`;
      if (u.headers.length > 0) text += '?' + u.headers.map(([k, v]) => `${k}=${v}`).join('&');
      return { text, bare: !/[;?,]/.test(text) };
    });

interface ViaModel {
  transport: string;
  host: string;
  port: number | null;
  branch: string;
  rport: number | null;
  received: string | null;
}

const via: fc.Arbitrary<ViaModel> = fc.record({
  transport: fc.constantFrom('UDP', 'TCP', 'TLS', 'SCTP', 'WS', 'WSS'),
  host,
  port,
  branch: token(20).map((t) => 'z9hG4bK' + t),
  rport: fc.option(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 65535 })), { nil: null }),
  received: fc.option(ipv4, { nil: null }),
});

function formatVia(v: ViaModel): string {
  let s = `SIP/2.0/${v.transport} ${v.host}${v.port !== null ? ':' + v.port : ''};branch=${v.branch}`;
  if (v.rport !== null) s += v.rport === -1 ? ';rport' : `;rport=${v.rport}`;
  if (v.received !== null) s += `;received=${v.received}`;
  return s;
}

interface AddressModel {
  display: { kind: 'none' } | { kind: 'token'; text: string } | { kind: 'quoted'; text: string };
  uri: UriModel;
  angle: boolean;
  tag: string | null;
}

const display = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.array(token(8), { minLength: 1, maxLength: 3 }).map((ws) => ({ kind: 'token' as const, text: ws.join(' ') })),
  fc.string({ unit: chars(TEXT_CHARS.replace('\t', '')), maxLength: 20 }).map((text) => ({ kind: 'quoted' as const, text })),
);

const address = (tagged: boolean): fc.Arbitrary<AddressModel> =>
  fc
    .record({
      display,
      uri: sipUri(false),
      angle: fc.boolean(),
      tag: tagged ? token(16) : fc.option(token(16), { nil: null }),
    })
    .map((a) => (a.uri.bare ? a : { ...a, angle: true }))
    .map((a) => (a.angle ? a : { ...a, display: { kind: 'none' as const } }));

function formatAddressModel(a: AddressModel): string {
  let s = '';
  if (a.display.kind === 'token') s += a.display.text + ' ';
  else if (a.display.kind === 'quoted') s += '"' + a.display.text.replace(/["\\]/g, '\\$&') + '" ';
  s += a.angle ? `<${a.uri.text}>` : a.uri.text;
  if (a.tag !== null) s += ';tag=' + a.tag;
  return s;
}

/** Header keys the model writes itself; random extra headers must not be one of them. */
const MODEL_KEYS = new Set(['via', 'from', 'to', 'call-id', 'cseq', 'content-length', 'max-forwards']);
const headerValue = fc
  .string({ unit: chars(TEXT_CHARS), maxLength: 40 })
  .map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ''));
const extraHeader = fc
  .tuple(token(16), headerValue)
  .filter(([name]) => !MODEL_KEYS.has(headerKey(name)));

interface MessageModel {
  request: boolean;
  method: string;
  uri: UriModel;
  status: number;
  reason: string;
  vias: ViaModel[];
  /** How many Via elements go into each Via header field. */
  viaSplit: number[];
  compactVia: boolean;
  from: AddressModel;
  to: AddressModel;
  callId: string;
  seq: number;
  maxForwards: number | null;
  extras: Array<[string, string]>;
  body: Uint8Array;
}

// (a token holds no '/', so a generated method never reads as a "SIP/2.0" status line)
const messageModel: fc.Arbitrary<MessageModel> = fc.record({
    request: fc.boolean(),
    method: token(12),
    uri: fc.oneof(sipUri(true), fc.constantFrom({ text: 'tel:+12015550123', bare: true }, { text: 'urn:service:sos', bare: true })),
    status: fc.integer({ min: 100, max: 699 }),
    reason: fc.string({ unit: chars(TEXT_CHARS), maxLength: 30 }),
    vias: fc.array(via, { minLength: 1, maxLength: 5 }),
    viaSplit: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 5, maxLength: 5 }),
    compactVia: fc.boolean(),
    from: address(true),
    to: address(false),
    callId: fc.tuple(str(WORD, 1, 24), fc.option(str(WORD, 1, 16), { nil: null })).map(([a, b]) => (b === null ? a : a + '@' + b)),
    seq: fc.integer({ min: 0, max: 0x7fffffff }),
    maxForwards: fc.option(fc.integer({ min: 0, max: 255 }), { nil: null }),
    extras: fc.array(extraHeader, { maxLength: 6 }),
    body: fc.uint8Array({ maxLength: 300 }),
  });

function serialise(m: MessageModel): Buffer {
  const lines: string[] = [];
  lines.push(m.request ? `${m.method} ${m.uri.text} SIP/2.0` : `SIP/2.0 ${m.status} ${m.reason}`);
  let i = 0;
  for (let f = 0; i < m.vias.length; f++) {
    const n = m.viaSplit[f % m.viaSplit.length]!;
    const group = m.vias.slice(i, i + n);
    i += n;
    lines.push(`${m.compactVia && f % 2 === 1 ? 'v' : 'Via'}: ${group.map(formatVia).join(', ')}`);
  }
  if (m.request && m.maxForwards !== null) lines.push(`Max-Forwards: ${m.maxForwards}`);
  lines.push(`From: ${formatAddressModel(m.from)}`);
  lines.push(`To: ${formatAddressModel(m.to)}`);
  lines.push(`Call-ID: ${m.callId}`);
  lines.push(`CSeq: ${m.seq} ${m.method}`);
  for (const [name, value] of m.extras) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${m.body.length}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return Buffer.concat([head, m.body]);
}

function expectedDisplay(a: AddressModel): string | null {
  return a.display.kind === 'none' ? null : a.display.text;
}

test(`round trip: generated messages serialise, parse and serialise again to the same bytes (${ROUND_TRIP_RUNS} runs)`, () => {
  const started = performance.now();
  fc.assert(
    fc.property(messageModel, (model) => {
      const wire = serialise(model);
      const m = parseMessage(wire);
      m.validate();
      const again = m.toBuffer();
      assert.ok(again.equals(wire), `toBuffer differs:\n${JSON.stringify(again.toString('latin1'))}\n${JSON.stringify(wire.toString('latin1'))}`);
      if (model.request) {
        assert.ok(m instanceof SipRequest);
        assert.equal(m.method, model.method);
        assert.equal(m.uriText, model.uri.text);
        assert.equal(formatUri(m.uri), model.uri.text);
        assert.equal(m.maxForwards, model.maxForwards);
      } else {
        assert.ok(m instanceof SipResponse);
        assert.equal(m.status, model.status);
        assert.equal(m.reason, model.reason);
      }
      assert.deepEqual(m.vias.map((v) => v.branch), model.vias.map((v) => v.branch));
      assert.deepEqual(
        m.vias.map((v) => [v.transport, v.host, v.port, v.rport, v.received]),
        model.vias.map((v) => [v.transport, v.host, v.port, v.rport, v.received]),
      );
      assert.equal(m.fromTag, model.from.tag);
      assert.equal(m.toTag, model.to.tag);
      assert.equal(m.from.displayName, expectedDisplay(model.from));
      assert.equal(m.to.displayName, expectedDisplay(model.to));
      assert.equal(formatUri(m.from.uri), model.from.uri.text);
      assert.equal(formatUri(m.to.uri), model.to.uri.text);
      assert.equal(m.from.angle, model.from.angle);
      assert.equal(m.callId, model.callId);
      assert.deepEqual(m.cseq, { seq: model.seq, method: model.method });
      assert.ok(m.body.equals(model.body));
      assert.equal(m.headers.length, wire.toString('latin1').split('\r\n\r\n')[0]!.split('\r\n').length - 1);
      for (const [name, value] of model.extras) assert.ok(m.headers.some((h) => h.name === name && h.value === value), name);
      // a copy serialises the same; a response to a valid request is valid
      assert.ok(m.clone().toBuffer().equals(wire));
      if (m instanceof SipRequest) {
        const r = createResponse(m, 200, undefined, 'rt-tag');
        const back = parseMessage(r.toBuffer());
        back.validate();
        assert.equal(back.toTag, model.to.tag ?? 'rt-tag');
        assert.deepEqual(back.vias.map((v) => v.branch), model.vias.map((v) => v.branch));
      }
    }),
    { numRuns: ROUND_TRIP_RUNS, ...seedOption },
  );
  console.log(`# round trip: ${ROUND_TRIP_RUNS} runs in ${(performance.now() - started).toFixed(0)} ms`);
});

// ---------------------------------------------------------------------------------------------------------------
// (b) mutations of real-looking messages

const SDP =
  'v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\n' +
  'm=audio 49172 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n';

const TEMPLATES: Buffer[] = [
  'INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n' +
    'Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n' +
    'Max-Forwards: 70\r\n' +
    'Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n' +
    'To: Bob <sip:bob@biloxi.example.com>\r\n' +
    'From: "Alice \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774\r\n' +
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n' +
    'CSeq: 314159 INVITE\r\n' +
    'Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"\r\n' +
    'Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n' +
    'Supported: replaces, timer\r\n' +
    'Content-Type: application/sdp\r\n' +
    `Content-Length: ${SDP.length}\r\n` +
    '\r\n' +
    SDP,
  'SIP/2.0 200 OK\r\n' +
    'Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n' +
    'Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2, SIP/2.0/TCP [2001:db8::9:1]:6050;branch=z9hG4bKnashds8;rport=5066\r\n' +
    'Record-Route: <sip:server10.biloxi.example.com;lr>, <sip:bigbox3.site3.atlanta.example.com;lr>\r\n' +
    'To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n' +
    'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n' +
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n' +
    'CSeq: 314159 INVITE\r\n' +
    'Contact: <sip:bob@192.0.2.4>\r\n' +
    'Content-Type: application/sdp\r\n' +
    `Content-Length: ${SDP.length}\r\n` +
    '\r\n' +
    SDP,
  'REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n' +
    'v: SIP/2.0/TCP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n' +
    'Max-Forwards: 70\r\n' +
    't: Bob <sip:bob@biloxi.example.com>\r\n' +
    'f: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n' +
    'i: 843817637684230@998sdasdh09\r\n' +
    'CSeq: 1826 REGISTER\r\n' +
    'm: <sip:bob@192.0.2.4>;expires=7200;q=0.7, sip:bob@[2001:db8::4];expires=60\r\n' +
    'Authorization: Digest username="bob", realm="biloxi.example.com",\r\n' +
    '  nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:biloxi.example.com", response="245f23415f11432b3434341c022"\r\n' +
    'Expires: 7200\r\n' +
    'l: 0\r\n' +
    '\r\n',
  'OPTIONS tel:+1-201-555-0123;phone-context=example.com SIP/2.0\n' +
    'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKopt1\n' +
    'Max-Forwards: 5\n' +
    'To: <tel:+1-201-555-0123>\n' +
    'From: sip:caller@example.org;tag=33242\n' +
    'Call-ID: opt.0ha0isndaksdj\n' +
    'CSeq: 8 OPTIONS\n' +
    'Accept: application/sdp, application/pkcs7-mime,\n' +
    '        multipart/mixed\n' +
    'Content-Length: 0\n' +
    '\n',
].map((t) => Buffer.from(t, 'latin1'));

test('templates are valid messages', () => {
  for (const t of TEMPLATES) {
    const m = parseMessage(t);
    m.validate();
    assert.ok(m.vias.length >= 1);
  }
});

/** Bytes inserted by the mutator: the delimiters of the SIP grammar, controls, high bytes. */
const SPECIAL = [0x0d, 0x0a, 0x3a, 0x3b, 0x2c, 0x22, 0x3c, 0x3e, 0x25, 0x40, 0x20, 0x09, 0x00, 0x5c, 0x3d, 0x3f, 0x5b, 0x5d, 0x80, 0xa0, 0xc3, 0xff];
const NUMBERS = ['0', '4294967296', '99999999999', '-1', '65536', '256', '2147483648', '999', '1.0'];

type Op = [kind: number, at: number, arg: number];

function mutate(template: Buffer, ops: Op[]): Buffer {
  let b: Buffer = template;
  for (const [kind, at, arg] of ops) {
    const n = b.length;
    const pos = n === 0 ? 0 : at % n;
    switch (kind) {
      case 0: // flip one bit
        if (n === 0) break;
        b = Buffer.from(b);
        b[pos] = b[pos]! ^ (1 << (arg & 7));
        break;
      case 1: // overwrite with a special byte
        if (n === 0) break;
        b = Buffer.from(b);
        b[pos] = SPECIAL[arg % SPECIAL.length]!;
        break;
      case 2: // delete 1..8 bytes
        b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(n, pos + 1 + (arg & 7)))]);
        break;
      case 3: // insert a special byte (or two)
        b = Buffer.concat([
          b.subarray(0, pos),
          Buffer.from(arg & 0x100 ? [SPECIAL[arg % SPECIAL.length]!, SPECIAL[(arg >> 4) % SPECIAL.length]!] : [SPECIAL[arg % SPECIAL.length]!]),
          b.subarray(pos),
        ]);
        break;
      case 4: {
        // duplicate the line holding pos
        const start = pos === 0 ? 0 : b.lastIndexOf(0x0a, pos - 1) + 1;
        let end = b.indexOf(0x0a, pos);
        end = end === -1 ? n : end + 1;
        b = Buffer.concat([b.subarray(0, end), b.subarray(start, end), b.subarray(end)]);
        break;
      }
      case 5: // truncate
        b = b.subarray(0, pos);
        break;
      case 6: // overwrite a random byte
        if (n === 0) break;
        b = Buffer.from(b);
        b[pos] = arg & 0xff;
        break;
      case 7: // insert a number that overflows something
        b = Buffer.concat([b.subarray(0, pos), Buffer.from(NUMBERS[arg % NUMBERS.length]!), b.subarray(pos)]);
        break;
      default: {
        // delete a whole line
        const start = pos === 0 ? 0 : b.lastIndexOf(0x0a, pos - 1) + 1;
        let end = b.indexOf(0x0a, pos);
        end = end === -1 ? n : end + 1;
        b = Buffer.concat([b.subarray(0, start), b.subarray(end)]);
      }
    }
  }
  return b;
}

const STATUSES = new Set([400, 505, 513]);

function onlyParseErrors(e: unknown, where: string): void {
  if (e instanceof SipParseError && STATUSES.has(e.status)) return;
  const err = new Error(`${where} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  (err as { cause?: unknown }).cause = e;
  throw err;
}

/** Runs fn; returns false when it threw a SipParseError, rethrows anything else. */
function attempt(fn: () => unknown, where: string): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    onlyParseErrors(e, where);
    return false;
  }
}

function touchEverything(m: SipMessage): void {
  attempt(() => m.vias, 'vias');
  attempt(() => m.topVia, 'topVia');
  attempt(() => m.callId, 'callId');
  attempt(() => m.cseq, 'cseq');
  attempt(() => m.from, 'from');
  attempt(() => m.to, 'to');
  attempt(() => m.fromTag, 'fromTag');
  attempt(() => m.toTag, 'toTag');
  attempt(() => m.contacts(), 'contacts');
  attempt(() => m.routes(), 'routes');
  attempt(() => m.recordRoutes(), 'recordRoutes');
  attempt(() => m.getAll('allow'), 'getAll(allow)');
  attempt(() => m.getAll('supported'), 'getAll(supported)');
  if (m instanceof SipRequest) {
    attempt(() => m.uri, 'uri');
    attempt(() => m.uriText, 'uriText');
    attempt(() => m.maxForwards, 'maxForwards');
  }
}

let stats = { parsed: 0, validated: 0, rejected: 0 };

function checkMutant(buf: Buffer): void {
  let m: SipMessage;
  try {
    m = parseMessage(buf);
  } catch (e) {
    onlyParseErrors(e, 'parseMessage');
    stats.rejected++;
    return;
  }
  stats.parsed++;
  const valid = attempt(() => m.validate(), 'validate');
  touchEverything(m);
  // whatever parsed re-serialises to a fixpoint, with the same verdict from validate
  const out = m.toBuffer();
  let again: SipMessage;
  try {
    again = parseMessage(out);
  } catch (e) {
    throw new Error(`re-parse of toBuffer failed: ${(e as Error).message}\n${JSON.stringify(out.toString('latin1'))}`);
  }
  assert.ok(again.toBuffer().equals(out), 'toBuffer is not a fixpoint');
  assert.equal(attempt(() => again.validate(), 'validate (re-parsed)'), valid, 'validate verdict changed after re-serialising');
  if (valid) {
    stats.validated++;
    if (m instanceof SipRequest) {
      const r = createResponse(m, 200, undefined, 'fuzz');
      parseMessage(r.toBuffer()).validate();
    }
  }
}

test(`mutated messages only ever raise SipParseError (${MUTATION_RUNS} runs)`, () => {
  const op: fc.Arbitrary<Op> = fc.tuple(fc.nat(8), fc.nat(0xffff), fc.nat(0x1ff));
  stats = { parsed: 0, validated: 0, rejected: 0 };
  const started = performance.now();
  fc.assert(
    fc.property(fc.nat(TEMPLATES.length - 1), fc.array(op, { minLength: 1, maxLength: 6 }), (t, ops) => {
      checkMutant(mutate(TEMPLATES[t]!, ops));
    }),
    { numRuns: MUTATION_RUNS, ...seedOption },
  );
  const ms = performance.now() - started;
  console.log(
    `# mutations: ${MUTATION_RUNS} runs in ${ms.toFixed(0)} ms (${((ms * 1000) / MUTATION_RUNS).toFixed(1)} µs/run); ` +
      `parsed ${stats.parsed}, validated ${stats.validated}, rejected by parseMessage ${stats.rejected}`,
  );
  // the mutator must leave a fair share of messages parseable, or the accessors were never exercised
  assert.ok(stats.parsed > MUTATION_RUNS * 0.3, `only ${stats.parsed} mutants parsed`);
  assert.ok(stats.validated > MUTATION_RUNS * 0.1, `only ${stats.validated} mutants validated`);
});

test('the mutation checker catches a non-SipParseError', () => {
  assert.throws(() => onlyParseErrors(new TypeError('x'), 'test'), /TypeError/);
  assert.throws(() => onlyParseErrors(new SipParseError('x', 500), 'test'), /SipParseError/);
  assert.doesNotThrow(() => onlyParseErrors(new SipParseError('x', 400), 'test'));
  // a few fixed mutants
  const t = TEMPLATES[0]!;
  for (const ops of [[[5, 10, 0]], [[3, 0, 1]], [[4, 60, 0], [4, 60, 0]], [[7, 300, 2]]] as Op[][]) {
    assert.doesNotThrow(() => checkMutant(mutate(t, ops)));
  }
  assert.notDeepEqual(mutate(t, [[0, 5, 0]]), t);
  assert.equal(mutate(t, [[5, 10, 0]]).length, 10);
});
