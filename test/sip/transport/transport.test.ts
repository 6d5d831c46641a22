import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { createResponse, parseMessage, parseUri, SipRequest, SipResponse } from '../../../src/sip/message/index.ts';
import { StreamFramer } from '../../../src/sip/transport/stream-framer.ts';
import type { TcpConnection } from '../../../src/sip/transport/tcp.ts';
import { TransportLayer, uriDestination } from '../../../src/sip/transport/transport-layer.ts';
import type { Source } from '../../../src/sip/transport/types.ts';
import { freePort } from '../../helpers/ports.ts';
import { Inbox, once } from './wait.ts';
import { closers, Recorder, startLayer } from './layers.ts';

const WAIT = 2000;
const HOST = '127.0.0.1';

// ---- helpers ----

function portOf(layer: TransportLayer, protocol: 'UDP' | 'TCP', host = HOST): number {
  const l = layer.listening.find((a) => a.protocol === protocol && a.host === host);
  assert.ok(l, `${protocol} ${host} listening`);
  return l.port;
}

interface RawUdp {
  sock: dgram.Socket;
  port: number;
  inbox: Inbox<{ data: Buffer; address: string; port: number }>;
  send(text: string | Buffer, port: number, host?: string): void;
}

async function rawUdp(host = HOST): Promise<RawUdp> {
  const sock = dgram.createSocket('udp4');
  const inbox = new Inbox<{ data: Buffer; address: string; port: number }>();
  sock.on('message', (data, rinfo) => inbox.push({ data, address: rinfo.address, port: rinfo.port }));
  await once<void>((cb) => sock.bind(0, host, () => cb()), WAIT, 'UDP bind');
  closers.push(() => new Promise<void>((r) => sock.close(() => r())));
  return {
    sock,
    port: sock.address().port,
    inbox,
    send: (text, port, to = HOST) => sock.send(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, port, to),
  };
}

interface RawTcp {
  sock: net.Socket;
  /** Framed messages received on this connection, and CRLF pongs as the string "\r\n". */
  inbox: Inbox<string>;
  closed: Promise<void>;
}

async function rawTcp(port: number, host = HOST): Promise<RawTcp> {
  const sock = net.connect({ host, port });
  const inbox = new Inbox<string>();
  const framer = new StreamFramer(65535);
  sock.on('data', (chunk: Buffer) => {
    // A pong is a lone CRLF; anything else is framed as SIP.
    if (chunk.length === 2 && chunk.toString('latin1') === '\r\n') {
      inbox.push('\r\n');
      return;
    }
    framer.push(chunk, (ev) => {
      if (ev.kind === 'message') inbox.push(ev.data.toString('latin1'));
    });
  });
  sock.on('error', () => {});
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  await once<void>((cb) => sock.once('connect', () => cb()), WAIT, 'TCP connect');
  closers.push(() => { sock.destroy(); });
  return { sock, inbox, closed };
}

let seqCounter = 0;

/** A request's text. `via` is the whole top Via value; `omit` drops headers by name. */
function request(o: {
  method?: string;
  via: string;
  callId?: string;
  cseq?: string;
  version?: string;
  omit?: string[];
  extra?: string[];
  body?: string;
}): string {
  const method = o.method ?? 'OPTIONS';
  const n = ++seqCounter;
  const headers: Array<[string, string]> = [
    ['Via', o.via],
    ['Max-Forwards', '70'],
    ['From', `<sip:alice@${HOST}>;tag=f${n}`],
    ['To', `<sip:bob@${HOST}>`],
    ['Call-ID', o.callId ?? `transport-test-${n}`],
    ['CSeq', o.cseq ?? `${n} ${method}`],
  ];
  const body = o.body ?? '';
  const lines = headers.filter(([name]) => !(o.omit ?? []).includes(name)).map(([k, v]) => `${k}: ${v}`);
  lines.push(...(o.extra ?? []));
  lines.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
  return `${method} sip:bob@${HOST} ${o.version ?? 'SIP/2.0'}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

function branch(): string {
  return `z9hG4bKtt${++seqCounter}`;
}

function asResponse(data: Buffer | string): SipResponse {
  const m = parseMessage(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  assert.ok(m instanceof SipResponse, 'expected a response');
  return m;
}

// ---- UDP ----

describe('UDP', () => {
  let layer: TransportLayer;
  let user: Recorder;
  let port: number;
  let client: RawUdp;

  before(async () => {
    ({ layer, user } = await startLayer({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }] }));
    port = portOf(layer, 'UDP');
    assert.notEqual(port, 0, 'port 0 resolved in .listening');
    client = await rawUdp();
  });

  test('a request from a raw socket is delivered with its Source', async () => {
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}` }), port);
    const { req, source } = await user.requests.next(WAIT, 'the OPTIONS');
    assert.equal(req.method, 'OPTIONS');
    assert.equal(req.topVia.branch, b);
    assert.deepEqual(source, { protocol: 'UDP', host: HOST, port: client.port, localHost: HOST, localPort: port, connection: null });
    // Same host as the source and no rport: the Via is left alone (§18.2.1).
    assert.equal(req.topVia.received, null);
    assert.equal(req.getAll('via')[0], `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}`);
  });

  test('rport (RFC 3581): received and rport are stamped even when the host matches', async () => {
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP ${HOST}:5999;rport;branch=${b}` }), port);
    const { req } = await user.requests.next(WAIT, 'the OPTIONS', (r) => r.req.topVia.branch === b);
    assert.equal(req.topVia.rport, client.port);
    assert.equal(req.topVia.received, HOST);
    assert.equal(req.topVia.port, 5999, 'sent-by untouched');
  });

  test('a sent-by host other than the source gets received= (§18.2.1), no rport added', async () => {
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP 192.0.2.7:5060;branch=${b}` }), port);
    const { req } = await user.requests.next(WAIT, 'the OPTIONS', (r) => r.req.topVia.branch === b);
    assert.equal(req.topVia.received, HOST);
    assert.equal(req.topVia.rport, null);
    assert.equal(req.topVia.host, '192.0.2.7');
  });

  test('a stale received= is replaced, and only the top Via is touched', async () => {
    const b = branch();
    const text = request({
      via: `SIP/2.0/UDP 192.0.2.7:5060;received=198.51.100.1;rport;branch=${b}`,
      extra: ['Via: SIP/2.0/UDP 192.0.2.99:5060;rport;branch=z9hG4bKlower'],
    });
    client.send(text, port);
    const { req } = await user.requests.next(WAIT, 'the OPTIONS', (r) => r.req.topVia.branch === b);
    assert.equal(req.topVia.received, HOST);
    assert.equal(req.topVia.rport, client.port);
    assert.equal(req.vias[1]!.received, null);
    assert.equal(req.vias[1]!.rport, -1);
  });

  test('a response goes to received:rport (§18.2.2, RFC 3581) from the listening socket', async () => {
    const b = branch();
    // A sent-by that is unreachable: only received/rport can bring the response back.
    client.send(request({ via: `SIP/2.0/UDP 192.0.2.7:5999;rport;branch=${b}` }), port);
    const { req, source } = await user.requests.next(WAIT, 'the OPTIONS', (r) => r.req.topVia.branch === b);
    layer.sendResponse(createResponse(req, 200), source);
    const got = await client.inbox.next(WAIT, 'the 200');
    const res = asResponse(got.data);
    assert.equal(res.status, 200);
    assert.equal(res.topVia.branch, b);
    assert.equal(got.port, port, 'sent from the port the request came to');
    // Without the Source (a retransmission from a replica, say), the Via alone routes it.
    layer.sendResponse(createResponse(req, 202), null);
    assert.equal(asResponse((await client.inbox.next(WAIT, 'the 202')).data).status, 202);
  });

  test('without rport a response goes to received and the sent-by port', async () => {
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP 192.0.2.7:${client.port};branch=${b}` }), port);
    const { req, source } = await user.requests.next(WAIT, 'the OPTIONS', (r) => r.req.topVia.branch === b);
    layer.sendResponse(createResponse(req, 200), source);
    const res = asResponse((await client.inbox.next(WAIT, 'the 200')).data);
    assert.equal(res.topVia.branch, b);
    assert.equal(res.topVia.received, HOST);
  });

  test('a lone CRLF keep-alive datagram is ignored, not malformed', async () => {
    const before = layer.counters.malformed;
    client.send('\r\n\r\n', port);
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}` }), port);
    await user.requests.next(WAIT, 'the OPTIONS after the keep-alive', (r) => r.req.topVia.branch === b);
    assert.equal(layer.counters.malformed, before);
  });
});

// ---- malformed input ----

describe('malformed requests', () => {
  let layer: TransportLayer;
  let user: Recorder;
  let port: number;
  let client: RawUdp;

  before(async () => {
    ({ layer, user } = await startLayer({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }, { protocol: 'TCP', host: HOST, port: 0 }] }));
    port = portOf(layer, 'UDP');
    client = await rawUdp();
  });

  async function answerTo(text: string): Promise<SipResponse> {
    const before = layer.counters.malformed;
    client.send(text, port);
    const res = asResponse((await client.inbox.next(WAIT, 'the error response')).data);
    assert.equal(layer.counters.malformed, before + 1);
    return res;
  }

  test('missing Call-ID → 400 naming the fault', async () => {
    const b = branch();
    const res = await answerTo(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}`, omit: ['Call-ID'] }));
    assert.equal(res.status, 400);
    assert.match(res.reason, /Call-ID/);
    assert.equal(res.topVia.branch, b);
  });

  test('CSeq method mismatch → 400 naming the fault', async () => {
    const res = await answerTo(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${branch()}`, cseq: '5 INVITE' }));
    assert.equal(res.status, 400);
    assert.match(res.reason, /CSeq method INVITE does not match OPTIONS/);
  });

  test('a bad Via → 400 (answered to where it came from)', async () => {
    const res = await answerTo(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${branch()};rport=notaport` }));
    assert.equal(res.status, 400);
    assert.match(res.reason, /rport/);
  });

  test('an unsupported SIP version → 505', async () => {
    const res = await answerTo(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${branch()}`, version: 'SIP/3.0' }));
    assert.equal(res.status, 505);
    assert.match(res.reason, /SIP\/3\.0/);
    assert.equal(user.requests.pending, 0, 'not delivered');
  });

  test('garbage is dropped and counted; nothing is answered or delivered', async () => {
    const before = layer.counters.malformed;
    client.send('this is not SIP at all\r\n\r\n', port);
    client.send(Buffer.from([0xde, 0xad, 0xbe, 0xef]), port);
    // A valid request after it: once that is delivered the garbage has been dealt with (loopback keeps order).
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}` }), port);
    const { req } = await user.requests.next(WAIT, 'the valid OPTIONS');
    assert.equal(req.topVia.branch, b);
    assert.equal(layer.counters.malformed, before + 2);
    assert.equal(client.inbox.pending, 0, 'no answer to garbage');
  });

  test('a malformed ACK is not answered; a malformed response is dropped', async () => {
    client.send(request({ method: 'ACK', via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${branch()}`, omit: ['Call-ID'] }), port);
    client.send(
      `SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ${HOST}:${client.port};branch=${branch()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`,
      port,
    );
    const b = branch();
    client.send(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};branch=${b}`, omit: ['Call-ID'] }), port);
    const res = asResponse((await client.inbox.next(WAIT, 'the 400 to the OPTIONS')).data);
    assert.equal(res.topVia.branch, b, 'the first answer is the one to the OPTIONS: the ACK got none');
    assert.equal(user.responses.pending, 0);
  });

  test('over TCP a malformed request is answered 400 on its connection', async () => {
    const tcp = await rawTcp(portOf(layer, 'TCP'));
    const b = branch();
    tcp.sock.write(request({ via: `SIP/2.0/TCP ${HOST}:1;branch=${b}`, omit: ['Call-ID'] }));
    const res = asResponse(await tcp.inbox.next(WAIT, 'the 400 over TCP'));
    assert.equal(res.status, 400);
    assert.equal(res.topVia.branch, b);
  });
});

// ---- TCP ----

describe('TCP', () => {
  let layer: TransportLayer;
  let user: Recorder;
  let port: number;

  before(async () => {
    ({ layer, user } = await startLayer({ listen: [{ protocol: 'TCP', host: HOST, port: 0 }] }));
    port = portOf(layer, 'TCP');
  });

  test('two requests in one write and one request over 3 writes are delivered; responses come back on the connection', async () => {
    const c = await rawTcp(port);
    const localPort = c.sock.localPort!;
    const b1 = branch();
    const b2 = branch();
    const b3 = branch();
    const via = (b: string): string => `SIP/2.0/TCP ${HOST}:${localPort};branch=${b}`;
    c.sock.write(request({ via: via(b1) }) + request({ method: 'MESSAGE', via: via(b2), body: 'hello there', extra: ['Content-Type: text/plain'] }));
    const third = request({ method: 'MESSAGE', via: via(b3), body: 'split body', extra: ['Content-Type: text/plain'] });
    const cut1 = 20;
    const cut2 = third.length - 5;
    const got: Array<{ req: SipRequest; source: Source }> = [];
    got.push(await user.requests.next(WAIT, 'request 1'));
    got.push(await user.requests.next(WAIT, 'request 2'));
    c.sock.write(third.slice(0, cut1));
    c.sock.write(third.slice(cut1, cut2));
    c.sock.write(third.slice(cut2));
    got.push(await user.requests.next(WAIT, 'request 3'));
    assert.deepEqual(got.map((g) => g.req.topVia.branch), [b1, b2, b3]);
    assert.equal(got[1]!.req.body.toString(), 'hello there');
    assert.equal(got[2]!.req.body.toString(), 'split body');
    const conn = got[0]!.source.connection;
    assert.ok(conn !== null);
    for (const g of got) {
      assert.equal(g.source.protocol, 'TCP');
      assert.equal(g.source.port, localPort);
      assert.equal(g.source.connection, conn, 'same connection object');
    }
    for (const g of got) layer.sendResponse(createResponse(g.req, 200), g.source);
    const answers = [await c.inbox.next(WAIT, '200 #1'), await c.inbox.next(WAIT, '200 #2'), await c.inbox.next(WAIT, '200 #3')];
    assert.deepEqual(answers.map((a) => asResponse(a).topVia.branch), [b1, b2, b3]);
  });

  test('CRLFCRLF keep-alive gets a CRLF back (RFC 5626 §3.5.1), also when split', async () => {
    const c = await rawTcp(port);
    c.sock.write('\r\n\r\n');
    assert.equal(await c.inbox.next(WAIT, 'the pong'), '\r\n');
    c.sock.write('\r\n');
    await once<void>((cb) => setImmediate(cb), WAIT, 'a turn');
    c.sock.write('\r\n');
    assert.equal(await c.inbox.next(WAIT, 'the pong to a split ping'), '\r\n');
  });

  test('a response whose connection is gone goes to received and the sent-by port, not rport', async () => {
    // The UAC listens on TCP at its sent-by port; its request comes from an ephemeral port and says ;rport.
    const server = net.createServer();
    const accepted = new Inbox<net.Socket>();
    server.on('connection', (s) => accepted.push(s));
    await once<void>((cb) => server.listen(0, HOST, () => cb()), WAIT, 'listen');
    closers.push(() => new Promise<void>((r) => { for (const s of accepted.all) s.destroy(); server.close(() => r()); }));
    const uacPort = (server.address() as net.AddressInfo).port;

    const c = await rawTcp(port);
    const b = branch();
    c.sock.write(request({ via: `SIP/2.0/TCP ${HOST}:${uacPort};rport;branch=${b}` }));
    const { req, source } = await user.requests.next(WAIT, 'the request', (r) => r.req.topVia.branch === b);
    assert.equal(req.topVia.rport, c.sock.localPort);
    const conn = source.connection as TcpConnection;
    const gone = once<void>((cb) => conn.onClose(() => cb()), WAIT, 'the server side of the connection to close');
    c.sock.destroy();
    await gone;
    layer.sendResponse(createResponse(req, 200), source);
    const s = await accepted.next(WAIT, 'a new connection to the sent-by port');
    const data = await once<Buffer>((cb) => s.once('data', cb), WAIT, 'the response');
    assert.equal(asResponse(data).topVia.branch, b);
  });
});

describe('TCP connection reuse and idle timeout', () => {
  test('TransportLayer.send twice to the same peer opens one connection', async () => {
    const { layer } = await startLayer({ listen: [{ protocol: 'TCP', host: HOST, port: 0 }] });
    const server = net.createServer();
    const sockets: net.Socket[] = [];
    let received = '';
    const data = new Inbox<void>();
    server.on('connection', (s) => {
      sockets.push(s);
      s.on('data', (d: Buffer) => { received += d.toString('latin1'); data.push(); });
    });
    await once<void>((cb) => server.listen(0, HOST, () => cb()), WAIT, 'listen');
    closers.push(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
    const peerPort = (server.address() as net.AddressInfo).port;
    const one = request({ via: `SIP/2.0/TCP ${HOST}:1;branch=${branch()}` });
    const two = request({ via: `SIP/2.0/TCP ${HOST}:1;branch=${branch()}` });
    // The second send happens while the first connection is still being set up.
    layer.send(Buffer.from(one), { protocol: 'TCP', host: HOST, port: peerPort });
    layer.send(Buffer.from(two), { protocol: 'TCP', host: HOST, port: peerPort });
    while (received.length < one.length + two.length) await data.next(WAIT, 'both messages');
    assert.equal(received, one + two);
    // And once more after it is up.
    const three = request({ via: `SIP/2.0/TCP ${HOST}:1;branch=${branch()}` });
    layer.send(Buffer.from(three), { protocol: 'TCP', host: HOST, port: peerPort });
    while (received.length < one.length + two.length + three.length) await data.next(WAIT, 'the third message');
    const count = await once<number>((cb) => server.getConnections((_e, n) => cb(n)), WAIT, 'connection count');
    assert.equal(count, 1);
    assert.equal(sockets.length, 1);
  });

  test('a send to a closed TCP port reports an error', async () => {
    const { layer } = await startLayer({ listen: [{ protocol: 'TCP', host: HOST, port: 0 }] });
    const closedPort = await freePort(HOST, 'tcp');
    const err = await once<Error>((cb) => layer.send(Buffer.from('x'), { protocol: 'TCP', host: HOST, port: closedPort }, cb), WAIT, 'the send error');
    assert.equal((err as { code?: string }).code, 'SIP_TRANSPORT');
    assert.equal(layer.counters.sendErrors, 1);
  });

  test('close() while an outbound connection is still connecting leaves no timer behind (the process exits)', async () => {
    // In a child process: with a 30 s connect timeout, a leaked connect timer would keep it alive for 30 s.
    const script = `
      import net from 'node:net';
      import { TransportLayer } from './src/sip/transport/transport-layer.ts';
      const srv = net.createServer();
      await new Promise((r) => srv.listen(0, '${HOST}', r));
      const layer = await TransportLayer.start({ listen: [{ protocol: 'TCP', host: '${HOST}', port: 0 }], tcpConnectTimeoutMs: 30000 });
      layer.send(Buffer.from('x'), { protocol: 'TCP', host: '${HOST}', port: srv.address().port });
      await layer.close();
      srv.close();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    try {
      const code = await once<number | null>((cb) => child.once('exit', (c) => cb(c)), 15_000, 'the child process to exit');
      assert.equal(code, 0, stderr);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('an idle connection is closed after tcpIdleTimeoutMs', async () => {
    const { layer } = await startLayer({ listen: [{ protocol: 'TCP', host: HOST, port: 0 }], tcpIdleTimeoutMs: 200 });
    const start = Date.now();
    const c = await rawTcp(portOf(layer, 'TCP'));
    await once<void>((cb) => void c.closed.then(cb), 3000, 'the idle connection to be closed');
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 150, `closed after ${elapsed} ms, not before the idle timeout`);
  });
});

// ---- §18.1.1: large requests over TCP ----

/** A layer listening on UDP and TCP on the same port (SIP's convention), retrying if the port was taken meanwhile. */
async function startDual(): Promise<{ layer: TransportLayer; user: Recorder; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort(HOST, 'both');
    try {
      const { layer, user } = await startLayer({ listen: [{ protocol: 'UDP', host: HOST, port }, { protocol: 'TCP', host: HOST, port }] });
      return { layer, user, port };
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}

function bigRequest(size: number): SipRequest {
  const body = 'a='.padEnd(size, 'x');
  const m = parseMessage(Buffer.from(request({ method: 'MESSAGE', via: 'SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKremoved', body, extra: ['Content-Type: text/plain'] }), 'latin1'));
  assert.ok(m instanceof SipRequest);
  m.removeFirst('via');
  return m;
}

describe('§18.1.1 large requests', () => {
  test('a request over 1300 bytes for a UDP destination goes over TCP when we listen on TCP', async () => {
    const peer = await startDual();
    const sender = await startDual();
    const small = bigRequest(100);
    const sentSmall = sender.layer.sendRequest(small, { protocol: 'UDP', host: HOST, port: peer.port }, branch());
    assert.equal(sentSmall.dest.protocol, 'UDP');
    const gotSmall = await peer.user.requests.next(WAIT, 'the small request');
    assert.equal(gotSmall.source.protocol, 'UDP');
    assert.equal(gotSmall.req.topVia.transport, 'UDP');

    const big = bigRequest(1400);
    const b = branch();
    const sent = sender.layer.sendRequest(big, { protocol: 'UDP', host: HOST, port: peer.port }, b);
    assert.equal(sent.dest.protocol, 'TCP');
    assert.ok(sent.data.length > 1300);
    const got = await peer.user.requests.next(WAIT, 'the large request');
    assert.equal(got.source.protocol, 'TCP');
    assert.equal(got.req.topVia.transport, 'TCP');
    assert.equal(got.req.topVia.branch, b);
    assert.equal(got.req.topVia.port, sender.port);
    assert.equal(got.req.body.length, 1400);
  });

  test('a UDP-only sender keeps large requests on UDP', async () => {
    const peer = await startDual();
    const { layer } = await startLayer({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }] });
    const sent = layer.sendRequest(bigRequest(1400), { protocol: 'UDP', host: HOST, port: peer.port }, branch());
    assert.equal(sent.dest.protocol, 'UDP');
    const got = await peer.user.requests.next(WAIT, 'the large request');
    assert.equal(got.source.protocol, 'UDP');
    assert.equal(got.req.topVia.transport, 'UDP');
  });

  test('when the peer refuses TCP, the large request falls back to UDP with a UDP Via', async () => {
    const { layer: peer, user: peerUser } = await startLayer({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }] });
    const peerPort = portOf(peer, 'UDP');
    const sender = await startDual();
    const b = branch();
    sender.layer.sendRequest(bigRequest(1400), { protocol: 'UDP', host: HOST, port: peerPort }, b);
    const got = await peerUser.requests.next(WAIT, 'the large request over UDP');
    assert.equal(got.source.protocol, 'UDP');
    assert.equal(got.req.topVia.transport, 'UDP');
    assert.equal(got.req.topVia.branch, b);
  });
});

// ---- several listening addresses ----

describe('several listening addresses', () => {
  test('127.0.0.2 and 127.0.0.3 each receive, and each answers from its own address', async () => {
    const { layer, user } = await startLayer({
      listen: [{ protocol: 'UDP', host: '127.0.0.2', port: 0 }, { protocol: 'UDP', host: '127.0.0.3', port: 0 }],
    });
    const client = await rawUdp();
    for (const host of ['127.0.0.2', '127.0.0.3']) {
      const p = portOf(layer, 'UDP', host);
      const b = branch();
      client.send(request({ via: `SIP/2.0/UDP ${HOST}:${client.port};rport;branch=${b}` }), p, host);
      const { req, source } = await user.requests.next(WAIT, `the request to ${host}`, (r) => r.req.topVia.branch === b);
      assert.equal(source.localHost, host);
      assert.equal(source.localPort, p);
      layer.sendResponse(createResponse(req, 200), source);
      const got = await client.inbox.next(WAIT, `the 200 from ${host}`);
      assert.equal(asResponse(got.data).topVia.branch, b);
      assert.equal(got.address, host, 'the response comes from the address the request was sent to');
      assert.equal(got.port, p);
    }
  });
});

// ---- uriDestination ----

describe('uriDestination', () => {
  const d = (u: string, fallback?: 'UDP' | 'TCP'): unknown => uriDestination(parseUri(u), fallback);

  test('sip: host, port, defaults', () => {
    assert.deepEqual(d('sip:bob@example.com'), { protocol: 'UDP', host: 'example.com', port: 5060 });
    assert.deepEqual(d('sip:bob@192.0.2.1:5080'), { protocol: 'UDP', host: '192.0.2.1', port: 5080 });
    assert.deepEqual(d('sip:192.0.2.1', 'TCP'), { protocol: 'TCP', host: '192.0.2.1', port: 5060 });
  });

  test('sips: TLS on 5061', () => {
    assert.deepEqual(d('sips:bob@example.com'), { protocol: 'TLS', host: 'example.com', port: 5061 });
    assert.deepEqual(d('sips:bob@example.com:6000'), { protocol: 'TLS', host: 'example.com', port: 6000 });
  });

  test('transport parameter', () => {
    assert.deepEqual(d('sip:bob@192.0.2.1;transport=tcp'), { protocol: 'TCP', host: '192.0.2.1', port: 5060 });
    assert.deepEqual(d('sip:bob@192.0.2.1;transport=TCP'), { protocol: 'TCP', host: '192.0.2.1', port: 5060 });
    assert.deepEqual(d('sip:bob@192.0.2.1:5070;transport=udp', 'TCP'), { protocol: 'UDP', host: '192.0.2.1', port: 5070 });
  });

  test('maddr overrides the host, not the port', () => {
    assert.deepEqual(d('sip:bob@example.com:5090;maddr=192.0.2.9'), { protocol: 'UDP', host: '192.0.2.9', port: 5090 });
  });

  test('IPv6 references lose their brackets', () => {
    assert.deepEqual(d('sip:bob@[2001:db8::1]:5070'), { protocol: 'UDP', host: '2001:db8::1', port: 5070 });
    assert.deepEqual(d('sip:[::1];transport=tcp'), { protocol: 'TCP', host: '::1', port: 5060 });
    assert.deepEqual(d('sip:bob@example.com;maddr=[2001:db8::2]'), { protocol: 'UDP', host: '2001:db8::2', port: 5060 });
  });

  test('non-SIP URIs cannot be routed: 416', () => {
    assert.throws(() => d('tel:+15551234'), (e: unknown) => (e as { status?: number }).status === 416);
    assert.throws(() => d('mailto:bob@example.com'), (e: unknown) => (e as { status?: number }).status === 416);
  });
});
