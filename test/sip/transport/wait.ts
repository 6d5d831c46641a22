/**
 * Bounded waiting for the transport and dialog tests: every wait names what it waits for and fails after a
 * timeout instead of hanging the run.
 */

/** Resolves with the first value `register`'s callback is called with; rejects after `ms`. */
export function once<T>(register: (cb: (v: T) => void) => void, ms: number, what = 'event'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    register((v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(v);
    });
  });
}

interface Waiter<T> {
  pred: (v: T) => boolean;
  resolve: (v: T) => void;
  timer: NodeJS.Timeout;
}

/** A queue of things that arrived (datagrams, requests…), taken in order by `next` with a bounded wait. */
export class Inbox<T> {
  readonly #items: T[] = [];
  #waiters: Array<Waiter<T>> = [];
  /** Everything ever pushed, taken or not. */
  readonly all: T[] = [];

  push(v: T): void {
    this.all.push(v);
    const i = this.#waiters.findIndex((w) => w.pred(v));
    if (i !== -1) {
      const w = this.#waiters[i]!;
      this.#waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(v);
      return;
    }
    this.#items.push(v);
  }

  get pending(): number {
    return this.#items.length;
  }

  /** The first item (matching `pred`) not yet taken, waiting up to `ms` for one to arrive. */
  next(ms: number, what = 'a message', pred: (v: T) => boolean = () => true): Promise<T> {
    const i = this.#items.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.#items.splice(i, 1)[0]!);
    return new Promise<T>((resolve, reject) => {
      const w: Waiter<T> = {
        pred,
        resolve,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
        }, ms),
      };
      this.#waiters.push(w);
    });
  }
}

/**
 * Waits until `check` holds, re-checking whenever `subscribe`'s callback fires (never by polling), up to `ms`.
 * For counts that grow one event at a time ("three 200s seen").
 */
export function until(subscribe: (cb: () => void) => void, check: () => boolean, ms: number, what: string): Promise<void> {
  if (check()) return Promise.resolve();
  return once<void>((cb) => subscribe(() => { if (check()) cb(); }), ms, what);
}

/**
 * An observation window for asserting that something does NOT happen (no further retransmission, no timeout).
 * Not used to wait for anything to arrive.
 */
export function quietWindow(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
