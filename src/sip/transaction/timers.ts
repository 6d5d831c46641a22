/** RFC 3261 timer base values (§17.1.1.1, Table 4). Tests shrink them to run loss scenarios quickly. */
export interface TimerSettings {
  /** RTT estimate, default 500 ms. */
  t1: number;
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s. */
  t2: number;
  /** Maximum time a message stays in the network, default 5 s. */
  t4: number;
}

export const DEFAULT_TIMERS: TimerSettings = { t1: 500, t2: 4000, t4: 5000 };

export function validateTimers(t: TimerSettings): TimerSettings {
  for (const k of ['t1', 't2', 't4'] as const) {
    if (!Number.isFinite(t[k]) || t[k] <= 0) throw new RangeError(`timer ${k.toUpperCase()} must be a positive number of milliseconds`);
  }
  if (t.t2 < t.t1) throw new RangeError('timer T2 must not be shorter than T1');
  return t;
}
