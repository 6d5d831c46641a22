/**
 * Proxy benchmark (not a test): highest clean call rate and CPU per call of a record-routing SIP proxy,
 * Kamailio (reference) vs a sipfleet node, under the same SIPp load in the same run.
 *
 *   node --import tsx bench/proxy-bench.ts     # progress on stderr, JSON result on stdout
 *   BENCH_QUICK=1 node --import tsx bench/proxy-bench.ts
 *
 * Topology (all loopback, distinct addresses so each hop is visible):
 *   SIPp uac 127.0.0.1  ->  SUT proxy 127.0.0.2  ->  SIPp uas 127.0.0.3        (UDP)
 * Calls are INVITE/180/200/ACK/BYE/200, record-routed: ACK and BYE traverse the proxy by Route.
 *
 * For each rate step SIPp places rate*stepSec calls at `rate` calls/s. A step is clean if every call succeeded
 * (0 failed, all completed), SIPp sent at most 1 retransmission per 100 calls (uac + uas together), and the
 * generator kept up (achieved rate >= 90% of the target, otherwise the limit is SIPp/the box, not the SUT).
 * Stepping stops at the first unclean step; max clean rate = last clean step.
 *
 * CPU per call, over the step window (uac start -> uac exit):
 *   machine: cores x wall - idle (from /proc/stat; includes SIPp and everything else on the box) / calls
 *   sut:     scheduler run time of every thread of every process in the SUT's process group
 *            (Kamailio's forked workers; node's threads) from /proc/<pid>/task/<tid>/schedstat / calls
 * (the tick-sampled utime/stime figures are kept under `sampled` for comparison; see machineSample()).
 * The comparison ratios use the highest rate at which both SUTs were clean (same offered load).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startKamailio, processGroupPids } from '../test/helpers/kamailio.ts';
import { freePort, waitForListening } from '../test/helpers/ports.ts';
import { killAll, spawnProcess } from '../test/helpers/proc.ts';
import { readSippStats, runSipp, startSippUas, SCENARIO_UAC_RR, SCENARIO_UAS_RR, type SippUasHandle } from '../test/helpers/sipp.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const UAC_IP = '127.0.0.1';
const SUT_IP = '127.0.0.2';
const UAS_IP = '127.0.0.3';
// SIPp's default 64 KB socket buffers overflowed at the UAS under a multi-worker SUT's bursts (~2000 calls/s,
// drops seen in /proc/net/udp): the bench must find the SUT's limit, not SIPp's.
const SIPP_SOCKET_BUFFER = 4 * 1024 * 1024;

export interface ProxyBenchOptions {
  rates: number[];
  stepSec: number;
  /** Max retransmissions per call for a clean step (0.01 = 1 per 100 calls). */
  maxRetransPerCall: number;
  /** SUTs to run, in order. */
  suts: Array<'kamailio' | 'sipfleet'>;
  /** Progress output (stderr by default). */
  log: (line: string) => void;
}

export interface StepResult {
  rate: number;
  calls: number;
  successful: number;
  failed: number;
  /** Retransmissions sent by SIPp uac + uas during the step. */
  retransmissions: number;
  retransPerCall: number;
  wallSec: number;
  achievedRate: number;
  clean: boolean;
  /** Why the step is not clean. */
  reason?: string;
  sippExitCode: number | null;
  failures: Record<string, number>;
  machineCpuMsPerCall: number;
  sutCpuMsPerCall: number;
  /** SUT CPU as a share of one core during the step (100 = one full core). */
  sutCpuPercent: number;
  /** The same from the tick-sampled counters (/proc/stat user+system..., /proc/<pid>/stat utime+stime): less reliable. */
  sampled: { machineCpuMsPerCall: number; sutCpuMsPerCall: number };
}

export interface SutResult {
  name: 'kamailio' | 'sipfleet';
  command?: string;
  error?: string;
  steps: StepResult[];
  /** Highest clean rate (calls/s), 0 if none. */
  maxCleanRate: number;
  /** CPU per call at maxCleanRate. */
  atMaxClean?: { machineCpuMsPerCall: number; sutCpuMsPerCall: number };
}

export interface ProxyBenchResult {
  bench: 'proxy';
  startedAt: string;
  host: { cpus: number; model: string; loadavgAtStart: number[]; kernel: string; node: string };
  options: { rates: number[]; stepSec: number; maxRetransPerCall: number; quick: boolean };
  suts: SutResult[];
  /** sipfleet / kamailio, when both ran. */
  comparison?: {
    /** Highest rate both SUTs passed cleanly: the CPU ratios are taken there. */
    commonRate: number;
    sutCpuPerCallRatio: number | null;
    machineCpuPerCallRatio: number | null;
    maxCleanRateRatio: number | null;
  };
}

// --- CPU accounting -------------------------------------------------------------------------------------------

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
const HZ = clockTicks();

/**
 * Machine CPU busy time, in ms, since boot: cores x uptime - idle - iowait. This kernel uses tick-sampled CPU
 * accounting (CONFIG_TICK_CPU_ACCOUNTING, HZ=250), so the user/system columns of /proc/stat are samples biased by
 * timer-aligned work (SIPp sends on a 10 ms timer); idle time under NO_HZ is measured, not sampled, so
 * "wall x cores - idle" is the accurate figure. Also returns the sampled non-idle jiffies for comparison.
 */
interface MachineSample {
  atMs: number;
  idleMs: number;
  sampledBusyMs: number;
}
const CORES = os.cpus().length;
function machineSample(): MachineSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return {
    atMs: performance.now(),
    idleMs: ((idle + iowait) * 1000) / HZ,
    // guest time is already inside user
    sampledBusyMs: ((user + nice + system + irq + softirq + steal) * 1000) / HZ,
  };
}
function machineBusyMs(a: MachineSample, b: MachineSample): number {
  return Math.max(0, CORES * (b.atMs - a.atMs) - (b.idleMs - a.idleMs));
}

/**
 * CPU time of every process in a process group, in ms. `exact` sums the per-thread scheduler run time from
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds, not sampled; covers node's worker threads and Kamailio's
 * forked workers). `sampled` is utime+stime(+cutime+cstime) from /proc/<pid>/stat, tick-sampled.
 */
function groupCpuMs(pgid: number): { exact: number; sampled: number } {
  let exactNs = 0;
  let jiffies = 0;
  for (const pid of processGroupPids(pgid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // rest[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17 -> rest[11..14]
      jiffies += Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          exactNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        } catch {
          // thread exited meanwhile
        }
      }
    } catch {
      // process exited meanwhile
    }
  }
  return { exact: exactNs / 1e6, sampled: (jiffies * 1000) / HZ };
}

// --- SUTs -----------------------------------------------------------------------------------------------------

interface RunningSut {
  port: number;
  pgid: number;
  command: string;
  alive(): boolean;
  diagnostics(): string;
  stop(): Promise<void>;
}

async function startKamailioSut(uasPort: number): Promise<RunningSut> {
  const kam = await startKamailio({ host: SUT_IP, transports: ['udp'], nextHop: `${UAS_IP}:${uasPort}`, nextHopTransport: 'udp', children: 2 });
  return {
    port: kam.port,
    pgid: kam.pgid,
    command: `kamailio -DD -E -x tlsf -m 256 -f ${kam.cfgPath} (children=2, tm stateful, record_route, t_relay)`,
    alive: () => kam.process.running,
    diagnostics: () => kam.process.stderr.slice(-2000),
    stop: async () => {
      await kam.stop();
    },
  };
}

async function startSipfleetSut(uasPort: number): Promise<RunningSut> {
  const entry = path.join(root, 'dist/src/cli/main.js');
  if (!existsSync(entry)) throw new Error(`${path.relative(root, entry)} not found: run \`npm run build\` first (npm run bench does)`);
  const port = await freePort(SUT_IP);
  const args = [entry, 'node', '--app', 'proxy', '--listen', `${SUT_IP}:${port}`, '--route-to', `${UAS_IP}:${uasPort}`, '--transport', 'udp'];
  const command = `node ${[path.relative(root, entry), ...args.slice(1)].join(' ')}`;
  // Detached: own process group, so CPU of any worker process it forks is counted and stop() reaches it.
  const proc = spawnProcess(process.execPath, args, { cwd: root, detached: true, name: 'sipfleet node' });
  try {
    // Readiness = UDP socket bound (via /proc/net), independent of the node's log format.
    await waitForListening(SUT_IP, port, 'udp', 15_000, () => proc.running);
  } catch (err) {
    await proc.stop(1000);
    throw new Error(`${(err as Error).message}\ncommand: ${command}\nstderr: ${proc.stderr.slice(-2000)}\nstdout: ${proc.stdout.slice(-1000)}`);
  }
  return {
    port,
    pgid: proc.pid,
    command,
    alive: () => proc.running,
    diagnostics: () => `stderr: ${proc.stderr.slice(-1500)}\nstdout: ${proc.stdout.slice(-500)}`,
    stop: async () => {
      await proc.stop(3000);
    },
  };
}

// --- Steps ----------------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function uasRetrans(uas: SippUasHandle): number {
  return Number(readSippStats(path.join(uas.workDir, 'stats.csv'))['Retransmissions(C)'] ?? 0) || 0;
}

async function runStep(sut: RunningSut, uas: SippUasHandle, rate: number, stepSec: number, maxRetransPerCall: number): Promise<StepResult> {
  const calls = Math.round(rate * stepSec);
  const uasRetransBefore = uasRetrans(uas);
  const m0 = machineSample();
  const sut0 = groupCpuMs(sut.pgid);
  const t0 = performance.now();
  const r = await runSipp({
    sf: SCENARIO_UAC_RR,
    remote: `${SUT_IP}:${sut.port}`,
    localIp: UAC_IP,
    localPort: await freePort(UAC_IP, 'udp'),
    transport: 'udp',
    rate,
    maxCalls: calls,
    // Enough concurrency for ~4 s of slow answers before SIPp throttles (which then shows as a low achieved rate).
    callLimit: Math.max(200, rate * 4),
    recvTimeoutMs: 10_000,
    // Kamailio's two UDP workers (and any multi-worker SUT) may reorder 180/200 or ACK/BYE: not a failure.
    ignoreUnexpected: true,
    // Bounded: the step's own duration plus room for retransmission timeouts.
    timeoutSec: stepSec + 40,
    maxLoops: 2000,
    bufferSize: SIPP_SOCKET_BUFFER,
  });
  const wallSec = (performance.now() - t0) / 1000;
  const m1 = machineSample();
  const sut1 = groupCpuMs(sut.pgid);
  // The UAS writes its stats every second; let late retransmissions (200 OK not ACKed) be counted too.
  await sleep(2000);
  const retransmissions = r.retransmissions + Math.max(0, uasRetrans(uas) - uasRetransBefore);

  const done = Math.max(1, r.successful);
  const achievedRate = r.successful / wallSec;
  const retransPerCall = retransmissions / calls;
  let reason: string | undefined;
  if (!sut.alive()) reason = 'SUT process died';
  else if (r.failed > 0) reason = `${r.failed} failed calls`;
  else if (r.successful < calls) reason = `only ${r.successful}/${calls} calls completed (sipp exit ${r.exitCode})`;
  else if (retransPerCall > maxRetransPerCall) reason = `${retransmissions} retransmissions (${(retransPerCall * 100).toFixed(2)}% of calls)`;
  else if (achievedRate < rate * 0.9) reason = `generator reached only ${achievedRate.toFixed(0)} calls/s`;
  return {
    rate,
    calls,
    successful: r.successful,
    failed: r.failed,
    retransmissions,
    retransPerCall: round(retransPerCall, 5),
    wallSec: round(wallSec, 2),
    achievedRate: round(achievedRate, 1),
    clean: reason === undefined,
    ...(reason ? { reason } : {}),
    sippExitCode: r.exitCode,
    failures: r.failures,
    machineCpuMsPerCall: round(machineBusyMs(m0, m1) / done, 4),
    sutCpuMsPerCall: round((sut1.exact - sut0.exact) / done, 4),
    sutCpuPercent: round(((sut1.exact - sut0.exact) / 1000 / wallSec) * 100, 1),
    sampled: {
      machineCpuMsPerCall: round((m1.sampledBusyMs - m0.sampledBusyMs) / done, 4),
      sutCpuMsPerCall: round((sut1.sampled - sut0.sampled) / done, 4),
    },
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

async function benchSut(name: 'kamailio' | 'sipfleet', o: ProxyBenchOptions): Promise<SutResult> {
  const result: SutResult = { name, steps: [], maxCleanRate: 0 };
  let uas: SippUasHandle | undefined;
  let sut: RunningSut | undefined;
  try {
    uas = await startSippUas({
      localIp: UAS_IP,
      sf: SCENARIO_UAS_RR,
      transport: 'udp',
      timeoutSec: 3600,
      maxLoops: 2000,
      bufferSize: SIPP_SOCKET_BUFFER,
      ignoreUnexpected: true,
      recvTimeoutMs: 10_000,
    });
    sut = name === 'kamailio' ? await startKamailioSut(uas.localPort) : await startSipfleetSut(uas.localPort);
    result.command = sut.command;
    o.log(`[${name}] up on ${SUT_IP}:${sut.port} -> uas ${UAS_IP}:${uas.localPort}`);
    // Warm-up (not recorded): JIT for node, caches for everyone; same for both SUTs.
    const warm = await runStep(sut, uas, Math.min(200, o.rates[0] ?? 200), 2, 1);
    o.log(`[${name}] warm-up: ${warm.successful}/${warm.calls} ok`);
    for (const rate of o.rates) {
      o.log(`[${name}] step ${rate} calls/s x ${o.stepSec} s ...`);
      const s = await runStep(sut, uas, rate, o.stepSec, o.maxRetransPerCall);
      result.steps.push(s);
      o.log(
        `[${name}]   ${s.clean ? 'clean' : `NOT clean: ${s.reason}`}; ok ${s.successful}/${s.calls}, retrans ${s.retransmissions}, ` +
          `${s.achievedRate} calls/s, sut ${s.sutCpuMsPerCall} ms/call (${s.sutCpuPercent}% core), machine ${s.machineCpuMsPerCall} ms/call`,
      );
      if (!s.clean) {
        if (!sut.alive()) result.error = `SUT died at ${rate} calls/s\n${sut.diagnostics()}`;
        break;
      }
      result.maxCleanRate = rate;
      result.atMaxClean = { machineCpuMsPerCall: s.machineCpuMsPerCall, sutCpuMsPerCall: s.sutCpuMsPerCall };
      await sleep(1000);
    }
  } catch (err) {
    result.error = (err as Error).message;
    o.log(`[${name}] error: ${result.error.split('\n')[0]}`);
  } finally {
    await sut?.stop().catch(() => undefined);
    await uas?.stop({ graceful: false }).catch(() => undefined);
  }
  return result;
}

function compare(k: SutResult | undefined, s: SutResult | undefined): ProxyBenchResult['comparison'] {
  if (!k || !s || k.steps.length === 0 || s.steps.length === 0) return undefined;
  const commonRate = Math.min(k.maxCleanRate, s.maxCleanRate);
  const ks = k.steps.find((x) => x.rate === commonRate && x.clean);
  const ss = s.steps.find((x) => x.rate === commonRate && x.clean);
  const ratio = (a: number | undefined, b: number | undefined): number | null =>
    a !== undefined && b !== undefined && b > 0 ? round(a / b, 3) : null;
  return {
    commonRate,
    sutCpuPerCallRatio: ratio(ss?.sutCpuMsPerCall, ks?.sutCpuMsPerCall),
    machineCpuPerCallRatio: ratio(ss?.machineCpuMsPerCall, ks?.machineCpuMsPerCall),
    maxCleanRateRatio: k.maxCleanRate > 0 ? round(s.maxCleanRate / k.maxCleanRate, 3) : null,
  };
}

export function defaultOptions(env: NodeJS.ProcessEnv = process.env): ProxyBenchOptions & { quick: boolean } {
  const quick = env.BENCH_QUICK === '1';
  return {
    quick,
    rates: quick ? [200, 500, 1000] : [500, 1000, 1500, 2000, 3000, 4000],
    stepSec: quick ? 3 : 8,
    maxRetransPerCall: 0.01,
    suts: (env.BENCH_SUTS?.split(',').filter((x): x is 'kamailio' | 'sipfleet' => x === 'kamailio' || x === 'sipfleet')) ?? ['kamailio', 'sipfleet'],
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

export async function runProxyBench(o: ProxyBenchOptions & { quick?: boolean } = defaultOptions()): Promise<ProxyBenchResult> {
  const cpus = os.cpus();
  const result: ProxyBenchResult = {
    bench: 'proxy',
    startedAt: new Date().toISOString(),
    host: { cpus: cpus.length, model: cpus[0]?.model ?? 'unknown', loadavgAtStart: os.loadavg().map((x) => round(x, 2)), kernel: os.release(), node: process.version },
    options: { rates: o.rates, stepSec: o.stepSec, maxRetransPerCall: o.maxRetransPerCall, quick: o.quick ?? false },
    suts: [],
  };
  try {
    for (const name of o.suts) {
      result.suts.push(await benchSut(name, o));
      await sleep(1000);
    }
  } finally {
    await killAll(2000);
  }
  const cmp = compare(result.suts.find((x) => x.name === 'kamailio'), result.suts.find((x) => x.name === 'sipfleet'));
  if (cmp) result.comparison = cmp;
  return result;
}

// Run directly: progress on stderr, one JSON document on stdout (read by bench/run.mjs).
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  runProxyBench().then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`proxy bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
