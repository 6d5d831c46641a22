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
//   node bench/run.mjs proxy        only the named benchmark(s) (parser, proxy, balancer)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.env.BENCH_QUICK === '1';

/** name -> file and a hard time bound (the child is killed, with its process group, past it). */
const BENCHES = [
  { name: 'parser', file: 'bench/parser.ts', timeoutMs: 5 * 60_000 },
  { name: 'proxy', file: 'bench/proxy-bench.ts', timeoutMs: (quick ? 5 : 20) * 60_000 },
  { name: 'balancer', file: 'bench/balancer-bench.ts', timeoutMs: (quick ? 5 : 15) * 60_000 },
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
      const rows = [[
        'SUT', 'max clean calls/s', 'SUT CPU ms/call @max', 'machine CPU ms/call @max',
        `SUT CPU ms/call @${int(common)}`, `machine CPU ms/call @${int(common)}`, 'steps (rate: result)', 'error',
      ]];
      for (const s of r.suts) {
        rows.push([
          s.name,
          int(s.maxCleanRate),
          fmt(s.atMaxClean?.sutCpuMsPerCall),
          fmt(s.atMaxClean?.machineCpuMsPerCall),
          fmt(s.atCommonRate?.sutCpuMsPerCall),
          fmt(s.atCommonRate?.machineCpuMsPerCall),
          s.steps.map((x) => `${x.rate}:${x.clean ? 'ok' : 'FAIL'}`).join(' ') || '-',
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
      const rates = [...new Set(r.suts.flatMap((s) => s.steps.map((x) => x.rate)))].sort((a, b) => a - b);
      if (rates.length) {
        out.push('');
        out.push('CPU per call by step, ms (SUT / machine; * = not clean)');
        const steps = [['calls/s', ...r.suts.map((s) => s.name)]];
        for (const rate of rates) {
          steps.push([
            int(rate),
            ...r.suts.map((s) => {
              const x = s.steps.find((y) => y.rate === rate);
              return x ? `${fmt(x.sutCpuMsPerCall)} / ${fmt(x.machineCpuMsPerCall)}${x.clean ? '' : ' *'}` : '';
            }),
          ]);
        }
        out.push(table(steps));
      }

      const cmps = Object.entries(r.comparisons ?? {});
      if (cmps.length) {
        out.push('');
        out.push('Ratios (numerator / denominator): CPU per call weighted by calls over every rate both ran clean');
        out.push('(and SUT CPU per call at the highest such rate alone); targets on the weighted SUT CPU per call');
        const rows2 = [['ratio', 'up to calls/s', 'SUT CPU/call', 'machine CPU/call', `SUT CPU/call @max`, 'max clean rate', 'target', 'met']];
        for (const [name, c] of cmps) {
          rows2.push([
            `${name} (${c.numerator}/${c.denominator})`,
            int(c.commonRate),
            `x${fmt(c.sutCpuPerCallRatio, 2)}`,
            `x${fmt(c.machineCpuPerCallRatio, 2)}`,
            `x${fmt(c.sutCpuPerCallRatioAtCommonRate, 2)}`,
            `x${fmt(c.maxCleanRateRatio, 2)}`,
            c.target ? `<= ${c.target.max}` : '-',
            c.met === null ? '-' : c.met ? 'yes' : 'NO',
          ]);
        }
        out.push(table(rows2));
      }
    }
    if (!proxy.ok) out.push(`  error: ${proxy.error}`);
  }
  const balancer = results.balancer;
  if (balancer) {
    if (out.length) out.push('');
    out.push(...summarizeBalancer(balancer));
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
    const rows = [['SUT', 'max clean calls/s', 'SUT CPU µs/call @max', 'machine CPU µs/call @max', 'steps (rate: result)', 'error']];
    for (const s of r.suts) {
      rows.push([
        s.name,
        int(s.maxCleanRate),
        us(s.atMaxClean?.sutCpuMsPerCall),
        us(s.atMaxClean?.machineCpuMsPerCall),
        s.steps.map((x) => `${x.rate}:${x.clean ? 'ok' : 'FAIL'}`).join(' ') || '-',
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
    const rates = [...new Set(r.suts.flatMap((s) => s.steps.map((x) => x.rate)))].sort((a, b) => a - b);
    if (rates.length) {
      out.push('');
      out.push('CPU per call by step, µs (SUT / machine; * = not clean)');
      const steps = [['calls/s', ...r.suts.map((s) => s.name)]];
      for (const rate of rates) {
        steps.push([
          int(rate),
          ...r.suts.map((s) => {
            const x = s.steps.find((y) => y.rate === rate);
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
      out.push('Ratio balancer / kamailio-dispatcher: CPU per call weighted by calls over every rate both ran clean');
      const rows2 = [['ratio', 'up to calls/s', 'SUT CPU/call', 'machine CPU/call', 'SUT CPU/call @max', 'max clean rate', 'target', 'met']];
      rows2.push([
        'balancer/kamailio-dispatcher',
        int(c.commonRate),
        `x${fmt(c.sutCpuPerCallRatio, 2)}`,
        `x${fmt(c.machineCpuPerCallRatio, 2)}`,
        `x${fmt(c.sutCpuPerCallRatioAtCommonRate, 2)}`,
        `x${fmt(c.maxCleanRateRatio, 2)}`,
        c.target ? `<= ${c.target.max}` : '-',
        c.met === null ? '-' : c.met ? 'yes' : 'NO',
      ]);
      out.push(table(rows2));
    }
    if (t) {
      const yes = (m) => (m === null || m === undefined ? '-' : m ? 'yes' : 'NO');
      out.push(
        `Targets: SUT CPU per call balancer/kamailio-dispatcher x${fmt(t.cpuPerCallRatio?.value, 2)} <= ${t.cpuPerCallRatio?.max}: ${yes(t.cpuPerCallRatio?.met)}; ` +
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
