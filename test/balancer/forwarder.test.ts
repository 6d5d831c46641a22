import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { Balancer } from '../../src/balancer/balancer.ts';
import { HeartbeatSender } from '../../src/server/cluster/heartbeat.ts';
import { SipNode } from '../../src/server/node.ts';
import { parseMessage } from '../../src/sip/message/parser.ts';
import { SipRequest, type SipResponse } from '../../src/sip/message/message.ts';
import { once } from '../sip/transport/wait.ts';
import { EchoApp } from './echo-app.ts';

const SECRET = 'forwarder-test-secret';


/** A UDP peer outside the cluster (a phone), sending raw text and collecting what comes back. */
class Peer {
  readonly socket = dgram.createSocket('udp6');
  readonly inbox: Array<SipRequest | SipResponse> = [];
  #waiters: Array<() => void> = [];
  port = 0;
  async start(): Promise<void> {
    this.socket.on('message', (data) => {
      this.inbox.push(parseMessage(data));
      for (const w of this.#waiters.splice(0)) w();
    });
    await new Promise<void>((r) => this.socket.bind(0, '::1', r));
    this.port = this.socket.address().port;
  }
  async next(what: string, pred: (m: SipRequest | SipResponse) => boolean): Promise<SipRequest | SipResponse> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i !== -1) return this.inbox.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => { this.#waiters.push(r); setTimeout(r, 100); });
    }
  }
  send(text: string, port: number): void {
    this.socket.send(Buffer.from(text.replace(/\n/g, '\r\n')), port, '::1');
  }
}

describe('forwarder over IPv6 (in-process balancer, node and peers)', () => {
  let balancer: Balancer;
  let node: SipNode;
  let heartbeat: HeartbeatSender;
  const app = new EchoApp();
  const phone = new Peer();
  let ext = 0;

  before(async () => {
    balancer = await Balancer.start({
      external: [{ protocol: 'UDP', host: '::1', port: 0 }],
      internal: [{ protocol: 'UDP', host: '::1', port: 0 }],
      control: { host: '::1', port: 0 },
      secret: SECRET,
    });
    ext = balancer.forwarder.external.listening[0]!.port;
    const int = balancer.forwarder.internal.listening[0]!;
    node = await SipNode.start({ listen: [{ protocol: 'UDP', host: '::1', port: 0 }], app, outboundProxy: { protocol: 'UDP', host: int.host, port: int.port } });
    heartbeat = new HeartbeatSender({ id: 'n6', version: '1', addresses: [...node.stack.transport.listening], secret: SECRET, targets: [{ host: '::1', port: balancer.controlPort }] });
    const joined = once<void>((cb) => { balancer.membership.onEvent = (e) => { if (e.type === 'joined') cb(); }; }, 3000, 'the node to join');
    await heartbeat.start();
    await joined;
    await phone.start();
  });

  after(async () => {
    heartbeat.stop();
    phone.socket.close();
    await node.close();
    await balancer.close();
  });

  test('an INVITE from outside reaches the node with our Via, two Record-Routes and Max-Forwards - 1; the 200 comes back with the phone\'s Via only', async () => {
    phone.send(`INVITE sip:bob@[::1]:${ext} SIP/2.0
Via: SIP/2.0/UDP [::1]:${phone.port};branch=z9hG4bK-v6-1;rport
Max-Forwards: 70
From: <sip:alice@[::1]>;tag=a1
To: <sip:bob@[::1]>
Call-ID: v6-call-1
CSeq: 1 INVITE
Contact: <sip:alice@[::1]:${phone.port}>
Content-Length: 0

`, ext);
    const res = (await phone.next('200 to the INVITE', (m) => !m.isRequest && (m as SipResponse).status === 200)) as SipResponse;
    assert.equal(res.vias.length, 1);
    assert.equal(res.topVia.branch, 'z9hG4bK-v6-1');
    const got = app.received.find((r) => r.callId === 'v6-call-1')!;
    assert.equal(got.vias.length, 2);
    assert.match(got.topVia.branch!, /^z9hG4bKsf[0-9a-f]{8}x-v6-1$/);
    assert.equal(got.maxForwards, 69);
    const rr = got.getAll('record-route');
    assert.equal(rr.length, 2);
    const int = balancer.forwarder.internal.listening[0]!;
    assert.equal(rr[0], `<sip:[::1]:${int.port};lr>`, 'the internal side faces the node');
    assert.equal(rr[1], `<sip:[::1]:${ext};lr>`, 'the external side faces the phone');
    const st = balancer.status();
    assert.equal(st.nodes[0]!.traffic.newCalls, 1);
  });

  test('an in-dialog request naming the node (Route with our entries) goes to it, with our Routes removed', async () => {
    const nodeAddr = node.stack.transport.listening[0]!;
    const int = balancer.forwarder.internal.listening[0]!;
    phone.send(`BYE sip:bob@[::1]:${nodeAddr.port} SIP/2.0
Via: SIP/2.0/UDP [::1]:${phone.port};branch=z9hG4bK-v6-2;rport
Route: <sip:[::1]:${ext};lr>, <sip:[::1]:${int.port};lr>
Max-Forwards: 70
From: <sip:alice@[::1]>;tag=a1
To: <sip:bob@[::1]>;tag=b1
Call-ID: v6-call-1
CSeq: 2 BYE
Content-Length: 0

`, ext);
    await phone.next('200 to the BYE', (m) => !m.isRequest && (m as SipResponse).cseq.method === 'BYE');
    const bye = app.received.find((r) => r.method === 'BYE')!;
    assert.equal(bye.has('route'), false);
  });

  test('a request from the node leaves through the balancer to its next hop, and the response comes back', async () => {
    const callee = new Peer();
    await callee.start();
    try {
      const req = new SipRequest('OPTIONS', `sip:carol@[::1]:${callee.port}`, [
        { name: 'Max-Forwards', key: 'max-forwards', value: '70' },
        { name: 'From', key: 'from', value: '<sip:node@[::1]>;tag=n1' },
        { name: 'To', key: 'to', value: `<sip:carol@[::1]:${callee.port}>` },
        { name: 'Call-ID', key: 'call-id', value: 'v6-out-1' },
        { name: 'CSeq', key: 'cseq', value: '1 OPTIONS' },
      ]);
      const final = once<SipResponse>((cb) => node.stack.transactions.request(req, { protocol: 'UDP', host: '::1', port: callee.port }, { onResponse: (r) => { if (r.status >= 200) cb(r); } }), 3000, 'the callee\'s answer');
      const got = (await callee.next('the OPTIONS', (m) => m.isRequest)) as SipRequest;
      assert.equal(got.vias.length, 2, 'our Via over the node\'s');
      assert.equal(got.topVia.port, ext);
      const answer = `SIP/2.0 200 OK\r\n${got.getAll('via').map((v) => `Via: ${v}\r\n`).join('')}From: ${got.get('from')}\r\nTo: ${got.get('to')};tag=c1\r\nCall-ID: v6-out-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
      callee.socket.send(Buffer.from(answer), got.topVia.port!, '::1');
      assert.equal((await final).status, 200);
    } finally {
      callee.socket.close();
    }
  });

  test('a request from the node whose route carries a flow token that does not verify gets 403 and is counted, not sent to its Request-URI', async () => {
    const int = balancer.forwarder.internal.listening[0]!;
    const before = balancer.forwarder.counters.flowInvalid;
    const req = new SipRequest('OPTIONS', 'sip:x7@browser.invalid;transport=ws', [
      { name: 'Route', key: 'route', value: `<sip:sf-s4127.0.0.1~40000-AAAAAAAAAAAA@[::1]:${int.port};lr>` },
      { name: 'Max-Forwards', key: 'max-forwards', value: '70' },
      { name: 'From', key: 'from', value: '<sip:node@[::1]>;tag=n2' },
      { name: 'To', key: 'to', value: '<sip:x7@browser.invalid>' },
      { name: 'Call-ID', key: 'call-id', value: 'v6-bad-flow-1' },
      { name: 'CSeq', key: 'cseq', value: '1 OPTIONS' },
    ]);
    const final = await once<SipResponse>((cb) => node.stack.transactions.request(req, { protocol: 'UDP', host: int.host, port: int.port }, { onResponse: (r) => { if (r.status >= 200) cb(r); } }), 3000, 'a final answer');
    assert.equal(final.status, 403);
    assert.equal(balancer.forwarder.counters.flowInvalid, before + 1);
  });

  test('with the only node draining, a new INVITE gets 503 with Retry-After', async () => {
    heartbeat.draining = true;
    await once<void>((cb) => { balancer.membership.onEvent = (e) => { if (e.type === 'draining') cb(); }; }, 3000, 'draining');
    phone.send(`INVITE sip:bob@[::1]:${ext} SIP/2.0
Via: SIP/2.0/UDP [::1]:${phone.port};branch=z9hG4bK-v6-3;rport
Max-Forwards: 70
From: <sip:alice@[::1]>;tag=a3
To: <sip:bob@[::1]>
Call-ID: v6-call-3
CSeq: 1 INVITE
Content-Length: 0

`, ext);
    const res = (await phone.next('a final answer', (m) => !m.isRequest && (m as SipResponse).callId === 'v6-call-3' && (m as SipResponse).status >= 200)) as SipResponse;
    assert.equal(res.status, 503);
    assert.match(res.get('retry-after') ?? '', /^\d+$/);
    assert.equal(app.received.some((r) => r.callId === 'v6-call-3'), false, 'the draining node never saw it');
    heartbeat.draining = false;
  });
});
