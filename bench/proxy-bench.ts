/**
 * Proxy benchmark (not a test): highest clean call rate and CPU per call of several SIP servers in the middle of
 * the same SIPp load, in the same run:
 *   kamailio     Kamailio, tm-stateful record-routing proxy (the reference)
 *   stack-proxy  sipfleet node, `--app stack-proxy`: the bare stack's record-routing proxy, no application layer
 *   proxy        sipfleet node, `--app proxy`: the same proxying through the application container (the baseline)
 *   b2bua        sipfleet node, `--app b2bua`: back-to-back UA, a second dialog (new Call-ID) towards the UAS
 *
 *   node --import tsx bench/proxy-bench.ts     # progress on stderr, JSON result on stdout
 *   BENCH_QUICK=1 node --import tsx bench/proxy-bench.ts
 *   BENCH_SUTS=proxy,b2bua node --import tsx bench/proxy-bench.ts   # a subset, in that order ("sipfleet" = proxy)
 *   BENCH_REPEATS=5 node --import tsx bench/proxy-bench.ts          # rounds per rate (default 3; BENCH_QUICK: 1)
 *
 * Topology (all loopback, distinct addresses so each hop is visible):
 *   SIPp uac 127.0.0.1  ->  SUT 127.0.0.2  ->  SIPp uas 127.0.0.3        (UDP)
 * Calls are INVITE/180/200/ACK/BYE/200. Through the proxies they are record-routed: ACK and BYE traverse the proxy
 * by Route. Through the B2BUA the caller's dialog ends at the B2BUA (its Contact, no Record-Route), which relays
 * ACK and BYE on its own dialog with the UAS.
 *
 * For each rate step SIPp places rate*stepSec calls at `rate` calls/s. A step is clean if every call succeeded
 * (0 failed at the uac and none at the uas, all completed), SIPp sent at most 1 retransmission per 100 calls
 * (uac + uas together), and the generator kept up (achieved rate >= 90% of the target, otherwise the limit is
 * SIPp/the box, not the SUT). An unclean step keeps SIPp's error logs and message counts under `diagnostics`.
 *
 * Schedule (interleaved, so that background load drifting over minutes lands on every SUT alike): every selected
 * SUT is started once (its own SIPp uas, then an unrecorded warm-up) and stays up for the whole run, as it
 * already stayed up across its steps when SUTs ran one after the other. Then, for each rate, REPEATS rounds
 * (BENCH_REPEATS; default 3, 1 with BENCH_QUICK); in each round every SUT still stepping runs one step at that
 * rate, the order rotated by one at every round over the whole run (A B C, B C A, C A B, ...). A SUT stops
 * stepping at its first unclean step (it is stopped at once and skipped from then on; the others go on); its max
 * clean rate is the highest rate at which all its rounds were clean.
 * A SUT kept alive carries what its earlier steps left: its transactions' 32 s timers fire 30-41 s after a step
 * (~12% of the step's CPU at 500 calls/s), and after a long idle its first 2 s cost 1.5-2.5x a steady second. So
 * before each measured step the SUT settles (SETTLE_SEC = 34 s since its previous window ended; the others step
 * meanwhile) and gets an unrecorded pre-load at the step's rate (PRELOAD_SEC = 3 s) right before the window. The
 * steps of one round are therefore up to ~45 s apart rather than seconds, but every window has the same history.
 * Nothing is dropped: each step records the pre-load (`preload`), the SUT CPU in the 2 s after its uac exited
 * (`sutDrainCpuMs`) and from then until the SUT's next load (`sutAfterCpuMs` over `sutAfterSec`: the deferred
 * timers), the per-call figure including them (`sutCpuMsPerCallWithTail`), and the SUT's summed RSS before the
 * step (`sutRssMbBefore`: the memory a SUT kept alive holds).
 *
 * CPU per call, over the step window (uac start -> uac exit):
 *   machine: cores x wall - idle (from /proc/stat; includes SIPp, the idle SUTs and everything else) / calls
 *   sut:     scheduler run time of every thread of every process in the SUT's process group
 *            (Kamailio's forked workers; node's threads) from /proc/<pid>/task/<tid>/schedstat / calls
 * (the tick-sampled utime/stime figures are kept under `sampled` for comparison; see machineSample()).
 * Ratios (`comparisons`, numerator / denominator) are taken over the rates at which both SUTs of the pair were
 * clean (same offered load): for every such rate and round, the ratio of the two steps of that round
 * (`rounds`); their median (`sutCpuPerCallRatioMedian`) and min / max; the calls-weighted CPU per call over all
 * those steps (`sutCpuPerCallRatio`, as before); the median with the deferred work included
 * (`sutCpuPerCallWithTailRatioMedian`, not judged). The targets apply to the median of the per-round SUT CPU per call
 * ratios: proxyVsStackProxy <= 1.25, proxyVsKamailio <= 2, b2buaVsProxy <= 2 (stackProxyVsKamailio: none).
 * `commonRate` / each SUT's `atCommonRate`: the highest rate every SUT of the run passed cleanly (SUTs without any
 * clean step are left out of it and listed in `commonRateExcludes`); per-SUT figures at one rate (`atMaxClean`,
 * `atCommonRate`) are medians over its rounds at that rate.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startKamailio, processGroupPids } from '../test/helpers/kamailio.ts';
import { freePort, waitForListening } from '../test/helpers/ports.ts';
import { killAll, spawnProcess } from '../test/helpers/proc.ts';
import {
  readSippStats,
  runSipp,
  startSippUas,
  SCENARIO_UAC_RR,
  SCENARIO_UAS_RR,
  type SippMessageRow,
  type SippResult,
  type SippUasHandle,
} from '../test/helpers/sipp.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const UAC_IP = '127.0.0.1';
export const SUT_IP = '127.0.0.2';
export const UAS_IP = '127.0.0.3';
// SIPp's default 64 KB socket buffers overflowed at the UAS under a multi-worker SUT's bursts (~2000 calls/s,
// drops seen in /proc/net/udp): the bench must find the SUT's limit, not SIPp's.
export const SIPP_SOCKET_BUFFER = 4 * 1024 * 1024;

export const SUT_NAMES = ['kamailio', 'stack-proxy', 'proxy', 'b2bua'] as const;
export type SutName = (typeof SUT_NAMES)[number];
/** sipfleet apps benched, by SUT name (`node dist/src/cli/main.js node --app APP --route-to UAS`). */
const SIPFLEET_APP: Record<Exclude<SutName, 'kamailio'>, string> = { 'stack-proxy': 'stack-proxy', proxy: 'proxy', b2bua: 'b2bua' };

export type ComparisonName = 'proxyVsStackProxy' | 'proxyVsKamailio' | 'b2buaVsProxy' | 'stackProxyVsKamailio';
/** numerator / denominator, and the most the SUT CPU per call ratio may be (null: reported, no target). */
const COMPARISONS: Array<{ name: ComparisonName; numerator: SutName; denominator: SutName; maxSutCpuPerCallRatio: number | null }> = [
  { name: 'proxyVsStackProxy', numerator: 'proxy', denominator: 'stack-proxy', maxSutCpuPerCallRatio: 1.25 },
  { name: 'proxyVsKamailio', numerator: 'proxy', denominator: 'kamailio', maxSutCpuPerCallRatio: 2 },
  { name: 'b2buaVsProxy', numerator: 'b2bua', denominator: 'proxy', maxSutCpuPerCallRatio: 2 },
  { name: 'stackProxyVsKamailio', numerator: 'stack-proxy', denominator: 'kamailio', maxSutCpuPerCallRatio: null },
];

export interface ProxyBenchOptions {
  rates: number[];
  stepSec: number;
  /** Max retransmissions per call for a clean step (0.01 = 1 per 100 calls). */
  maxRetransPerCall: number;
  /** Rounds per rate: every SUT still stepping runs this many steps at each rate (interleaved with the others). */
  repeats: number;
  /** Unrecorded load at the step's rate right before each measured window, s (0: none). */
  preloadSec: number;
  /** Least time between the end of a SUT's window and its next load, s (its deferred timers fire meanwhile). */
  settleSec: number;
  /** SUTs to run, in order (the first round's order; rotated by one at every round). */
  suts: SutName[];
  /** Progress output (stderr by default). */
  log: (line: string) => void;
}

export interface StepResult {
  rate: number;
  /** Repetition round at this rate, 1..repeats (the warm-up has none). */
  round?: number;
  /** When the step started, seconds since the first SUT was started (shows the interleaving). */
  atSec?: number;
  calls: number;
  successful: number;
  failed: number;
  /** Calls the SIPp uas counted as failed during the step (+2 s); late ones (its 10 s receive timeout) show in the next step. */
  uasFailed: number;
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
  /** SUT CPU (ms) in the 2 s after the uac exited (timers, deferred work, GC): outside the per-call figure. */
  sutDrainCpuMs: number;
  /** Summed VmRSS of the SUT's processes before the step, MB (shared pages, e.g. Kamailio's shm, count per process). */
  sutRssMbBefore: number;
  /** The unrecorded run at the same rate right before the window (the SUT warm again after its idle gap). */
  preload?: { calls: number; successful: number; failed: number; wallSec: number; sutCpuMs: number };
  /** How long the SUT had been idle (no load) before the pre-load / window, s (since its previous window ended). */
  idleSecBefore?: number;
  /**
   * SUT CPU (ms) from the end of sutDrainCpuMs until the SUT's next load (its next pre-load, or the end of the run,
   * after the same settle time): the deferred work of this step (transaction timers ~32 s on) plus idle ticking.
   */
  sutAfterCpuMs?: number;
  /** Length of that period, s. */
  sutAfterSec?: number;
  /**
   * The per-call cost including the work deferred past the window: window CPU / calls + (drain + after) CPU / (calls
   * of the window and of the pre-load, whose timers fire in the same gap).
   */
  sutCpuMsPerCallWithTail?: number;
  /** Whole machine busy during the step, as a share of all cores (near 100: the box, not the SUT, is the limit). */
  machineBusyPercent: number;
  /** The same from the tick-sampled counters (/proc/stat user+system..., /proc/<pid>/stat utime+stime): less reliable. */
  sampled: { machineCpuMsPerCall: number; sutCpuMsPerCall: number };
  /** How the SUT's own counters moved during the step (SUTs that expose them: the balancer's forwarder/membership). */
  sutCounters?: Record<string, number>;
  /** Unclean steps only: what SIPp saw (for the post-mortem; SIPp's temp dirs are removed at exit). */
  diagnostics?: StepDiagnostics;
}

export interface StepDiagnostics {
  /** Start of the caller's SIPp error log (-trace_err) for this step. */
  uacErrors: string;
  /** Its events by kind (Call-IDs and numbers elided, with the first line of the message received), most first. */
  uacErrorKinds: Record<string, number>;
  /** Start of what the callee's SIPp error log gained during this step, and its events by kind. */
  uasErrors: string;
  uasErrorKinds: Record<string, number>;
  /** Caller's per-message table (count / retransmissions / timeouts / unexpected). */
  uacMessages: SippMessageRow[];
  /** Non-zero call / out-of-call / dead-call / fatal counters of the caller, and what the callee's gained in the step. */
  uacCounters: Record<string, number>;
  uasCounters: Record<string, number>;
  /** Tail of the SUT's own output. */
  sutOutput: string;
}

/** One SUT's steps (N: the SUT names of the bench; bench/balancer-bench.ts has its own). */
export interface SutResult<N extends string = SutName> {
  name: N;
  command?: string;
  error?: string;
  /** The (unrecorded) warm-up step, when it was not clean: a SUT failing at a low rate shows here first. */
  warmUp?: { rate: number; calls: number; successful: number; failed: number; reason?: string };
  steps: StepResult[];
  /** Highest rate (calls/s) at which every round was clean, 0 if none. */
  maxCleanRate: number;
  /** CPU per call at maxCleanRate: median over its rounds there. */
  atMaxClean?: { machineCpuMsPerCall: number; sutCpuMsPerCall: number };
  /** CPU per call at the run's commonRate (the highest rate every SUT passed cleanly): median over its rounds. */
  atCommonRate?: { rate: number; machineCpuMsPerCall: number; sutCpuMsPerCall: number };
}

/** The statistic a comparison's target is judged on. */
export type RatioMetric = 'sutCpuPerCallRatioMedian' | 'sutCpuPerCallRatio';

export interface Comparison<N extends string = SutName> {
  numerator: N;
  denominator: N;
  /** Highest rate both SUTs passed cleanly (0: no common clean rate). */
  commonRate: number;
  /** Calls-weighted CPU per call over every step (all rounds) at every rate both passed cleanly, numerator / denominator. */
  sutCpuPerCallRatio: number | null;
  machineCpuPerCallRatio: number | null;
  /** Median, min and max of the per-round ratios (`rounds`): the robust figure and the spread. */
  sutCpuPerCallRatioMedian: number | null;
  sutCpuPerCallRatioMin: number | null;
  sutCpuPerCallRatioMax: number | null;
  machineCpuPerCallRatioMedian: number | null;
  /** Median of the per-round ratios of sutCpuMsPerCallWithTail (the work deferred past the window included); not judged. */
  sutCpuPerCallWithTailRatioMedian: number | null;
  /** Median of the per-round ratios at commonRate alone (one rate: noisier). */
  sutCpuPerCallRatioAtCommonRate: number | null;
  maxCleanRateRatio: number | null;
  /** The goal and the statistic it is judged on (null: none). */
  target: { metric: RatioMetric; max: number } | null;
  /** target.metric <= target.max; null when there is no target or no ratio. */
  met: boolean | null;
  /** Per rate both passed cleanly: the median over its rounds, and every round's SUT CPU per call ratio. */
  byRate: Array<{ rate: number; sutCpuPerCallRatio: number | null; machineCpuPerCallRatio: number | null; sutCpuPerCallRatios: number[] }>;
  /** Every round at every rate both passed cleanly: the ratio of the two steps of that round (run one after the other). */
  rounds: Array<{ rate: number; round: number; sutCpuPerCallRatio: number | null; machineCpuPerCallRatio: number | null; sutCpuPerCallWithTailRatio: number | null }>;
}

export interface ProxyBenchResult {
  bench: 'proxy';
  startedAt: string;
  host: { cpus: number; model: string; loadavgAtStart: number[]; kernel: string; node: string };
  options: {
    rates: number[];
    stepSec: number;
    maxRetransPerCall: number;
    quick: boolean;
    suts: SutName[];
    repeats: number;
    schedule: 'interleaved';
    preloadSec: number;
    settleSec: number;
  };
  suts: SutResult[];
  /** Highest rate every SUT of the run passed cleanly (0 if none); see SutResult.atCommonRate. */
  commonRate: number;
  /** SUTs left out of commonRate because they had no clean step at all. */
  commonRateExcludes?: SutName[];
  /** Pairwise ratios, for the pairs whose two SUTs both ran. */
  comparisons: Partial<Record<ComparisonName, Comparison>>;
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
export const CORES = os.cpus().length;
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

/** Summed VmRSS of a process group's processes, MB (shared pages count in every process that maps them). */
function groupRssMb(pgid: number): number {
  let kb = 0;
  for (const pid of processGroupPids(pgid)) {
    try {
      const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
      if (m) kb += Number(m[1]);
    } catch {
      // process exited meanwhile
    }
  }
  return kb / 1024;
}

// --- SUTs -----------------------------------------------------------------------------------------------------

/** A SUT in the middle of the load: SIPp uac -> SUT_IP:port -> SIPp uas. */
export interface RunningSut {
  port: number;
  pgid: number;
  command: string;
  alive(): boolean;
  diagnostics(): string;
  /** The SUT's own counters, read between steps (not during one): each step records how they moved. */
  counters?(): Promise<Record<string, number>>;
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

async function startSipfleetSut(app: string, uasPort: number): Promise<RunningSut> {
  const entry = path.join(root, 'dist/src/cli/main.js');
  if (!existsSync(entry)) throw new Error(`${path.relative(root, entry)} not found: run \`npm run build\` first (npm run bench does)`);
  const port = await freePort(SUT_IP);
  const args = [entry, 'node', '--app', app, '--listen', `${SUT_IP}:${port}`, '--route-to', `${UAS_IP}:${uasPort}`, '--transport', 'udp'];
  const command = `node ${[path.relative(root, entry), ...args.slice(1)].join(' ')}`;
  // Detached: own process group, so CPU of any worker process it forks is counted and stop() reaches it.
  const proc = spawnProcess(process.execPath, args, { cwd: root, detached: true, name: `sipfleet node (${app})` });
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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function uasStats(uas: SippUasHandle): Record<string, string> {
  return readSippStats(path.join(uas.workDir, 'stats.csv'));
}

/** SIPp counters worth seeing when calls fail (besides the Failed* ones); the call counts tell whether the uas saw the calls. */
const DIAG_COUNTERS = ['IncomingCall(C)', 'SuccessfulCall(C)', 'OutOfCallMsgs(C)', 'DeadCallMsgs(C)', 'FatalErrors(C)', 'Warnings(C)', 'AutoAnswered(C)', 'Retransmissions(C)', 'CurrentCall'];
function pickCounters(now: Record<string, string>, before: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of [...DIAG_COUNTERS, ...Object.keys(now).filter((x) => /^Failed\w+\(C\)$/.test(x))]) {
    const v = (Number(now[k] ?? 0) || 0) - (k.endsWith('(C)') ? Number(before[k] ?? 0) || 0 : 0);
    if (v !== 0) out[k] = v;
  }
  return out;
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
/**
 * SIPp error-log events by kind. An event starts "<date>\t<time>\t<epoch>: " and may quote a whole message;
 * the kind is the event text with Call-IDs / call numbers elided plus the first line of the quoted message
 * (method, or status line), e.g. "Dead call * (successful), received 'SIP/2.0 200 OK".
 */
export function sippErrorKinds(text: string): Record<string, number> {
  const counts = new Map<string, number>();
  for (const ev of text.split(/\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: /).slice(1)) {
    let kind = (ev.split('\n')[0] ?? '')
      .replace(/Call-Id '[^']*'/gi, "Call-Id '*'")
      .replace(/Dead call \S+/, 'Dead call *')
      .replace(/ sip:\S+/g, ' sip:*')
      .trim();
    kind = kind.replace(/^(.*received '(?:SIP\/2\.0 \d{3}[^']*|[A-Z]+)).*$/, '$1');
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, 12));
}

/** Up to maxBytes of `file` from byte `from` (from 0 if the file shrank, i.e. was rotated), and its events by kind. */
function readFrom(file: string, from: number, maxBytes = 3000): { text: string; kinds: Record<string, number> } {
  if (!existsSync(file)) return { text: '', kinds: {} };
  const size = fileSize(file);
  const start = size < from ? 0 : from;
  const fd = openSync(file, 'r');
  try {
    const all = Buffer.alloc(Math.min(size - start, 8 * 1024 * 1024));
    readSync(fd, all, 0, all.length, start);
    const text = all.toString('latin1');
    return { text: text.slice(0, maxBytes), kinds: sippErrorKinds(text) };
  } finally {
    closeSync(fd);
  }
}

/** The SIPp caller of a step (or of its pre-load): `calls` calls at `rate` to the SUT. */
async function runUac(sut: RunningSut, rate: number, calls: number, timeoutSec: number): Promise<SippResult> {
  return runSipp({
    sf: SCENARIO_UAC_RR,
    remote: `${SUT_IP}:${sut.port}`,
    localIp: UAC_IP,
    localPort: await freePort(UAC_IP, 'udp'),
    transport: 'udp',
    rate,
    maxCalls: calls,
    // Enough concurrency for ~4 s of slow answers before SIPp throttles (which then shows as a low achieved rate);
    // capped below SIPp's open-files limit (20,000: it refuses more open calls), reached above 5,000 calls/s.
    callLimit: Math.min(18_000, Math.max(200, rate * 4)),
    recvTimeoutMs: 10_000,
    // Kamailio's two UDP workers (and any multi-worker SUT) may reorder 180/200 or ACK/BYE: not a failure.
    ignoreUnexpected: true,
    // Bounded: the run's own duration plus room for retransmission timeouts.
    timeoutSec,
    maxLoops: 2000,
    bufferSize: SIPP_SOCKET_BUFFER,
  });
}

/**
 * One step: `rate` calls/s for stepSec s, measured. With preloadSec > 0, an unrecorded run at the same rate for
 * preloadSec s comes first, right before the measured window (its counts and SUT CPU are kept under `preload`).
 */
export async function runStep(sut: RunningSut, uas: SippUasHandle, rate: number, stepSec: number, maxRetransPerCall: number, preloadSec = 0): Promise<StepResult> {
  const calls = Math.round(rate * stepSec);
  let preload: StepResult['preload'];
  if (preloadSec > 0) {
    const c0 = groupCpuMs(sut.pgid).exact;
    const p0 = performance.now();
    const p = await runUac(sut, rate, Math.round(rate * preloadSec), preloadSec + 40);
    preload = { calls: Math.round(rate * preloadSec), successful: p.successful, failed: p.failed, wallSec: round((performance.now() - p0) / 1000, 2), sutCpuMs: round(groupCpuMs(sut.pgid).exact - c0, 1) };
  }
  // The SUT's own counters (if any) around the window only, read outside it (an HTTP request to the SUT).
  const countersBefore = sut.counters ? await sut.counters().catch(() => undefined) : undefined;
  const uasBefore = uasStats(uas);
  const uasRetransBefore = Number(uasBefore['Retransmissions(C)'] ?? 0) || 0;
  const uasErrorsFile = path.join(uas.workDir, 'errors.log');
  const uasErrorsBefore = fileSize(uasErrorsFile);
  const rssBefore = groupRssMb(sut.pgid);
  const m0 = machineSample();
  const sut0 = groupCpuMs(sut.pgid);
  const t0 = performance.now();
  const r = await runUac(sut, rate, calls, stepSec + 40);
  const wallSec = (performance.now() - t0) / 1000;
  const m1 = machineSample();
  const sut1 = groupCpuMs(sut.pgid);
  // The UAS writes its stats every second; let late retransmissions (200 OK not ACKed) be counted too.
  await sleep(2000);
  const sut2 = groupCpuMs(sut.pgid);
  const uasAfter = uasStats(uas);
  const countersAfter = countersBefore && sut.counters ? await sut.counters().catch(() => undefined) : undefined;
  const retransmissions = r.retransmissions + Math.max(0, (Number(uasAfter['Retransmissions(C)'] ?? 0) || 0) - uasRetransBefore);
  // A B2BUA ends the caller's dialog itself, so the caller's counts alone do not prove the callee's leg worked.
  const uasFailed = Math.max(0, (Number(uasAfter['FailedCall(C)'] ?? 0) || 0) - (Number(uasBefore['FailedCall(C)'] ?? 0) || 0));

  const done = Math.max(1, r.successful);
  const achievedRate = r.successful / wallSec;
  const retransPerCall = retransmissions / calls;
  let reason: string | undefined;
  if (!sut.alive()) reason = 'SUT process died';
  else if (r.failed > 0) reason = `${r.failed} failed calls`;
  else if (uasFailed > 0) reason = `${uasFailed} calls failed at the UAS`;
  else if (r.successful < calls) reason = `only ${r.successful}/${calls} calls completed (sipp exit ${r.exitCode})`;
  else if (retransPerCall > maxRetransPerCall) reason = `${retransmissions} retransmissions (${(retransPerCall * 100).toFixed(2)}% of calls)`;
  else if (achievedRate < rate * 0.9) reason = `generator reached only ${achievedRate.toFixed(0)} calls/s`;
  let diagnostics: StepDiagnostics | undefined;
  if (reason !== undefined) {
    const uacErr = readFrom(r.errorLogPath, 0);
    const uasErr = readFrom(uasErrorsFile, uasErrorsBefore);
    diagnostics = {
      uacErrors: uacErr.text,
      uacErrorKinds: uacErr.kinds,
      uasErrors: uasErr.text,
      uasErrorKinds: uasErr.kinds,
      uacMessages: r.messages,
      uacCounters: pickCounters(r.counters),
      uasCounters: pickCounters(uasAfter, uasBefore),
      sutOutput: sut.diagnostics(),
    };
  }
  return {
    rate,
    calls,
    successful: r.successful,
    failed: r.failed,
    uasFailed,
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
    sutDrainCpuMs: round(sut2.exact - sut1.exact, 1),
    sutRssMbBefore: round(rssBefore, 1),
    ...(preload ? { preload } : {}),
    ...(countersBefore && countersAfter ? { sutCounters: counterDelta(countersBefore, countersAfter) } : {}),
    machineBusyPercent: round((machineBusyMs(m0, m1) / (CORES * (m1.atMs - m0.atMs))) * 100, 1),
    sampled: {
      machineCpuMsPerCall: round((m1.sampledBusyMs - m0.sampledBusyMs) / done, 4),
      sutCpuMsPerCall: round((sut1.sampled - sut0.sampled) / done, 4),
    },
    ...(diagnostics ? { diagnostics } : {}),
  };
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** "N x kind; M x kind" for the most frequent SIPp error kinds, for a progress line. */
function topKinds(kinds: Record<string, number> | undefined, n = 2): string {
  return Object.entries(kinds ?? {}).slice(0, n).map(([k, c]) => `${c} x ${k.slice(0, 130)}`).join('; ');
}

/** How a SUT is started: SIPFLEET_APP or Kamailio, routing to the SIPp uas on uasPort. */
function starter(name: SutName): (uasPort: number) => Promise<RunningSut> {
  return (uasPort) => (name === 'kamailio' ? startKamailioSut(uasPort) : startSipfleetSut(SIPFLEET_APP[name], uasPort));
}

/** How SUTs are stepped (the same for every bench). */
export type StepOptions = Pick<ProxyBenchOptions, 'rates' | 'stepSec' | 'maxRetransPerCall' | 'repeats' | 'preloadSec' | 'settleSec' | 'log'>;

/**
 * Why a pre-load and a settle time (measured here on a stack-proxy and a proxy node, 8 s at 500 calls/s after 45 s
 * idle): the first 2 s after a long idle cost 1.5-2.5x a steady second (V8 re-warming), and 30-41 s after a step
 * its transactions' 64 x T1 = 32 s timers (J, D, L) fire, ~12% of the step's own CPU. A SUT kept alive between
 * interleaved steps therefore carried whatever its own earlier steps left, differently in every round. So every
 * measured window starts warm (PRELOAD_SEC at its rate just before) and after the SUT's earlier timers have fired
 * (SETTLE_SEC since its previous window); that deferred CPU is measured in the gap (sutAfterCpuMs), not dropped.
 */
export const PRELOAD_SEC = 3;
export const SETTLE_SEC = 34;

/** A SUT to bench: its name and how to start it in front of a SIPp uas listening on uasPort. */
export interface SutEntry<N extends string> {
  name: N;
  start: (uasPort: number) => Promise<RunningSut>;
}

/** `items` rotated left by k (k = 1: B C A). */
export function rotate<T>(items: readonly T[], k: number): T[] {
  if (items.length === 0) return [];
  const i = ((k % items.length) + items.length) % items.length;
  return [...items.slice(i), ...items.slice(0, i)];
}

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
}

/** Median CPU per call over a SUT's clean steps at `rate` (its rounds there); undefined if none. */
export function cpuAtRate(steps: readonly StepResult[], rate: number): { machineCpuMsPerCall: number; sutCpuMsPerCall: number } | undefined {
  const at = steps.filter((x) => x.rate === rate && x.clean);
  const sut = median(at.map((x) => x.sutCpuMsPerCall));
  const machine = median(at.map((x) => x.machineCpuMsPerCall));
  return sut === null || machine === null ? undefined : { machineCpuMsPerCall: round(machine, 4), sutCpuMsPerCall: round(sut, 4) };
}

interface LiveSut<N extends string> extends SutEntry<N> {
  result: SutResult<N>;
  uas?: SippUasHandle;
  sut?: RunningSut;
  /** Up, and every step so far clean: takes part in the next round. */
  stepping: boolean;
  /** When its last load (warm-up or step window) ended, and the SUT CPU at the end of that step's drain. */
  endedAt?: number;
  mark?: { at: number; cpuMs: number; step?: StepResult };
}

/** Fills in the deferred CPU of the SUT's previous step (everything since its drain ended). */
function closeAfter<N extends string>(l: LiveSut<N>): void {
  const m = l.mark;
  l.mark = undefined;
  if (!m?.step || !l.sut) return;
  const s = m.step;
  s.sutAfterCpuMs = round(groupCpuMs(l.sut.pgid).exact - m.cpuMs, 1);
  s.sutAfterSec = round((performance.now() - m.at) / 1000, 1);
  // The deferred work is that of the pre-load's calls as well as the window's: spread it over both.
  s.sutCpuMsPerCallWithTail = round(s.sutCpuMsPerCall + (s.sutDrainCpuMs + s.sutAfterCpuMs) / Math.max(1, s.successful + (s.preload?.successful ?? 0)), 4);
}

/** Waits until the SUT has been without load for o.settleSec since its last window (its timers have fired). */
async function settle<N extends string>(l: LiveSut<N>, o: StepOptions): Promise<void> {
  if (l.endedAt === undefined) return;
  const wait = l.endedAt + o.settleSec * 1000 - performance.now();
  if (wait > 500) o.log(`[${l.name}]   settles ${(wait / 1000).toFixed(0)} s (timers of its previous load)`);
  if (wait > 0) await sleep(wait);
}

/**
 * Several SUTs, interleaved: each gets a fresh SIPp uas on UAS_IP, is started by its `start(uasPort)` and warmed
 * up (unrecorded), and stays up; then for each rate, `repeats` rounds in which every SUT still stepping runs one
 * step at that rate, the order rotated by one per round (A B C, B C A, ...). A SUT's first unclean step ends its
 * stepping (it is stopped then; the others go on). Stops every SUT and uas whatever happens.
 */
export async function benchSutsInterleaved<N extends string>(entries: ReadonlyArray<SutEntry<N>>, o: StepOptions): Promise<Array<SutResult<N>>> {
  const t0 = performance.now();
  const atSec = (): number => round((performance.now() - t0) / 1000, 1);
  const lives: Array<LiveSut<N>> = entries.map((e) => ({ ...e, result: { name: e.name, steps: [], maxCleanRate: 0 }, stepping: false }));
  const stop = async (l: LiveSut<N>): Promise<void> => {
    l.stepping = false;
    closeAfter(l);
    const { sut, uas } = l;
    l.sut = undefined;
    l.uas = undefined;
    await sut?.stop().catch(() => undefined);
    await uas?.stop({ graceful: false }).catch(() => undefined);
  };
  try {
    for (const l of lives) {
      const { name, result } = l;
      try {
        l.uas = await startSippUas({
          localIp: UAS_IP,
          sf: SCENARIO_UAS_RR,
          transport: 'udp',
          // The uas lives as long as the whole interleaved run.
          timeoutSec: 4 * 3600,
          maxLoops: 2000,
          bufferSize: SIPP_SOCKET_BUFFER,
          ignoreUnexpected: true,
          recvTimeoutMs: 10_000,
        });
        l.sut = await l.start(l.uas.localPort);
        result.command = l.sut.command;
        o.log(`[${name}] up on ${SUT_IP}:${l.sut.port} -> uas ${UAS_IP}:${l.uas.localPort}`);
        // Warm-up (not recorded): JIT for node, caches for everyone; same for every SUT.
        const warm = await runStep(l.sut, l.uas, Math.min(200, o.rates[0] ?? 200), 2, 1);
        l.endedAt = performance.now() - 2000;
        o.log(`[${name}] warm-up: ${warm.successful}/${warm.calls} ok${warm.clean ? '' : ` (NOT clean: ${warm.reason})`}`);
        if (!warm.clean) {
          result.warmUp = { rate: warm.rate, calls: warm.calls, successful: warm.successful, failed: warm.failed, ...(warm.reason ? { reason: warm.reason } : {}) };
          const e = topKinds(warm.diagnostics?.uacErrorKinds) || topKinds(warm.diagnostics?.uasErrorKinds);
          if (e) o.log(`[${name}]   sipp: ${e}`);
        }
        l.stepping = true;
      } catch (err) {
        result.error = (err as Error).message;
        o.log(`[${name}] error: ${result.error.split('\n')[0]}`);
        await stop(l);
      }
    }

    let turn = 0;
    for (const rate of o.rates) {
      for (let r = 1; r <= o.repeats; r++) {
        // Rotated over every entry (not only those still stepping), so the pattern stays regular.
        const order = rotate(lives, turn++).filter((l) => l.stepping);
        if (order.length === 0) break;
        o.log(`[round] ${rate} calls/s x ${o.stepSec} s, round ${r}/${o.repeats}: ${order.map((l) => l.name).join(', ')}`);
        for (const l of order) {
          await stepOnce(l, rate, r, atSec, o).catch(async (err: unknown) => {
            l.result.error = (err as Error).message;
            o.log(`[${l.name}] error: ${l.result.error.split('\n')[0]}`);
            await stop(l);
          });
          if (!l.stepping) await stop(l);
          await sleep(1000);
        }
      }
      for (const l of lives) {
        if (!l.stepping) continue;
        l.result.maxCleanRate = rate;
        l.result.atMaxClean = cpuAtRate(l.result.steps, rate);
      }
    }
    // The last steps' deferred CPU: let their timers fire too before stopping.
    const up = lives.filter((l) => l.sut && l.mark);
    if (up.length > 0 && o.settleSec > 0) {
      o.log(`[round] done; ${o.settleSec} s for the last steps' timers`);
      await Promise.all(up.map((l) => settle(l, { ...o, log: () => undefined })));
      for (const l of up) closeAfter(l);
    }
  } finally {
    for (const l of lives) await stop(l);
  }
  return lives.map((l) => l.result);
}

/**
 * One recorded step of a stepping SUT (after its settle time, with its pre-load); an unclean one ends its stepping
 * (l.stepping = false).
 */
async function stepOnce<N extends string>(l: LiveSut<N>, rate: number, r: number, atSec: () => number, o: StepOptions): Promise<void> {
  const { name, sut, uas, result } = l;
  if (!sut || !uas) return;
  await settle(l, o);
  closeAfter(l);
  const idleSecBefore = l.endedAt === undefined ? undefined : round((performance.now() - l.endedAt) / 1000, 1);
  const at = atSec();
  const step = await runStep(sut, uas, rate, o.stepSec, o.maxRetransPerCall, o.preloadSec);
  // runStep returns 2 s (the drain) after the window ended.
  l.endedAt = performance.now() - 2000;
  // rate, round and start time first in the JSON.
  const s: StepResult = Object.assign({ rate, round: r, atSec: at, ...(idleSecBefore !== undefined ? { idleSecBefore } : {}) }, step);
  l.mark = { at: performance.now(), cpuMs: groupCpuMs(sut.pgid).exact, step: s };
  result.steps.push(s);
  o.log(
    `[${name}]   ${rate}/s #${r}: ${s.clean ? 'clean' : `NOT clean: ${s.reason}`}; ok ${s.successful}/${s.calls}, retrans ${s.retransmissions}, ` +
      `${s.achievedRate} calls/s, sut ${s.sutCpuMsPerCall} ms/call (${s.sutCpuPercent}% core, +${s.sutDrainCpuMs} ms drain, rss ${s.sutRssMbBefore} MB` +
      `${s.preload ? `, pre-load ${s.preload.successful}/${s.preload.calls} ok ${s.preload.sutCpuMs} ms` : ''}), ` +
      `machine ${s.machineCpuMsPerCall} ms/call (${s.machineBusyPercent}% of ${CORES} cores busy)`,
  );
  if (!s.clean) {
    const d = s.diagnostics;
    if (d) {
      const uac = topKinds(d.uacErrorKinds);
      const uasKinds = topKinds(d.uasErrorKinds);
      if (uac) o.log(`[${name}]   sipp uac: ${uac}`);
      if (uasKinds) o.log(`[${name}]   sipp uas: ${uasKinds}`);
    }
    if (!sut.alive()) result.error = `SUT died at ${rate} calls/s\n${sut.diagnostics()}`;
    o.log(`[${name}]   stops stepping (max clean rate ${result.maxCleanRate} calls/s)`);
    l.stepping = false;
    // It is stopped at once: no deferred CPU to measure for this step.
    l.mark = undefined;
  }
}

/** One SUT alone (benchSutsInterleaved with a single entry). */
export async function benchSutWith<N extends string>(name: N, start: (uasPort: number) => Promise<RunningSut>, o: StepOptions): Promise<SutResult<N>> {
  const [r] = await benchSutsInterleaved([{ name, start }], o);
  return r as SutResult<N>;
}

/** What each counter gained (the non-zero ones). */
function counterDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  return a !== undefined && b !== undefined && b > 0 ? round(a / b, 3) : null;
}

/**
 * n / d over the rates both passed cleanly (the same offered load): per round at each such rate (the two steps of
 * a round ran seconds apart), their median / min / max, and the calls-weighted ratio over all those steps.
 * The target is judged on `judgeOn` (default: the median of the per-round ratios). Undefined unless both ran steps.
 */
export function compare<N extends string>(
  n: SutResult<N> | undefined,
  d: SutResult<N> | undefined,
  maxSutCpuPerCallRatio: number | null,
  judgeOn: RatioMetric = 'sutCpuPerCallRatioMedian',
): Comparison<N> | undefined {
  if (!n || !d || n.steps.length === 0 || d.steps.length === 0) return undefined;
  const commonRate = Math.min(n.maxCleanRate, d.maxCleanRate);
  const rates = [...new Set(n.steps.map((x) => x.rate))].filter((r) => r <= commonRate && r > 0).sort((a, b) => a - b);
  const byRate: Comparison<N>['byRate'] = [];
  const rounds: Comparison<N>['rounds'] = [];
  // One step's CPU per call swings with where GC pauses fall and with what else the 2-core VM is doing: each
  // round's ratio pairs two steps run one after the other, and the headline is the median over every round at
  // every rate.
  // The calls-weighted CPU per call over all those steps is kept as well (as before the rounds).
  const sum = { nSut: 0, dSut: 0, nMachine: 0, dMachine: 0, nCalls: 0, dCalls: 0 };
  for (const rate of rates) {
    const ns = n.steps.filter((x) => x.rate === rate && x.clean);
    const ds = d.steps.filter((x) => x.rate === rate && x.clean);
    const here: Comparison<N>['rounds'] = [];
    for (const a of ns) {
      const b = ds.find((x) => (x.round ?? 1) === (a.round ?? 1));
      if (!b) continue;
      here.push({
        rate,
        round: a.round ?? 1,
        sutCpuPerCallRatio: ratio(a.sutCpuMsPerCall, b.sutCpuMsPerCall),
        machineCpuPerCallRatio: ratio(a.machineCpuMsPerCall, b.machineCpuMsPerCall),
        sutCpuPerCallWithTailRatio: ratio(a.sutCpuMsPerCallWithTail, b.sutCpuMsPerCallWithTail),
      });
    }
    for (const [steps, k] of [[ns, 'n'], [ds, 'd']] as const) {
      for (const x of steps) {
        sum[`${k}Sut`] += x.sutCpuMsPerCall * x.calls;
        sum[`${k}Machine`] += x.machineCpuMsPerCall * x.calls;
        sum[`${k}Calls`] += x.calls;
      }
    }
    if (here.length === 0) continue;
    rounds.push(...here);
    const sutRatios = here.map((x) => x.sutCpuPerCallRatio).filter((x): x is number => x !== null);
    const m = median(sutRatios);
    const mm = median(here.map((x) => x.machineCpuPerCallRatio).filter((x): x is number => x !== null));
    byRate.push({ rate, sutCpuPerCallRatio: m === null ? null : round(m, 3), machineCpuPerCallRatio: mm === null ? null : round(mm, 3), sutCpuPerCallRatios: sutRatios });
  }
  const weighted = (num: number, den: number): number | null => (sum.nCalls > 0 && sum.dCalls > 0 && den > 0 ? round((num / sum.nCalls) / (den / sum.dCalls), 3) : null);
  const sutRatios = rounds.map((x) => x.sutCpuPerCallRatio).filter((x): x is number => x !== null);
  const r3 = (x: number | null): number | null => (x === null ? null : round(x, 3));
  const sutCpuPerCallRatio = weighted(sum.nSut, sum.dSut);
  const sutCpuPerCallRatioMedian = r3(median(sutRatios));
  const judged = judgeOn === 'sutCpuPerCallRatioMedian' ? sutCpuPerCallRatioMedian : sutCpuPerCallRatio;
  const atCommon = rounds.filter((x) => x.rate === commonRate).map((x) => x.sutCpuPerCallRatio).filter((x): x is number => x !== null);
  return {
    numerator: n.name,
    denominator: d.name,
    commonRate,
    sutCpuPerCallRatio,
    machineCpuPerCallRatio: weighted(sum.nMachine, sum.dMachine),
    sutCpuPerCallRatioMedian,
    sutCpuPerCallRatioMin: sutRatios.length > 0 ? Math.min(...sutRatios) : null,
    sutCpuPerCallRatioMax: sutRatios.length > 0 ? Math.max(...sutRatios) : null,
    machineCpuPerCallRatioMedian: r3(median(rounds.map((x) => x.machineCpuPerCallRatio).filter((x): x is number => x !== null))),
    sutCpuPerCallWithTailRatioMedian: r3(median(rounds.map((x) => x.sutCpuPerCallWithTailRatio).filter((x): x is number => x !== null))),
    sutCpuPerCallRatioAtCommonRate: r3(median(atCommon)),
    maxCleanRateRatio: d.maxCleanRate > 0 ? round(n.maxCleanRate / d.maxCleanRate, 3) : null,
    target: maxSutCpuPerCallRatio === null ? null : { metric: judgeOn, max: maxSutCpuPerCallRatio },
    met: maxSutCpuPerCallRatio === null || judged === null ? null : judged <= maxSutCpuPerCallRatio,
    byRate,
    rounds,
  };
}

/** BENCH_REPEATS: rounds per rate, a positive integer (default 3; 1 with BENCH_QUICK=1). */
export function parseRepeats(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BENCH_REPEATS;
  if (v === undefined || v.trim() === '') return env.BENCH_QUICK === '1' ? 1 : 3;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_REPEATS: expected a positive integer, got "${v}"`);
  return n;
}

/** BENCH_SUTS=a,b: the SUTs to run, in that order ("sipfleet", the old name of the proxy app's SUT, = proxy). */
export function parseSuts(value: string | undefined): SutName[] {
  if (value === undefined || value.trim() === '') return [...SUT_NAMES];
  const out: SutName[] = [];
  for (const raw of value.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const name = raw === 'sipfleet' ? 'proxy' : raw;
    if (!(SUT_NAMES as readonly string[]).includes(name)) throw new Error(`BENCH_SUTS: unknown SUT "${raw}" (known: ${SUT_NAMES.join(', ')})`);
    if (!out.includes(name as SutName)) out.push(name as SutName);
  }
  return out;
}

export function defaultOptions(env: NodeJS.ProcessEnv = process.env): ProxyBenchOptions & { quick: boolean } {
  const quick = env.BENCH_QUICK === '1';
  return {
    quick,
    // Full: 5 rates x 3 rounds; a round takes ~55-60 s whether 2 SUTs (settle-bound) or 4 (3 s pre-load + 8 s
    // of load + drain + pauses each): ~15 min. A SUT that fails a rate drops out of the rounds after it.
    rates: quick ? [200, 500, 1000] : [500, 1000, 1500, 2000, 3000],
    stepSec: quick ? 3 : 8,
    maxRetransPerCall: 0.01,
    repeats: parseRepeats(env),
    preloadSec: PRELOAD_SEC,
    settleSec: SETTLE_SEC,
    suts: parseSuts(env.BENCH_SUTS),
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

/**
 * The highest rate every SUT passed cleanly, and each SUT's atCommonRate (set in place). SUTs with no clean step
 * at all would make it 0: they are left out (returned in `excludes`).
 */
export function setCommonRate<N extends string>(suts: Array<SutResult<N>>): { commonRate: number; excludes: N[] } {
  const ran = suts.filter((x) => x.maxCleanRate > 0);
  const excludes = suts.filter((x) => x.maxCleanRate === 0).map((x) => x.name);
  if (ran.length === 0) return { commonRate: 0, excludes };
  const commonRate = Math.min(...ran.map((x) => x.maxCleanRate));
  for (const s of suts) {
    const at = s.maxCleanRate >= commonRate ? cpuAtRate(s.steps, commonRate) : undefined;
    if (at) s.atCommonRate = { rate: commonRate, ...at };
  }
  return { commonRate, excludes };
}

export async function runProxyBench(o: ProxyBenchOptions & { quick?: boolean } = defaultOptions()): Promise<ProxyBenchResult> {
  const cpus = os.cpus();
  const result: ProxyBenchResult = {
    bench: 'proxy',
    startedAt: new Date().toISOString(),
    host: { cpus: cpus.length, model: cpus[0]?.model ?? 'unknown', loadavgAtStart: os.loadavg().map((x) => round(x, 2)), kernel: os.release(), node: process.version },
    options: {
      rates: o.rates,
      stepSec: o.stepSec,
      maxRetransPerCall: o.maxRetransPerCall,
      quick: o.quick ?? false,
      suts: o.suts,
      repeats: o.repeats,
      schedule: 'interleaved',
      preloadSec: o.preloadSec,
      settleSec: o.settleSec,
    },
    suts: [],
    commonRate: 0,
    comparisons: {},
  };
  o.log(
    `[proxy] SUTs ${o.suts.join(', ')}; rates ${o.rates.join(', ')} calls/s x ${o.stepSec} s, ${o.repeats} round(s) per rate, interleaved; ` +
      `load average at start ${result.host.loadavgAtStart.join(' ')}`,
  );
  try {
    result.suts = await benchSutsInterleaved(o.suts.map((name) => ({ name, start: starter(name) })), o);
  } finally {
    await killAll(2000);
  }
  const common = setCommonRate(result.suts);
  result.commonRate = common.commonRate;
  if (common.excludes.length > 0) result.commonRateExcludes = common.excludes;
  const byName = (n: SutName): SutResult | undefined => result.suts.find((x) => x.name === n);
  for (const c of COMPARISONS) {
    const cmp = compare(byName(c.numerator), byName(c.denominator), c.maxSutCpuPerCallRatio);
    if (cmp) {
      result.comparisons[c.name] = cmp;
      o.log(
        `[proxy] ${c.name} (${c.numerator}/${c.denominator}) SUT CPU per call: median x${cmp.sutCpuPerCallRatioMedian ?? '-'} ` +
          `(min ${cmp.sutCpuPerCallRatioMin ?? '-'}, max ${cmp.sutCpuPerCallRatioMax ?? '-'}, ${cmp.rounds.length} rounds), weighted x${cmp.sutCpuPerCallRatio ?? '-'}, ` +
          `with deferred work x${cmp.sutCpuPerCallWithTailRatioMedian ?? '-'}` +
          `${cmp.target ? `; target <= ${cmp.target.max}: ${cmp.met === null ? '-' : cmp.met ? 'met' : 'NOT met'}` : ''}`,
      );
    }
  }
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
