/**
 * Parser benchmark (not a test): the receive-path cost of one typical INVITE with an SDP body.
 *
 *   node --import tsx bench/parser.ts            # prints JSON
 *   node --import tsx bench/parser.ts 5000       # ms per measurement (default 2000)
 *
 * parseValidatePerSec: parseMessage + validate() (what a transport does with each datagram);
 * parseOnlyPerSec: parseMessage alone (header values stay raw, parsed lazily);
 * serializePerSec: toBuffer() of an already parsed message.
 */
import { pathToFileURL } from 'node:url';
import { parseMessage } from '../src/sip/message/index.ts';

const SDP =
  'v=0\r\n' +
  'o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n' +
  's=-\r\n' +
  'c=IN IP4 192.0.2.101\r\n' +
  't=0 0\r\n' +
  'm=audio 49172 RTP/AVP 0 8\r\n' +
  'a=rtpmap:0 PCMU/8000\r\n' +
  'a=rtpmap:8 PCMA/8000\r\n' +
  'a=sendrecv\r\n';

export const BENCH_INVITE = Buffer.from(
  'INVITE sip:bob@biloxi.example.com SIP/2.0\r\n' +
    'Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n' +
    'Max-Forwards: 70\r\n' +
    'To: Bob <sip:bob@biloxi.example.com>\r\n' +
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n' +
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n' +
    'CSeq: 314159 INVITE\r\n' +
    'Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n' +
    'Content-Type: application/sdp\r\n' +
    `Content-Length: ${Buffer.byteLength(SDP)}\r\n` +
    'User-Agent: sipfleet-bench/0.1\r\n' +
    'Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n' +
    'Supported: replaces, timer, 100rel\r\n' +
    '\r\n' +
    SDP,
  'latin1',
);

let sink = 0;

/** Runs `fn` in batches until `ms` have passed; returns calls per second. */
function measure(ms: number, fn: () => void): number {
  // warm-up, so the JIT has compiled the hot path before the clock starts
  for (let i = 0; i < 20_000; i++) fn();
  const batch = 2_000;
  let count = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(ms) * 1_000_000n;
  let elapsed = 0n;
  while (elapsed < limit) {
    for (let i = 0; i < batch; i++) fn();
    count += batch;
    elapsed = process.hrtime.bigint() - start;
  }
  return Math.round(count / (Number(elapsed) / 1e9));
}

export async function runParserBench(
  msPerCase = 2000,
): Promise<{ parseValidatePerSec: number; parseOnlyPerSec: number; serializePerSec: number }> {
  const buf = BENCH_INVITE;
  // sanity: the message must be valid, or we would be measuring the error path
  parseMessage(buf).validate();
  const parseValidatePerSec = measure(msPerCase, () => {
    const m = parseMessage(buf);
    m.validate();
    sink += m.headers.length;
  });
  const parseOnlyPerSec = measure(msPerCase, () => {
    sink += parseMessage(buf).headers.length;
  });
  const parsed = parseMessage(buf);
  parsed.validate();
  const serializePerSec = measure(msPerCase, () => {
    sink += parsed.toBuffer().length;
  });
  if (sink === -1) console.log('unreachable');
  return { parseValidatePerSec, parseOnlyPerSec, serializePerSec };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ms = process.argv[2] !== undefined ? Number(process.argv[2]) : 2000;
  void runParserBench(Number.isFinite(ms) && ms > 0 ? ms : 2000).then((result) => {
    console.log(JSON.stringify({ messageBytes: BENCH_INVITE.length, ...result }, null, 2));
  });
}
