/**
 * Balancer benchmark (not a test): highest clean call rate and CPU per call of the sipfleet balancer and of
 * Kamailio's dispatcher in the middle of the same SIPp load, in the same run:
 *   kamailio-dispatcher  Kamailio 5.6, dispatcher module (algorithm 0: hash over Call-ID), record_route(),
 *                        tm-stateful t_relay(), 2 workers; in-dialog requests loose-routed (the reference)
 *   balancer             `sipfleet balancer` (dist/, one node process), stateless; its one "node" is the SIPp uas,
 *                        announced by a HeartbeatSender running in this process (id "sipp-uas")
 *
 *   node --import tsx bench/balancer-bench.ts     # progress on stderr, JSON result on stdout
 *   BENCH_QUICK=1 node --import tsx bench/balancer-bench.ts
 *   BENCH_BALANCER_SUTS=balancer node --import tsx bench/balancer-bench.ts   # a subset, in that order
 *   BENCH_BALANCER_RATES=1000,3000 BENCH_BALANCER_STEP_SEC=4 ...           # other steps (development)
 *   BENCH_REPEATS=5 ...                                                     # rounds per rate (default 3; quick: 1)
 *
 * Topology (all loopback, UDP), as in bench/proxy-bench.ts:
 *   SIPp uac 127.0.0.1  ->  SUT 127.0.0.2  ->  SIPp uas 127.0.0.3 (the single destination / node)
 * The balancer listens on 127.0.0.2 with three ports: external (--listen, the uac sends there), internal
 * (--internal, it sends to the node from there) and control (--control, heartbeats). It adds two Record-Route
 * entries (external + internal side); Kamailio one. ACK and BYE come back by Route through both SUTs.
 *
 * Method: exactly bench/proxy-bench.ts's (its runStep / benchSutsInterleaved / compare are used): per step, SIPp
 * places rate x stepSec calls; a step is clean with 0 failed calls (uac and uas), all completed, <= 1
 * retransmission per 100 calls and the generator at >= 90% of the rate. Both SUTs stay up for the whole run and
 * are interleaved: for each rate, REPEATS rounds (BENCH_REPEATS), each SUT one step per round, the order
 * alternating round by round; a SUT stops stepping at its first unclean step (the other goes on). Before each
 * measured step a SUT settles 34 s after its previous one and gets a 3 s unrecorded pre-load at the step's rate
 * (why, and what is recorded of both: bench/proxy-bench.ts). CPU per call:
 * SUT = scheduler run time of every thread of the SUT's process group (/proc/.../schedstat); machine = cores x
 * wall - idle (/proc/stat). Here it is reported in µs per call for every step (`cpuUsPerCall`).
 * The target ratio balancer / kamailio-dispatcher is, unchanged, the calls-weighted SUT CPU per call over every
 * step at every rate both ran clean (target <= 1.5); the per-round ratios, their median and min / max are
 * reported beside it (`comparisons`, `targets.cpuPerCallRatio.median/lowest/highest`). The second target is one
 * balancer process forwarding >= 4,000 calls/s clean (in every round at that rate).
 *
 * Readiness of the balancer: its UDP sockets are bound and it has logged "node sipp-uas joined" (it forwards from
 * that moment on); then the same unrecorded warm-up step as every SUT. The balancer's forwarder/membership
 * counters (admin /status, read between steps) are recorded per step under `sutCounters` (e.g. noNode, deaths).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HeartbeatSender } from '../src/server/cluster/heartbeat.ts';
import { startKamailio } from '../test/helpers/kamailio.ts';
import { freePort, waitForListening } from '../test/helpers/ports.ts';
import { killAll, spawnProcess } from '../test/helpers/proc.ts';
import {
  benchSutsInterleaved,
  compare,
  parseRepeats,
  PRELOAD_SEC,
  round,
  setCommonRate,
  SETTLE_SEC,
  SUT_IP,
  UAS_IP,
  type Comparison,
  type RunningSut,
  type StepOptions,
  type SutResult,
} from './proxy-bench.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const BALANCER_SUT_NAMES = ['kamailio-dispatcher', 'balancer'] as const;
export type BalancerSutName = (typeof BALANCER_SUT_NAMES)[number];

/** Targets: SUT CPU per call balancer / kamailio-dispatcher, and the rate one balancer process forwards clean. */
export const MAX_CPU_PER_CALL_RATIO = 1.5;
export const MIN_BALANCER_CLEAN_RATE = 4000;
/** The node id the SIPp uas is announced under. */
const NODE_ID = 'sipp-uas';

export interface BalancerBenchOptions extends StepOptions {
  suts: BalancerSutName[];
  quick: boolean;
}

export interface CpuPerCallAtRate {
  rate: number;
  round?: number;
  clean: boolean;
  calls: number;
  sutCpuUsPerCall: number;
  machineCpuUsPerCall: number;
  sutCpuPercent: number;
  machineBusyPercent: number;
}

export interface BalancerSutResult extends SutResult<BalancerSutName> {
  /** Every step's CPU per call in µs (the same figures as steps[].*CpuMsPerCall). */
  cpuUsPerCall: CpuPerCallAtRate[];
}

export interface BalancerBenchResult {
  bench: 'balancer';
  startedAt: string;
  host: { cpus: number; model: string; loadavgAtStart: number[]; kernel: string; node: string };
  options: {
    rates: number[];
    stepSec: number;
    maxRetransPerCall: number;
    quick: boolean;
    suts: BalancerSutName[];
    repeats: number;
    schedule: 'interleaved';
    preloadSec: number;
    settleSec: number;
  };
  topology: string;
  suts: BalancerSutResult[];
  /** Highest rate every SUT of the run passed cleanly (0 if none). */
  commonRate: number;
  commonRateExcludes?: BalancerSutName[];
  comparisons: { balancerVsKamailioDispatcher?: Comparison<BalancerSutName> };
  targets: {
    /**
     * balancer / kamailio-dispatcher, calls-weighted SUT CPU per call over the rates both ran clean (value, judged);
     * median / lowest / highest of the per-round ratios beside it (not judged).
     */
    cpuPerCallRatio: { max: number; value: number | null; met: boolean | null; median?: number | null; lowest?: number | null; highest?: number | null };
    /** One balancer process, highest clean rate (met: null when the balancer did not run). */
    balancerCleanRate: { min: number; value: number | null; met: boolean | null };
  };
}

// --- SUTs -----------------------------------------------------------------------------------------------------

/**
 * Kamailio's shared memory, MB. tm keeps every transaction ~5 s after its final reply (wait timer): at 4,000 calls/s
 * that is ~40,000 INVITE+BYE transactions alive, which overflowed the helper's default 256 MB (build_cell: could not
 * allocate shared memory, then "500 I'm terribly sorry" to the caller) with the SUT at 15% of a core. The reference
 * must be limited by its CPU, not by its pool: 1 GB holds the highest steps.
 */
const KAMAILIO_SHM_MB = 1024;

async function startDispatcherSut(uasPort: number): Promise<RunningSut> {
  const kam = await startKamailio({
    host: SUT_IP, transports: ['udp'], dispatch: [`${UAS_IP}:${uasPort}`], nextHopTransport: 'udp', children: 2, shmMB: KAMAILIO_SHM_MB,
  });
  return {
    port: kam.port,
    pgid: kam.pgid,
    command: `kamailio -DD -E -x tlsf -m ${KAMAILIO_SHM_MB} -f ${kam.cfgPath} (children=2, dispatcher alg 0 over 1 destination, tm stateful, record_route, t_relay)`,
    alive: () => kam.process.running,
    diagnostics: () => kam.process.stderr.slice(-2000),
    stop: async () => {
      await kam.stop();
    },
  };
}

/** The cluster secret: the environment's when it is valid, else a random one (the balancer gets it by env). */
function benchSecret(): string {
  const s = process.env.SIPFLEET_CLUSTER_SECRET;
  return s !== undefined && s.length >= 8 ? s : randomBytes(16).toString('hex');
}

async function startBalancerSut(uasPort: number): Promise<RunningSut> {
  const bin = path.join(root, 'bin/sipfleet.js');
  const entry = path.join(root, 'dist/src/cli/main.js');
  if (!existsSync(entry)) throw new Error(`${path.relative(root, entry)} not found: run \`npm run build\` first (npm run bench does)`);
  const port = await freePort(SUT_IP);
  const internal = await freePort(SUT_IP);
  const control = await freePort(SUT_IP, 'udp');
  const admin = await freePort(SUT_IP, 'tcp');
  const secret = benchSecret();
  const args = [
    bin, 'balancer', '--listen', `${SUT_IP}:${port}`, '--internal', `${SUT_IP}:${internal}`, '--control', `${SUT_IP}:${control}`,
    '--transport', 'udp', '--admin', `${SUT_IP}:${admin}`,
  ];
  const command = `SIPFLEET_CLUSTER_SECRET=... node ${[path.relative(root, bin), ...args.slice(1)].join(' ')}`;
  // Detached: own process group (CPU of everything in it is counted; stop() reaches all of it).
  const proc = spawnProcess(process.execPath, args, {
    cwd: root,
    env: { ...process.env, SIPFLEET_CLUSTER_SECRET: secret },
    detached: true,
    name: 'sipfleet balancer',
  });
  const heartbeat = new HeartbeatSender({
    id: NODE_ID,
    version: 'bench',
    addresses: [{ protocol: 'UDP', host: UAS_IP, port: uasPort }],
    secret,
    targets: [{ host: SUT_IP, port: control }],
    intervalMs: 50,
  });
  const fail = async (err: unknown): Promise<never> => {
    heartbeat.stop();
    await proc.stop(1000);
    throw new Error(`${(err as Error).message}\ncommand: ${command}\nstderr: ${proc.stderr.slice(-2000)}\nstdout: ${proc.stdout.slice(-1000)}`);
  };
  try {
    await waitForListening(SUT_IP, port, 'udp', 15_000, () => proc.running);
    await waitForListening(SUT_IP, control, 'udp', 5_000, () => proc.running);
    await heartbeat.start();
    // From this log line on the node is in the rotation: the balancer forwards to it.
    await proc.waitForOutput(new RegExp(`node ${NODE_ID} joined`), 10_000, 'stdout');
  } catch (err) {
    return fail(err);
  }
  const adminUrl = `http://${SUT_IP}:${admin}`;
  return {
    port,
    pgid: proc.pid,
    command,
    alive: () => proc.running,
    diagnostics: () => `stdout: ${proc.stdout.slice(-1500)}\nstderr: ${proc.stderr.slice(-1000)}\nheartbeats sent: ${heartbeat.sent}`,
    counters: async () => {
      const st = (await (await fetch(`${adminUrl}/status`, { signal: AbortSignal.timeout(2000) })).json()) as {
        counters?: Record<string, unknown>;
        nodes?: Array<{ id: string; state: string }>;
      };
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(st.counters ?? {})) if (typeof v === 'number') out[k] = v;
      out.nodeUp = st.nodes?.some((n) => n.id === NODE_ID && n.state === 'up') ? 1 : 0;
      return out;
    },
    stop: async () => {
      heartbeat.stop();
      await proc.stop(3000);
    },
  };
}

const STARTERS: Record<BalancerSutName, (uasPort: number) => Promise<RunningSut>> = {
  'kamailio-dispatcher': startDispatcherSut,
  balancer: startBalancerSut,
};

// --- options --------------------------------------------------------------------------------------------------

/** BENCH_BALANCER_SUTS=a,b: the SUTs to run, in that order ("kamailio" and "dispatcher" = kamailio-dispatcher). */
export function parseBalancerSuts(value: string | undefined): BalancerSutName[] {
  if (value === undefined || value.trim() === '') return [...BALANCER_SUT_NAMES];
  const out: BalancerSutName[] = [];
  for (const raw of value.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const name = raw === 'kamailio' || raw === 'dispatcher' ? 'kamailio-dispatcher' : raw;
    if (!(BALANCER_SUT_NAMES as readonly string[]).includes(name)) {
      throw new Error(`BENCH_BALANCER_SUTS: unknown SUT "${raw}" (known: ${BALANCER_SUT_NAMES.join(', ')})`);
    }
    if (!out.includes(name as BalancerSutName)) out.push(name as BalancerSutName);
  }
  return out;
}

function parseRates(value: string | undefined): number[] | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const rates = value.split(',').map((x) => Number(x.trim()));
  if (rates.some((r) => !Number.isInteger(r) || r <= 0)) throw new Error(`BENCH_BALANCER_RATES: expected positive integers, got "${value}"`);
  return [...new Set(rates)].sort((a, b) => a - b);
}

export function defaultBalancerOptions(env: NodeJS.ProcessEnv = process.env): BalancerBenchOptions {
  const quick = env.BENCH_QUICK === '1';
  const stepSec = env.BENCH_BALANCER_STEP_SEC ? Number(env.BENCH_BALANCER_STEP_SEC) : quick ? 3 : 8;
  if (!Number.isFinite(stepSec) || stepSec <= 0) throw new Error(`BENCH_BALANCER_STEP_SEC: expected a positive number, got "${env.BENCH_BALANCER_STEP_SEC}"`);
  return {
    quick,
    // Full: 5 rates x 3 rounds of ~55-60 s (settle-bound): ~15 min. Quick still tries the 4,000 target.
    rates: parseRates(env.BENCH_BALANCER_RATES) ?? (quick ? [1000, 2000, 4000] : [1000, 2000, 3000, 4000, 5000]),
    stepSec,
    maxRetransPerCall: 0.01,
    repeats: parseRepeats(env),
    preloadSec: PRELOAD_SEC,
    settleSec: SETTLE_SEC,
    suts: parseBalancerSuts(env.BENCH_BALANCER_SUTS),
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

// --- run ------------------------------------------------------------------------------------------------------

export async function runBalancerBench(o: BalancerBenchOptions = defaultBalancerOptions()): Promise<BalancerBenchResult> {
  const cpus = os.cpus();
  const result: BalancerBenchResult = {
    bench: 'balancer',
    startedAt: new Date().toISOString(),
    host: { cpus: cpus.length, model: cpus[0]?.model ?? 'unknown', loadavgAtStart: os.loadavg().map((x) => round(x, 2)), kernel: os.release(), node: process.version },
    options: {
      rates: o.rates,
      stepSec: o.stepSec,
      maxRetransPerCall: o.maxRetransPerCall,
      quick: o.quick,
      suts: o.suts,
      repeats: o.repeats,
      schedule: 'interleaved',
      preloadSec: o.preloadSec,
      settleSec: o.settleSec,
    },
    topology: `SIPp uac 127.0.0.1 -> SUT ${SUT_IP} -> SIPp uas ${UAS_IP} (one destination / node), UDP, record-routed calls`,
    suts: [],
    commonRate: 0,
    comparisons: {},
    targets: {
      cpuPerCallRatio: { max: MAX_CPU_PER_CALL_RATIO, value: null, met: null },
      balancerCleanRate: { min: MIN_BALANCER_CLEAN_RATE, value: null, met: null },
    },
  };
  o.log(
    `[balancer-bench] SUTs ${o.suts.join(', ')}; rates ${o.rates.join(', ')} calls/s x ${o.stepSec} s, ${o.repeats} round(s) per rate, interleaved; ` +
      `load average at start ${result.host.loadavgAtStart.join(' ')}`,
  );
  try {
    const runs = await benchSutsInterleaved(o.suts.map((name) => ({ name, start: STARTERS[name] })), o);
    for (const r of runs) {
      result.suts.push({
        ...r,
        cpuUsPerCall: r.steps.map((s) => ({
          rate: s.rate,
          ...(s.round !== undefined ? { round: s.round } : {}),
          clean: s.clean,
          calls: s.calls,
          sutCpuUsPerCall: round(s.sutCpuMsPerCall * 1000, 1),
          machineCpuUsPerCall: round(s.machineCpuMsPerCall * 1000, 1),
          sutCpuPercent: s.sutCpuPercent,
          machineBusyPercent: s.machineBusyPercent,
        })),
      });
    }
  } finally {
    await killAll(2000);
  }
  const common = setCommonRate(result.suts);
  result.commonRate = common.commonRate;
  if (common.excludes.length > 0) result.commonRateExcludes = common.excludes;
  const byName = (n: BalancerSutName): BalancerSutResult | undefined => result.suts.find((x) => x.name === n);
  // The target keeps its metric (calls-weighted over every clean step); the median and spread are reported with it.
  const cmp = compare(byName('balancer'), byName('kamailio-dispatcher'), MAX_CPU_PER_CALL_RATIO, 'sutCpuPerCallRatio');
  if (cmp) {
    result.comparisons.balancerVsKamailioDispatcher = cmp;
    result.targets.cpuPerCallRatio = {
      max: MAX_CPU_PER_CALL_RATIO,
      value: cmp.sutCpuPerCallRatio,
      met: cmp.met,
      median: cmp.sutCpuPerCallRatioMedian,
      lowest: cmp.sutCpuPerCallRatioMin,
      highest: cmp.sutCpuPerCallRatioMax,
    };
  }
  const bal = byName('balancer');
  if (bal) {
    result.targets.balancerCleanRate = { min: MIN_BALANCER_CLEAN_RATE, value: bal.maxCleanRate, met: bal.maxCleanRate >= MIN_BALANCER_CLEAN_RATE };
  }
  const t = result.targets;
  o.log(
    `[balancer-bench] balancer/kamailio-dispatcher SUT CPU per call x${t.cpuPerCallRatio.value ?? '-'} (per-round median x${t.cpuPerCallRatio.median ?? '-'}, ` +
      `${t.cpuPerCallRatio.lowest ?? '-'}..${t.cpuPerCallRatio.highest ?? '-'}; target <= ${t.cpuPerCallRatio.max}: ` +
      `${t.cpuPerCallRatio.met === null ? '-' : t.cpuPerCallRatio.met ? 'met' : 'NOT met'}); balancer max clean ${t.balancerCleanRate.value ?? '-'} calls/s ` +
      `(target >= ${t.balancerCleanRate.min}: ${t.balancerCleanRate.met === null ? '-' : t.balancerCleanRate.met ? 'met' : 'NOT met'})`,
  );
  return result;
}

// Run directly: progress on stderr, one JSON document on stdout (read by bench/run.mjs).
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  runBalancerBench().then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`balancer bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
