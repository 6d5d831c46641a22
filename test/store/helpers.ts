/**
 * Helpers for the store tests: bounded waiting, binding factories, and the service addresses (overridable for
 * a developer whose Redis or PostgreSQL listens elsewhere).
 */
import { randomBytes } from 'node:crypto';
import type { Binding } from '../../src/store/location.ts';

export const REDIS_URL = process.env.SIPFLEET_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
export const PG_URL = process.env.SIPFLEET_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A name unique to this test run: pid plus random, safe as a Redis prefix part and a SQL identifier. */
export function runId(): string {
  return `${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** Polls cond every 20 ms until it returns true; fails naming `what` after timeoutMs. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let seq = 0;

/** A live binding (expires in an hour) with every field set; override what the test is about. */
export function binding(over: Partial<Binding> = {}): Binding {
  const now = Date.now();
  seq++;
  return {
    aor: 'sip:alice@example.com',
    contact: `sip:alice@192.0.2.${seq % 250}:5060;transport=udp`,
    callId: `call-${seq}@192.0.2.1`,
    cseq: seq,
    expiresAt: now + 3_600_000,
    q: 1,
    path: [],
    instanceId: null,
    regId: null,
    received: 'udp:192.0.2.1:5060',
    updatedAt: now,
    nodeId: 'node-a',
    ...over,
  };
}

/** Runs fn with stderr captured; returns what was written. */
export async function captureStderr(fn: () => Promise<void>): Promise<string> {
  const original = process.stderr.write.bind(process.stderr);
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  }) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = original;
  }
  return out;
}
