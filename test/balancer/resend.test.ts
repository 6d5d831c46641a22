/**
 * A new call whose node refuses the connection (it died; the balancer has not heard yet) is not lost over a
 * stream: nobody retransmits on TCP, so the balancer sends it once more, to the survivor its call now maps to.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Balancer } from '../../src/balancer/balancer.ts';
import { hashString, pickNode } from '../../src/server/cluster/affinity.ts';
import { HeartbeatSender } from '../../src/server/cluster/heartbeat.ts';
import { SipNode } from '../../src/server/node.ts';
import { freePort } from '../helpers/ports.ts';
import { once } from '../sip/transport/wait.ts';
import { EchoApp } from './echo-app.ts';

const SECRET = 'resend-test-secret';
const HOST = '127.0.0.1';


let balancer: Balancer;
let node: SipNode;
const heartbeats: HeartbeatSender[] = [];
const app = new EchoApp();

before(async () => {
  balancer = await Balancer.start({
    external: [{ protocol: 'TCP', host: HOST, port: 0 }],
    internal: [{ protocol: 'TCP', host: HOST, port: 0 }],
    control: { host: HOST, port: 0 },
    secret: SECRET,
  });
  const int = balancer.forwarder.internal.listening[0]!;
  node = await SipNode.start({ listen: [{ protocol: 'TCP', host: HOST, port: 0 }], app, outboundProxy: { protocol: 'TCP', host: int.host, port: int.port } });
  // A "ghost": heartbeats say it lives, but nothing listens on its SIP port (a node just killed).
  const ghostPort = await freePort(HOST, 'tcp');
  const members = [
    { id: 'live', addresses: [...node.stack.transport.listening] },
    { id: 'ghost', addresses: [{ protocol: 'TCP' as const, host: HOST, port: ghostPort }] },
  ];
  const joined = once<void>((cb) => {
    balancer.membership.onEvent = () => { if (balancer.membership.aliveNodes.length === 2) cb(); };
  }, 3000, 'both nodes to join');
  for (const m of members) {
    const hb = new HeartbeatSender({ id: m.id, version: '1', addresses: m.addresses, secret: SECRET, targets: [{ host: HOST, port: balancer.controlPort }] });
    heartbeats.push(hb);
    await hb.start();
  }
  await joined;
});

after(async () => {
  for (const hb of heartbeats) hb.stop();
  await node.close();
  await balancer.close();
});

test('an INVITE over TCP whose node refuses the connection goes to the survivor, once; the client gets its 200', async () => {
  // A Call-ID the rendezvous hash gives to the ghost.
  let callId = '';
  for (let i = 0; callId === ''; i++) {
    const id = `resend-${i}`;
    if (pickNode(balancer.membership.newCallNodes, hashString(id))?.id === 'ghost') callId = id;
  }
  const ext = balancer.forwarder.external.listening[0]!;
  const client = net.connect({ host: HOST, port: ext.port });
  await once<void>((cb) => client.once('connect', () => cb()), 3000, 'client connected');
  let received = '';
  const answered = once<void>((cb) => client.on('data', (d: Buffer) => { received += d.toString('latin1'); if (/SIP\/2\.0 200 /.test(received)) cb(); }), 5000, 'the 200 on the client connection');
  const local = client.localPort!;
  client.write([
    `INVITE sip:bob@${HOST}:${ext.port} SIP/2.0`,
    `Via: SIP/2.0/TCP ${HOST}:${local};branch=z9hG4bK-resend-1;rport`,
    'Max-Forwards: 70',
    `From: <sip:alice@${HOST}>;tag=a1`,
    `To: <sip:bob@${HOST}>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 INVITE',
    `Contact: <sip:alice@${HOST}:${local};transport=tcp>`,
    'Content-Length: 0',
    '', '',
  ].join('\r\n'));
  await answered;
  client.destroy();
  const got = app.received.filter((r) => r.callId === callId);
  assert.equal(got.length, 1, 'the survivor got the INVITE once');
  assert.equal(got[0]!.getAll('record-route').length, 2, 'our Record-Route entries once, not twice');
  assert.equal(got[0]!.vias.length, 2, 'one Via of ours');
  const st = balancer.status();
  assert.equal(st.counters.resent, 1);
  assert.equal(st.nodes.find((n) => n.id === 'ghost')!.state, 'dead', 'the refused connection marked the ghost dead');
});
