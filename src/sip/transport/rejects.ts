import { SipError } from '../errors.ts';
import type { TransportProtocol } from './types.ts';

/** Why the transport layer turned a message away. */
export type RejectReason =
  /** Over the transport's message size limit (a datagram, or a stream message by its Content-Length). */
  | 'too-large'
  | 'too-many-headers'
  | 'header-too-long'
  /** Did not parse or validate (400), including header values found broken by the layers above. */
  | 'malformed'
  /** Another SIP version (505). */
  | 'bad-version'
  /** Dropped unread by the `admit` hook. */
  | 'refused';

export const REJECT_REASONS: readonly RejectReason[] = ['too-large', 'too-many-headers', 'header-too-long', 'malformed', 'bad-version', 'refused'];

export type RejectCounts = Record<RejectReason, number>;

export function emptyRejectCounts(): RejectCounts {
  return { 'too-large': 0, 'too-many-headers': 0, 'header-too-long': 0, malformed: 0, 'bad-version': 0, refused: 0 };
}

/** The reason for a parse or framing error. */
export function rejectReasonOf(err: unknown): RejectReason {
  if (!(err instanceof SipError)) return 'malformed';
  switch (err.code) {
    case 'SIP_TOO_LARGE': return 'too-large';
    case 'SIP_TOO_MANY_HEADERS': return 'too-many-headers';
    case 'SIP_HEADER_TOO_LONG': return 'header-too-long';
    case 'SIP_VERSION': return 'bad-version';
    default: return 'malformed';
  }
}

/** One line's worth of rejected input, for a log. */
export interface RejectInfo {
  reason: RejectReason;
  protocol: TransportProtocol;
  host: string;
  port: number;
  /** The error's message ('' when refused unread). */
  detail: string;
  /** Rejections from this source address left unreported since its previous line (0 on its first). */
  suppressed: number;
}

export type RejectListener = (info: RejectInfo) => void;

export interface RejectLogOptions {
  /** At most one line per source address per interval. */
  intervalMs: number;
  /** Source addresses remembered; past it the one reported longest ago is forgotten (a flood of addresses). */
  maxSources: number;
  /** Lines per interval in all: a flood from many addresses must not flood the log either. */
  maxLinesPerInterval: number;
  now?: () => number;
}

export const DEFAULT_REJECT_LOG: Readonly<Omit<RejectLogOptions, 'now'>> = { intervalMs: 10_000, maxSources: 1024, maxLinesPerInterval: 100 };

interface SourceState {
  /** When this source's last line went out (-Infinity: none yet). */
  last: number;
  suppressed: number;
}

/**
 * Rate-limits reports of rejected input: one line per source address per interval, carrying how many rejections
 * from that address it stands for, and a global budget per interval. Its memory is bounded by `maxSources`.
 */
export class RejectLog {
  readonly #options: RejectLogOptions;
  readonly #listener: RejectListener;
  readonly #now: () => number;
  /** By host; Map order is the order of last report, so the first entry is the one to evict. */
  readonly #sources = new Map<string, SourceState>();
  #windowStart = -Infinity;
  #linesInWindow = 0;

  constructor(listener: RejectListener, options: RejectLogOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Sources currently remembered (for tests: the bound). */
  get size(): number {
    return this.#sources.size;
  }

  report(reason: RejectReason, protocol: TransportProtocol, host: string, port: number, detail: string): void {
    const now = this.#now();
    let state = this.#sources.get(host);
    if (state !== undefined && now - state.last < this.#options.intervalMs) {
      state.suppressed++;
      return;
    }
    if (now - this.#windowStart >= this.#options.intervalMs) {
      this.#windowStart = now;
      this.#linesInWindow = 0;
    }
    if (state === undefined) {
      if (this.#sources.size >= this.#options.maxSources) this.#sources.delete(this.#sources.keys().next().value!);
      state = { last: -Infinity, suppressed: 0 };
      this.#sources.set(host, state);
    }
    if (this.#linesInWindow >= this.#options.maxLinesPerInterval) {
      state.suppressed++;
      return;
    }
    this.#linesInWindow++;
    const suppressed = state.suppressed;
    state.last = now;
    state.suppressed = 0;
    // Moved to the end: eviction takes the source reported longest ago.
    this.#sources.delete(host);
    this.#sources.set(host, state);
    try {
      this.#listener({ reason, protocol, host, port, detail, suppressed });
    } catch {
      // A failing logger must not turn rejected input into a crash.
    }
  }
}
