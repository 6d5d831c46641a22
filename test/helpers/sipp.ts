/**
 * SIPp (Debian package sip-tester, binary `sipp`, v3.6) as a load generator / callee for interop tests and benches.
 *
 * SIPp is always run without a terminal (-nostdin, stdin /dev/null), never with -bg, and always with a global
 * -timeout so it cannot run forever; a watchdog kills it if it overstays even that. Results come from the
 * statistics CSV (-trace_stat, written every second with -fd 1 and once more at exit), so they are available
 * even if SIPp is stopped early.
 *
 * TCP (t1): SIPp carries every call over one connection. A t1 UAS quits on its own when that connection is
 * closed by the caller (the call still open then counts as FailedTcpClosed): judge a run by the caller's counts.
 *
 * Exit codes (man sipp): 0 all calls successful, 1 at least one call failed, 97 exit on internal command
 * (e.g. SIGUSR1), 99 normal exit without calls processed, 255 (-1) fatal error, 254 (-2) fatal bind error.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForListening } from './ports.ts';
import { spawnProcess, type ExitInfo, type ProcessHandle } from './proc.ts';
import { makeTempDir } from './tmp.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Caller of a record-routed call: learns the route set from the 200 OK, sends ACK/BYE via the proxy. */
export const SCENARIO_UAC_RR = path.join(here, '../scenarios/uac-rr.xml');
/** Callee matching SCENARIO_UAC_RR: echoes Record-Route in 180/200. */
export const SCENARIO_UAS_RR = path.join(here, '../scenarios/uas-rr.xml');

/** 'udp' = u1 (one UDP socket), 'tcp' = t1 (one TCP connection carrying every call); raw SIPp modes allowed. */
export type SippTransport = 'udp' | 'tcp' | 'u1' | 'un' | 't1' | 'tn';

export const SIPP_EXIT = {
  ALL_OK: 0,
  SOME_FAILED: 1,
  INTERNAL_COMMAND: 97,
  NO_CALLS: 99,
  FATAL: 255,
  BIND_FAILED: 254,
} as const;

export interface SippOptions {
  /** Embedded scenario. Exactly one of sn / sf; default sn 'uac'. */
  sn?: 'uac' | 'uas';
  /** Scenario XML file (e.g. SCENARIO_UAC_RR). */
  sf?: string;
  /** "host:port" to send calls to (required for a caller, ignored by a pure UAS). */
  remote?: string;
  /** -i: local IP for Via/Contact/From; also bound (see bindLocal). Default 127.0.0.1. */
  localIp?: string;
  /** -p: local port. A UAS needs one; a UAC gets a random free one by default. */
  localPort?: number;
  /** -bind_local: bind to localIp only, so peers on 127.0.0.x see distinct source addresses. Default true. */
  bindLocal?: boolean;
  transport?: SippTransport;
  /** -r calls per -rp period (default period 1 s). */
  rate?: number;
  ratePeriodMs?: number;
  /** -m: stop after this many calls. */
  maxCalls?: number;
  /** -l: maximum simultaneous calls. */
  callLimit?: number;
  /** -timeout in seconds: SIPp quits after this, whatever happens. Always set; default 60. */
  timeoutSec?: number;
  /** -recv_timeout in ms: a call waiting longer than this for a message fails. */
  recvTimeoutMs?: number;
  /** -s: user part of the Request-URI (default "service"). */
  service?: string;
  /**
   * -buff_size: socket send/receive buffer in bytes. SIPp's default (64 KB) overflows under bursts at a
   * few thousand calls/s (drops show in /proc/net/udp), which would measure SIPp instead of the peer.
   */
  bufferSize?: number;
  /** -max_recv_loops / -max_sched_loops: raise for high rates. */
  maxLoops?: number;
  /**
   * -default_behaviors all,-abortunexp: an unexpected message no longer aborts the call (it is ignored).
   * Use through a multi-worker UDP proxy, which may legitimately reorder a 180 behind the 200 or an ACK behind
   * the BYE. Real failures still show up: a call whose expected message never comes fails on -recv_timeout.
   */
  ignoreUnexpected?: boolean;
  /** Extra raw arguments appended last. */
  extraArgs?: readonly string[];
  /** Directory for stats/screen/error files; default a fresh temp dir. */
  workDir?: string;
  /** -trace_msg: log every message (slow; debugging only). */
  traceMessages?: boolean;
  /** Echo SIPp's output to stderr. */
  echo?: boolean;
}

export interface SippMessageRow {
  /** "INVITE", "100", "ACK"... */
  message: string;
  direction: 'send' | 'recv';
  count: number;
  retrans: number;
  timeout: number;
  unexpected: number;
}

export interface SippResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  successful: number;
  failed: number;
  /** Retransmissions SIPp sent (its Retransmissions(C) counter). */
  retransmissions: number;
  /** Outgoing (UAC) or incoming (UAS) calls created. */
  callsCreated: number;
  /** Calls still open when SIPp stopped (e.g. UAS calls in timewait at a forced stop). */
  currentCalls: number;
  /** Non-zero Failed* (cumulative) counters from the stats CSV, e.g. { FailedMaxUDPRetrans: 3 }. */
  failures: Record<string, number>;
  /** Every cumulative counter of the last stats line, by CSV column name (e.g. "OutOfCallMsgs(C)"). */
  counters: Record<string, string>;
  /** Per-message table of the final scenario screen, when SIPp wrote one. */
  messages: SippMessageRow[];
  stdout: string;
  stderr: string;
  workDir: string;
  statsCsvPath: string;
  screenPath: string;
  errorLogPath: string;
}

export interface SippHandle {
  readonly pid: number;
  readonly process: ProcessHandle;
  readonly workDir: string;
  readonly localIp: string;
  readonly localPort: number | undefined;
  /** Resolves once SIPp has exited and its files are parsed. */
  readonly done: Promise<SippResult>;
  /**
   * Stops SIPp. graceful (default): SIGUSR1 = no new calls, finish open ones (a UAS in timewait takes ~4 s),
   * SIGTERM if still running after graceMs, then SIGKILL. graceful=false: SIGTERM at once (calls still open
   * are then reported in currentCalls, not successful).
   */
  stop(opts?: { graceful?: boolean; graceMs?: number }): Promise<SippResult>;
}

function transportFlag(t: SippTransport | undefined): string {
  switch (t ?? 'udp') {
    case 'udp':
      return 'u1';
    case 'tcp':
      return 't1';
    default:
      return t as string;
  }
}

function isTcp(t: SippTransport | undefined): boolean {
  return t === 'tcp' || t === 't1' || t === 'tn';
}

/** Builds the SIPp argument vector (exported for inspection in tests). */
export function sippArgs(o: SippOptions, files: { stats: string; screen: string; errors: string }): string[] {
  if (o.sn && o.sf) throw new Error('sipp: give either sn or sf, not both');
  const a: string[] = [];
  if (o.remote) a.push(o.remote);
  if (o.sf) a.push('-sf', o.sf);
  else a.push('-sn', o.sn ?? 'uac');
  const localIp = o.localIp ?? '127.0.0.1';
  a.push('-i', localIp);
  if (o.bindLocal ?? true) a.push('-bind_local');
  if (o.localPort !== undefined) a.push('-p', String(o.localPort));
  a.push('-t', transportFlag(o.transport));
  if (o.rate !== undefined) a.push('-r', String(o.rate));
  if (o.ratePeriodMs !== undefined) a.push('-rp', String(o.ratePeriodMs));
  if (o.maxCalls !== undefined) a.push('-m', String(o.maxCalls));
  if (o.callLimit !== undefined) a.push('-l', String(o.callLimit));
  a.push('-timeout', `${o.timeoutSec ?? 60}s`);
  if (o.recvTimeoutMs !== undefined) a.push('-recv_timeout', String(o.recvTimeoutMs));
  if (o.service !== undefined) a.push('-s', o.service);
  if (o.ignoreUnexpected) a.push('-default_behaviors', 'all,-abortunexp');
  if (o.bufferSize !== undefined) a.push('-buff_size', String(o.bufferSize));
  if (o.maxLoops !== undefined) a.push('-max_recv_loops', String(o.maxLoops), '-max_sched_loops', String(o.maxLoops));
  a.push(
    '-nostdin',
    // Statistics CSV every second and at exit; final screens to a file (the screen on stdout is for humans).
    '-trace_stat', '-stf', files.stats, '-fd', '1',
    '-trace_screen', '-screen_file', files.screen,
    '-trace_err', '-error_file', files.errors, '-max_log_size', String(4 * 1024 * 1024),
  );
  if (o.traceMessages) a.push('-trace_msg', '-message_file', path.join(path.dirname(files.stats), 'messages.log'));
  if (o.extraArgs) a.push(...o.extraArgs);
  return a;
}

/** The last data line of SIPp's stats CSV as column -> value. Empty if the file is missing or has no data. */
export function readSippStats(csvPath: string): Record<string, string> {
  if (!existsSync(csvPath)) return {};
  const lines = readFileSync(csvPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) return {};
  const head = (lines[0] ?? '').split(';');
  const last = (lines[lines.length - 1] ?? '').split(';');
  const out: Record<string, string> = {};
  head.forEach((h, i) => {
    if (h) out[h] = last[i] ?? '';
  });
  return out;
}

/** The per-message table of the first scenario screen in a -trace_screen file. */
export function parseSippScreen(text: string): SippMessageRow[] {
  const rows: SippMessageRow[] = [];
  const start = text.indexOf('Scenario Screen');
  if (start < 0) return rows;
  const end = text.indexOf('Statistics Screen', start);
  const block = text.slice(start, end < 0 ? undefined : end);
  // "      INVITE ---------->         200       0         0"  /  "         200 <----------  E-RTD1 200  0  0  0"
  const re = /^\s*(\S+)\s+(-+>|<-+)\s+(?:[A-Z]-RTD\d+\s+)?(\d+)\s+(\d+)(?:\s+(\d+))?(?:\s+(\d+))?/;
  for (const line of block.split('\n')) {
    const m = line.match(re);
    if (!m) continue;
    rows.push({
      message: m[1] ?? '',
      direction: (m[2] ?? '').endsWith('>') ? 'send' : 'recv',
      count: Number(m[3]),
      retrans: Number(m[4]),
      timeout: Number(m[5]),
      unexpected: Number(m[6] ?? 0),
    });
  }
  return rows;
}

function num(v: string | undefined): number {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

function collect(p: ProcessHandle, info: ExitInfo, files: { dir: string; stats: string; screen: string; errors: string }): SippResult {
  const c = readSippStats(files.stats);
  const failures: Record<string, number> = {};
  for (const [k, v] of Object.entries(c)) {
    const m = k.match(/^(Failed\w+)\(C\)$/);
    if (m && m[1] && m[1] !== 'FailedCall' && num(v) > 0) failures[m[1]] = num(v);
  }
  const screen = existsSync(files.screen) ? readFileSync(files.screen, 'utf8') : '';
  const counters: Record<string, string> = {};
  for (const [k, v] of Object.entries(c)) if (k.endsWith('(C)') || !k.includes('(')) counters[k] = v;
  return {
    exitCode: info.code,
    signal: info.signal,
    successful: num(c['SuccessfulCall(C)']),
    failed: num(c['FailedCall(C)']),
    retransmissions: num(c['Retransmissions(C)']),
    callsCreated: num(c['OutgoingCall(C)']) + num(c['IncomingCall(C)']),
    currentCalls: num(c['CurrentCall']),
    failures,
    counters,
    messages: parseSippScreen(screen),
    stdout: p.stdout,
    stderr: p.stderr,
    workDir: files.dir,
    statsCsvPath: files.stats,
    screenPath: files.screen,
    errorLogPath: files.errors,
  };
}

/** Starts SIPp and returns at once (see startSippUas for a callee that is known to be listening). */
export function startSipp(o: SippOptions): SippHandle {
  const dir = o.workDir ?? makeTempDir('sipp');
  const files = {
    dir,
    stats: path.join(dir, 'stats.csv'),
    screen: path.join(dir, 'screen.log'),
    errors: path.join(dir, 'errors.log'),
  };
  const args = sippArgs(o, files);
  const proc = spawnProcess('sipp', args, { cwd: dir, name: `sipp ${o.sn ?? path.basename(o.sf ?? 'uac')}`, echo: o.echo ?? false });

  // Belt and braces on top of -timeout: if SIPp overstays it by 15 s (e.g. stuck in a soft exit), force it out.
  const timeoutMs = (o.timeoutSec ?? 60) * 1000;
  const watchdog = setTimeout(() => void proc.stop(3000, 'SIGTERM'), timeoutMs + 15_000);
  watchdog.unref();

  const done = proc.exited.then((info) => {
    clearTimeout(watchdog);
    return collect(proc, info, files);
  });

  return {
    pid: proc.pid,
    process: proc,
    workDir: dir,
    localIp: o.localIp ?? '127.0.0.1',
    localPort: o.localPort,
    done,
    async stop({ graceful = true, graceMs = 6000 } = {}) {
      if (proc.running) {
        // One SIGUSR1 = soft exit: no new calls, open ones finish (a UAS call sits ~4 s in timewait), screens and
        // final stats are written. Never send a second SIGUSR1: SIPp 3.6 then spins at 100% CPU and ignores
        // -timeout. SIGTERM exits at once (final stats line only), SIGKILL is the last resort.
        if (graceful) proc.kill('SIGUSR1');
        const term = setTimeout(() => proc.kill('SIGTERM'), graceful ? graceMs : 0);
        const kill = setTimeout(() => proc.kill('SIGKILL'), (graceful ? graceMs : 0) + 3000);
        await proc.exited;
        clearTimeout(term);
        clearTimeout(kill);
      }
      return done;
    },
  };
}

/** Runs a SIPp caller to completion (all -m calls done, -timeout hit, or fatal error) and returns its counts. */
export async function runSipp(o: SippOptions): Promise<SippResult> {
  if (!o.remote && !o.sf && (o.sn ?? 'uac') === 'uac') throw new Error('runSipp: a uac needs `remote` (host:port)');
  return startSipp(o).done;
}

export interface SippUasHandle extends SippHandle {
  readonly localPort: number;
  readonly transport: SippTransport;
}

/**
 * Starts a SIPp callee (default: embedded "uas"; pass sf: SCENARIO_UAS_RR for record-routed calls) and resolves
 * once its socket is bound, checked through /proc/net so no probe request pollutes its call counts.
 * Default timeoutSec 300: stop() it when done.
 */
export async function startSippUas(o: Omit<SippOptions, 'remote'> = {}): Promise<SippUasHandle> {
  const localIp = o.localIp ?? '127.0.0.1';
  const localPort = o.localPort ?? (await freePort(localIp));
  const opts: SippOptions = { ...o, localIp, localPort, timeoutSec: o.timeoutSec ?? 300 };
  if (!opts.sf && !opts.sn) opts.sn = 'uas';
  const h = startSipp(opts);
  try {
    await waitForListening(localIp, localPort, isTcp(o.transport) ? 'tcp' : 'udp', 5000, () => h.process.running);
  } catch (err) {
    await h.stop({ graceful: false });
    throw new Error(`${(err as Error).message}\nsipp stderr: ${h.process.stderr}\nsipp stdout: ${h.process.stdout.slice(-2000)}`);
  }
  return { ...h, localPort, transport: o.transport ?? 'udp' };
}
