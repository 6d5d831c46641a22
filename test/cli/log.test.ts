import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { CLI } from '../e2e/sipfleet-cluster.ts';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR } from '../helpers/sipp.ts';

after(() => killAll());

test('node logs: one JSON line per event, each naming the node; --trace-sip lines carry the Call-ID', async () => {
  const port = await freePort('127.0.0.1');
  const p = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', '--node-id', 'node-7', '--listen', `127.0.0.1:${port}`, '--app', 'uas', '--trace-sip'], { name: 'node --trace-sip' });
  try {
    await p.waitForOutput(/listening on/, 15_000, 'stdout');
    const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.1:${port}`, maxCalls: 2, rate: 2, timeoutSec: 20 });
    assert.equal(r.successful, 2);
    // INVITE/100?/180/200/ACK/BYE/200 of two calls: wait for the last BYE's 200 to be logged.
    await p.waitForOutput(/(?:"sip":"out"[^\n]*SIP\/2\.0 200 OK[^\n]*CSeq: \d+ BYE[^\n]*\n[^]*){2}/, 5_000, 'stdout');
  } finally {
    await p.stop(3000);
  }
  const lines = p.stdout.split('\n').filter((l) => l !== '');
  const entries = lines.map((l) => JSON.parse(l) as { level: string; time: string; node: string; msg: string; sip?: string; callId?: string; message?: string });
  for (const e of entries) {
    assert.equal(e.node, 'node-7');
    assert.ok(!Number.isNaN(Date.parse(e.time)), 'ISO time');
    assert.equal(typeof e.level, 'string');
  }
  const sip = entries.filter((e) => e.sip !== undefined);
  assert.ok(sip.length >= 2 * 6, `every message of both calls traced (${sip.length})`);
  const callIds = new Set(sip.map((e) => e.callId));
  assert.equal(callIds.size, 2, 'two calls, two Call-IDs');
  for (const e of sip) assert.ok(e.message!.includes(`Call-ID: ${e.callId}`), 'the Call-ID field is the message\'s');
});

test('--log-level warn: info lines are not written; a bad level is a config error naming the key', async () => {
  const port = await freePort('127.0.0.1');
  const bad = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', '--listen', `127.0.0.1:${port}`, '--log-level', 'chatty'], { name: 'node bad level' });
  const exit = await bad.exited;
  assert.equal(exit.code, 2);
  assert.match(bad.stderr, /--log-level: expected one of fatal, error, warn, info, debug, trace, silent, got "chatty"/);
  const quiet = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', '--listen', `127.0.0.1:${port}`, '--app', 'uas', '--log-level', 'warn'], { name: 'node quiet' });
  try {
    const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.1:${port}`, maxCalls: 1, rate: 1, timeoutSec: 20 });
    assert.equal(r.successful, 1, 'it is up and answering');
  } finally {
    await quiet.stop(3000);
  }
  assert.equal(quiet.stdout, '', 'nothing at info level');
});
