import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMessage, SipRequest, type Uri } from '../../../src/sip/message/index.ts';
import { TransportLayer, uriDestination, type TransportUser } from '../../../src/sip/transport/transport-layer.ts';
import type { Destination, Source } from '../../../src/sip/transport/types.ts';
import { Inbox } from './wait.ts';

const WAIT = 2000;
const HOST = '127.0.0.1';

/** What the outbound proxy's transport layer delivers. */
class Recorder implements TransportUser {
  readonly requests = new Inbox<{ req: SipRequest; source: Source }>();
  receiveRequest(req: SipRequest, source: Source): void {
    this.requests.push({ req, source });
  }
  receiveResponse(): void {}
}

let seq = 0;

/** A request as a node's app would hand it to the transport (no Via of ours yet). */
function request(uri: string, extra: string[] = []): { req: SipRequest; callId: string; text: string } {
  const n = ++seq;
  const callId = `outbound-proxy-${n}-${process.pid}`;
  const text =
    `INVITE ${uri} SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKupstream${n}\r\n` +
    'Max-Forwards: 70\r\n' +
    `From: <sip:alice@example.org>;tag=a${n}\r\n` +
    `To: <${uri}>\r\n` +
    `Call-ID: ${callId}\r\n` +
    `CSeq: ${n} INVITE\r\n` +
    `Contact: <sip:alice@192.0.2.50:5060>\r\n` +
    extra.map((h) => `${h}\r\n`).join('') +
    'Content-Length: 0\r\n\r\n';
  const req = parseMessage(Buffer.from(text, 'latin1'));
  assert.ok(req instanceof SipRequest);
  return { req, callId, text };
}

/** The start line and header lines of a message's text. */
function headLines(text: string): string[] {
  return text.split('\r\n\r\n')[0]!.split('\r\n');
}

/** The head of what was sent, without the top Via (the one sending adds): to compare with the request given. */
function sentWithoutOurVia(wire: string): string[] {
  const lines = headLines(wire);
  const i = lines.findIndex((l) => /^via:/i.test(l));
  assert.match(lines[i]!, /^Via: SIP\/2\.0\/UDP 127\.0\.0\.1:\d+;branch=z9hG4bK/, 'our Via first');
  return lines.filter((_, k) => k !== i);
}

describe('TransportLayer outboundProxy (a node behind a balancer)', () => {
  let proxy: TransportLayer;
  let proxyUser: Recorder;
  let node: TransportLayer;
  let proxyDest: Destination;
  /** Where the node's layer sent bytes (its tap), in order. */
  const sentTo: Array<{ protocol: string; host: string; port: number }> = [];
  /** Where the node's requests are meant to go: some hop that is not the proxy (nothing listens there). */
  const third: Destination = { protocol: 'UDP', host: '127.0.0.1', port: 0 };

  before(async () => {
    proxy = await TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }, { protocol: 'TCP', host: HOST, port: 0 }] });
    proxyUser = new Recorder();
    proxy.setUser(proxyUser);
    const p = proxy.listening.find((l) => l.protocol === 'UDP')!.port;
    proxyDest = { protocol: 'UDP', host: HOST, port: p };
    node = await TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }], outboundProxy: proxyDest });
    node.tap = (dir, _data, peer) => { if (dir === 'out') sentTo.push({ protocol: peer.protocol, host: peer.host, port: peer.port }); };
    // Another port than the proxy's and the node's, as a "third" address.
    third.port = p === 65000 ? 65001 : 65000;
  });

  after(async () => {
    await node?.close();
    await proxy?.close();
  });

  /** Sends through the node's layer and returns the request as the proxy received it. */
  async function send(req: SipRequest, callId: string, dest: Destination): Promise<{ got: SipRequest; returned: Destination; wire: string }> {
    const before = sentTo.length;
    const out = node.sendRequest(req, dest, `z9hG4bKnode${seq}`);
    const { req: got } = await proxyUser.requests.next(WAIT, `${callId} at the outbound proxy`, (r) => r.req.callId === callId);
    assert.deepEqual(sentTo.slice(before), [{ protocol: 'UDP', host: HOST, port: proxyDest.port }], 'sent once, to the outbound proxy only');
    assert.deepEqual(out.dest, proxyDest, 'the client transaction retransmits to the proxy too');
    assert.equal(got.topVia.branch, `z9hG4bKnode${seq}`, 'our Via on top');
    assert.equal(got.topVia.port, node.listening[0]!.port);
    return { got, returned: out.dest, wire: out.data.toString('latin1') };
  }

  const routes = (r: SipRequest): string[] => r.routes().map((a) => `<${formatRouteUri(a.uri)}>`);

  test('a request for a third address reaches the proxy with a Route <sip:third;lr> on top', async () => {
    const { req, callId } = request('sip:bob@example.com');
    const { got } = await send(req, callId, third);
    assert.deepEqual(got.getAll('route'), [`<sip:${HOST}:${third.port};lr>`]);
    assert.equal(got.uriText, 'sip:bob@example.com', 'the Request-URI is left alone');
    // The proxy, routing on that Route (loose routing), reaches exactly the hop chosen.
    assert.deepEqual(uriDestination(got.routes()[0]!.uri), third);
    assert.equal(got.routes()[0]!.uri.scheme, 'sip');
  });

  test('a Route is prepended above the request\'s own Route set when that would lead elsewhere', async () => {
    const { req, callId } = request('sip:bob@example.com', ['Route: <sip:192.0.2.1;lr>, <sip:192.0.2.2;lr>']);
    const { got } = await send(req, callId, third);
    assert.deepEqual(routes(got), [`<sip:${HOST}:${third.port};lr>`, '<sip:192.0.2.1;lr>', '<sip:192.0.2.2;lr>']);
  });

  test('over TCP, the Route says ;transport=tcp (the request itself still goes to the proxy as configured)', async () => {
    const { req, callId } = request('sip:bob@example.com');
    const dest: Destination = { ...third, protocol: 'TCP' };
    const { got } = await send(req, callId, dest);
    assert.deepEqual(got.getAll('route'), [`<sip:${HOST}:${third.port};transport=tcp;lr>`]);
    assert.deepEqual(uriDestination(got.routes()[0]!.uri), dest);
  });

  test('an IPv6 next hop is written in brackets', async () => {
    const { req, callId } = request('sip:bob@example.com');
    const dest: Destination = { protocol: 'UDP', host: '::1', port: 5090 };
    const { got } = await send(req, callId, dest);
    assert.deepEqual(got.getAll('route'), ['<sip:[::1]:5090;lr>']);
    assert.deepEqual(uriDestination(got.routes()[0]!.uri), dest);
  });

  test('when the Request-URI already leads to the destination, no Route is added', async () => {
    for (const [uri, dest] of [
      [`sip:bob@${HOST}:${third.port}`, third],
      [`sip:${HOST}:${third.port};transport=udp`, third],
      [`sip:bob@${HOST}`, { protocol: 'UDP', host: HOST, port: 5060 }],
      ['sip:bob@[::1]:5090', { protocol: 'UDP', host: '::1', port: 5090 }],
    ] as Array<[string, Destination]>) {
      const { req, callId, text } = request(uri);
      const { got, wire } = await send(req, callId, dest);
      assert.equal(got.has('route'), false, `${uri} → ${dest.host}:${dest.port}: ${got.getAll('route').join(', ')}`);
      assert.deepEqual(sentWithoutOurVia(wire), headLines(text), `${uri}: nothing but our Via added`);
    }
  });

  test('when the top Route already leads to the destination, no Route is added', async () => {
    const { req, callId } = request('sip:bob@example.com', [`Route: <sip:${HOST}:${third.port};lr>`, 'Route: <sip:192.0.2.9;lr>']);
    const { got } = await send(req, callId, third);
    assert.deepEqual(routes(got), [`<sip:${HOST}:${third.port};lr>`, '<sip:192.0.2.9;lr>']);
  });

  test('a Request-URI naming the destination does not count when a Route says otherwise', async () => {
    const { req, callId } = request(`sip:bob@${HOST}:${third.port}`, ['Route: <sip:192.0.2.1;lr>']);
    const { got } = await send(req, callId, third);
    assert.deepEqual(routes(got), [`<sip:${HOST}:${third.port};lr>`, '<sip:192.0.2.1;lr>']);
  });

  test('a request whose destination IS the outbound proxy is sent unchanged', async () => {
    for (const extra of [[], ['Route: <sip:192.0.2.1;lr>']]) {
      const { req, callId, text } = request('sip:bob@example.com', extra);
      const { got, wire } = await send(req, callId, proxyDest);
      assert.deepEqual(sentWithoutOurVia(wire), headLines(text), 'nothing but our Via added');
      assert.deepEqual(got.getAll('route'), extra.length === 0 ? [] : ['<sip:192.0.2.1;lr>']);
    }
  });

  test('without an outbound proxy, the request goes straight to its destination, unchanged', async () => {
    const direct = await TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }] });
    try {
      const taps: number[] = [];
      direct.tap = (dir, _d, peer) => { if (dir === 'out') taps.push(peer.port); };
      const { req, callId, text } = request('sip:bob@example.com');
      const out = direct.sendRequest(req, proxyDest, 'z9hG4bKdirect');
      const { req: got } = await proxyUser.requests.next(WAIT, 'the direct request', (r) => r.req.callId === callId);
      assert.deepEqual(taps, [proxyDest.port]);
      assert.equal(got.has('route'), false);
      assert.deepEqual(sentWithoutOurVia(out.data.toString('latin1')), headLines(text));
    } finally {
      await direct.close();
    }
  });
});

function formatRouteUri(uri: Uri): string {
  assert.ok(uri.scheme === 'sip' || uri.scheme === 'sips');
  const u = uri as Extract<Uri, { host: string }>;
  const params = [...u.params].map(([k, v]) => (v === null ? `;${k}` : `;${k}=${v}`)).join('');
  return `${u.scheme}:${u.user === null ? '' : `${u.user}@`}${u.host}${u.port === null ? '' : `:${u.port}`}${params}`;
}

describe('regressions found in review', () => {
  test('a Request-URI naming the host:port but another transport than the chosen hop does not count as leading there', async () => {
    const proxy = await TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }] });
    const user = new Recorder();
    proxy.setUser(user);
    const node = await TransportLayer.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }], outboundProxy: { protocol: 'UDP', host: HOST, port: proxy.listening[0]!.port } });
    try {
      const dest: Destination = { protocol: 'TCP', host: HOST, port: 65010 };
      const { req, callId } = request(`sip:bob@${HOST}:65010`);
      node.sendRequest(req, dest, 'z9hG4bKtcphop');
      const { req: got } = await user.requests.next(WAIT, 'the request at the proxy', (r) => r.req.callId === callId);
      // What the proxy will do with it (loose routing: the top Route, else the Request-URI) must be the chosen hop.
      const route = got.routes()[0];
      assert.deepEqual(uriDestination(route === undefined ? got.uri : route.uri), dest);
    } finally {
      await node.close();
      await proxy.close();
    }
  });
});
