import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { SipStack } from '../../../src/sip/stack.ts';
import { parseMessage } from '../../../src/sip/message/parser.ts';
import type { SipRequest, SipResponse } from '../../../src/sip/message/message.ts';
import type { ServerTransaction } from '../../../src/sip/transaction/server.ts';

/** A raw UDP peer: sends text, collects what comes back. */
class Peer {
  readonly socket = dgram.createSocket('udp4');
  readonly received: SipResponse[] = [];
  #waiters: Array<() => void> = [];

  async bind(): Promise<void> {
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
    this.socket.on('message', (d) => {
      this.received.push(parseMessage(d) as SipResponse);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(text: string, port: number): void {
    this.socket.send(Buffer.from(text.replace(/\n/g, '\r\n')), port, '127.0.0.1');
  }

  /** Waits until `n` responses matching `pred` have arrived, at most `ms`. */
  async waitFor(pred: (r: SipResponse) => boolean, n: number, ms = 2000): Promise<SipResponse[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = this.received.filter(pred);
      if (got.length >= n) return got;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out: ${got.length}/${n} responses`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
}

function invite(peerPort: number, branch: string, callId: string, extra = ''): string {
  return `INVITE sip:uas@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:${peerPort}${branch === '' ? '' : ';branch=' + branch}
Max-Forwards: 70
From: <sip:uac@127.0.0.1>;tag=from1
To: <sip:uas@127.0.0.1>${extra}
Call-ID: ${callId}
CSeq: 1 INVITE
Contact: <sip:uac@127.0.0.1:${peerPort}>
Content-Length: 0

`;
}

describe('transaction matching (§17.2.3, §9.2, RFC 2543 fallback)', () => {
  let stack: SipStack;
  let peer: Peer;
  let port: number;
  const seen: Array<{ req: SipRequest; tx: ServerTransaction | null }> = [];
  let respond: (req: SipRequest, tx: ServerTransaction) => void = () => {};

  before(async () => {
    stack = await SipStack.start({ listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }], timers: { t1: 50, t2: 400, t4: 500 } });
    port = stack.transport.listening[0]!.port;
    stack.transactions.setUser({
      onRequest: (req, tx) => { seen.push({ req, tx }); if (tx !== null) respond(req, tx); },
      onStrayResponse: () => {},
    });
    peer = new Peer();
    await peer.bind();
  });

  /** Sends a request, waits for its answer `status`, retransmits it, and waits for the same answer again. */
  async function sentTwiceAnswered(text: string, callId: string, status: number): Promise<void> {
    peer.send(text, port);
    await peer.waitFor((r) => r.callId === callId && r.status === status, 1);
    peer.send(text, port);
    await peer.waitFor((r) => r.callId === callId && r.status === status, 2);
  }

  after(async () => {
    peer.socket.close();
    await stack.close();
  });

  test('an INVITE the TU does not answer gets 100 Trying after the delay; its retransmission is absorbed (the 100 is re-sent)', async () => {
    respond = () => {};
    const text = invite(peer.port, 'z9hG4bK-absorb-1', 'absorb-1');
    const sent = Date.now();
    peer.send(text, port);
    await peer.waitFor((r) => r.callId === 'absorb-1' && r.status === 100, 1);
    assert.ok(Date.now() - sent >= stack.transactions.tryingDelayMs - 5, 'not before the TU had its 200 ms (§17.2.1)');
    peer.send(text, port);
    await peer.waitFor((r) => r.callId === 'absorb-1' && r.status === 100, 2);
    assert.equal(seen.filter((s) => s.req.callId === 'absorb-1').length, 1, 'the TU saw the INVITE once');
    assert.ok(stack.transactions.counters.absorbed >= 1);
  });

  test('an INVITE the TU answers at once gets no 100; a retransmission before any answer gets the 100 at once', async () => {
    // Answered within the delay: the 180 is the only response, and a retransmission gets the 180 again.
    respond = (req, tx) => { if (req.callId === 'ring-1') tx.reply(180, undefined, 'uas-tag'); };
    await sentTwiceAnswered(invite(peer.port, 'z9hG4bK-ring-1', 'ring-1'), 'ring-1', 180);
    // Not answered yet when the caller retransmits (its T1 is shorter than our delay): the 100 goes now.
    respond = () => {};
    const quiet = invite(peer.port, 'z9hG4bK-quiet-1', 'quiet-1');
    peer.send(quiet, port);
    await waitUntil(() => seen.some((s) => s.req.callId === 'quiet-1'));
    const retransmitted = Date.now();
    peer.send(quiet, port);
    await peer.waitFor((r) => r.callId === 'quiet-1' && r.status === 100, 1);
    assert.ok(Date.now() - retransmitted < stack.transactions.tryingDelayMs, 'the retransmission was answered, not the timer');
    // An INVITE sent after ring-1 gets its delayed 100; a timer ring-1 had left running would have fired before.
    peer.send(invite(peer.port, 'z9hG4bK-late-1', 'late-1'), port);
    await peer.waitFor((r) => r.callId === 'late-1' && r.status === 100, 1);
    assert.equal(peer.received.filter((r) => r.callId === 'ring-1' && r.status === 100).length, 0, 'no 100 for the INVITE answered at once');
  });

  test('a CANCEL matches the INVITE server transaction with the same branch (§9.2)', async () => {
    let inviteTx: ServerTransaction | null = null;
    respond = (req, tx) => {
      if (req.method === 'INVITE') { inviteTx = tx; return; }
      if (req.method === 'CANCEL') {
        const match = stack.transactions.findInviteForCancel(req);
        assert.equal(match, inviteTx);
        tx.reply(200);
        match!.reply(487, undefined, 'uas-tag');
      }
    };
    peer.send(invite(peer.port, 'z9hG4bK-cancel-1', 'cancel-1'), port);
    await peer.waitFor((r) => r.callId === 'cancel-1' && r.status === 100, 1);
    peer.send(invite(peer.port, 'z9hG4bK-cancel-1', 'cancel-1').replace(/INVITE/g, 'CANCEL').replace('CSeq: 1 CANCEL', 'CSeq: 1 CANCEL'), port);
    const [ok] = await peer.waitFor((r) => r.callId === 'cancel-1' && r.cseq.method === 'CANCEL', 1);
    assert.equal(ok!.status, 200);
    const [terminated] = await peer.waitFor((r) => r.callId === 'cancel-1' && r.status === 487, 1);
    assert.equal(terminated!.cseq.method, 'INVITE');
  });

  test('a CANCEL with another branch matches nothing', async () => {
    respond = (req, tx) => {
      if (req.method === 'CANCEL') tx.reply(stack.transactions.findInviteForCancel(req) === undefined ? 481 : 200);
    };
    peer.send(invite(peer.port, 'z9hG4bK-cancel-2', 'cancel-2'), port);
    await peer.waitFor((r) => r.callId === 'cancel-2' && r.status === 100, 1);
    peer.send(invite(peer.port, 'z9hG4bK-other', 'cancel-2').replace(/INVITE/g, 'CANCEL'), port);
    const [res] = await peer.waitFor((r) => r.callId === 'cancel-2' && r.cseq.method === 'CANCEL', 1);
    assert.equal(res!.status, 481);
  });

  test('RFC 2543 peers (no magic cookie): retransmission absorbed, ACK to a non-2xx matched by To tag', async () => {
    respond = (req, tx) => { if (req.method === 'INVITE') tx.reply(486, undefined, 'busy-tag'); };
    const text = invite(peer.port, '', 'rfc2543-1');
    // The retransmitted INVITE gets the 486 again, not a new transaction.
    await sentTwiceAnswered(text, 'rfc2543-1', 486);
    const ack = text.replace('INVITE sip', 'ACK sip').replace('CSeq: 1 INVITE', 'CSeq: 1 ACK').replace('To: <sip:uas@127.0.0.1>', 'To: <sip:uas@127.0.0.1>;tag=busy-tag');
    peer.send(ack, port);
    // Send an OPTIONS after it, as a marker: once the TU has seen it, the ACK was processed before.
    peer.send(invite(peer.port, 'z9hG4bK-marker', 'marker-1').replace(/INVITE/g, 'OPTIONS'), port);
    await waitUntil(() => seen.some((s) => s.req.callId === 'marker-1'));
    assert.equal(seen.filter((s) => s.req.callId === 'rfc2543-1').length, 1, 'INVITE seen once, ACK absorbed by the transaction');
  });

  test('an ACK for a 2xx reaches the TU without a transaction', async () => {
    respond = (req, tx) => { if (req.method === 'INVITE') tx.reply(200, undefined, 'ok-tag'); };
    peer.send(invite(peer.port, 'z9hG4bK-ack2xx', 'ack2xx-1'), port);
    await peer.waitFor((r) => r.callId === 'ack2xx-1' && r.status === 200, 1);
    const ack = invite(peer.port, 'z9hG4bK-ack2xx-new', 'ack2xx-1', ';tag=ok-tag').replace('INVITE sip', 'ACK sip').replace('CSeq: 1 INVITE', 'CSeq: 1 ACK');
    peer.send(ack, port);
    await waitUntil(() => seen.some((s) => s.req.callId === 'ack2xx-1' && s.req.method === 'ACK'));
    const entry = seen.find((s) => s.req.callId === 'ack2xx-1' && s.req.method === 'ACK')!;
    assert.equal(entry.tx, null);
  });
});

async function waitUntil(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise<void>((r) => setImmediate(r));
  }
}
