/**
 * Child processes for tests and benches: SIPp, Kamailio, sipsak, a sipfleet node.
 *
 * Every process started here is registered until it exits, so a test can `after(killAll)` and a crash of the
 * test process does not leave peers bound to ports (they are SIGKILLed on 'exit' and on SIGINT/SIGTERM/SIGHUP).
 * Kill is always by pid (or by the process group we created with `detached`), never by name.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface SpawnProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Start in a new session/process group (setsid) so kill() reaches forked children too, e.g. Kamailio. */
  detached?: boolean;
  /** Label used in error messages; defaults to the command. */
  name?: string;
  /** Bytes of stdout and of stderr kept (the tail). Default 64 KB each. */
  maxBuffer?: number;
  /** Echo output to this process's stderr as it arrives (debugging). */
  echo?: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProcessHandle {
  readonly name: string;
  readonly pid: number;
  /** Process group id when started detached (equals pid), else undefined. */
  readonly pgid: number | undefined;
  /** The last `maxBuffer` bytes written to stdout / stderr so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** True until the process has exited. */
  readonly running: boolean;
  /** Resolves (never rejects) when the process has exited. */
  readonly exited: Promise<ExitInfo>;
  /**
   * Resolves with the match once `re` matches the collected stdout or stderr (`stream` narrows it);
   * rejects on timeout or if the process exits first. Output already received counts.
   */
  waitForOutput(re: RegExp, timeoutMs?: number, stream?: 'stdout' | 'stderr' | 'both'): Promise<RegExpMatchArray>;
  /** Sends `signal` to the pid (to the whole group if detached). No-op once exited. */
  kill(signal?: NodeJS.Signals | number): void;
  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<ExitInfo>;
}

const DEFAULT_MAX_BUFFER = 64 * 1024;

const registry = new Set<ProcessHandle>();
let hooksInstalled = false;

/** SIGKILL everything still registered, synchronously (usable from an 'exit' handler). */
function killAllNow(): void {
  for (const h of registry) h.kill('SIGKILL');
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      // Keep the default behaviour (terminate) unless someone else also handles this signal.
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Keeps the tail of a stream in a bounded string. */
class TailBuffer {
  private text = '';
  constructor(private readonly max: number) {}
  push(chunk: string): void {
    this.text += chunk;
    // Trim lazily (at 2x) so a chatty process does not cause a copy per chunk.
    if (this.text.length > 2 * this.max) this.text = this.text.slice(-this.max);
  }
  get value(): string {
    return this.text.length > this.max ? this.text.slice(-this.max) : this.text;
  }
}

function signalPid(pid: number, signal: NodeJS.Signals | number): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    // ESRCH: already gone. Anything else (EPERM) is a real problem worth surfacing.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export function spawnProcess(cmd: string, args: readonly string[], opts: SpawnProcessOptions = {}): ProcessHandle {
  installHooks();
  const name = opts.name ?? cmd;
  const max = opts.maxBuffer ?? DEFAULT_MAX_BUFFER;
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: opts.detached ?? false,
    // Peers must never wait on a terminal: stdin is /dev/null.
    stdio: ['ignore', 'pipe', 'pipe'],
  };
  const child: ChildProcess = spawn(cmd, [...args], spawnOpts);

  const out = new TailBuffer(max);
  const err = new TailBuffer(max);
  let running = true;
  let exitInfo: ExitInfo | undefined;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };

  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    out.push(d);
    if (opts.echo) process.stderr.write(`[${name}] ${d}`);
    notify();
  });
  child.stderr?.on('data', (d: string) => {
    err.push(d);
    if (opts.echo) process.stderr.write(`[${name}!] ${d}`);
    notify();
  });

  let handle: ProcessHandle;
  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' (not 'exit') so stdout/stderr are fully collected when this resolves.
    child.once('close', (code, signal) => {
      running = false;
      exitInfo = { code, signal };
      registry.delete(handle);
      notify();
      resolve(exitInfo);
    });
    child.once('error', (e) => {
      // Spawn failure (ENOENT...): there will be no 'close' with a pid.
      err.push(`spawn error: ${e.message}\n`);
      if (child.pid === undefined) {
        running = false;
        exitInfo = { code: 127, signal: null };
        registry.delete(handle);
        notify();
        resolve(exitInfo);
      }
    });
  });

  const pid = child.pid ?? -1;
  const pgid = opts.detached && pid > 0 ? pid : undefined;

  const kill = (signal: NodeJS.Signals | number = 'SIGTERM'): void => {
    if (!running || pid <= 0) return;
    // Negative pid = the process group we created with setsid (detached); never anything else.
    signalPid(pgid !== undefined ? -pgid : pid, signal);
  };

  handle = {
    name,
    pid,
    pgid,
    get stdout() {
      return out.value;
    },
    get stderr() {
      return err.value;
    },
    get running() {
      return running;
    },
    exited,
    waitForOutput(re, timeoutMs = 5000, stream = 'both') {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = (): boolean => {
          const text = stream === 'stdout' ? out.value : stream === 'stderr' ? err.value : `${out.value}\n${err.value}`;
          const m = text.match(re);
          if (m) {
            done();
            resolve(m);
            return true;
          }
          if (!running) {
            done();
            reject(new Error(`${name} exited (${JSON.stringify(exitInfo)}) before output matched ${re}\n${tail(err.value || out.value)}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no output matching ${re} after ${timeoutMs} ms\n${tail(err.value || out.value)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(onData);
        };
        const onData = (): void => {
          check();
        };
        if (!check()) listeners.add(onData);
      });
    },
    kill,
    async stop(graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM') {
      if (!running) return exited;
      kill(signal);
      const timer = setTimeout(() => kill('SIGKILL'), graceMs);
      const info = await exited;
      clearTimeout(timer);
      // A detached group may have children that ignored SIGTERM after the leader died.
      if (pgid !== undefined) signalPid(-pgid, 'SIGKILL');
      return info;
    },
  };
  if (pid > 0) registry.add(handle);
  return handle;
}

function tail(s: string, n = 2000): string {
  return s.length > n ? `...${s.slice(-n)}` : s;
}

/** Stops every process started through spawnProcess that is still running. Use in `after()`. */
export async function killAll(graceMs = 2000): Promise<void> {
  await Promise.all([...registry].map((h) => h.stop(graceMs)));
}

/** Processes started through spawnProcess that are still running (for assertions and debugging). */
export function runningProcesses(): readonly ProcessHandle[] {
  return [...registry];
}
