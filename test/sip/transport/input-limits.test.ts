/**
 * Hardened input at the transport layer: per-transport size limits, header limits, rejected input counted by
 * reason and reported at most once per source address per interval. Real sockets on 127.0.0.1; every wait is
 * bounded and event-driven (a valid request sent after the bad ones marks when they were dealt with: loopback
 * keeps order and the layer handles datagrams one at a time).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { SipError } from '../../../src/sip/errors.ts';
import { parseMessage, SipResponse } from '../../../src/sip/message/index.ts';
import { StreamFramer } from '../../../src/sip/transport/stream-framer.ts';
import { TransportLayer, type RejectInfo, type TransportOptions } from '../../../src/sip/transport/transport-layer.ts';
import { Inbox, once } from './wait.ts';
import { closers, Recorder } from './layers.ts';

const WAIT = 2000;
const HOST = '127.0.0.1';

interface Harness {
  layer: TransportLayer;
  user: Recorder;
  rejects: Inbox<RejectInfo>;
  udpPort: number;
  tcpPort: number;
}

async function startLayer(options: Omit<TransportOptions, 'listen'>): Promise<Harness> {
  const rejects = new Inbox<RejectInfo>();
  const layer = await TransportLayer.start({
    listen: [{ protocol: 'UDP', host: HOST, port: 0 }, { protocol: 'TCP', host: HOST, port: 0 }],
    onReject: (info) => rejects.push(info),
    ...options,
  });
  closers.push(() => layer.close());
  const user = new Recorder();
  layer.setUser(user);
  const port = (p: 'UDP' | 'TCP'): number => layer.listening.find((l) => l.protocol === p)!.port;
  return { layer, user, rejects, udpPort: port('UDP'), tcpPort: port('TCP') };
}

interface RawUdp {
  port: number;
  inbox: Inbox<Buffer>;
  send(data: string | Buffer, port: number): void;
}

async function rawUdp(): Promise<RawUdp> {
  const sock = dgram.createSocket('udp4');
  const inbox = new Inbox<Buffer>();
  sock.on('message', (data) => inbox.push(data));
  await once<void>((cb) => sock.bind(0, HOST, () => cb()), WAIT, 'UDP bind');
  closers.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, inbox, send: (data, port) => sock.send(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, port, HOST) };
}

interface RawTcp {
  sock: net.Socket;
  inbox: Inbox<string>;
  closed: Promise<void>;
}

async function rawTcp(port: number, localAddress = HOST): Promise<RawTcp> {
  const sock = net.connect({ host: HOST, port, localAddress });
  const inbox = new Inbox<string>();
  const framer = new StreamFramer(1 << 20);
  sock.on('data', (chunk: Buffer) => framer.push(chunk, (ev) => { if (ev.kind === 'message') inbox.push(ev.data.toString('latin1')); }));
  sock.on('error', () => {});
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  await once<void>((cb) => sock.once('connect', () => cb()), WAIT, 'TCP connect');
  closers.push(() => { sock.destroy(); });
  return { sock, inbox, closed };
}

let seq = 0;

/** An OPTIONS; `extra` lines go after the usual headers (or `before` them), `body` gets its Content-Length. */
function request(o: { transport?: string; port: number; branch?: string; extra?: string[]; before?: string[]; body?: string }): string {
  const n = ++seq;
  const lines = [
    ...(o.before ?? []),
    `Via: SIP/2.0/${o.transport ?? 'UDP'} ${HOST}:${o.port};branch=${o.branch ?? `z9hG4bKlim${n}`}`,
    'Max-Forwards: 70',
    `From: <sip:alice@${HOST}>;tag=f${n}`,
    `To: <sip:bob@${HOST}>`,
    `Call-ID: limits-${n}`,
    `CSeq: ${n} OPTIONS`,
    ...(o.extra ?? []),
    `Content-Length: ${(o.body ?? '').length}`,
  ];
  return `OPTIONS sip:bob@${HOST} SIP/2.0\r\n${lines.join('\r\n')}\r\n\r\n${o.body ?? ''}`;
}

function asResponse(data: Buffer | string): SipResponse {
  const m = parseMessage(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  assert.ok(m instanceof SipResponse, 'expected a response');
  return m;
}

/** Sends a valid OPTIONS and waits until it is delivered: everything sent before it on that socket was handled. */
async function barrier(h: Harness, client: RawUdp): Promise<void> {
  const b = `z9hG4bKbarrier${++seq}`;
  client.send(request({ port: client.port, branch: b }), h.udpPort);
  await h.user.requests.next(WAIT, 'the barrier OPTIONS', (r) => r.req.topVia.branch === b);
}

describe('per-transport size limits', () => {
  let h: Harness;
  let client: RawUdp;

  before(async () => {
    h = await startLayer({ limits: { maxMessageSize: { udp: 2000, stream: 8000 } } });
    client = await rawUdp();
  });

  test('a UDP request over the UDP limit is answered 513 (its headers are read), counted too-large, not delivered', async () => {
    const b = `z9hG4bKbig${++seq}`;
    const text = request({ port: client.port, branch: b, body: 'x'.repeat(3000) });
    const before = { ...h.layer.counters.rejected };
    const malformed = h.layer.counters.malformed;
    client.send(text, h.udpPort);
    const res = asResponse(await client.inbox.next(WAIT, 'the 513'));
    assert.equal(res.status, 513);
    assert.match(res.reason, /over the 2000-byte limit/);
    assert.equal(res.topVia.branch, b);
    assert.equal(h.layer.counters.rejected['too-large'], before['too-large'] + 1);
    assert.equal(h.layer.counters.malformed, malformed + 1);
    assert.equal(h.user.requests.pending, 0, 'not delivered');
    const info = await h.rejects.next(WAIT, 'the report');
    assert.equal(info.reason, 'too-large');
    assert.equal(info.protocol, 'UDP');
    assert.equal(info.host, HOST);
    assert.equal(info.port, client.port);
    assert.match(info.detail, /Message of \d+ bytes is over the 2000-byte limit/);
  });

  test('the same message over TCP is under the stream limit: delivered', async () => {
    const tcp = await rawTcp(h.tcpPort);
    const b = `z9hG4bKtcpbig${++seq}`;
    tcp.sock.write(request({ transport: 'TCP', port: tcp.sock.localPort!, branch: b, body: 'x'.repeat(3000) }));
    const { req, source } = await h.user.requests.next(WAIT, 'the large OPTIONS over TCP', (r) => r.req.topVia.branch === b);
    assert.equal(req.body.length, 3000);
    assert.equal(source.protocol, 'TCP');
  });

  test('an over-size datagram whose headers cannot be read, and an over-size response, are dropped and counted', async () => {
    const before = h.layer.counters.rejected['too-large'];
    client.send('x'.repeat(2500), h.udpPort);
    client.send(`SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ${HOST}:${client.port};branch=z9hG4bKr\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2400\r\n\r\n${'y'.repeat(2400)}`, h.udpPort);
    await barrier(h, client);
    assert.equal(h.layer.counters.rejected['too-large'], before + 2);
    assert.equal(client.inbox.pending, 0, 'nothing answered');
  });

  test('over TCP a message announcing more than the stream limit closes the connection; counted, reported as TCP', async () => {
    // from another address: 127.0.0.1 was reported in this interval already
    const tcp = await rawTcp(h.tcpPort, '127.0.0.3');
    const localPort = tcp.sock.localPort!;
    const before = h.layer.counters.rejected['too-large'];
    tcp.sock.write(request({ transport: 'TCP', port: tcp.sock.localPort!, extra: ['Content-Length: 9000'] }).replace(/Content-Length: 0\r\n/, ''));
    await once<void>((cb) => void tcp.closed.then(cb), WAIT, 'the connection closed by the layer');
    assert.equal(h.layer.counters.rejected['too-large'], before + 1);
    const info = await h.rejects.next(WAIT, 'the TCP report', (i) => i.protocol === 'TCP');
    assert.equal(info.reason, 'too-large');
    assert.equal(info.host, '127.0.0.3');
    assert.equal(info.port, localPort);
  });
});

describe('header limits', () => {
  let h: Harness;
  let client: RawUdp;

  before(async () => {
    h = await startLayer({ limits: { maxHeaders: 20, maxHeaderLength: 200 } });
    client = await rawUdp();
  });

  test('too many header fields: 513 when the fields a response needs come first', async () => {
    const extra = Array.from({ length: 30 }, (_, i) => `X-${i}: v`);
    const b = `z9hG4bKmany${++seq}`;
    client.send(request({ port: client.port, branch: b, extra }), h.udpPort);
    const res = asResponse(await client.inbox.next(WAIT, 'the 513'));
    assert.equal(res.status, 513);
    assert.match(res.reason, /More than 20 header fields/);
    assert.equal(res.topVia.branch, b);
    assert.equal(h.layer.counters.rejected['too-many-headers'], 1);
  });

  test('too many header fields before the Via: dropped (nothing to answer to), counted', async () => {
    const before = h.layer.counters.rejected['too-many-headers'];
    client.send(request({ port: client.port, before: Array.from({ length: 30 }, (_, i) => `X-${i}: v`) }), h.udpPort);
    await barrier(h, client);
    assert.equal(h.layer.counters.rejected['too-many-headers'], before + 1);
    assert.equal(client.inbox.pending, 0);
  });

  test('an over-long header field: 513 naming it, counted header-too-long; over TCP too (answered on the connection)', async () => {
    client.send(request({ port: client.port, extra: ['Subject: ' + 's'.repeat(300)] }), h.udpPort);
    const res = asResponse(await client.inbox.next(WAIT, 'the 513'));
    assert.equal(res.status, 513);
    assert.match(res.reason, /"Subject" of 309 bytes is over the 200-byte limit/);
    const tcp = await rawTcp(h.tcpPort);
    tcp.sock.write(request({ transport: 'TCP', port: tcp.sock.localPort!, extra: ['Subject: ' + 's'.repeat(300)] }));
    assert.equal(asResponse(await tcp.inbox.next(WAIT, 'the 513 over TCP')).status, 513);
    assert.equal(h.layer.counters.rejected['header-too-long'], 2);
  });
});

describe('counting and reporting', () => {
  let h: Harness;
  let client: RawUdp;
  let admitting = true;
  /** Called by the admit hook each time it refuses (the test waits on it). */
  let onRefused: () => void = () => {};

  before(async () => {
    h = await startLayer({ admit: () => { if (!admitting) onRefused(); return admitting; } });
    client = await rawUdp();
  });

  test('by reason: malformed (400), bad-version (505); the reports are one per source address per interval', async () => {
    const start = { ...h.layer.counters.rejected };
    client.send('this is not SIP\r\n\r\n', h.udpPort);
    client.send(request({ port: client.port }).replace('SIP/2.0\r\n', 'SIP/3.0\r\n'), h.udpPort);
    client.send(request({ port: client.port }).replace(/Call-ID: [^\r]*\r\n/, ''), h.udpPort);
    await barrier(h, client);
    assert.equal(h.layer.counters.rejected.malformed, start.malformed + 2);
    assert.equal(h.layer.counters.rejected['bad-version'], start['bad-version'] + 1);
    const statuses = [asResponse(await client.inbox.next(WAIT, '505')).status, asResponse(await client.inbox.next(WAIT, '400')).status];
    assert.deepEqual(statuses.sort(), [400, 505]);
    // three rejections from one address within the (10 s) interval: one report, the first
    const first = await h.rejects.next(WAIT, 'the report');
    assert.equal(first.reason, 'malformed');
    assert.equal(first.suppressed, 0);
    assert.equal(h.rejects.pending, 0, 'the other two were not reported');
  });

  test('refused by the admit hook: counters.refused and rejected.refused, not parsed, not malformed', async () => {
    const malformed = h.layer.counters.malformed;
    admitting = false;
    let refusals = 0;
    // the switch back happens once the hook has refused both
    const bothRefused = once<void>((cb) => { onRefused = () => { if (++refusals === 2) cb(); }; }, WAIT, 'both datagrams refused');
    client.send(request({ port: client.port }), h.udpPort);
    client.send('junk', h.udpPort);
    const b = `z9hG4bKafter${++seq}`;
    await bothRefused;
    admitting = true;
    client.send(request({ port: client.port, branch: b }), h.udpPort);
    await h.user.requests.next(WAIT, 'the OPTIONS once admitted', (r) => r.req.topVia.branch === b);
    assert.equal(h.layer.counters.refused, 2);
    assert.equal(h.layer.counters.rejected.refused, 2);
    assert.equal(h.layer.counters.malformed, malformed, 'refused input is not malformed');
  });

  test('a source address reported once per interval: rejectLogIntervalMs 0 reports each', async () => {
    const each = await startLayer({ rejectLogIntervalMs: 0 });
    for (let i = 0; i < 3; i++) client.send(`garbage ${i}`, each.udpPort);
    await barrier(each, client);
    assert.equal(each.layer.counters.rejected.malformed, 3);
    assert.equal(each.rejects.pending, 3);
  });
});

describe('options', () => {
  test('maxMessageSize alone still limits both transports; limits.maxMessageSize wins per transport', async () => {
    const both = await startLayer({ maxMessageSize: 1500 });
    const client = await rawUdp();
    client.send(request({ port: client.port, body: 'x'.repeat(1600) }), both.udpPort);
    assert.equal(asResponse(await client.inbox.next(WAIT, 'the 513')).status, 513);
    const tcp = await rawTcp(both.tcpPort);
    tcp.sock.write(request({ transport: 'TCP', port: tcp.sock.localPort!, body: 'x'.repeat(1600) }));
    await once<void>((cb) => void tcp.closed.then(cb), WAIT, 'TCP closed past 1500 bytes');

    const mixed = await startLayer({ maxMessageSize: 1500, limits: { maxMessageSize: { stream: 4000 } } });
    const tcp2 = await rawTcp(mixed.tcpPort);
    const b = `z9hG4bKmixed${++seq}`;
    tcp2.sock.write(request({ transport: 'TCP', port: tcp2.sock.localPort!, branch: b, body: 'x'.repeat(1600) }));
    await mixed.user.requests.next(WAIT, 'the OPTIONS under the stream limit', (r) => r.req.topVia.branch === b);
    client.send(request({ port: client.port, body: 'x'.repeat(1600) }), mixed.udpPort);
    assert.equal(asResponse(await client.inbox.next(WAIT, 'the 513 over UDP')).status, 513);
  });

  test('a limit that is not a positive integer is refused at start', async () => {
    for (const limits of [{ maxHeaders: 0 }, { maxHeaderLength: -1 }, { maxMessageSize: { udp: 1.5 } }]) {
      await assert.rejects(
        TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }], limits }),
        (e: unknown) => e instanceof SipError && /positive integer/.test(e.message),
      );
    }
  });
});
