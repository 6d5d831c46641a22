import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import v8 from 'node:v8';

/**
 * Node overload control: a node past its limits answers new calls 503 with Retry-After before its app sees them,
 * and tells balancers (heartbeat `overloaded`) so that they send new calls elsewhere. In-dialog requests, ACK,
 * CANCEL, BYE and responses are always served: finishing calls is what frees a node.
 */

export type OverloadReason = 'lag' | 'calls' | 'transactions' | 'heap';

export interface OverloadOptions {
  /** Event-loop delay (p99 over a window, ms) past which the node is overloaded; 0: not watched. */
  lagMs?: number;
  /** Calls being set up (initial INVITEs without a final response); 0: no limit. */
  maxCallsSettingUp?: number;
  /** Server transactions alive (all methods, including completed ones waiting out their timers); 0: no limit. */
  maxTransactions?: number;
  /** V8 heap in use (MB); 0: not watched. Default: 85 % of the V8 heap limit. */
  maxHeapMb?: number;
  /** Seconds in the Retry-After of the 503 (default 5). */
  retryAfterS?: number;
  /** Sampling window: the lag is the p99 over it, and the other readings are taken at its end (default 500 ms). */
  windowMs?: number;
  /** How long every reading must stay below `recoverRatio` of its limit before new calls are taken again (default 2000 ms). */
  recoverMs?: number;
  /** The hysteresis: overloaded above a limit, recovered only below this fraction of every limit (default 0.8). */
  recoverRatio?: number;
}

/** One sample of what the limits watch. */
export interface LoadReading {
  lagMs: number;
  settingUp: number;
  transactions: number;
  heapMb: number;
}

export interface OverloadCounters {
  /** New INVITEs answered 503, by the reason the node was overloaded for. */
  rejectedLag: number;
  rejectedCalls: number;
  rejectedTransactions: number;
  rejectedHeap: number;
  /** Of those, answered statelessly (transaction dropped at once: memory was the problem). */
  rejectedStateless: number;
  /** Times the node became overloaded. */
  episodes: number;
}

export class OverloadConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'OverloadConfigError';
    this.key = key;
  }
}

/** 85 % of the heap V8 allows this process (--max-old-space-size), in MB. */
export function defaultMaxHeapMb(): number {
  return Math.floor((v8.getHeapStatistics().heap_size_limit / 1_048_576) * 0.85);
}

/** Where a live node reads its load: the sampled values and the two counts checked at each new INVITE. */
export interface LoadSource {
  settingUp(): number;
  transactions(): number;
}

export class OverloadMonitor {
  readonly limits: Readonly<Required<OverloadOptions>>;
  readonly counters: OverloadCounters = { rejectedLag: 0, rejectedCalls: 0, rejectedTransactions: 0, rejectedHeap: 0, rejectedStateless: 0, episodes: 0 };
  #overloaded = false;
  #reason: OverloadReason | null = null;
  #calmSince = 0;
  /** The last reading (for status and tests). */
  last: LoadReading = { lagMs: 0, settingUp: 0, transactions: 0, heapMb: 0 };
  /** Called when the node becomes overloaded or recovers (e.g. to send a heartbeat at once). */
  onChange: ((overloaded: boolean, reason: OverloadReason | null) => void) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #histogram: IntervalHistogram | null = null;

  constructor(options: OverloadOptions = {}) {
    const limits = {
      lagMs: options.lagMs ?? 0,
      maxCallsSettingUp: options.maxCallsSettingUp ?? 0,
      maxTransactions: options.maxTransactions ?? 0,
      maxHeapMb: options.maxHeapMb ?? defaultMaxHeapMb(),
      retryAfterS: options.retryAfterS ?? 5,
      windowMs: options.windowMs ?? 500,
      recoverMs: options.recoverMs ?? 2000,
      recoverRatio: options.recoverRatio ?? 0.8,
    };
    for (const [k, v] of Object.entries(limits)) {
      if (!Number.isFinite(v) || v < 0) throw new OverloadConfigError(k, `expected a non-negative number, got ${v}`);
    }
    if (limits.windowMs < 10) throw new OverloadConfigError('windowMs', `at least 10 ms, got ${limits.windowMs}`);
    if (limits.recoverRatio <= 0 || limits.recoverRatio > 1) throw new OverloadConfigError('recoverRatio', `expected (0, 1], got ${limits.recoverRatio}`);
    this.limits = limits;
  }

  get overloaded(): boolean {
    return this.#overloaded;
  }

  /** Why the node is overloaded (the first limit it crossed), or null. */
  get reason(): OverloadReason | null {
    return this.#reason;
  }

  /** The first limit `r` exceeds, scaled by `ratio` (1: the limits themselves; recoverRatio: the recovery line). */
  #over(r: LoadReading, ratio: number): OverloadReason | null {
    const l = this.limits;
    if (l.maxHeapMb > 0 && r.heapMb >= l.maxHeapMb * ratio) return 'heap';
    if (l.maxTransactions > 0 && r.transactions >= l.maxTransactions * ratio) return 'transactions';
    if (l.maxCallsSettingUp > 0 && r.settingUp >= l.maxCallsSettingUp * ratio) return 'calls';
    if (l.lagMs > 0 && r.lagMs >= l.lagMs * ratio) return 'lag';
    return null;
  }

  #enter(reason: OverloadReason): void {
    this.#reason = reason;
    this.#calmSince = 0;
    if (this.#overloaded) return;
    this.#overloaded = true;
    this.counters.episodes++;
    this.onChange?.(true, reason);
  }

  /**
   * Takes one reading: overloaded when any limit is reached; recovered once every reading stayed below
   * `recoverRatio` of its limit for `recoverMs`. Returns whether the node is overloaded.
   */
  update(r: LoadReading, now = Date.now()): boolean {
    this.last = r;
    const over = this.#over(r, 1);
    if (over !== null) {
      this.#enter(over);
      return true;
    }
    if (!this.#overloaded) return false;
    if (this.#over(r, this.limits.recoverRatio) !== null) {
      this.#calmSince = 0;
      return true;
    }
    if (this.#calmSince === 0) this.#calmSince = now;
    if (now - this.#calmSince < this.limits.recoverMs) return true;
    this.#overloaded = false;
    this.#reason = null;
    this.#calmSince = 0;
    this.onChange?.(false, null);
    return false;
  }

  /**
   * For a new INVITE: null to take it, else the reason to refuse it. The counts with hard limits are read now,
   * not at the last sample, so a burst cannot overshoot them by a window's worth of calls.
   */
  admit(load: LoadSource): OverloadReason | null {
    if (!this.#overloaded) {
      const l = this.limits;
      if (l.maxCallsSettingUp > 0 && load.settingUp() >= l.maxCallsSettingUp) this.#enter('calls');
      else if (l.maxTransactions > 0 && load.transactions() >= l.maxTransactions) this.#enter('transactions');
      else return null;
    }
    const reason = this.#reason!;
    switch (reason) {
      case 'lag': this.counters.rejectedLag++; break;
      case 'calls': this.counters.rejectedCalls++; break;
      case 'transactions': this.counters.rejectedTransactions++; break;
      case 'heap': this.counters.rejectedHeap++; break;
    }
    return reason;
  }

  get rejected(): number {
    const c = this.counters;
    return c.rejectedLag + c.rejectedCalls + c.rejectedTransactions + c.rejectedHeap;
  }

  /** Samples `load` every window (event-loop delay p99, heap, calls, transactions). */
  start(load: LoadSource): void {
    if (this.#timer !== null) return;
    // The delay histogram only when the lag is watched: it costs a timer of its own.
    const h = this.limits.lagMs > 0 ? monitorEventLoopDelay({ resolution: 10 }) : null;
    h?.enable();
    this.#histogram = h;
    this.#timer = setInterval(() => {
      const lagMs = h !== null && h.count > 0 ? h.percentile(99) / 1e6 : 0;
      h?.reset();
      this.update({
        lagMs,
        settingUp: this.limits.maxCallsSettingUp > 0 ? load.settingUp() : 0,
        transactions: load.transactions(),
        heapMb: v8.getHeapStatistics().used_heap_size / 1_048_576,
      });
    }, this.limits.windowMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#histogram?.disable();
    this.#histogram = null;
  }

  toJSON(): object {
    return { overloaded: this.#overloaded, reason: this.#reason, last: this.last, counters: this.counters };
  }
}
