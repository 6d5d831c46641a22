#!/usr/bin/env node
// Benchmark entry (`npm run bench` = `npm run build && node bench/run.mjs`).
//
// Runs each benchmark as its own child process (`node --import tsx bench/<name>.ts`), which prints progress on
// stderr (passed through) and one JSON document on stdout (captured). Prints a summary table and writes
// bench/results/bench-<timestamp>.json and bench/results/latest.json.
//
//   BENCH_QUICK=1 npm run bench     fewer, shorter steps
//   BENCH_SUTS=proxy,b2bua npm run bench   only these proxy-bench SUTs (kamailio, stack-proxy, proxy, b2bua)
//   BENCH_BALANCER_SUTS=balancer npm run bench   only these balancer-bench SUTs (kamailio-dispatcher, balancer)
//   BENCH_BALANCER_RATES=1000,4000 BENCH_BALANCER_STEP_SEC=4   other balancer-bench steps
//   BENCH_REPEATS=5 npm run bench   rounds per rate of the proxy and balancer benches (default 3; BENCH_QUICK: 1)
//   node bench/run.mjs proxy        only the named benchmark(s) (parser, proxy, balancer, replication)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.env.BENCH_QUICK === '1';
// Rounds per rate (the benches validate BENCH_REPEATS themselves); only used here to size the time bounds.
const repeats = Math.max(1, Math.floor(Number(process.env.BENCH_REPEATS)) || (quick ? 1 : 3));

/** name -> file and a hard time bound (the child is killed, with its process group, past it). */
const BENCHES = [
  { name: 'parser', file: 'bench/parser.ts', timeoutMs: 5 * 60_000 },
  // One round of every rate (~1 min per rate: settle 34 s between a SUT's steps, pre-load, load, drain) takes
  // ~5 min full, ~2 min quick; plus start-up and the final settle, with room for a loaded box.
  { name: 'proxy', file: 'bench/proxy-bench.ts', timeoutMs: (quick ? 5 + 3 * repeats : 6 + 8 * repeats) * 60_000 },
  { name: 'balancer', file: 'bench/balancer-bench.ts', timeoutMs: (quick ? 5 + 3 * repeats : 6 + 8 * repeats) * 60_000 },
  // Replication cost: one node, None vs ConfirmedDialog vs EarlyDialog on Redis, uas and proxy apps.
  { name: 'replication', file: 'bench/replication-bench.ts', timeoutMs: (quick ? 6 + 3 * repeats : 10 + 10 * repeats) * 60_000 },
];

const log = (line) => process.stderr.write(`${line}\n`);

/** Runs one bench file; resolves { ok, result?, error?, seconds } and never rejects. */
function runBench(bench) {
  const file = path.join(root, bench.file);
  if (!existsSync(file)) return Promise.resolve({ ok: false, error: `${bench.file} not found`, seconds: 0 });
  const t0 = Date.now();
  return new Promise((resolve) => {
    // detached: own process group, so a timeout also reaches the SIPp/Kamailio processes it started.
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: process.env,
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    current = child;
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      log(`[run] ${bench.name}: no result after ${bench.timeoutMs / 1000} s, stopping it`);
      stopGroup(child);
    }, bench.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, error: `cannot start: ${err.message}`, seconds: (Date.now() - t0) / 1000 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      current = undefined;
      const seconds = Math.round((Date.now() - t0) / 100) / 10;
      let result;
      try {
        // The JSON document is the whole stdout; tolerate stray lines before it.
        const start = stdout.indexOf('{');
        result = start >= 0 ? JSON.parse(stdout.slice(start)) : undefined;
      } catch (err) {
        resolve({ ok: false, error: `unparsable JSON output (${err.message}): ${stdout.slice(0, 300)}`, seconds });
        return;
      }
      if (timedOut) resolve({ ok: false, error: `timed out after ${bench.timeoutMs / 1000} s`, seconds, ...(result ? { result } : {}) });
      else if (code !== 0 || result === undefined) {
        resolve({ ok: false, error: `exit ${code ?? signal}${result === undefined ? ', no JSON on stdout' : ''}`, seconds, ...(result ? { result } : {}) });
      } else resolve({ ok: true, result, seconds });
    });
  });
}

/** SIGTERM to the child's group (its own cleanup kills its peers), SIGKILL to the group 3 s later. */
function stopGroup(child) {
  const kill = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  kill('SIGTERM');
  setTimeout(() => kill('SIGKILL'), 3000).unref();
}

let current;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (current) stopGroup(current);
    setTimeout(() => process.exit(130), 3500).unref();
  });
}

// --- table ----------------------------------------------------------------------------------------------------

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r, ri) => {
    const line = r.map((c, i) => String(c).padEnd(widths[i])).join('  ');
    return ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
  }).join('\n');
}

const fmt = (n, d = 3) => (typeof n === 'number' && Number.isFinite(n) ? String(Math.round(n * 10 ** d) / 10 ** d) : '-');
const int = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '-');

/** "500:ok 1000:ok,ok,ok 1500:ok,FAIL": each rate once, with the result of each of its rounds. */
function stepsLine(steps) {
  const byRate = new Map();
  for (const x of steps) byRate.set(x.rate, [...(byRate.get(x.rate) ?? []), x.clean ? 'ok' : 'FAIL']);
  return [...byRate].map(([rate, rs]) => `${rate}:${rs.join(',')}`).join(' ') || '-';
}

/** The rows of a step table: every (rate, round) any SUT ran, in run order. */
function stepKeys(suts) {
  const keys = new Map();
  for (const s of suts) for (const x of s.steps) keys.set(`${x.rate}#${x.round ?? 1}`, { rate: x.rate, round: x.round ?? 1 });
  return [...keys.values()].sort((a, b) => a.rate - b.rate || a.round - b.round);
}

/** The ratio rows and per-round lines of a bench's comparisons (numerator / denominator). */
function ratioTable(cmps, title) {
  const out = [];
  out.push(title);
  out.push('SUT CPU per call: median of the per-round ratios (a round: every SUT one step at the rate, one after the other),');
  out.push('their range, the calls-weighted ratio over all those steps, the median with the work deferred past the window');
  out.push('(the 32 s transaction timers, measured while the SUT settles), and the median at the highest common rate alone');
  const rows = [[
    'ratio', 'up to calls/s', 'rounds', 'SUT CPU/call median', 'min..max', 'weighted', 'incl. deferred, median', 'machine CPU/call median',
    'SUT @max', 'max clean rate', 'target', 'met',
  ]];
  for (const [name, c] of cmps) {
    const metric = c.target?.metric === 'sutCpuPerCallRatio' ? ' (weighted)' : c.target ? ' (median)' : '';
    rows.push([
      `${name} (${c.numerator}/${c.denominator})`,
      int(c.commonRate),
      String(c.rounds?.length ?? '-'),
      `x${fmt(c.sutCpuPerCallRatioMedian, 2)}`,
      `${fmt(c.sutCpuPerCallRatioMin, 2)}..${fmt(c.sutCpuPerCallRatioMax, 2)}`,
      `x${fmt(c.sutCpuPerCallRatio, 2)}`,
      `x${fmt(c.sutCpuPerCallWithTailRatioMedian, 2)}`,
      `x${fmt(c.machineCpuPerCallRatioMedian ?? c.machineCpuPerCallRatio, 2)}`,
      `x${fmt(c.sutCpuPerCallRatioAtCommonRate, 2)}`,
      `x${fmt(c.maxCleanRateRatio, 2)}`,
      c.target ? `<= ${c.target.max}${metric}` : '-',
      c.met === null ? '-' : c.met ? 'yes' : 'NO',
    ]);
  }
  out.push(table(rows));
  for (const [name, c] of cmps) {
    if (!c.byRate?.length) continue;
    out.push(`  ${name} per round: ${c.byRate.map((b) => `${b.rate}/s ${(b.sutCpuPerCallRatios ?? [b.sutCpuPerCallRatio]).map((x) => fmt(x, 2)).join(' ')}`).join('; ')}`);
  }
  return out;
}

function summarize(results) {
  const out = [];
  const parser = results.parser;
  if (parser) {
    out.push('Parser (operations/s, one INVITE with SDP)');
    if (parser.ok && parser.result && typeof parser.result === 'object') {
      const rows = [['metric', 'value']];
      for (const [k, v] of Object.entries(parser.result)) if (typeof v === 'number') rows.push([k, int(v)]);
      out.push(table(rows));
    } else out.push(`  error: ${parser.error}`);
    out.push('');
  }
  const proxy = results.proxy;
  if (proxy) {
    const r = proxy.result;
    out.push('Proxy: SIPp uac 127.0.0.1 -> SUT 127.0.0.2 -> SIPp uas 127.0.0.3, UDP calls (record-routed through the proxies)');
    if (r?.host?.loadavgAtStart) out.push(`  load average at start: ${r.host.loadavgAtStart.join(' ')} (${r.host.cpus} cores)`);
    if (r && Array.isArray(r.suts)) {
      const common = r.commonRate ?? 0;
      if (r.options?.schedule === 'interleaved') out.push(`  ${r.options.repeats} round(s) per rate, SUTs interleaved (every SUT up for the whole run; before each step ${r.options.settleSec} s settle, ${r.options.preloadSec} s pre-load); per-SUT figures at one rate: median over its rounds`);
      const rows = [[
        'SUT', 'max clean calls/s', 'SUT CPU ms/call @max', 'machine CPU ms/call @max',
        `SUT CPU ms/call @${int(common)}`, `machine CPU ms/call @${int(common)}`, 'steps (rate: result per round)', 'error',
      ]];
      for (const s of r.suts) {
        rows.push([
          s.name,
          int(s.maxCleanRate),
          fmt(s.atMaxClean?.sutCpuMsPerCall),
          fmt(s.atMaxClean?.machineCpuMsPerCall),
          fmt(s.atCommonRate?.sutCpuMsPerCall),
          fmt(s.atCommonRate?.machineCpuMsPerCall),
          stepsLine(s.steps),
          s.error ? s.error.split('\n')[0].slice(0, 80) : '',
        ]);
      }
      out.push(table(rows));
      if (r.commonRateExcludes?.length) out.push(`  common rate leaves out (no clean step): ${r.commonRateExcludes.join(', ')}`);
      for (const s of r.suts) {
        if (s.warmUp) out.push(`  ${s.name}: warm-up at ${s.warmUp.rate} calls/s not clean: ${s.warmUp.reason}`);
        const bad = s.steps.find((x) => !x.clean);
        if (bad) {
          const busy = typeof bad.machineBusyPercent === 'number' ? `; machine ${bad.machineBusyPercent}% busy, SUT ${bad.sutCpuPercent}% of a core` : '';
          out.push(`  ${s.name}: stopped at ${bad.rate} calls/s: ${bad.reason}${busy}`);
          const d = bad.diagnostics;
          for (const [side, kinds] of [['uac', d?.uacErrorKinds], ['uas', d?.uasErrorKinds]]) {
            for (const [k, n] of Object.entries(kinds ?? {}).slice(0, 2)) out.push(`    sipp ${side}: ${n} x ${k.slice(0, 130)}`);
          }
        }
      }

      // CPU per call at every step: SUT / machine, ms.
      const keys = stepKeys(r.suts);
      if (keys.length) {
        out.push('');
        out.push('CPU per call by step, ms (SUT / machine; * = not clean)');
        const steps = [['calls/s', 'round', ...r.suts.map((s) => s.name)]];
        for (const k of keys) {
          steps.push([
            int(k.rate),
            String(k.round),
            ...r.suts.map((s) => {
              const x = s.steps.find((y) => y.rate === k.rate && (y.round ?? 1) === k.round);
              return x ? `${fmt(x.sutCpuMsPerCall)} / ${fmt(x.machineCpuMsPerCall)}${x.clean ? '' : ' *'}` : '';
            }),
          ]);
        }
        out.push(table(steps));
      }

      const cmps = Object.entries(r.comparisons ?? {});
      if (cmps.length) {
        out.push('');
        out.push(...ratioTable(cmps, 'Ratios (numerator / denominator) over every rate both ran clean; targets on the median SUT CPU per call ratio'));
      }
    }
    if (!proxy.ok) out.push(`  error: ${proxy.error}`);
  }
  const balancer = results.balancer;
  if (balancer) {
    if (out.length) out.push('');
    out.push(...summarizeBalancer(balancer));
  }
  const replication = results.replication;
  if (replication) {
    if (out.length) out.push('');
    out.push('Replication (one node, Redis): SUT CPU per call, strategy / None (median of rounds)');
    if (!replication.ok) out.push(`  error: ${replication.error}`);
    for (const [name, t] of Object.entries(replication.result?.targets ?? {})) {
      out.push(`  uas ${name}: x${t.value === null ? '-' : t.value.toFixed(2)} (target <= ${t.max}): ${t.met === null ? '-' : t.met ? 'met' : 'NOT met'}`);
    }
  }
  return out.join('\n');
}

/** The balancer bench: sipfleet balancer vs Kamailio's dispatcher, CPU per call in µs. */
function summarizeBalancer(entry) {
  const out = [];
  const r = entry.result;
  out.push('Balancer: SIPp uac 127.0.0.1 -> SUT 127.0.0.2 -> SIPp uas 127.0.0.3 (the one node / destination), UDP calls');
  if (r?.host?.loadavgAtStart) out.push(`  load average at start: ${r.host.loadavgAtStart.join(' ')} (${r.host.cpus} cores)`);
  if (r && Array.isArray(r.suts)) {
    const us = (ms) => (typeof ms === 'number' ? fmt(ms * 1000, 1) : '-');
    if (r.options?.schedule === 'interleaved') out.push(`  ${r.options.repeats} round(s) per rate, SUTs interleaved (both up for the whole run; before each step ${r.options.settleSec} s settle, ${r.options.preloadSec} s pre-load); per-SUT figures at one rate: median over its rounds`);
    const rows = [['SUT', 'max clean calls/s', 'SUT CPU µs/call @max', 'machine CPU µs/call @max', 'steps (rate: result per round)', 'error']];
    for (const s of r.suts) {
      rows.push([
        s.name,
        int(s.maxCleanRate),
        us(s.atMaxClean?.sutCpuMsPerCall),
        us(s.atMaxClean?.machineCpuMsPerCall),
        stepsLine(s.steps),
        s.error ? s.error.split('\n')[0].slice(0, 80) : '',
      ]);
    }
    out.push(table(rows));
    for (const s of r.suts) {
      if (s.warmUp) out.push(`  ${s.name}: warm-up at ${s.warmUp.rate} calls/s not clean: ${s.warmUp.reason}`);
      const bad = s.steps.find((x) => !x.clean);
      if (bad) {
        const busy = typeof bad.machineBusyPercent === 'number' ? `; machine ${bad.machineBusyPercent}% busy, SUT ${bad.sutCpuPercent}% of a core` : '';
        out.push(`  ${s.name}: stopped at ${bad.rate} calls/s: ${bad.reason}${busy}`);
        const d = bad.diagnostics;
        for (const [side, kinds] of [['uac', d?.uacErrorKinds], ['uas', d?.uasErrorKinds]]) {
          for (const [k, n] of Object.entries(kinds ?? {}).slice(0, 2)) out.push(`    sipp ${side}: ${n} x ${k.slice(0, 130)}`);
        }
        const c = bad.sutCounters;
        if (c) out.push(`    sut counters: ${Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      }
    }
    const keys = stepKeys(r.suts);
    if (keys.length) {
      out.push('');
      out.push('CPU per call by step, µs (SUT / machine; * = not clean)');
      const steps = [['calls/s', 'round', ...r.suts.map((s) => s.name)]];
      for (const k of keys) {
        steps.push([
          int(k.rate),
          String(k.round),
          ...r.suts.map((s) => {
            const x = s.steps.find((y) => y.rate === k.rate && (y.round ?? 1) === k.round);
            return x ? `${us(x.sutCpuMsPerCall)} / ${us(x.machineCpuMsPerCall)}${x.clean ? '' : ' *'}` : '';
          }),
        ]);
      }
      out.push(table(steps));
    }
    const c = r.comparisons?.balancerVsKamailioDispatcher;
    const t = r.targets;
    out.push('');
    if (c) {
      out.push(...ratioTable([['balancerVsKamailioDispatcher', c]], 'Ratio balancer / kamailio-dispatcher over every rate both ran clean; target on the calls-weighted SUT CPU per call'));
    }
    if (t) {
      const yes = (m) => (m === null || m === undefined ? '-' : m ? 'yes' : 'NO');
      out.push(
        `Targets: SUT CPU per call balancer/kamailio-dispatcher x${fmt(t.cpuPerCallRatio?.value, 2)} (weighted; per-round median x${fmt(t.cpuPerCallRatio?.median, 2)}, ` +
          `${fmt(t.cpuPerCallRatio?.lowest, 2)}..${fmt(t.cpuPerCallRatio?.highest, 2)}) <= ${t.cpuPerCallRatio?.max}: ${yes(t.cpuPerCallRatio?.met)}; ` +
          `one balancer process clean at >= ${int(t.balancerCleanRate?.min)} calls/s (max clean ${int(t.balancerCleanRate?.value ?? undefined)}): ${yes(t.balancerCleanRate?.met)}`,
      );
    }
  }
  if (!entry.ok) out.push(`  error: ${entry.error}`);
  return out;
}

// --- main -----------------------------------------------------------------------------------------------------

const only = process.argv.slice(2);
const selected = only.length ? BENCHES.filter((b) => only.includes(b.name)) : BENCHES;
if (selected.length === 0) {
  log(`unknown benchmark(s) ${only.join(', ')}; available: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(2);
}

const startedAt = new Date();
const results = {};
for (const b of selected) {
  log(`[run] ${b.name}: node --import tsx ${b.file}${quick ? ' (BENCH_QUICK=1)' : ''}`);
  results[b.name] = await runBench(b);
  log(`[run] ${b.name}: ${results[b.name].ok ? 'done' : `ERROR ${results[b.name].error}`} in ${results[b.name].seconds} s`);
}

const doc = {
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  quick,
  host: { hostname: os.hostname(), cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(), node: process.version },
  benches: results,
};

const dir = path.join(root, 'bench/results');
mkdirSync(dir, { recursive: true });
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
const file = path.join(dir, `bench-${stamp}.json`);
writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
writeFileSync(path.join(dir, 'latest.json'), `${JSON.stringify(doc, null, 2)}\n`);

console.log(`\n${summarize(results)}\n`);
console.log(`results: ${path.relative(root, file)} (and bench/results/latest.json)`);
process.exit(Object.values(results).every((r) => r.ok) ? 0 : 1);
