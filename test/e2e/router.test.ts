import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { freePortInRange } from '../helpers/ports.ts';
import { killAll, spawnProcess } from '../helpers/proc.ts';
import { sipsakOptions } from '../helpers/sipsak.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const blocklist = path.join(root, 'examples/blocklist-proxy/app.ts');
const dir = mkdtempSync(path.join(tmpdir(), 'sipfleet-router-'));

after(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

test('the application router sends OPTIONS to the uas app and everything else to the first app', async () => {
  const rules = path.join(dir, 'rules.json');
  writeFileSync(rules, JSON.stringify([{ app: 'uas', method: 'OPTIONS' }]));
  // sipsak's From user is "sipsak": the blocklist app would refuse its OPTIONS with 403.
  const port = await freePortInRange('127.0.0.2', 5070, 9999);
  const routed = await startSipfleetNode(['--app', blocklist, '--app', 'uas', '--router', rules, '--listen', `127.0.0.2:${port}`, '--option', 'block=sipsak']);
  try {
    assert.equal((await sipsakOptions(`sip:someone@127.0.0.2:${port}`)).status, 200, 'OPTIONS went to uas');
  } finally {
    await routed.stop();
  }
  const port2 = await freePortInRange('127.0.0.2', port + 1, 9999);
  const unrouted = await startSipfleetNode(['--app', blocklist, '--app', 'uas', '--listen', `127.0.0.2:${port2}`, '--option', 'block=sipsak']);
  try {
    assert.equal((await sipsakOptions(`sip:someone@127.0.0.2:${port2}`)).status, 403, 'without the rule: the first app, which blocks sipsak');
  } finally {
    await unrouted.stop();
  }
});

test('a router rule naming an unknown app stops the node before it binds, naming the key', async () => {
  const rules = path.join(dir, 'bad.json');
  writeFileSync(rules, JSON.stringify([{ app: 'nope' }]));
  const p = spawnProcess(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'node', '--app', 'uas', '--router', rules, '--listen', '127.0.0.2:0'], { cwd: root });
  const exit = await p.exited;
  assert.equal(exit.code, 2);
  assert.match(p.stderr, /router\.rules\[0\]\.app: no app named "nope"/);
  assert.doesNotMatch(p.stdout, /listening/);
});
