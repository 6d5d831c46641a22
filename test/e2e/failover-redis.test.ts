/**
 * Node failover while the Redis store itself fails: the Redis server is restarted (data kept in its AOF), or
 * its primary dies and Sentinel promotes the replica; then a sipfleet node is SIGKILLed with ~100 established
 * calls and the survivors must carry on the dead node's calls from the store.
 *
 * Every Redis process here is private (its own port and folder), started and stopped by pid; the machine's
 * 127.0.0.1:6379 is never touched.
 *
 * Which calls may fail, exactly. A call is replicated when its dialog is confirmed: the node writes the record,
 * then sends the 2xx whatever the outcome of the write (Replicator.save never rejects). A 2xx sent while no
 * Redis primary is reachable therefore leaves a call without a replica until the store is back (failed writes are
 * retried every 250 ms); if its node dies before that retry lands, the survivor that gets
 * its BYE finds nothing in the store and answers 481: that call fails, legitimately. So instead of tolerating
 * "a few" failures, the test computes, call by call, what the store held the moment node-2 died (its keys are
 * read right after the kill, when node-2 can no longer write) and who held each call (the Contact of its 2xx
 * is the node's own address), and asserts that the failed calls are exactly node-2's calls with no record; and
 * that each of those was set up while the store was unreachable (or, with Sentinel, was acknowledged by the old
 * primary and lost by the asynchronous replication, which the test counts and prints). Every other call must
 * succeed.
 *
 * The Sentinel failover is triggered by SIGKILLing the primary. A third test covers SENTINEL FAILOVER: without
 * following Sentinel's switch at once (the store's +switch-master subscription), nodes kept writing to the demoted
 * primary, whose data Sentinel discards ~10 s later.
 *
 * node-2 dies only while no call is being set up (new calls pause meanwhile): ConfirmedDialog covers a call from its
 * answer on, and an INVITE that node-2 had not answered yet is lost with it (over UDP the caller stops retransmitting
 * at the first provisional response), as in failover.test.ts.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess, type ProcessHandle } from '../helpers/proc.ts';
import { SCENARIO_UAC_RR, startSipp, type SippHandle, type SippResult } from '../helpers/sipp.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { startCluster, waitUntil, type Cluster } from './sipfleet-cluster.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
/** Key prefix of the session records (the store's default redisKeyPrefix) */
const SESS = 'sipfleet:sess:';

/** Every process this file starts itself (the cluster stops its own nodes); stopped by pid in after(). */
const started: ProcessHandle[] = [];
after(async () => {
  for (const p of started) await p.stop(2000, 'SIGKILL');
  await killAll();
});

// ---- Redis processes and a one-shot client ----

function startRedisProcess(args: string[], name: string): ProcessHandle {
  const p = spawnProcess(REDIS_SERVER, args, { name, maxBuffer: 256 * 1024 });
  started.push(p);
  return p;
}

/** redis-server on 127.0.0.1:port, logging to stdout; resolves once it accepts connections. */
async function startRedis(port: number, dir: string, extra: string[] = []): Promise<ProcessHandle> {
  const p = startRedisProcess(
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--logfile', '', '--save', '', ...extra],
    `redis-server:${port}`,
  );
  await p.waitForOutput(/Ready to accept connections/, 10_000);
  return p;
}

/** One command on a fresh connection that never retries; rejects on any error (refused, LOADING...). */
async function redisCall(port: number, ...args: string[]): Promise<unknown> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, connectTimeout: 1000, commandTimeout: 2000, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectionName: 'sipfleet-test' });
  c.on('error', () => {});
  try {
    await c.connect();
    return await c.call(args[0]!, ...args.slice(1));
  } finally {
    c.disconnect();
  }
}

const answersPing = (port: number): Promise<boolean> => redisCall(port, 'PING').then((r) => r === 'PONG', () => false);

/** sipfleet nodes connected to a server: distinct client names `sipfleet:NODE-ID` (each node names its connection). */
async function nodeNames(port: number): Promise<Set<string>> {
  const list = String(await redisCall(port, 'CLIENT', 'LIST'));
  return new Set(list.split('\n').map((l) => / name=(sipfleet:\S+) /.exec(l)?.[1]).filter((n) => n !== undefined));
}

const nodeClients = async (port: number): Promise<number> => (await nodeNames(port)).size;

/** Session ids (app session ids) with a record on the server. */
async function sessionIds(port: number): Promise<Set<string>> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, connectTimeout: 2000, retryStrategy: () => null, maxRetriesPerRequest: 0, connectionName: 'sipfleet-test' });
  c.on('error', () => {});
  await c.connect();
  try {
    const ids = new Set<string>();
    for await (const keys of c.scanStream({ match: `${SESS}*`, count: 1000 })) for (const k of keys as string[]) ids.add(k.slice(SESS.length));
    return ids;
  } finally {
    c.disconnect();
  }
}

const elapsed = (from: number): number => Date.now() - from;

/** Resolves once the pid has exited (a zombie, or reaped): from then on it writes nothing more to the store. */
async function waitGone(pid: number, what: string): Promise<void> {
  await waitUntil(`${what} (pid ${pid}) to be gone`, () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return / Z /.test(stat.slice(stat.lastIndexOf(')')));
    } catch {
      return true;
    }
  }, 5000);
}

// ---- what happened to each call, from SIPp's message trace ----

interface CallTrace {
  callId: string;
  inviteAt: number;
  /** First 2xx to the INVITE: when SIPp got it, the dialog's To tag, and the Contact's host:port (the node). */
  okAt?: number;
  toTag?: string;
  contact?: string;
  byeAt?: number;
  byeOkAt?: number;
  /** Final responses to the BYE other than 200 (e.g. 481 from a survivor with no record). */
  byeOther: string[];
}

/**
 * Parses SIPp's -trace_msg file: blocks after a line of dashes, "---- DATE TIME" for messages sent or received
 * (local time), plain "----" for notes such as "Unexpected UDP message received:" (a copy of the message just
 * logged) and "Dead call ... received a UDP message:" (after the call ended), which are skipped.
 */
function parseTrace(file: string): Map<string, CallTrace> {
  const calls = new Map<string, CallTrace>();
  const blocks: Array<{ at: number; lines: string[] }> = [];
  for (const raw of readFileSync(file, 'latin1').split('\n')) {
    const line = raw.replace(/\r$/, '');
    const sep = /^-{20,}(?: (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3})\d*)?\s*$/.exec(line);
    if (sep !== null) blocks.push({ at: sep[1] === undefined ? NaN : new Date(`${sep[1]}T${sep[2]}`).getTime(), lines: [] });
    else if (line.trim() !== '') blocks.at(-1)?.lines.push(line.trim());
  }
  for (const { at, lines } of blocks) {
    const what = lines[0] ?? '';
    const sent = /^\w+ message sent/.test(what);
    if (Number.isNaN(at) || !(sent || /^\w+ message received/.test(what))) continue;
    const start = lines[1] ?? '';
    const header = (name: string): string | undefined => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
    const callId = header('call-id');
    const cseq = header('cseq') ?? '';
    if (callId === undefined) continue;
    let c = calls.get(callId);
    if (c === undefined) {
      c = { callId, inviteAt: at, byeOther: [] };
      calls.set(callId, c);
    }
    if (sent) {
      if (start.startsWith('BYE ')) c.byeAt ??= at;
      continue;
    }
    const status = Number(/^SIP\/2\.0 (\d{3})/.exec(start)?.[1] ?? 0);
    if (/ INVITE$/.test(cseq) && status >= 200 && status < 300 && c.okAt === undefined) {
      c.okAt = at;
      c.toTag = /;tag=([^;>\s]+)/.exec(header('to') ?? '')?.[1];
      c.contact = /sip:([^;>]+)/.exec(header('contact') ?? '')?.[1];
    }
    if (/ BYE$/.test(cseq) && status >= 200) {
      if (status === 200) c.byeOkAt ??= at;
      else c.byeOther.push(start);
    }
  }
  return calls;
}

interface Window {
  /** When the store became unwritable (SIGTERM / SIGKILL sent to the Redis primary). */
  from: number;
  /** When every node's connection was back (on the restarted server or the new primary). */
  to: number;
}

/**
 * Checks the outcome call by call: the failed calls are exactly node-2's calls in progress without a record when
 * it died; every call without a record got its 2xx in the outage window, or (Sentinel only, `allowLostAcked`)
 * before it, i.e. it was acknowledged by the old primary and lost. Returns node-2's calls set up before the outage
 * that survivors carried on from their record.
 */
function checkCalls(r: SippResult, o: {
  sippPid: number; nodeSip: Map<string, string>; killedAt: number; snapshotAt: number; records: Set<string>; window: Window;
  allowLostAcked: boolean; label: string;
}): CallTrace[] {
  const trace = parseTrace(path.join(r.workDir, 'messages.log'));
  // SIPp's Call-IDs are CALLNUMBER-PID@IP: anything else is stray traffic to its port, not one of its calls.
  const calls = [...trace.values()].filter((c) => new RegExp(`^\\d+-${o.sippPid}@`).test(c.callId));
  const stray = trace.size - calls.length;
  if (stray > 0) console.log(`# ${o.label}: ${stray} stray Call-ID(s) in SIPp's trace ignored`);
  assert.equal(calls.length, 300, `${calls.length} calls in SIPp's message trace`);
  const failed = calls.filter((c) => c.byeOkAt === undefined);
  assert.equal(failed.length, r.failed, 'calls without a 200 to their BYE = SIPp\'s failed calls');
  const unanswered = calls.filter((c) => c.okAt === undefined || c.toTag === undefined || c.contact === undefined);
  if (unanswered.length > 0) {
    const text = readFileSync(path.join(r.workDir, 'messages.log'), 'latin1');
    const id = unanswered[0]!.callId;
    const around = text.split(/\n(?=-{20,})/).filter((b) => b.includes(`Call-ID: ${id}\n`) || b.includes(`Call-ID: ${id}\r`)).join('\n');
    assert.fail(`calls with no 2xx in the trace: ${unanswered.map((c) => c.callId).join(', ')} (${path.join(r.workDir, 'messages.log')}); ${id}:\n${around.slice(0, 6000)}`);
  }

  const holder = (c: CallTrace): string => o.nodeSip.get(c.contact!) ?? `? ${c.contact}`;
  const hasRecord = (c: CallTrace): boolean => o.records.has(c.toTag!.split('.')[0]!);
  // In progress when node-2 died and the store was read: the BYE went out after both, so to a survivor.
  const inProgress = (c: CallTrace): boolean => c.byeAt === undefined || c.byeAt > o.snapshotAt;
  // A BYE sent around the kill may have reached node-2 (which then deleted the record) or not: either outcome.
  const ambiguous = calls.filter((c) => holder(c) === 'node-2' && !inProgress(c) && (c.byeOkAt === undefined || c.byeOkAt > o.killedAt));
  const node2 = calls.filter((c) => holder(c) === 'node-2' && inProgress(c));
  // (Calls set up after the kill are written after the snapshot: only those confirmed before it count.)
  const withoutRecord = calls.filter((c) => inProgress(c) && c.okAt! < o.killedAt && !hasRecord(c));
  const mustFail = node2.filter((c) => !hasRecord(c));
  // Acknowledged by Redis (the 2xx follows the write) before the primary went away, yet missing afterwards.
  const lostAcked = withoutRecord.filter((c) => c.okAt! < o.window.from);
  // (+1 s: a write issued just before the reconnection fails at ioredis' next attempt, then the 2xx goes out.)
  const inWindow = (c: CallTrace): boolean => c.okAt! >= o.window.from && c.okAt! <= o.window.to + 1000;

  const byNode = new Map<string, number>();
  for (const c of calls) byNode.set(holder(c), (byNode.get(holder(c)) ?? 0) + 1);
  console.log(`# ${o.label}: calls per node ${JSON.stringify(Object.fromEntries(byNode))}; node-2 held ${node2.length} calls in progress at the kill, ` +
    `${node2.length - mustFail.length} with a record in the store, ${mustFail.length} without; calls of any node without a record: ${withoutRecord.length} ` +
    `(2xx during the outage window: ${withoutRecord.filter(inWindow).length}); acknowledged writes lost: ${lostAcked.length}; ambiguous (BYE around the kill): ${ambiguous.length}`);
  console.log(`# ${o.label}: ${r.successful} successful, ${r.failed} failed${failed.length > 0 ? `: ${failed.map((c) => `${c.callId} (${holder(c)}${c.byeOther.length > 0 ? `, ${c.byeOther[0]}` : ''})`).join(', ')}` : ''}`);

  if (o.allowLostAcked) {
    // Redis replication is asynchronous: a write acknowledged by a primary that dies before sending it on is gone.
    if (lostAcked.length > 0) console.log(`# ${o.label}: ${lostAcked.length} record(s) acknowledged by the old primary never reached the new one: ${lostAcked.map((c) => c.callId).join(', ')}`);
  } else {
    assert.deepEqual(lostAcked.map((c) => c.callId), [], 'a record acknowledged before the outage is still in the store afterwards (AOF, appendfsync always)');
  }
  // Every call without a record got its 2xx while the store was unreachable (or is an acknowledged write lost).
  const unexplained = withoutRecord.filter((c) => !inWindow(c) && !lostAcked.includes(c));
  assert.deepEqual(unexplained.map((c) => `${c.callId} 2xx at +${c.okAt! - o.window.from} ms`), [], 'calls without a record outside the outage window');
  assert.ok(node2.length - mustFail.length > 0, 'node-2 held calls with a record (the store lookup by To tag works)');
  // The assertion: exactly node-2's in-progress calls without a record fail (none when the outage caught none).
  const failedIds = new Set(failed.map((c) => c.callId));
  const allowed = new Set([...mustFail, ...ambiguous].map((c) => c.callId));
  assert.deepEqual(failed.filter((c) => !allowed.has(c.callId)).map((c) => `${c.callId} (${holder(c)})`), [], 'no other call fails');
  assert.deepEqual(mustFail.filter((c) => !failedIds.has(c.callId)).map((c) => c.callId), [], 'node-2\'s calls without a record cannot be continued by a survivor');
  for (const c of failed) assert.ok(c.byeOther.every((s) => / 481 /.test(s)), `${c.callId}: its BYE was answered ${c.byeOther.join(', ')}`);
  // node-2's calls set up before the outage whose record survived it (and that a survivor therefore carried on).
  return node2.filter((c) => c.okAt! < o.window.from && hasRecord(c));
}

/** "udp:127.0.0.3:41676" → "127.0.0.3:41676" → node id, for every node. */
async function nodeAddresses(cluster: Cluster): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const n of (await cluster.status()).nodes) for (const s of n.sip) map.set(s.replace(/^[a-z]+:/, ''), n.id);
  return map;
}

const established = async (cluster: Cluster): Promise<number> => (await cluster.status()).nodes.reduce((a, n) => a + n.calls, 0);

/** SIPp making the calls, and its control port. */
type Calls = SippHandle & { control: number };

async function startCalls(cluster: Cluster): Promise<Calls> {
  // As in failover.test.ts killDuringCalls; with the message trace, to tell each call's node and outcome. A port
  // of its own: on SIPp's default 5060, responses meant for another test's SIPp (one that used it before) come in.
  // SIPp's control port: 'p' pauses new calls, and resumes them.
  const control = await freePort('127.0.0.1', 'udp');
  const sipp = startSipp({
    sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', localPort: await freePort('127.0.0.1'), transport: 'udp', rate: 20, maxCalls: 300, callLimit: 400,
    timeoutSec: 60, recvTimeoutMs: 15_000, extraArgs: ['-d', '8000', '-cp', String(control)], traceMessages: true,
  });
  return Object.assign(sipp, { control });
}

/** Sends SIPp's 'p' command: pauses new calls, or resumes them. */
async function toggleNewCalls(calls: Calls): Promise<void> {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => socket.send('p', calls.control, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  } finally {
    socket.close();
  }
}

/** Node heartbeat interval (sipfleet's default): a status older than that may miss a call that has just come in. */
const HEARTBEAT_MS = 50;

/**
 * SIGKILLs node-2 (once ≥100 calls are established, and no call is being set up), waits until it is gone, and
 * reads the store.
 */
async function killNode2(cluster: Cluster, dataPort: number, calls: Calls): Promise<{ killedAt: number; snapshotAt: number; records: Set<string> }> {
  await waitUntil('100 calls in progress', async () => (await established(cluster)) >= 100, 20_000);
  // The kill comes right after the store is back, when answers held by their replica write may still be going out.
  await toggleNewCalls(calls);
  const pausedAt = Date.now();
  // (A status counts once it is two heartbeats younger than the pause: an INVITE sent just before is then in it.)
  let settingUp = 0;
  await waitUntil('no call being set up', async () => {
    const fresh = Date.now() - pausedAt > 2 * HEARTBEAT_MS;
    const n = (await cluster.status()).nodes.reduce((a, m) => a + m.settingUp, 0);
    settingUp = Math.max(settingUp, n);
    return n === 0 && fresh;
  }, 10_000);
  const pausedMs = elapsed(pausedAt);
  const victim = await cluster.node('node-2');
  process.kill(victim.pid, 'SIGKILL');
  const killedAt = Date.now();
  await toggleNewCalls(calls);
  await waitGone(victim.pid, 'node-2');
  const records = await sessionIds(dataPort);
  const snapshotAt = Date.now();
  console.log(`# killed node-2 holding ${victim.calls} calls (new calls paused ${pausedMs} ms before, up to ${settingUp} being set up meanwhile); ` +
    `${records.size} session records in the store ${snapshotAt - killedAt} ms later`);
  return { killedAt, snapshotAt, records };
}

function checkTakeover(r: SippResult, st: Awaited<ReturnType<Cluster['status']>>): void {
  const taken = st.nodes.reduce((a, n) => a + (n.replication?.failovers ?? 0), 0);
  const writes = st.nodes.reduce((a, n) => a + (n.replication?.writes ?? 0), 0);
  console.log(`# survivors took over ${taken} calls from the store; ${writes} writes (survivors' counts); balancer failovers ${st.counters.failovers}`);
  assert.ok(st.counters.failovers! > 0, 'requests of the dead node\'s calls went to survivors');
  assert.ok(taken > 0, 'survivors loaded calls from the store');
  // A BYE sent twice would reach SIPp after its call ended; a failed call's abort may add one of its own.
  assert.ok(Number(r.counters['OutOfCallMsgs(C)']) <= r.failed, `out-of-call messages: ${r.counters['OutOfCallMsgs(C)']}`);
}

describe('failover while the Redis store fails', () => {
  test('Redis restarted mid-test (AOF kept), then a node killed with ~100 established calls: only calls set up during the outage and held by the dead node fail', { timeout: 120_000 }, async () => {
    const port = await freePort('127.0.0.1', 'tcp');
    const dir = makeTempDir('redis-aof');
    const redisArgs = ['--appendonly', 'yes', '--appendfsync', 'always'];
    let redis = await startRedis(port, dir, redisArgs);
    const cluster = await startCluster(['--nodes', '3', '--app', 'uas', '--store', `redis://127.0.0.1:${port}/0`, '--restart-delay-ms', '60000']);
    try {
      const nodeSip = await nodeAddresses(cluster);
      await waitUntil('the 3 nodes connected to Redis', async () => (await nodeClients(port)) === 3, 10_000);
      const calls = await startCalls(cluster);
      // (node-2 holds some of them: their records must come back from the AOF for survivors to carry them on)
      await waitUntil('60 calls in progress, some on node-2', async () => (await established(cluster)) >= 60 && (await cluster.node('node-2')).calls > 0, 20_000);

      // The outage: SIGTERM (Redis flushes its AOF and exits), then the same port and folder again.
      const downAt = Date.now();
      redis.kill('SIGTERM');
      const exit = await Promise.race([redis.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('redis-server did not exit within 10 s of SIGTERM')), 10_000))]);
      const exitedMs = elapsed(downAt);
      assert.equal(exit.code, 0, `redis-server exit ${JSON.stringify(exit)}\n${redis.stdout.slice(-2000)}`);
      redis = await startRedis(port, dir, redisArgs);
      assert.match(redis.stdout, /DB loaded from append only file/, 'the restarted server read its AOF');
      await waitUntil('Redis to answer PING', () => answersPing(port), 10_000);
      const downMs = elapsed(downAt);
      await waitUntil('the 3 nodes to reconnect', async () => (await nodeClients(port).catch(() => 0)) === 3, 10_000);
      const window = { from: downAt, to: Date.now() };
      console.log(`# Redis down ${downMs} ms (SIGTERM to exit ${exitedMs} ms, restart + AOF load ${downMs - exitedMs} ms); every node reconnected ${window.to - downAt} ms after the SIGTERM`);

      const kill = await killNode2(cluster, port, calls);
      const r = await calls.done;
      const st = await cluster.status();
      const beforeOutage = checkCalls(r, { sippPid: calls.pid, nodeSip, ...kill, window, allowLostAcked: false, label: 'restart' });
      console.log(`# restart: ${beforeOutage.length} of node-2's calls were set up before the restart; their records came back from the AOF and survivors carried them on`);
      assert.ok(beforeOutage.length > 0, 'node-2 held calls set up before the restart');
      checkTakeover(r, st);
    } finally {
      await cluster.stop();
      await redis.stop(2000, 'SIGKILL');
    }
  });

  test('Sentinel failover of the Redis primary (SIGKILL), then a node killed: only calls set up while no primary was reachable and held by the dead node fail', {
    timeout: 120_000,
  }, async () => {
    const { pPort, rPort, sPorts, url, primary, sentinels, masterOf, stop } = await startSentinelSet();
    const cluster = await startCluster(['--nodes', '3', '--app', 'uas', '--store', url, '--restart-delay-ms', '60000']);
    try {
      const nodeSip = await nodeAddresses(cluster);
      await waitUntil('the 3 nodes connected to the primary', async () => (await nodeClients(pPort)) === 3, 10_000);
      const calls = await startCalls(cluster);
      await waitUntil('60 calls in progress', async () => (await established(cluster)) >= 60, 20_000);

      // The primary dies; no graceful handover. The replica had every write it was sent (same host, no lag).
      const info = String(await redisCall(rPort, 'INFO', 'replication'));
      const downAt = Date.now();
      primary.kill('SIGKILL');
      // When each Sentinel announces the new primary (+switch-master), as the test sees its log.
      const announced = sentinels.map((s) => s.waitForOutput(/\+switch-master/, 30_000, 'stdout').then(() => `${elapsed(downAt)} ms`, () => 'never'));
      await primary.exited;
      console.log(`# replica before the kill: ${/master_link_status:\w+/.exec(info)?.[0]}, ${/slave_repl_offset:\d+/.exec(info)?.[0]}`);
      await waitUntil('every Sentinel to name the replica as primary', async () => {
        const ports = await Promise.all(sPorts.map((s) => masterOf(s).catch(() => 0)));
        return ports.every((p) => p === rPort);
      }, 30_000);
      const switchedMs = elapsed(downAt);
      assert.match(String(await redisCall(rPort, 'ROLE')), /^master/, 'the replica was promoted');
      const onNew = new Map<string, number>(); // node → when first seen on the new primary (ms after the kill)
      await waitUntil('the 3 nodes to reconnect to the new primary', async () => {
        const names = await nodeNames(rPort).catch(() => new Set<string>());
        for (const n of names) if (!onNew.has(n)) onNew.set(n, elapsed(downAt));
        return names.size === 3;
      }, 15_000).catch((err: Error) => {
        throw new Error(`${err.message}; on it: ${JSON.stringify(Object.fromEntries(onNew))}\n${cluster.process.stderr.slice(-3000)}`);
      });
      const window = { from: downAt, to: Date.now() };
      console.log(`# no primary for ${switchedMs} ms (SIGKILL to every Sentinel naming the new one); every node on the new primary ${window.to - downAt} ms after the kill`);
      console.log(`# after the kill: Sentinels announced +switch-master at ${(await Promise.all(announced)).join(', ')}; nodes on the new primary at ` +
        `${[...onNew].sort().map(([n, ms]) => `${n.replace(/^sipfleet:/, '')} ${ms} ms`).join(', ')}`);

      const kill = await killNode2(cluster, rPort, calls);
      const r = await calls.done;
      const st = await cluster.status();
      checkCalls(r, { sippPid: calls.pid, nodeSip, ...kill, window, allowLostAcked: true, label: 'sentinel' });
      checkTakeover(r, st);
    } finally {
      await cluster.stop();
      await stop();
    }
  });

  test('Sentinel: after SENTINEL FAILOVER, calls set up next are replicated on the new primary', {
    timeout: 90_000,
  }, async () => {
    const { pPort, rPort, sPorts, url, masterOf, stop } = await startSentinelSet();
    const cluster = await startCluster(['--nodes', '3', '--app', 'uas', '--store', url, '--restart-delay-ms', '60000']);
    try {
      await waitUntil('the 3 nodes connected to the primary', async () => (await nodeClients(pPort)) === 3, 10_000);
      // A manual failover: the old primary stays up (Sentinel demotes it later, after ~8 s of it reporting "master").
      assert.equal(await redisCall(sPorts[0]!, 'SENTINEL', 'FAILOVER', 'mymaster'), 'OK');
      const t = Date.now();
      await waitUntil('every Sentinel to name the replica as primary', async () => (await Promise.all(sPorts.map((s) => masterOf(s).catch(() => 0)))).every((p) => p === rPort), 15_000);
      console.log(`# every Sentinel named the new primary ${elapsed(t)} ms after SENTINEL FAILOVER`);
      const calls = startSipp({
        sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', localPort: await freePort('127.0.0.1'), transport: 'udp', rate: 10, maxCalls: 10,
        timeoutSec: 30, recvTimeoutMs: 10_000, extraArgs: ['-d', '4000'],
      });
      try {
        await waitUntil('10 calls in progress', async () => (await established(cluster)) >= 10, 10_000);
        const onNew = (await sessionIds(rPort)).size;
        const onOld = (await sessionIds(pPort).catch(() => new Set())).size;
        console.log(`# ${elapsed(t)} ms after the failover: records of the 10 calls on the new primary ${onNew}, on the demoted one ${onOld}; nodes connected to the new primary ${await nodeClients(rPort)}, to the demoted one ${await nodeClients(pPort).catch(() => 0)}`);
        assert.equal(onNew, 10, `${10 - onNew} of 10 records are not on the new primary (${onOld} on the demoted one, which discards them when it becomes a replica)`);
      } finally {
        await calls.stop({ graceful: false });
      }
    } finally {
      await cluster.stop();
      await stop();
    }
  });
});

/** A primary, its replica and three Sentinels (quorum 2) monitoring it as "mymaster". */
async function startSentinelSet() {
  const dir = makeTempDir('redis-sentinel');
  const [pPort, rPort, ...sPorts] = await Promise.all([0, 1, 2, 3, 4].map(() => freePort('127.0.0.1', 'tcp'))) as [number, number, number, number, number];
  // Diskless full sync at once (Redis 7 waits 5 s by default for more replicas to join).
  const common = ['--appendonly', 'no', '--repl-diskless-sync-delay', '0'];
  const primary = await startRedis(pPort, makeTempDir('redis-primary'), common);
  const replica = await startRedis(rPort, makeTempDir('redis-replica'), [...common, '--replicaof', '127.0.0.1', String(pPort)]);
  await replica.waitForOutput(/MASTER <-> REPLICA sync: Finished with success/, 10_000);
  const sentinels = sPorts.map((s) => {
    const conf = path.join(dir, `sentinel-${s}.conf`); // Sentinel rewrites its config: a file of its own, writable
    writeFileSync(conf, [
      `port ${s}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor mymaster 127.0.0.1 ${pPort} 2`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000', '',
    ].join('\n'));
    // Debian ships no redis-sentinel binary here: redis-server --sentinel is the same program.
    return startRedisProcess([conf, '--sentinel'], `redis-sentinel:${s}`);
  });
  const stop = async (): Promise<void> => {
    for (const p of [...sentinels, replica, primary]) await p.stop(2000, 'SIGKILL');
  };
  try {
    // Each Sentinel knows the replica and the two other Sentinels before anything is asked of them.
    for (const s of sentinels) {
      await s.waitForOutput(/\+slave slave 127\.0\.0\.1:\d+/, 20_000);
      await waitUntil('a Sentinel to discover the two others', () => (s.stdout.match(/\+sentinel sentinel/g) ?? []).length >= 2, 20_000);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const masterOf = async (s: number): Promise<number> => Number(((await redisCall(s, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')) as string[])[1]);
  const url = `redis+sentinel://${sPorts.map((s) => `127.0.0.1:${s}`).join(',')}/mymaster/0`;
  return { pPort, rPort, sPorts, url, primary, replica, sentinels, masterOf, stop };
}
