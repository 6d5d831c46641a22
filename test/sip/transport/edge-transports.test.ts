/**
 * TLS and WebSocket (RFC 7118) listening points of the transport layer: real handshakes with a test CA, SIP both
 * ways on one connection, Via/transport handling, the "sip" subprotocol rule, and what happens when a WebSocket
 * client is gone (we cannot connect to it).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { createResponse, parseMessage, parseUri, SipRequest } from '../../../src/sip/message/index.ts';
import { TransportLayer, uriDestination } from '../../../src/sip/transport/transport-layer.ts';
import type { TransportProtocol } from '../../../src/sip/transport/types.ts';
import { makeCertificate } from '../../helpers/tls.ts';
import { Inbox, once } from './wait.ts';
import { closers, startLayer } from './layers.ts';

const WAIT = 3000;
const HOST = '127.0.0.1';
const cert = makeCertificate([HOST]);

function portOf(layer: TransportLayer, protocol: TransportProtocol): number {
  const l = layer.listening.find((a) => a.protocol === protocol);
  assert.ok(l, `${protocol} listening`);
  return l.port;
}

function options(callId: string, via: string): string {
  return [
    'OPTIONS sip:cluster@127.0.0.1 SIP/2.0',
    `Via: ${via}`,
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=a1',
    'To: <sip:cluster@127.0.0.1>',
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '', '',
  ].join('\r\n');
}

/** A WebSocket SIP client (what a browser does), trusting the test CA. */
async function wsClient(url: string, protocol: string | undefined = 'sip'): Promise<{ ws: WebSocket; inbox: Inbox<string> }> {
  const ws = new WebSocket(url, protocol === undefined ? [] : [protocol], { ca: cert.ca });
  const inbox = new Inbox<string>();
  ws.on('message', (d: Buffer) => inbox.push(d.toString('utf8')));
  closers.push(() => { ws.terminate(); });
  const opened = await once<Error | null>((cb) => {
    ws.once('open', () => cb(null));
    ws.once('error', (err) => cb(err));
  }, WAIT, `${url} open`);
  if (opened !== null) throw opened;
  return { ws, inbox };
}

describe('TLS listening point', () => {
  test('a TLS client and server exchange a request and its response on one connection; Via says TLS', async () => {
    const tls = { key: cert.key, cert: cert.cert, ca: cert.ca };
    const server = await startLayer({ listen: [{ protocol: 'TLS', host: HOST, port: 0 }], tls });
    const client = await startLayer({ listen: [{ protocol: 'TLS', host: HOST, port: 0 }], tls });
    assert.equal(server.layer.supports('TLS'), true);
    assert.equal(server.layer.supports('WS'), false);
    const req = parseMessage(Buffer.from(options('tls-1', 'SIP/2.0/TLS placeholder;branch=z9hG4bKx'))) as SipRequest;
    req.removeFirst('via');
    client.layer.sendRequest(req, { protocol: 'TLS', host: HOST, port: portOf(server.layer, 'TLS') }, 'z9hG4bKtls1');
    const got = await server.user.requests.next(WAIT, 'OPTIONS over TLS');
    assert.equal(got.source.protocol, 'TLS');
    assert.equal(got.req.topVia.transport, 'TLS');
    assert.ok(got.source.connection !== null, 'arrived on a connection');
    server.layer.sendResponse(createResponse(got.req, 200), got.source);
    const res = await client.user.responses.next(WAIT, '200 over TLS');
    assert.equal(res.res.status, 200);
    assert.equal(res.source.protocol, 'TLS');
  });

  test('a client that does not trust the certificate gets no connection (the request fails, nothing is delivered)', async () => {
    const server = await startLayer({ listen: [{ protocol: 'TLS', host: HOST, port: 0 }], tls: { key: cert.key, cert: cert.cert } });
    const stranger = makeCertificate([HOST]); // another CA: the server's certificate is not trusted by it
    const client = await startLayer({ listen: [{ protocol: 'TLS', host: HOST, port: 0 }], tls: { key: stranger.key, cert: stranger.cert, ca: stranger.ca } });
    const req = parseMessage(Buffer.from(options('tls-2', 'SIP/2.0/TLS x;branch=z9hG4bKx'))) as SipRequest;
    req.removeFirst('via');
    const failed = once<Error>((cb) => client.layer.sendRequest(req, { protocol: 'TLS', host: HOST, port: portOf(server.layer, 'TLS') }, 'z9hG4bKtls2', cb), WAIT, 'send error');
    const err = await failed;
    assert.match(err.message, /TLS|certificate|failed|closed/i);
    assert.equal(server.user.requests.all.length, 0);
  });
});

describe('WebSocket listening points (RFC 7118)', () => {
  for (const protocol of ['WS', 'WSS'] as const) {
    test(`${protocol}: a request in a frame is delivered with its connection; the response goes back on it`, async () => {
      const server = await startLayer({ listen: [{ protocol, host: HOST, port: 0 }], tls: { key: cert.key, cert: cert.cert } });
      const scheme = protocol === 'WSS' ? 'wss' : 'ws';
      const { ws, inbox } = await wsClient(`${scheme}://${HOST}:${portOf(server.layer, protocol)}`);
      assert.equal(ws.protocol, 'sip', 'the server chose the sip subprotocol');
      ws.send(options(`ws-${protocol}`, `SIP/2.0/${protocol} df7jal23ls0d.invalid;branch=z9hG4bKws1`));
      const got = await server.user.requests.next(WAIT, `OPTIONS over ${protocol}`);
      assert.equal(got.source.protocol, protocol);
      assert.equal(got.req.topVia.received, HOST, 'received= stamped: the Via host is a made-up name');
      server.layer.sendResponse(createResponse(got.req, 200), got.source);
      const text = await inbox.next(WAIT, '200 on the WebSocket');
      assert.match(text, /^SIP\/2\.0 200 /);
      // A request to the client later (not an answer) finds the connection by the client's address.
      const dest = { protocol, host: got.source.host, port: got.source.port };
      assert.equal(server.layer.hasConnection(dest), true);
      const bye = parseMessage(Buffer.from(options('ws-later', 'SIP/2.0/UDP x;branch=z9hG4bKx').replace('OPTIONS sip:cluster@127.0.0.1', 'OPTIONS sip:alice@df7jal23ls0d.invalid;transport=ws'))) as SipRequest;
      bye.removeFirst('via');
      server.layer.sendRequest(bye, dest, 'z9hG4bKlater');
      const later = await inbox.next(WAIT, 'request pushed to the client');
      assert.match(later, /^OPTIONS sip:alice@df7jal23ls0d\.invalid;transport=ws SIP\/2\.0\r\nVia: SIP\/2\.0\/WSS? /);
    });
  }

  test('a WebSocket without the "sip" subprotocol is refused', async () => {
    const server = await startLayer({ listen: [{ protocol: 'WS', host: HOST, port: 0 }] });
    const ws = new WebSocket(`ws://${HOST}:${portOf(server.layer, 'WS')}`, ['chat']);
    closers.push(() => { ws.terminate(); });
    const status = await once<number>((cb) => {
      ws.once('unexpected-response', (_req, res) => cb(res.statusCode ?? 0));
      ws.once('open', () => cb(101));
      ws.once('error', () => cb(-1));
    }, WAIT, 'upgrade answer');
    assert.equal(status, 400);
  });

  test('a request for a WebSocket client whose connection is gone fails at once (we cannot connect to it)', async () => {
    const server = await startLayer({ listen: [{ protocol: 'WS', host: HOST, port: 0 }] });
    const { ws } = await wsClient(`ws://${HOST}:${portOf(server.layer, 'WS')}`);
    ws.send(options('ws-gone', 'SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKg'));
    const got = await server.user.requests.next(WAIT, 'OPTIONS');
    const dest = { protocol: 'WS' as const, host: got.source.host, port: got.source.port };
    ws.close();
    await once<void>((cb) => { const poll = (): void => { if (!server.layer.hasConnection(dest)) cb(); else setTimeout(poll, 5); }; poll(); }, WAIT, 'connection closed on the server');
    const req = parseMessage(Buffer.from(options('ws-gone-2', 'SIP/2.0/UDP x;branch=z9hG4bKx'))) as SipRequest;
    req.removeFirst('via');
    const err = await once<Error>((cb) => server.layer.sendRequest(req, dest, 'z9hG4bKgone', cb), WAIT, 'send error');
    assert.match(err.message, /WebSocket|WS/);
  });

  test('transport parameters and sips: map to TLS, WS and WSS destinations', () => {
    assert.equal(uriDestination(parseUri('sips:bob@example.com')).protocol, 'TLS');
    assert.equal(uriDestination(parseUri('sips:bob@example.com')).port, 5061);
    assert.equal(uriDestination(parseUri('sip:bob@h;transport=tls')).protocol, 'TLS');
    assert.equal(uriDestination(parseUri('sip:bob@h;transport=ws')).protocol, 'WS');
    assert.equal(uriDestination(parseUri('sip:bob@h;transport=WSS')).protocol, 'WSS');
  });
});
