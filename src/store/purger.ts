/**
 * The background purge every store runs: an unref'ed interval (it never keeps the process alive) that calls
 * purgeExpired(), skips a tick while the previous purge is still running, and reports failures instead of
 * letting them become unhandled rejections.
 */
import { toStoreError, type StoreError } from './errors.ts';

export interface Purger {
  stop(): void;
}

export function startPurger(purge: () => Promise<number>, intervalMs: number, onError: (err: StoreError) => void): Purger {
  if (!(intervalMs > 0)) return { stop() {} };
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    purge()
      .catch((err: unknown) => {
        try {
          onError(toStoreError(err, 'STORE_UNAVAILABLE', 'periodic purge of expired bindings failed'));
        } catch {
          // a throwing reporter must not turn into an unhandled rejection
        }
      })
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
