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
 * Stepping stops at the first unclean step; max clean rate = last clean step.
 *
 * CPU per call, over the step window (uac start -> uac exit):
 *   machine: cores x wall - idle (from /proc/stat; includes SIPp and everything else on the box) / calls
 *   sut:     scheduler run time of every thread of every process in the SUT's process group
 *            (Kamailio's forked workers; node's threads) from /proc/<pid>/task/<tid>/schedstat / calls
 * (the tick-sampled utime/stime figures are kept under `sampled` for comparison; see machineSample()).
 * Ratios (`comparisons`, numerator / denominator) are taken at the highest rate at which both SUTs of the pair were
 * clean (same offered load), as SUT CPU per call, machine CPU per call and max clean rate; the targets apply to
 * SUT CPU per call: proxyVsStackProxy <= 1.25, proxyVsKamailio <= 2, b2buaVsProxy <= 2 (stackProxyVsKamailio: none).
 * `commonRate` / each SUT's `atCommonRate`: the highest rate every SUT of the run passed cleanly (SUTs without any
 * clean step are left out of it and listed in `commonRateExcludes`).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startKamailio, processGroupPids } from '../test/helpers/kamailio.ts';
import { freePort, waitForListening } from '../test/helpers/ports.ts';
import { killAll, spawnProcess } from '../test/helpers/proc.ts';
import { readSippStats, runSipp, startSippUas, SCENARIO_UAC_RR, SCENARIO_UAS_RR, type SippMessageRow, type SippUasHandle } from '../test/helpers/sipp.ts';

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
  /** SUTs to run, in order. */
  suts: SutName[];
  /** Progress output (stderr by default). */
  log: (line: string) => void;
}

export interface StepResult {
  rate: number;
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
  /** Non-zero out-of-call / dead-call / fatal counters of the caller, and what the callee's gained in the step. */
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
  /** Highest clean rate (calls/s), 0 if none. */
  maxCleanRate: number;
  /** CPU per call at maxCleanRate. */
  atMaxClean?: { machineCpuMsPerCall: number; sutCpuMsPerCall: number };
  /** CPU per call at the run's commonRate (the highest rate every SUT passed cleanly). */
  atCommonRate?: { rate: number; machineCpuMsPerCall: number; sutCpuMsPerCall: number };
}

export interface Comparison<N extends string = SutName> {
  numerator: N;
  denominator: N;
  /** Highest rate both SUTs passed cleanly (0: no common clean rate). */
  commonRate: number;
  /** Calls-weighted CPU per call over every rate both passed cleanly, numerator / denominator. */
  sutCpuPerCallRatio: number | null;
  machineCpuPerCallRatio: number | null;
  /** The single-step ratio at commonRate (noisier). */
  sutCpuPerCallRatioAtCommonRate: number | null;
  maxCleanRateRatio: number | null;
  /** The goal, on sutCpuPerCallRatio (null: none). */
  target: { metric: 'sutCpuPerCallRatio'; max: number } | null;
  /** sutCpuPerCallRatio <= target.max; null when there is no target or no ratio. */
  met: boolean | null;
  /** The same ratios at every rate both passed cleanly. */
  byRate: Array<{ rate: number; sutCpuPerCallRatio: number | null; machineCpuPerCallRatio: number | null }>;
}

export interface ProxyBenchResult {
  bench: 'proxy';
  startedAt: string;
  host: { cpus: number; model: string; loadavgAtStart: number[]; kernel: string; node: string };
  options: { rates: number[]; stepSec: number; maxRetransPerCall: number; quick: boolean; suts: SutName[] };
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

/** SIPp counters worth seeing when calls fail (besides the Failed* ones). */
const DIAG_COUNTERS = ['OutOfCallMsgs(C)', 'DeadCallMsgs(C)', 'FatalErrors(C)', 'Warnings(C)', 'AutoAnswered(C)', 'Retransmissions(C)', 'CurrentCall'];
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

export async function runStep(sut: RunningSut, uas: SippUasHandle, rate: number, stepSec: number, maxRetransPerCall: number): Promise<StepResult> {
  const calls = Math.round(rate * stepSec);
  const uasBefore = uasStats(uas);
  const uasRetransBefore = Number(uasBefore['Retransmissions(C)'] ?? 0) || 0;
  const uasErrorsFile = path.join(uas.workDir, 'errors.log');
  const uasErrorsBefore = fileSize(uasErrorsFile);
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
    // Enough concurrency for ~4 s of slow answers before SIPp throttles (which then shows as a low achieved rate);
    // capped below SIPp's open-files limit (20,000: it refuses more open calls), reached above 5,000 calls/s.
    callLimit: Math.min(18_000, Math.max(200, rate * 4)),
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
  const uasAfter = uasStats(uas);
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

async function benchSut(name: SutName, o: ProxyBenchOptions): Promise<SutResult> {
  return benchSutWith(name, (uasPort) => (name === 'kamailio' ? startKamailioSut(uasPort) : startSipfleetSut(SIPFLEET_APP[name], uasPort)), o);
}

/** How a SUT is stepped (the same for every bench). */
export type StepOptions = Pick<ProxyBenchOptions, 'rates' | 'stepSec' | 'maxRetransPerCall' | 'log'>;

/**
 * One SUT: a fresh SIPp uas on UAS_IP, the SUT started by `start(uasPort)`, an unrecorded warm-up, then the rate
 * steps until the first unclean one. Stops the SUT and the uas whatever happens.
 */
export async function benchSutWith<N extends string>(name: N, start: (uasPort: number) => Promise<RunningSut>, o: StepOptions): Promise<SutResult<N>> {
  const result: SutResult<N> = { name, steps: [], maxCleanRate: 0 };
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
    sut = await start(uas.localPort);
    result.command = sut.command;
    o.log(`[${name}] up on ${SUT_IP}:${sut.port} -> uas ${UAS_IP}:${uas.localPort}`);
    // Warm-up (not recorded): JIT for node, caches for everyone; same for both SUTs.
    const warm = await runStep(sut, uas, Math.min(200, o.rates[0] ?? 200), 2, 1);
    o.log(`[${name}] warm-up: ${warm.successful}/${warm.calls} ok${warm.clean ? '' : ` (NOT clean: ${warm.reason})`}`);
    if (!warm.clean) {
      result.warmUp = { rate: warm.rate, calls: warm.calls, successful: warm.successful, failed: warm.failed, ...(warm.reason ? { reason: warm.reason } : {}) };
      const e = topKinds(warm.diagnostics?.uacErrorKinds) || topKinds(warm.diagnostics?.uasErrorKinds);
      if (e) o.log(`[${name}]   sipp: ${e}`);
    }
    for (const rate of o.rates) {
      o.log(`[${name}] step ${rate} calls/s x ${o.stepSec} s ...`);
      const before = sut.counters ? await sut.counters().catch(() => undefined) : undefined;
      const s = await runStep(sut, uas, rate, o.stepSec, o.maxRetransPerCall);
      const after = before && sut.counters ? await sut.counters().catch(() => undefined) : undefined;
      if (before && after) s.sutCounters = counterDelta(before, after);
      result.steps.push(s);
      o.log(
        `[${name}]   ${s.clean ? 'clean' : `NOT clean: ${s.reason}`}; ok ${s.successful}/${s.calls}, retrans ${s.retransmissions}, ` +
          `${s.achievedRate} calls/s, sut ${s.sutCpuMsPerCall} ms/call (${s.sutCpuPercent}% core), ` +
          `machine ${s.machineCpuMsPerCall} ms/call (${s.machineBusyPercent}% of ${CORES} cores busy)`,
      );
      if (!s.clean) {
        const d = s.diagnostics;
        if (d) {
          const uac = topKinds(d.uacErrorKinds);
          const uas = topKinds(d.uasErrorKinds);
          if (uac) o.log(`[${name}]   sipp uac: ${uac}`);
          if (uas) o.log(`[${name}]   sipp uas: ${uas}`);
        }
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

/** n / d at the highest rate both passed cleanly (the same offered load); undefined unless both ran steps. */
export function compare<N extends string>(n: SutResult<N> | undefined, d: SutResult<N> | undefined, maxSutCpuPerCallRatio: number | null): Comparison<N> | undefined {
  if (!n || !d || n.steps.length === 0 || d.steps.length === 0) return undefined;
  const commonRate = Math.min(n.maxCleanRate, d.maxCleanRate);
  const ns = n.steps.find((x) => x.rate === commonRate && x.clean);
  const ds = d.steps.find((x) => x.rate === commonRate && x.clean);
  const byRate: Comparison<N>['byRate'] = [];
  // One step's CPU per call swings with where GC pauses fall on a 2-core VM; the headline ratio is therefore the
  // calls-weighted CPU per call over every rate both ran clean (the same calls, the same load), not one step's.
  const sum = { nSut: 0, dSut: 0, nMachine: 0, dMachine: 0, nCalls: 0, dCalls: 0 };
  for (const a of n.steps) {
    const b = d.steps.find((x) => x.rate === a.rate);
    if (a.clean && b?.clean) {
      byRate.push({ rate: a.rate, sutCpuPerCallRatio: ratio(a.sutCpuMsPerCall, b.sutCpuMsPerCall), machineCpuPerCallRatio: ratio(a.machineCpuMsPerCall, b.machineCpuMsPerCall) });
      sum.nSut += (a.sutCpuMsPerCall ?? 0) * a.calls;
      sum.dSut += (b.sutCpuMsPerCall ?? 0) * b.calls;
      sum.nMachine += (a.machineCpuMsPerCall ?? 0) * a.calls;
      sum.dMachine += (b.machineCpuMsPerCall ?? 0) * b.calls;
      sum.nCalls += a.calls;
      sum.dCalls += b.calls;
    }
  }
  const weighted = (num: number, den: number): number | null => (sum.nCalls > 0 && sum.dCalls > 0 && den > 0 ? round((num / sum.nCalls) / (den / sum.dCalls), 3) : null);
  const sutCpuPerCallRatio = byRate.length > 0 ? weighted(sum.nSut, sum.dSut) : ratio(ns?.sutCpuMsPerCall, ds?.sutCpuMsPerCall);
  return {
    numerator: n.name,
    denominator: d.name,
    commonRate,
    sutCpuPerCallRatio,
    machineCpuPerCallRatio: byRate.length > 0 ? weighted(sum.nMachine, sum.dMachine) : ratio(ns?.machineCpuMsPerCall, ds?.machineCpuMsPerCall),
    sutCpuPerCallRatioAtCommonRate: ratio(ns?.sutCpuMsPerCall, ds?.sutCpuMsPerCall),
    maxCleanRateRatio: d.maxCleanRate > 0 ? round(n.maxCleanRate / d.maxCleanRate, 3) : null,
    target: maxSutCpuPerCallRatio === null ? null : { metric: 'sutCpuPerCallRatio', max: maxSutCpuPerCallRatio },
    met: maxSutCpuPerCallRatio === null || sutCpuPerCallRatio === null ? null : sutCpuPerCallRatio <= maxSutCpuPerCallRatio,
    byRate,
  };
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
    // Full: 4 SUTs x at most 5 steps of ~11 s (8 s of load + drain + pauses) + the failing step: ~5-6 min.
    rates: quick ? [200, 500, 1000] : [500, 1000, 1500, 2000, 3000],
    stepSec: quick ? 3 : 8,
    maxRetransPerCall: 0.01,
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
    const step = s.steps.find((x) => x.rate === commonRate && x.clean);
    if (step) s.atCommonRate = { rate: step.rate, machineCpuMsPerCall: step.machineCpuMsPerCall, sutCpuMsPerCall: step.sutCpuMsPerCall };
  }
  return { commonRate, excludes };
}

export async function runProxyBench(o: ProxyBenchOptions & { quick?: boolean } = defaultOptions()): Promise<ProxyBenchResult> {
  const cpus = os.cpus();
  const result: ProxyBenchResult = {
    bench: 'proxy',
    startedAt: new Date().toISOString(),
    host: { cpus: cpus.length, model: cpus[0]?.model ?? 'unknown', loadavgAtStart: os.loadavg().map((x) => round(x, 2)), kernel: os.release(), node: process.version },
    options: { rates: o.rates, stepSec: o.stepSec, maxRetransPerCall: o.maxRetransPerCall, quick: o.quick ?? false, suts: o.suts },
    suts: [],
    commonRate: 0,
    comparisons: {},
  };
  o.log(`[proxy] SUTs ${o.suts.join(', ')}; rates ${o.rates.join(', ')} calls/s x ${o.stepSec} s; load average at start ${result.host.loadavgAtStart.join(' ')}`);
  try {
    for (const name of o.suts) {
      result.suts.push(await benchSut(name, o));
      await sleep(1000);
    }
  } finally {
    await killAll(2000);
  }
  const common = setCommonRate(result.suts);
  result.commonRate = common.commonRate;
  if (common.excludes.length > 0) result.commonRateExcludes = common.excludes;
  const byName = (n: SutName): SutResult | undefined => result.suts.find((x) => x.name === n);
  for (const c of COMPARISONS) {
    const cmp = compare(byName(c.numerator), byName(c.denominator), c.maxSutCpuPerCallRatio);
    if (cmp) result.comparisons[c.name] = cmp;
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
