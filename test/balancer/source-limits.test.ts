import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SourceLimiter, SourceLimitError } from '../../src/balancer/source-limits.ts';

describe('SourceLimiter: a token bucket per source address', () => {
  test('a burst, then the rate; other sources keep their own share; refusals counted by reason', () => {
    let now = 0;
    const l = new SourceLimiter({ rate: 10, burst: 5, now: () => now });
    let ok = 0;
    for (let i = 0; i < 50; i++) if (l.admit('10.0.0.1')) ok++;
    assert.equal(ok, 5, 'the burst');
    assert.equal(l.counters.refusedRate, 45);
    assert.equal(l.admit('10.0.0.2'), true, 'another source is not affected');
    now = 1000; // one second: 10 more tokens, capped at the burst (5)
    ok = 0;
    for (let i = 0; i < 50; i++) if (l.admit('10.0.0.1')) ok++;
    assert.equal(ok, 5);
    now = 1100; // 0.1 s: one token
    assert.equal(l.admit('10.0.0.1'), true);
    assert.equal(l.admit('10.0.0.1'), false);
    // Over 10 s at 100 messages/s, the source gets its rate (plus its burst), no more.
    ok = 0;
    for (let t = 0; t < 1000; t++) {
      now = 2000 + t * 10;
      if (l.admit('10.0.0.3')) ok++;
    }
    assert.ok(ok >= 100 && ok <= 106, `admitted ${ok}`);
    assert.equal(l.counters.admitted + l.counters.refusedRate, 50 + 1 + 50 + 2 + 1000);
  });

  test('memory is bounded: idle sources are evicted first; when all are active, new sources are refused (table full)', () => {
    let now = 0;
    const l = new SourceLimiter({ rate: 100, burst: 100, maxSources: 1000, now: () => now });
    for (let i = 0; i < 1000; i++) assert.equal(l.admit(`10.1.${i >> 8}.${i & 255}`), true);
    assert.equal(l.tracked, 1000);
    // All active (their buckets not full again): a new source is refused, the table does not grow.
    for (let i = 0; i < 100; i++) assert.equal(l.admit(`10.2.0.${i}`), false);
    assert.equal(l.counters.refusedTableFull, 100);
    assert.equal(l.tracked, 1000);
    // One second later (buckets full again: 100 tokens at 100/s) every old source is idle; one keeps sending.
    now = 1000;
    assert.equal(l.admit('10.1.0.0'), true);
    now = 1500;
    // A spoofed flood over many addresses: each new address evicts an idle one, the table stays at its cap.
    for (let i = 0; i < 5000; i++) l.admit(`10.3.${i >> 8}.${i & 255}`);
    assert.ok(l.tracked <= 1000, `tracked ${l.tracked}`);
    assert.ok(l.counters.evicted >= 999, `evicted ${l.counters.evicted}`);
    // The source in use was not evicted for an idle one: it still has its (spent) bucket.
    assert.equal(l.admit('10.1.0.0'), true);
  });

  test('rate 0: no limit, no hook; bad options are typed errors naming the option', () => {
    const off = new SourceLimiter({ rate: 0 });
    assert.equal(off.admitHook, null);
    for (let i = 0; i < 1000; i++) assert.equal(off.admit('10.0.0.1'), true);
    assert.equal(off.tracked, 0);
    const on = new SourceLimiter({ rate: 3 });
    assert.equal(on.burst, 6, 'default burst: 2 x rate');
    assert.equal(on.admitHook!({ protocol: 'UDP', host: '10.0.0.9', port: 5060, localHost: '127.0.0.1', localPort: 5060, connection: null }, 100), true);
    assert.throws(() => new SourceLimiter({ rate: -1 }), (e: unknown) => e instanceof SourceLimitError && e.key === 'rate');
    assert.throws(() => new SourceLimiter({ rate: 1, burst: 0 }), (e: unknown) => e instanceof SourceLimitError && e.key === 'burst');
    assert.throws(() => new SourceLimiter({ rate: 1, maxSources: 0 }), (e: unknown) => e instanceof SourceLimitError && e.key === 'maxSources');
  });
});
