import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Dialog } from '../../../src/sip/dialog/dialog.ts';
import { DialogLayer } from '../../../src/sip/dialog/dialog-layer.ts';
import { createResponse, parseMessage, SipRequest, SipResponse } from '../../../src/sip/message/index.ts';
import { SipStack } from '../../../src/sip/stack.ts';
import type { ClientTransaction } from '../../../src/sip/transaction/client.ts';
import { newTag } from '../../../src/sip/transaction/keys.ts';
import type { TransactionLayer, TransactionUser } from '../../../src/sip/transaction/layer.ts';
import type { ServerTransaction } from '../../../src/sip/transaction/server.ts';
import type { Source } from '../../../src/sip/transport/types.ts';
import { SipNode } from '../../../src/server/node.ts';
import { createApp } from '../../../apps/stack-uas.ts';
import { Inbox, quietWindow, until } from '../transport/wait.ts';

const HOST = '127.0.0.1';
const TIMERS = { t1: 20, t2: 160, t4: 200 };
const ACK_TIMEOUT = 64 * TIMERS.t1;
const WAIT = 2000;

const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function startStack(): Promise<SipStack> {
  const stack = await SipStack.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }], timers: TIMERS });
  closers.push(() => stack.close());
  return stack;
}

function portOf(stack: SipStack): number {
  return stack.transport.listening[0]!.port;
}

/** Counts messages a stack receives whose start line begins with `prefix`, and lets a test wait for a count. */
class Counter {
  readonly times: number[] = [];
  readonly data: Buffer[] = [];
  #listeners: Array<() => void> = [];
  constructor(stack: SipStack, direction: 'in' | 'out', prefix: string, also?: (text: string) => boolean) {
    const prev = stack.transport.tap;
    stack.transport.tap = (dir, data, peer) => {
      prev?.(dir, data, peer);
      if (dir !== direction) return;
      const text = data.toString('latin1');
      if (!text.startsWith(prefix) || (also !== undefined && !also(text))) return;
      this.times.push(Date.now());
      this.data.push(Buffer.from(data));
      for (const l of this.#listeners) l();
    };
  }
  get count(): number {
    return this.times.length;
  }
  reach(n: number, ms: number, what: string): Promise<void> {
    return until((cb) => this.#listeners.push(cb), () => this.count >= n, ms, what);
  }
}

/** A UAS core on a stack: answers INVITE with 200 through DialogLayer.answer, reports ACKs and ACK timeouts. */
class UasCore implements TransactionUser {
  readonly stack: SipStack;
  readonly acks = new Inbox<{ ack: SipRequest; stopped: boolean }>();
  readonly ackTimeouts = new Inbox<{ dialog: Dialog; elapsed: number }>();
  readonly dialogs: Dialog[] = [];
  /** When false the ACK is seen but not given to the dialog layer, so the 2xx keeps being retransmitted. */
  takeAcks = true;

  constructor(stack: SipStack) {
    this.stack = stack;
    stack.transactions.setUser(this);
  }

  onRequest(req: SipRequest, tx: ServerTransaction | null, _source: Source): void {
    if (tx === null) {
      if (req.method !== 'ACK') return;
      const d = this.stack.dialogs.forRequest(req);
      const stopped = this.takeAcks && d !== undefined ? this.stack.dialogs.receiveAck(req, d) : false;
      this.acks.push({ ack: req, stopped });
      return;
    }
    if (req.method !== 'INVITE') {
      tx.reply(200);
      return;
    }
    const ok = createResponse(req, 200, undefined, newTag());
    ok.set('contact', `<sip:uas@${this.stack.transport.sentBy('UDP')}>`);
    const dialog = this.stack.dialogs.add(Dialog.fromUas(req, ok));
    this.dialogs.push(dialog);
    const start = Date.now();
    this.stack.dialogs.answer(tx, ok, dialog, () => this.ackTimeouts.push({ dialog, elapsed: Date.now() - start }));
  }

  onStrayResponse(): void {}
}

/** A UAC core: records stray responses and lets the dialog layer replay ACKs for them. */
class UacCore implements TransactionUser {
  readonly stack: SipStack;
  readonly strays = new Inbox<{ res: SipResponse; replayed: boolean }>();
  constructor(stack: SipStack) {
    this.stack = stack;
    stack.transactions.setUser(this);
  }
  onRequest(_req: SipRequest, tx: ServerTransaction | null): void {
    tx?.reply(200);
  }
  onStrayResponse(res: SipResponse): void {
    this.strays.push({ res, replayed: this.stack.dialogs.receiveStray2xx(res) });
  }
}

let calls = 0;

function makeInvite(uacStack: SipStack, uasPort: number): SipRequest {
  const n = ++calls;
  const m = parseMessage(Buffer.from(
    `INVITE sip:uas@${HOST}:${uasPort} SIP/2.0\r\n` +
    'Max-Forwards: 70\r\n' +
    `From: <sip:uac@${HOST}>;tag=uac${n}\r\n` +
    `To: <sip:uas@${HOST}:${uasPort}>\r\n` +
    `Call-ID: dialog-layer-${n}-${Date.now()}@${HOST}\r\n` +
    'CSeq: 1 INVITE\r\n' +
    `Contact: <sip:uac@${uacStack.transport.sentBy('UDP')}>\r\n` +
    'Content-Length: 0\r\n\r\n',
    'latin1',
  ));
  assert.ok(m instanceof SipRequest);
  return m;
}

/** Sends an INVITE from `uac` to `uas`; resolves the dialog and 2xx on the first 2xx; all responses go to `onResponse`. */
function call(
  uac: SipStack,
  uas: SipStack,
  onResponse: (res: SipResponse, tx: ClientTransaction) => void = () => {},
): { invite: SipRequest; tx: ClientTransaction; answered: Promise<{ dialog: Dialog; ok: SipResponse }> } {
  const invite = makeInvite(uac, portOf(uas));
  const answers = new Inbox<{ dialog: Dialog; ok: SipResponse }>();
  let dialog: Dialog | undefined;
  const tx = uac.transactions.request(invite, { protocol: 'UDP', host: HOST, port: portOf(uas) }, {
    onResponse: (res, t) => {
      if (res.status >= 200 && res.status < 300 && dialog === undefined) {
        dialog = uac.dialogs.add(Dialog.fromUac(invite, res));
        answers.push({ dialog, ok: res });
      }
      onResponse(res, t);
    },
  });
  return { invite, tx, answered: answers.next(WAIT, 'the 200 to the INVITE') };
}

const isInvite200 = (text: string): boolean => /\r\nCSeq:\s*\d+ INVITE\r\n/i.test(text);

describe('DialogLayer over UDP (two stacks)', () => {
  test('UAS: the 2xx is retransmitted until the ACK arrives; receiveAck stops it', async () => {
    const uasStack = await startStack();
    const uacStack = await startStack();
    const uas = new UasCore(uasStack);
    new UacCore(uacStack);
    const oks = new Counter(uacStack, 'in', 'SIP/2.0 200', isInvite200);
    const { answered } = call(uacStack, uasStack);
    const { dialog, ok } = await answered;
    assert.equal(dialog.state, 'confirmed');
    // Let two retransmissions arrive before acknowledging.
    await oks.reach(3, WAIT, 'the 200 and two retransmissions');
    assert.ok(uasStack.dialogs.counters.answerRetransmissions >= 2);
    uacStack.dialogs.ack(dialog, ok);
    const { ack, stopped } = await uas.acks.next(WAIT, 'the ACK at the UAS');
    assert.equal(stopped, true, 'receiveAck found the pending 2xx');
    assert.equal(ack.cseq.seq, ok.cseq.seq);
    assert.equal(ack.cseq.method, 'ACK');
    assert.equal(ack.toTag, ok.toTag);
    const sentBeforeAck = uasStack.dialogs.counters.answerRetransmissions;
    assert.equal(uasStack.dialogs.receiveAck(ack, uas.dialogs[0]!), false, 'nothing pending any more');
    // Observation window past the whole 64*T1 retransmission span: nothing more is sent, no ACK timeout.
    await quietWindow(ACK_TIMEOUT + 2 * TIMERS.t2);
    assert.equal(uasStack.dialogs.counters.answerRetransmissions, sentBeforeAck);
    assert.equal(uasStack.dialogs.counters.ackTimeouts, 0);
    assert.equal(uas.ackTimeouts.pending, 0);
    assert.equal(oks.count, 1 + sentBeforeAck, 'every 200 sent arrived, none after the ACK');
  });

  test('UAS: without an ACK, onAckTimeout fires after 64*T1 and the retransmissions back off to T2', async () => {
    const uasStack = await startStack();
    const uacStack = await startStack();
    const uas = new UasCore(uasStack);
    new UacCore(uacStack);
    const oks = new Counter(uacStack, 'in', 'SIP/2.0 200', isInvite200);
    const sent = new Counter(uasStack, 'out', 'SIP/2.0 200', isInvite200);
    const { answered } = call(uacStack, uasStack);
    await answered;
    const { elapsed, dialog } = await uas.ackTimeouts.next(ACK_TIMEOUT + 3000, 'onAckTimeout');
    assert.ok(elapsed >= ACK_TIMEOUT - 5, `timed out after ${elapsed} ms, 64*T1 is ${ACK_TIMEOUT}`);
    assert.equal(dialog, uas.dialogs[0]);
    assert.equal(uasStack.dialogs.counters.ackTimeouts, 1);
    const retransmitted = uasStack.dialogs.counters.answerRetransmissions;
    // T1, 2T1, 4T1, then T2 until 64*T1: 10 on time; timers that run late make fewer (and a last timer firing a
    // millisecond before the deadline one more, with a short last gap).
    assert.ok(retransmitted >= 5 && retransmitted <= 11, `${retransmitted} retransmissions`);
    await oks.reach(1 + retransmitted, WAIT, 'every retransmitted 200');
    // Measured where they are sent (timers never run early by more than clock granularity); capped at T2.
    const gaps = sent.times.slice(1).map((t, i) => t - sent.times[i]!);
    assert.equal(gaps.length, retransmitted);
    assert.ok(gaps.slice(0, 3).every((g, i) => g >= TIMERS.t1 * 2 ** i - 2), `gaps ${gaps.join(',')} start at T1 and double`);
    assert.ok(gaps.slice(3, -1).every((g) => g >= TIMERS.t2 - 2), `gaps ${gaps.join(',')} stay at T2`);
  });

  test('UAC: ack() sends the ACK; a retransmitted 2xx arriving as a stray makes receiveStray2xx resend the same bytes', async () => {
    const uasStack = await startStack();
    const uacStack = await startStack();
    const uas = new UasCore(uasStack);
    uas.takeAcks = false; // the UAS keeps retransmitting its 200 as if every ACK were lost
    const uac = new UacCore(uacStack);
    const acksAtUas = new Counter(uasStack, 'in', 'ACK ');
    const acksSent = new Counter(uacStack, 'out', 'ACK ');
    const { tx, answered } = call(uacStack, uasStack);
    const { dialog, ok } = await answered;
    uacStack.dialogs.ack(dialog, ok);
    // End the INVITE client transaction now (as Timer M would): later 200s match nothing and are strays.
    tx.terminate();
    const stray = await uac.strays.next(WAIT, 'a retransmitted 200 as a stray response');
    assert.equal(stray.res.status, 200);
    assert.equal(stray.replayed, true);
    await acksAtUas.reach(2, WAIT, 'the replayed ACK');
    assert.ok(acksSent.count >= 2);
    for (const d of [...acksSent.data, ...acksAtUas.data]) assert.ok(d.equals(acksSent.data[0]!), 'the very same ACK bytes each time');
    const ack = parseMessage(acksSent.data[0]!);
    assert.ok(ack instanceof SipRequest);
    assert.equal(ack.method, 'ACK');
    assert.deepEqual(ack.cseq, { seq: ok.cseq.seq, method: 'ACK' });
    assert.equal(ack.toTag, ok.toTag);
    assert.equal(ack.uriText, `sip:uas@${uasStack.transport.sentBy('UDP')}`, 'to the remote target');
    uasStack.dialogs.remove(uas.dialogs[0]!);
  });

  test('receiveStray2xx ignores what it has no ACK for', async () => {
    const uasStack = await startStack();
    const uacStack = await startStack();
    new UasCore(uasStack);
    const uac = new UacCore(uacStack);
    const { tx, invite, answered } = call(uacStack, uasStack);
    const { ok } = await answered;
    tx.terminate();
    // A 2xx for this dialog before any ACK was sent: not handled here.
    const stray = await uac.strays.next(WAIT, 'a stray 200');
    assert.equal(stray.replayed, false);
    // Not a 2xx to an INVITE, or no dialog: false.
    assert.equal(uacStack.dialogs.receiveStray2xx(createResponse(invite, 180, undefined, 'x')), false);
    const other = ok.clone();
    other.set('to', `<sip:uas@${HOST}>;tag=unknown`);
    assert.equal(uacStack.dialogs.receiveStray2xx(other), false);
  });
});

describe('DialogLayer timers (mocked clock)', () => {
  function fixture(reliable: boolean): { layer: DialogLayer; sent: number[]; tx: ServerTransaction; ok: SipResponse; dialog: Dialog } {
    const sent: number[] = [];
    const fakeTransactions = {
      timers: { ...TIMERS },
      transport: {
        sendResponseData: () => { sent.push(Date.now()); },
        responseDestination: () => ({ protocol: 'UDP', host: HOST, port: 5999 }),
      },
    } as unknown as TransactionLayer;
    const layer = new DialogLayer(fakeTransactions);
    const invite = makeInvite({ transport: { sentBy: () => `${HOST}:5999` } } as unknown as SipStack, 5998);
    invite.prepend('via', `SIP/2.0/UDP ${HOST}:5999;branch=z9hG4bKmock`);
    const ok = createResponse(invite, 200, undefined, 'uastag');
    ok.set('contact', `<sip:uas@${HOST}:5998>`);
    const dialog = layer.add(Dialog.fromUas(invite, ok));
    const tx = { respond: () => {}, reliable, source: null } as unknown as ServerTransaction;
    return { layer, sent, tx, ok, dialog };
  }

  test('UDP: retransmissions at T1, 2T1, 4T1…capped at T2, then onAckTimeout at 64*T1', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const { layer, sent, tx, ok, dialog } = fixture(false);
    let timedOutAt = -1;
    layer.answer(tx, ok, dialog, () => { timedOutAt = Date.now(); });
    assert.equal(dialog.state, 'confirmed');
    for (let now = 0; now < ACK_TIMEOUT + 500; now += 5) t.mock.timers.tick(5);
    assert.deepEqual(sent, [20, 60, 140, 300, 460, 620, 780, 940, 1100, 1260]);
    assert.equal(timedOutAt, ACK_TIMEOUT);
    assert.equal(layer.counters.ackTimeouts, 1);
  });

  test('reliable transport: no 2xx retransmission, only the ACK timeout (even if the timer fires before Date.now() gets there)', (t) => {
    // Only setTimeout is mocked: the timer fires while the wall clock has not moved, the worst case of a timer
    // firing a little early.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { layer, sent, tx, ok, dialog } = fixture(true);
    let timedOut = 0;
    layer.answer(tx, ok, dialog, () => { timedOut++; });
    t.mock.timers.tick(ACK_TIMEOUT);
    assert.deepEqual(sent, []);
    assert.equal(timedOut, 1);
    t.mock.timers.tick(ACK_TIMEOUT);
    assert.equal(timedOut, 1);
  });

  test('remove() and shutdown() stop pending retransmissions', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const { layer, sent, tx, ok, dialog } = fixture(false);
    let timedOut = 0;
    layer.answer(tx, ok, dialog, () => { timedOut++; });
    t.mock.timers.tick(TIMERS.t1);
    assert.equal(sent.length, 1);
    layer.remove(dialog);
    assert.equal(dialog.state, 'terminated');
    assert.equal(layer.get(dialog.id), undefined);
    t.mock.timers.tick(ACK_TIMEOUT * 2);
    assert.equal(sent.length, 1);
    assert.equal(timedOut, 0);
  });
});

describe('a node running apps/uas.ts', () => {
  async function startUasNode(): Promise<SipNode> {
    const node = await SipNode.start({ listen: [{ protocol: 'UDP', host: HOST, port: 0 }], timers: TIMERS, app: createApp() });
    closers.push(() => node.close());
    return node;
  }

  test('an in-dialog BYE for an unknown dialog is answered 481', async () => {
    const node = await startUasNode();
    const client = await startStack();
    new UacCore(client);
    const port = node.stack.transport.listening[0]!.port;
    const bye = parseMessage(Buffer.from(
      `BYE sip:uas@${HOST}:${port} SIP/2.0\r\n` +
      'Max-Forwards: 70\r\n' +
      `From: <sip:uac@${HOST}>;tag=nosuchcaller\r\n` +
      `To: <sip:uas@${HOST}>;tag=nosuchcallee\r\n` +
      `Call-ID: unknown-dialog-${Date.now()}@${HOST}\r\n` +
      'CSeq: 2 BYE\r\n' +
      'Content-Length: 0\r\n\r\n',
      'latin1',
    ));
    assert.ok(bye instanceof SipRequest);
    const responses = new Inbox<SipResponse>();
    client.transactions.request(bye, { protocol: 'UDP', host: HOST, port }, { onResponse: (res) => responses.push(res) });
    const res = await responses.next(WAIT, 'the answer to the BYE');
    assert.equal(res.status, 481);
    assert.equal(res.cseq.method, 'BYE');
  });

  test('a whole call: INVITE → 180, 200; ACK; BYE → 200; BYE again → 481', async () => {
    const node = await startUasNode();
    const client = await startStack();
    new UacCore(client);
    const statuses: number[] = [];
    const { answered } = call(client, node.stack, (res) => statuses.push(res.status));
    const { dialog, ok } = await answered;
    assert.equal(ok.get('content-type'), 'application/sdp');
    assert.ok(statuses.includes(180));
    assert.equal(node.stack.dialogs.size, 1);
    const acks = new Counter(node.stack, 'in', 'ACK ');
    client.dialogs.ack(dialog, ok);
    await acks.reach(1, WAIT, 'the ACK at the node');
    const byeAnswers = new Inbox<SipResponse>();
    client.dialogs.send(dialog.createRequest('BYE'), { onResponse: (res) => byeAnswers.push(res) });
    assert.equal((await byeAnswers.next(WAIT, 'the 200 to the BYE')).status, 200);
    assert.equal(node.stack.dialogs.size, 0);
    client.dialogs.send(dialog.createRequest('BYE'), { onResponse: (res) => byeAnswers.push(res) });
    assert.equal((await byeAnswers.next(WAIT, 'the 481 to the second BYE')).status, 481);
    assert.equal(node.stack.dialogs.counters.ackTimeouts, 0);
  });
});
