// A node:test reporter for people watching a long run (npm test, the failover suite): one line per finished test
// with how far the run is ("[37/68 files] ✔ file › test (2.1 s)"), then a table per file. It writes to stderr
// beside the TAP reporter on stdout, whose "# pass N" / "# fail N" summary CI reads.
import path from 'node:path';

const root = process.cwd();
const rel = (f) => (f ? path.relative(root, f) : '?');
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

export default async function* progress(source) {
  const files = new Map();
  const total = Number(process.env.SIPFLEET_TEST_FILES ?? 0);
  const row = (file) => {
    let r = files.get(file);
    if (r === undefined) {
      r = { pass: 0, fail: 0, skipped: 0, todo: 0, ms: 0 };
      files.set(file, r);
    }
    return r;
  };
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    const d = ev.data;
    if (d.details?.type === 'suite') continue; // its tests are counted one by one
    const file = rel(d.file);
    const r = row(file);
    const ms = d.details?.duration_ms ?? 0;
    r.ms += ms;
    let mark;
    if (d.skip !== undefined && d.skip !== false) { r.skipped++; mark = '-'; }
    else if (d.todo !== undefined && d.todo !== false) { r.todo++; mark = '~'; }
    else if (ev.type === 'test:pass') { r.pass++; mark = '✔'; }
    else { r.fail++; mark = '✖'; }
    const where = total > 0 ? `${files.size}/${total} files` : `${files.size} files`;
    yield `[${where}] ${mark} ${file} › ${d.name} (${secs(ms)})\n`;
  }
  const rows = [...files.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const head = ['file', 'pass', 'fail', 'skipped', 'todo', 'time'];
  const body = rows.map(([f, r]) => [f, r.pass, r.fail, r.skipped, r.todo, secs(r.ms)].map(String));
  const sum = (k) => rows.reduce((a, [, r]) => a + r[k], 0);
  body.push(['total', sum('pass'), sum('fail'), sum('skipped'), sum('todo'), secs(sum('ms'))].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  yield `\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${body.map(line).join('\n')}\n`;
}
