import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import uas from '../../../apps/uas.ts';
import { AppContainer } from '../../../src/server/app/container.ts';
import type { SipApplication } from '../../../src/server/app/types.ts';
import type { SipApplicationSession } from '../../../src/server/app/session.ts';
import { SipNode } from '../../../src/server/node.ts';
import { Replicator } from '../../../src/server/replication.ts';
import type { ReplicationStrategy } from '../../../src/server/cluster/replication.ts';
import { parseMessage } from '../../../src/sip/message/parser.ts';
import type { SipResponse } from '../../../src/sip/message/message.ts';
import { MemorySessionStore } from '../../../src/store/memory.ts';

/**
 * Failover inside one process: two nodes share a store; node A answers a call and "dies" (its transport closes,
 * nothing of its memory reaches B); the caller's next message goes to node B, which must continue the call.
 */

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Cluster {
  a: SipNode;
  b: SipNode;
  containerB: AppContainer;
  activated: string[];
  killA(): Promise<void>;
}

async function twoNodes(strategy: ReplicationStrategy, ringMs: number): Promise<Cluster> {
  const store = new MemorySessionStore();
  const activated: string[] = [];
  const app = (): SipApplication => ({ ...uas({ ringMs }), sessionActivated: (s: SipApplicationSession) => { activated.push(s.id); } });
  const listen = [{ protocol: 'UDP' as const, host: '127.0.0.1', port: 0 }];
  const containerA = new AppContainer({ apps: [app()], replicator: new Replicator(store, strategy, 'node-a') });
  const containerB = new AppContainer({ apps: [app()], replicator: new Replicator(store, strategy, 'node-b') });
  const a = await SipNode.start({ listen, app: containerA });
  const b = await SipNode.start({ listen, app: containerB });
  let aClosed = false;
  // A dies as SIGKILL would have it: its sockets go, its sessions are not ended (no record deleted).
  const killA = async (): Promise<void> => {
    aClosed = true;
    await a.stack.close();
  };
  cleanups.push(async () => {
    await b.close();
    if (!aClosed) await a.close();
  });
  return { a, b, containerB, activated, killA };
}

/** A caller on a UDP socket: sends requests as text, collects responses. */
async function caller() {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => sock.close(() => resolve())));
  const port = sock.address().port;
  const responses: SipResponse[] = [];
  const waiters: Array<() => void> = [];
  sock.on('message', (data) => {
    const msg = parseMessage(data);
    if (msg.isRequest) return;
    responses.push(msg as SipResponse);
    for (const w of waiters.splice(0)) w();
  });
  const callId = `${randomBytes(6).toString('hex')}@127.0.0.1`;
  const send = (to: SipNode, text: string): void => {
    const l = to.stack.transport.listening[0]!;
    sock.send(Buffer.from(text.replace(/\n/g, '\r\n')), l.port, l.host);
  };
  /** The first response (received from now on or already) matching `pred`, within 5 s. */
  const response = (pred: (r: SipResponse) => boolean, what: string): Promise<SipResponse> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within 5 s (got ${responses.map((r) => `${r.status} ${r.cseq.method}`).join(', ')})`)), 5000);
    const check = (): void => {
      const r = responses.find(pred);
      if (r !== undefined) {
        clearTimeout(timer);
        resolve(r);
      } else waiters.push(check);
    };
    check();
  });
  const headers = (method: string, cseq: number, branch: string, toTag = ''): string =>
    `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=${branch};rport\nMax-Forwards: 70\n` +
    `From: <sip:alice@127.0.0.1>;tag=alice1\nTo: <sip:bob@127.0.0.1>${toTag === '' ? '' : `;tag=${toTag}`}\n` +
    `Call-ID: ${callId}\nCSeq: ${cseq} ${method}\nContact: <sip:alice@127.0.0.1:${port}>\nContent-Length: 0\n\n`;
  const inviteBranch = `z9hG4bK${randomBytes(6).toString('hex')}`;
  return {
    invite: (to: SipNode) => send(to, `INVITE sip:bob@127.0.0.1 SIP/2.0\n${headers('INVITE', 1, inviteBranch)}`),
    cancel: (to: SipNode) => send(to, `CANCEL sip:bob@127.0.0.1 SIP/2.0\n${headers('CANCEL', 1, inviteBranch)}`),
    ack: (to: SipNode, toTag: string) => send(to, `ACK sip:bob@127.0.0.1 SIP/2.0\n${headers('ACK', 1, `z9hG4bK${randomBytes(6).toString('hex')}`, toTag)}`),
    bye: (to: SipNode, toTag: string) => send(to, `BYE sip:bob@127.0.0.1 SIP/2.0\n${headers('BYE', 2, `z9hG4bK${randomBytes(6).toString('hex')}`, toTag)}`),
    response,
  };
}

describe('failover between two nodes sharing a store (in process)', () => {
  test('ConfirmedDialog: node A answers, dies; the BYE to node B is answered 200 and the app hears sessionActivated once', async () => {
    const c = await twoNodes('ConfirmedDialog', 0);
    const ua = await caller();
    ua.invite(c.a);
    const ok = await ua.response((r) => r.status === 200 && r.cseq.method === 'INVITE', '200 to INVITE');
    const toTag = ok.toTag!;
    ua.ack(c.a, toTag);
    await c.killA();
    ua.bye(c.b, toTag);
    await ua.response((r) => r.status === 200 && r.cseq.method === 'BYE', '200 to BYE from node B');
    assert.equal(c.activated.length, 1, 'sessionActivated once');
    assert.ok(toTag.startsWith(c.activated[0]!), 'for the call\'s application session');
  });

  test('EarlyDialog: node A rings (persistent timer) and dies; node B takes its timer over and answers the call', async () => {
    const c = await twoNodes('EarlyDialog', 400);
    const ua = await caller();
    ua.invite(c.a);
    const ringing = await ua.response((r) => r.status === 180, '180 from node A');
    await c.killA();
    // What a balancer's death notice makes the survivors do.
    assert.equal(await c.containerB.takeOver('node-a', ['node-b']), 1, 'the ring timer taken over');
    const ok = await ua.response((r) => r.status === 200 && r.cseq.method === 'INVITE', '200 to INVITE from node B');
    assert.equal(ok.toTag, ringing.toTag, 'the same dialog as the 180\'s');
    ua.ack(c.b, ok.toTag!);
    ua.bye(c.b, ok.toTag!);
    await ua.response((r) => r.status === 200 && r.cseq.method === 'BYE', '200 to BYE');
    assert.equal(c.activated.length, 1);
  });

  test('EarlyDialog: node A rings and dies; a CANCEL to node B gets 200, and the INVITE 487', async () => {
    const c = await twoNodes('EarlyDialog', 10_000);
    const ua = await caller();
    ua.invite(c.a);
    await ua.response((r) => r.status === 180, '180 from node A');
    await c.killA();
    ua.cancel(c.b);
    await ua.response((r) => r.status === 200 && r.cseq.method === 'CANCEL', '200 to CANCEL');
    await ua.response((r) => r.status === 487 && r.cseq.method === 'INVITE', '487 to INVITE');
    assert.equal(c.activated.length, 1);
    assert.equal(c.containerB.sessions.size, 0, 'the cancelled call is gone from node B');
  });

  test('control: with ConfirmedDialog the ringing call cannot be cancelled on node B (481)', async () => {
    const c = await twoNodes('ConfirmedDialog', 10_000);
    const ua = await caller();
    ua.invite(c.a);
    await ua.response((r) => r.status === 180, '180 from node A');
    await c.killA();
    ua.cancel(c.b);
    await ua.response((r) => r.status === 481 && r.cseq.method === 'CANCEL', '481 to CANCEL');
    assert.deepEqual(c.activated, []);
  });
});
