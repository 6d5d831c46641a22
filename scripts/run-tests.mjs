#!/usr/bin/env node
// npm "test": Node 20's --test does not expand globs, so collect every *.test.ts under test/ ourselves
// and hand them to one `node --import tsx --test` run (one process, so Node prints one # pass / # fail summary).
//
//   npm test                          -> all test files
//   npm test -- test/sip/message      -> only files whose path starts with one of the given prefixes
//   npm test -- --test-name-pattern=x -> arguments starting with "-" are passed through to node (use the
//                                        --flag=value form: a separate value would be taken as a path)
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const testDir = path.join(root, 'test');

/** Every *.test.ts below dir, as paths relative to the repo root with forward slashes, sorted. */
function findTests(dir) {
  const out = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...findTests(full));
    else if (e.isFile() && e.name.endsWith('.test.ts')) out.push(path.relative(root, full).split(path.sep).join('/'));
  }
  return out;
}

const argv = process.argv.slice(2);
const nodeFlags = [];
const prefixes = [];
for (const a of argv) {
  if (a.startsWith('-')) nodeFlags.push(a);
  // Accept "test/sip/message", "./test/sip/message/" or an absolute path; compare repo-relative.
  else prefixes.push(path.relative(root, path.resolve(a)).split(path.sep).join('/'));
}

const all = findTests(testDir).sort();
const files = prefixes.length === 0 ? all : all.filter((f) => prefixes.some((p) => f.startsWith(p)));

if (files.length === 0) {
  const what = prefixes.length ? ` matching ${prefixes.join(', ')}` : '';
  console.error(`run-tests: no *.test.ts files found under test/${what}`);
  process.exit(1);
}

// TAP reporter unless the caller picked one: its "# pass N" / "# fail N" summary lines are what CI logs
// (and people grepping them) look for; Node's default switches to the spec reporter on a terminal.
// Beside it, on stderr, progress for people (what runs, how far) and a table per file at the end.
const reporter = nodeFlags.some((f) => f.startsWith('--test-reporter')) ? [] : [
  '--test-reporter=tap', '--test-reporter-destination=stdout',
  `--test-reporter=${path.join(root, 'scripts/progress-reporter.mjs')}`, '--test-reporter-destination=stderr',
];

console.log(`run-tests: ${files.length} test file(s)`);
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', ...reporter, ...nodeFlags, ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, SIPFLEET_TEST_FILES: String(files.length) } },
);

// Forward Ctrl-C / SIGTERM so the test process (and its own cleanup hooks) gets the chance to stop peers.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));

child.on('error', (err) => {
  console.error(`run-tests: cannot start node: ${err.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 1 : 0));
});
