import type { Source } from '../sip/transport/types.ts';

/**
 * Per-source limits on the balancer's external side: a token bucket per source IP address, asked before a
 * message is parsed (TransportOptions.admit), so a flood from one address costs a map look-up per datagram and
 * leaves every other source's share alone. Memory is bounded: at most `maxSources` addresses are tracked; an
 * address idle long enough for its bucket to refill is forgotten first (forgetting it loses nothing), and when
 * every tracked address is active, messages from new ones are refused (`refusedTableFull`), so a flood from
 * spoofed addresses cannot grow the table or get around the limit.
 */

export interface SourceLimitOptions {
  /** Messages per second per source address; 0: no limit (nothing tracked). */
  rate: number;
  /** Bucket size: messages a source may send at once after being quiet (default: max(rate, 1) × 2). */
  burst?: number;
  /** Source addresses tracked at most (default 100,000). */
  maxSources?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface SourceLimitCounters {
  admitted: number;
  /** Refused: the source sent faster than its rate (beyond its burst). */
  refusedRate: number;
  /** Refused: a new source while the table was full of active ones. */
  refusedTableFull: number;
  /** Idle sources forgotten to make room. */
  evicted: number;
}

export class SourceLimitError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'SourceLimitError';
    this.key = key;
  }
}

interface Bucket {
  tokens: number;
  /** When tokens were last counted (ms). */
  at: number;
}

/** How many old entries one admission may inspect for eviction: keeps the worst case per datagram constant. */
const EVICT_SCAN = 8;

export class SourceLimiter {
  readonly rate: number;
  readonly burst: number;
  readonly maxSources: number;
  readonly counters: SourceLimitCounters = { admitted: 0, refusedRate: 0, refusedTableFull: 0, evicted: 0 };
  /** In order of last use (an entry is moved to the end when used): the oldest are the idle ones. */
  readonly #buckets = new Map<string, Bucket>();
  readonly #now: () => number;
  /** A bucket is full again after this long idle (ms). */
  readonly #refillMs: number;

  constructor(options: SourceLimitOptions) {
    const { rate } = options;
    if (!Number.isFinite(rate) || rate < 0) throw new SourceLimitError('rate', `expected a non-negative number, got ${rate}`);
    const burst = options.burst ?? Math.max(rate, 1) * 2;
    if (!Number.isFinite(burst) || burst < 1) throw new SourceLimitError('burst', `expected at least 1, got ${burst}`);
    const maxSources = options.maxSources ?? 100_000;
    if (!Number.isInteger(maxSources) || maxSources < 1) throw new SourceLimitError('maxSources', `expected a positive integer, got ${maxSources}`);
    this.rate = rate;
    this.burst = burst;
    this.maxSources = maxSources;
    this.#now = options.now ?? (() => performance.now());
    this.#refillMs = rate > 0 ? (burst / rate) * 1000 : 0;
  }

  /** Source addresses tracked now. */
  get tracked(): number {
    return this.#buckets.size;
  }

  /** The transport's admit hook, or null when there is no limit. */
  get admitHook(): ((source: Source, size: number) => boolean) | null {
    return this.rate === 0 ? null : (source) => this.admit(source.host);
  }

  /** Whether a message from `host` may pass now (taking a token if so). */
  admit(host: string): boolean {
    if (this.rate === 0) {
      this.counters.admitted++;
      return true;
    }
    const now = this.#now();
    const buckets = this.#buckets;
    let b = buckets.get(host);
    if (b === undefined) {
      if (buckets.size >= this.maxSources && !this.#evict(now)) {
        this.counters.refusedTableFull++;
        return false;
      }
      b = { tokens: this.burst, at: now };
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.rate) / 1000);
      b.at = now;
      buckets.delete(host); // to the end: most recently used
    }
    buckets.set(host, b);
    if (b.tokens < 1) {
      this.counters.refusedRate++;
      return false;
    }
    b.tokens -= 1;
    this.counters.admitted++;
    return true;
  }

  /** Forgets idle sources (buckets full again) from the oldest; true when room was made. */
  #evict(now: number): boolean {
    let freed = false;
    let scanned = 0;
    for (const [host, b] of this.#buckets) {
      if (scanned++ >= EVICT_SCAN || now - b.at < this.#refillMs) break;
      this.#buckets.delete(host);
      this.counters.evicted++;
      freed = true;
    }
    return freed;
  }
}
