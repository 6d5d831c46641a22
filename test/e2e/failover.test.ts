import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSipp, startSippUas, type SippTransport } from '../helpers/sipp.ts';
import { startCluster, waitForQuiet, waitUntil } from './sipfleet-cluster.ts';

after(() => killAll());

const scenario = (name: string): string => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scenarios', name);

/** Who talks after the kill: the caller's BYE (default), a re-INVITE then BYE, or the callee's BYE. */
type Flow = 'caller-bye' | 're-invite' | 'callee-bye' | 'node-bye' | 'ringing' | 'cancel' | 'node-ringing' | 'node-cancel';
const FLOWS: Record<Flow, { uac: string; uas: string; pauseAt: 'uac' | 'uas' }> = {
  'caller-bye': { uac: SCENARIO_UAC_RR, uas: SCENARIO_UAS_RR, pauseAt: 'uac' },
  're-invite': { uac: scenario('uac-rr-reinvite.xml'), uas: scenario('uas-rr-reinvite.xml'), pauseAt: 'uac' },
  'callee-bye': { uac: scenario('uac-callee-bye.xml'), uas: scenario('uas-rr-bye.xml'), pauseAt: 'uas' },
  // The node is the callee (uas app, --call-ms): it hangs up by a persistent timer.
  'node-bye': { uac: scenario('uac-callee-bye.xml'), uas: SCENARIO_UAS_RR, pauseAt: 'uas' },
  // The callee rings 4 s, then answers (the kill comes while calls ring).
  ringing: { uac: SCENARIO_UAC_RR, uas: scenario('uas-rr-ring.xml'), pauseAt: 'uas' },
  // The caller gives up 3 s into ringing (the kill comes before its CANCEL).
  cancel: { uac: scenario('uac-rr-cancel.xml'), uas: scenario('uas-ring-cancel.xml'), pauseAt: 'uac' },
  // The node is the callee (uas app, --ring-ms 4000): it rings 4 s by a persistent timer, then answers.
  'node-ringing': { uac: SCENARIO_UAC_RR, uas: SCENARIO_UAS_RR, pauseAt: 'uac' },
  // The node rings 6 s (uas app); the caller gives up after 3 s.
  'node-cancel': { uac: scenario('uac-rr-cancel.xml'), uas: SCENARIO_UAS_RR, pauseAt: 'uac' },
};
const PAUSE_MS: Partial<Record<Flow, number>> = { ringing: 4000, cancel: 3000, 'node-ringing': 1000, 'node-cancel': 3000 };
/** How long the uas app rings (--ring-ms). */
const RING_MS: Partial<Record<Flow, number>> = { 'node-ringing': 4000, 'node-cancel': 6000 };
/** Calls in progress (app sessions on the nodes) at which the kill comes. */
const KILL_AT: Partial<Record<Flow, number>> = { ringing: 40, cancel: 30, 'node-ringing': 40, 'node-cancel': 30 };

/**
 * ConfirmedDialog failover with real processes: calls of 8 s at 20 calls/s; one node is killed with SIGKILL while
 * about 100 calls are established; every call must still end well (the caller's BYE reaches the callee through a
 * survivor and is answered).
 */
async function killDuringCalls(app: string, transport: SippTransport, store?: string, replication?: string, flow: Flow = 'caller-bye', expectFailures = false): Promise<{ failed: number }> {
  const f = FLOWS[flow];
  const pause = ['-d', String(PAUSE_MS[flow] ?? 8000)];
  const uas = await startSippUas({ sf: f.uas, localIp: '127.0.0.10', transport, extraArgs: f.pauseAt === 'uas' ? pause : [] });
  const args = ['--nodes', '3', '--app', app, '--transport', transport, '--route-to', `127.0.0.10:${uas.localPort}`, '--restart-delay-ms', '60000'];
  if (store !== undefined) args.push('--store', store);
  if (replication !== undefined) args.push('--replication', replication);
  if (flow === 'node-bye') args.push('--call-ms', '8000');
  if (RING_MS[flow] !== undefined) args.push('--ring-ms', String(RING_MS[flow]));
  const cluster = await startCluster(args);
  try {
    const control = await freePort('127.0.0.1', 'udp');
    const callerPort = await freePort('127.0.0.1');
    const calls = startSipp({ sf: f.uac, remote: cluster.sip, localIp: '127.0.0.1', localPort: callerPort, transport, rate: 20, maxCalls: 300, callLimit: 400, timeoutSec: 60, recvTimeoutMs: 15_000, extraArgs: [...(f.pauseAt === 'uac' ? pause : []), '-cp', String(control)] });
    const killAt = KILL_AT[flow] ?? 100;
    await waitUntil(`${killAt} calls in progress`, async () => (await cluster.status()).nodes.reduce((a, n) => a + n.calls, 0) >= killAt, 20_000);
    // ConfirmedDialog covers calls from their 2xx on, EarlyDialog from their first 1xx with a To tag: an INVITE not
    // answered at all when its node dies is lost over TCP (the caller does not retransmit; flows row 1-4). So new
    // calls pause (SIPp's 'p' command) until no call is being set up (ConfirmedDialog flows) or none is unanswered
    // (ringing flows: ringing calls are the point), the node dies, and new calls go on.
    const sippControl = dgram.createSocket('udp4');
    const toggleNewCalls = (): Promise<void> => new Promise((resolve) => sippControl.send('p', control, '127.0.0.1', () => resolve()));
    const ringingMatters = flow === 'ringing' || flow === 'cancel' || flow === 'node-ringing' || flow === 'node-cancel';
    await toggleNewCalls();
    // EarlyDialog covers a call from its first 1xx with a To tag: none may be without one when the node dies. (Over
    // UDP an INVITE with no response at all is retransmitted and a survivor takes it as a new call; but a proxied
    // one then reaches the callee twice, which answers the copy 482 (§8.2.2.2). Without EarlyDialog a proxied
    // INVITE counts as unanswered until its final response, and the controls need ringing calls to fail: over TCP
    // they still wait, UDP ones do not.)
    if (ringingMatters && (replication === 'EarlyDialog' || transport === 'tcp')) await waitForQuiet(cluster, 'unanswered');
    else if (!ringingMatters) await waitForQuiet(cluster, 'settingUp');
    const victim = await cluster.node('node-2');
    process.kill(victim.pid, 'SIGKILL');
    await toggleNewCalls();
    sippControl.close();
    console.log(`# killed node-2 holding ${victim.calls} calls (${victim.settingUp} being set up); cluster: ${JSON.stringify((await cluster.status()).nodes.map((n) => [n.id, n.calls, n.settingUp]))}`);
    const r = await calls.done;
    if (replication === 'None' || expectFailures) return { failed: r.failed };
    // A BYE sent twice (a timer fired on two nodes) would reach the caller after its call ended.
    assert.equal(r.counters['OutOfCallMsgs(C)'], '0', 'no message outside a call (no duplicate BYE)');
    assert.equal(r.failed, 0, `${r.failed} calls failed: ${JSON.stringify(r.failures)}\n${r.stdout.slice(-1500)}\nSIPp errors: ${existsSync(r.errorLogPath) ? readFileSync(r.errorLogPath, 'latin1').slice(0, 3000) : '(none)'}`);
    assert.equal(r.successful, 300);
    const st = await cluster.status();
    // (When the node is the callee (uas app), nothing comes back addressed to the dead node: it hangs up itself, a
    // survivor's 200 names the survivor in its Contact, a CANCEL is routed by Call-ID like an INVITE.)
    if (!flow.startsWith('node-')) assert.ok(st.counters.failovers! > 0, 'requests of the dead node\'s calls went to survivors');
    if (app !== 'proxy' || flow === 'cancel') {
      const taken = st.nodes.reduce((a, n) => a + (n.replication?.failovers ?? 0), 0);
      const writes = st.nodes.reduce((a, n) => a + (n.replication?.writes ?? 0), 0);
      const bytes = st.nodes.reduce((a, n) => a + (n.replication?.bytes ?? 0), 0);
      console.log(`# survivors took over ${taken} calls from the store; ${writes} writes, ${Math.round(bytes / Math.max(1, writes))} bytes each (survivors' counts)`);
      assert.ok(taken > 0, 'survivors loaded calls from the store');
      if (flow === 'node-bye' || flow === 'node-ringing') assert.match(cluster.process.stdout, /took over \d+ timer\(s\) of node-2/);
    }
    return { failed: r.failed };
  } finally {
    await cluster.stop();
    await uas.stop({ graceful: false });
  }
}

describe('failover (ConfirmedDialog), SIGKILL', () => {
  test('proxy over UDP: 300 calls of 8 s, a node killed with ~100 established: 0 failed', async () => { await killDuringCalls('proxy', 'udp'); });
  test('proxy over TCP: the same, 0 failed', async () => { await killDuringCalls('proxy', 'tcp'); });
  test('proxy: a re-INVITE after the kill, then BYE: 0 failed', async () => { await killDuringCalls('proxy', 'udp', undefined, undefined, 're-invite'); });
  test('proxy: the callee hangs up after the kill: 0 failed', async () => { await killDuringCalls('proxy', 'udp', undefined, undefined, 'callee-bye'); });
});

describe('failover (EarlyDialog) of calls being set up, SIGKILL', () => {
  test('proxy: the callee rings 4 s, a node is killed while calls ring: 0 failed', async () => {
    await killDuringCalls('proxy', 'udp', undefined, 'EarlyDialog', 'ringing');
  });
  test('proxy: a CANCEL sent during ringing after the kill ends its call with 487: 0 failed', async () => {
    await killDuringCalls('proxy', 'udp', undefined, 'EarlyDialog', 'cancel');
  });
  test('control: with ConfirmedDialog, the ringing calls of the dead node cannot be cancelled (they fail)', async () => {
    const { failed } = await killDuringCalls('proxy', 'udp', undefined, 'ConfirmedDialog', 'cancel', true);
    assert.ok(failed > 0, 'without early replicas, a survivor has no INVITE transaction to cancel');
  });
  test('uas rings 4 s (a persistent timer), a node is killed while calls ring: survivors answer them: 0 failed', async () => {
    await killDuringCalls('uas', 'udp', undefined, 'EarlyDialog', 'node-ringing');
  });
  test('uas over TCP on Redis: the same, 0 failed', async () => {
    await killDuringCalls('uas', 'tcp', 'redis://127.0.0.1:6379/9', 'EarlyDialog', 'node-ringing');
  });
  test('uas: a CANCEL during ringing after the kill ends its call with 487: 0 failed', async () => {
    await killDuringCalls('uas', 'udp', undefined, 'EarlyDialog', 'node-cancel');
  });
  test('control: uas with ConfirmedDialog, the dead node\'s ringing calls fail', async () => {
    const { failed } = await killDuringCalls('uas', 'udp', undefined, 'ConfirmedDialog', 'node-ringing', true);
    assert.ok(failed > 0, 'without early replicas, nobody answers the dead node\'s ringing calls');
  });
  test('b2bua: the callee rings 4 s, a node is killed while calls ring: 0 failed', async () => {
    await killDuringCalls('b2bua', 'udp', undefined, 'EarlyDialog', 'ringing');
  });
  test('b2bua: a CANCEL during ringing after the kill reaches the callee, 487 to the caller: 0 failed', async () => {
    await killDuringCalls('b2bua', 'udp', undefined, 'EarlyDialog', 'cancel');
  });
});

describe('failover (ConfirmedDialog) of dialog-stateful apps, SIGKILL', () => {
  test('uas over UDP on the embedded SQLite store: 300 calls of 8 s, a node killed with ~100 established: 0 failed', async () => { await killDuringCalls('uas', 'udp'); });
  test('uas over TCP on SQLite: 0 failed', async () => { await killDuringCalls('uas', 'tcp'); });
  test('uas: a re-INVITE after the kill is answered by a survivor, then BYE: 0 failed', async () => { await killDuringCalls('uas', 'udp', undefined, undefined, 're-invite'); });
  test('uas hangs up after 8 s (a persistent timer): the dead node\'s timers fire once, on survivors: 0 failed', async () => {
    await killDuringCalls('uas', 'udp', undefined, undefined, 'node-bye');
  });
  test('uas over UDP on Redis: 0 failed', async () => { await killDuringCalls('uas', 'udp', 'redis://127.0.0.1:6379/9'); });
  test('b2bua over UDP on SQLite (two dialogs per call, different Call-IDs): 0 failed', async () => { await killDuringCalls('b2bua', 'udp'); });
  test('b2bua over TCP on SQLite: 0 failed', async () => { await killDuringCalls('b2bua', 'tcp'); });
  test('b2bua over UDP on Redis: 0 failed', async () => { await killDuringCalls('b2bua', 'udp', 'redis://127.0.0.1:6379/9'); });
  test('uas over TCP on Redis: 0 failed', async () => { await killDuringCalls('uas', 'tcp', 'redis://127.0.0.1:6379/9'); });
  test('control: with --replication None the dead node\'s established calls do fail', async () => {
    const { failed } = await killDuringCalls('uas', 'udp', undefined, 'None');
    assert.ok(failed > 0, 'without replicas, survivors cannot continue the calls');
  });
});
