import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SipStack } from '../../../src/sip/stack.ts';
import { Dialog } from '../../../src/sip/dialog/dialog.ts';
import { SipError } from '../../../src/sip/errors.ts';
import { createResponse, SipRequest, type SipResponse } from '../../../src/sip/message/message.ts';
import { isLocalResponse } from '../../../src/sip/transaction/client.ts';
import { newTag } from '../../../src/sip/transaction/keys.ts';
import type { ServerTransaction } from '../../../src/sip/transaction/server.ts';
import type { Source } from '../../../src/sip/transport/types.ts';
import { dropFirst, LossyRelay } from './lossy-relay.ts';

// Short timers so that Timer B/F/H (64*T1) end in about a second.
const timers = { t1: 20, t2: 160, t4: 200 };

type ServerBehaviour = (req: SipRequest, tx: ServerTransaction | null, source: Source) => void;

function request(method: string, target: string): SipRequest {
  return new SipRequest(method, `sip:uas@${target}`, [
    { name: 'Max-Forwards', key: 'max-forwards', value: '70' },
    { name: 'From', key: 'from', value: `<sip:uac@127.0.0.1>;tag=${newTag()}` },
    { name: 'To', key: 'to', value: '<sip:uas@127.0.0.1>' },
    { name: 'Call-ID', key: 'call-id', value: `${newTag()}@loss-test` },
    { name: 'CSeq', key: 'cseq', value: `1 ${method}` },
    { name: 'Contact', key: 'contact', value: '<sip:uac@127.0.0.1>' },
  ]);
}

/** Resolves with the value the callback is given, or rejects after `ms`. */
function waitFor<T>(what: string, ms: number, register: (done: (v: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

describe('transaction layer under packet loss (RFC 3261 §17 timers)', () => {
  let uac: SipStack;
  let uas: SipStack;
  let relay: LossyRelay;
  let behaviour: ServerBehaviour = () => {};
  let target: string;

  before(async () => {
    uac = await SipStack.start({ listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }, { protocol: 'TCP', host: '127.0.0.1', port: 0 }], timers });
    uas = await SipStack.start({ listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }], timers });
    uas.transactions.setUser({ onRequest: (req, tx, source) => behaviour(req, tx, source), onStrayResponse: () => {} });
    uac.transactions.setUser({
      onRequest: () => {},
      onStrayResponse: (res) => { uac.dialogs.receiveStray2xx(res); },
    });
    relay = await LossyRelay.start('127.0.0.1', { host: '127.0.0.1', port: uas.transport.listening[0]!.port });
    target = `127.0.0.1:${relay.port}`;
  });

  after(async () => {
    relay.close();
    await uac.close();
    await uas.close();
  });

  function send(req: SipRequest): Promise<SipResponse> {
    return waitFor(`final response to ${req.method}`, 3000, (done) => {
      uac.transactions.request(req, { protocol: 'UDP', host: '127.0.0.1', port: relay.port }, {
        onResponse: (res) => { if (res.status >= 200) done(res); },
      });
    });
  }

  test('Timer A: a lost INVITE is retransmitted and the transaction completes', async () => {
    relay.drop = dropFirst(1, (m, d) => d === 'forward' && m.isRequest && (m as SipRequest).method === 'INVITE');
    behaviour = (req, tx) => tx?.reply(486, undefined, newTag());
    const res = await send(request('INVITE', target));
    assert.equal(res.status, 486);
    assert.equal(relay.count('dropped', 'INVITE/INVITE'), 1);
    assert.ok(relay.count('passed', 'INVITE/INVITE') >= 1);
    // The client transaction ACKs the 486 itself (§17.1.1.3).
    await waitFor('ACK relayed', 1000, (done) => { const t = setInterval(() => { if (relay.count('passed', 'ACK/ACK') >= 1) { clearInterval(t); done(true); } }, 5); });
  });

  test('Timer E: a lost OPTIONS is retransmitted and answered', async () => {
    relay.drop = dropFirst(2, (m, d) => d === 'forward' && m.isRequest);
    behaviour = (req, tx) => tx?.reply(200, undefined, newTag());
    const before = uac.transactions.counters.retransmissions;
    const res = await send(request('OPTIONS', target));
    assert.equal(res.status, 200);
    assert.ok(uac.transactions.counters.retransmissions - before >= 2, 'two retransmissions were needed');
  });

  test('Timer G: a lost 486 is retransmitted by the server transaction, which then sees the ACK', async () => {
    relay.drop = dropFirst(1, (m, d) => d === 'back' && !m.isRequest && (m as SipResponse).status === 486);
    let serverTx: ServerTransaction | null = null;
    behaviour = (req, tx) => { serverTx = tx; tx?.reply(486, undefined, newTag()); };
    const res = await send(request('INVITE', target));
    assert.equal(res.status, 486);
    assert.equal(relay.dropped.filter((l) => l.includes('486/INVITE')).length >= 1, true);
    await waitFor('server transaction confirmed by ACK', 1000, (done) => {
      const t = setInterval(() => { const s = (serverTx as ServerTransaction | null)?.state; if (s === 'confirmed' || s === 'terminated') { clearInterval(t); done(s); } }, 5);
    });
  });

  test('Timer B: an INVITE that is never answered ends in a locally made 408', async () => {
    relay.drop = (m, d) => d === 'forward' && m.isRequest && (m as SipRequest).method === 'INVITE';
    const dropsBefore = relay.count('dropped', 'INVITE/INVITE');
    const started = Date.now();
    const res = await send(request('INVITE', target));
    assert.equal(res.status, 408);
    assert.ok(isLocalResponse(res), 'the 408 was made by the client transaction');
    assert.ok(Date.now() - started >= 64 * timers.t1 - 5, 'not before 64*T1');
    // Timer A doubles from T1: sends at 0, 20, 60, 140, 300, 620 ms (and 1260) before Timer B at 1280 ms.
    assert.ok(relay.count('dropped', 'INVITE/INVITE') - dropsBefore >= 6);
  });

  test('Timer F: a non-INVITE request that is never answered ends in 408', async () => {
    relay.drop = (m, d) => d === 'forward' && m.isRequest;
    const res = await send(request('OPTIONS', target));
    assert.equal(res.status, 408);
    assert.ok(isLocalResponse(res));
  });

  test('Timer H: a final response never ACKed ends the server transaction with a timeout', async () => {
    relay.drop = (m, d) => d === 'forward' && m.isRequest && (m as SipRequest).method === 'ACK';
    const failure = waitFor<SipError>('Timer H', 3000, (done) => {
      behaviour = (req, tx) => {
        if (tx === null) return;
        tx.onFailure = done;
        tx.reply(603, undefined, newTag());
      };
    });
    const res = await send(request('INVITE', target));
    assert.equal(res.status, 603);
    const err = await failure;
    assert.equal(err.status, 408);
    assert.equal(err.code, 'SIP_TIMEOUT');
    // Timer G kept resending the 603 while no ACK came; the client answered each with its ACK again.
    assert.ok(relay.count('passed', '603/INVITE') >= 3, `603 retransmitted (${relay.count('passed', '603/INVITE')})`);
  });

  test('a lost 2xx is retransmitted by the UAS core until the ACK arrives (§13.3.1.4)', async () => {
    relay.drop = dropFirst(1, (m, d) => d === 'back' && !m.isRequest && (m as SipResponse).status === 200);
    const acked = waitFor<boolean>('ACK for the 2xx', 3000, (done) => {
      behaviour = (req, tx) => {
        if (tx === null) {
          const d = uas.dialogs.forRequest(req);
          if (req.method === 'ACK' && d !== undefined) done(uas.dialogs.receiveAck(req, d));
          return;
        }
        const ok = createResponse(req, 200, undefined, newTag());
        ok.set('contact', `<sip:uas@${uas.transport.sentBy('UDP')}>`);
        const dialog = uas.dialogs.add(Dialog.fromUas(req, ok));
        uas.dialogs.answer(tx, ok, dialog);
      };
    });
    const invite = request('INVITE', target);
    const res = await waitFor<SipResponse>('200', 3000, (done) => {
      uac.transactions.request(invite, { protocol: 'UDP', host: '127.0.0.1', port: relay.port }, {
        onResponse: (r) => {
          if (r.status !== 200) return;
          // Our route to the UAS is the relay, not its Contact.
          const d = uac.dialogs.add(Dialog.fromUac(invite, r));
          d.record.remoteTarget = `sip:uas@${target}`;
          uac.dialogs.ack(d, r);
          done(r);
        },
      });
    });
    assert.equal(res.status, 200);
    assert.equal(await acked, true, 'the ACK stopped a pending 2xx retransmission');
    assert.equal(relay.dropped.filter((l) => l.includes('200/INVITE')).length, 1);
  });

  test('a transport error is reported to the transaction user as 503', async () => {
    // A TCP port with nothing listening: the connection is refused.
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const res = await waitFor<SipResponse>('503', 3000, (done) => {
      uac.transactions.request(request('OPTIONS', `127.0.0.1:${closed}`), { protocol: 'TCP', host: '127.0.0.1', port: closed }, {
        onResponse: (r) => { if (r.status >= 200) done(r); },
      });
    });
    assert.equal(res.status, 503);
    assert.ok(isLocalResponse(res));
  });
});
