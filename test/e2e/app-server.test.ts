import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSippUas } from '../helpers/sipp.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const scenario = (name: string): string => path.resolve(here, '../scenarios', name);
const forkApp = path.join(here, 'apps/fork.ts');

after(() => killAll());

/** SIPp's error log, which exists only when something went wrong. */
function errors(file: string): string {
  return existsSync(file) ? readFileSync(file, 'latin1').slice(0, 3000) : '(no SIPp error log)';
}

describe('B2BUA', () => {
  for (const transport of ['udp', 'tcp'] as const) {
    test(`sipp uac → sipfleet b2bua → sipp uas over ${transport.toUpperCase()}: 0 failed, legs with different Call-IDs`, async () => {
      const uas = await startSippUas({ localIp: '127.0.0.3', transport, traceMessages: true });
      const port = await freePort('127.0.0.2');
      const node = await startSipfleetNode(['--app', 'b2bua', '--listen', `127.0.0.2:${port}`, '--route-to', `127.0.0.3:${uas.localPort}`, '--transport', transport]);
      try {
        const r = await runSipp({ sn: 'uac', remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', transport, rate: 100, maxCalls: 500, callLimit: 200, timeoutSec: 40 });
        assert.equal(r.failed, 0, r.stdout.slice(-1500));
        assert.equal(r.successful, 500);
      } finally {
        await node.stop();
      }
      const res = await uas.stop({ graceful: false });
      const log = readFileSync(path.join(res.workDir, 'messages.log'), 'latin1');
      const callIds = [...log.matchAll(/^Call-ID: (.+)$/gm)].map((m) => m[1]!.trim());
      assert.ok(callIds.length >= 500, `the callee saw the calls (${callIds.length} Call-ID lines)`);
      // SIPp's caller makes Call-IDs like "1-1234@127.0.0.1"; the B2BUA's outgoing legs have their own.
      assert.equal(callIds.filter((c) => /^\d+-\d+@127\.0\.0\.1$/.test(c)).length, 0, 'no caller Call-ID reached the callee');
      assert.ok(callIds.every((c) => c.endsWith('@sipfleet')));
    });
  }
});

/** Runs 10 record-routed calls through a node forking to `targets`; all must succeed. */
async function forkCalls(targets: string[], options: string[] = []): Promise<void> {
  const port = await freePort('127.0.0.2');
  const node = await startSipfleetNode(['--app', forkApp, '--listen', `127.0.0.2:${port}`, '--option', `targets=${targets.join(',')}`, ...options]);
  try {
    const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', rate: 5, maxCalls: 10, timeoutSec: 30 });
    assert.equal(r.failed, 0, r.stdout.slice(-1500));
    assert.equal(r.successful, 10);
  } finally {
    await node.stop();
  }
}

describe('forking', () => {
  test('parallel: three callees ring, one answers, the other two get CANCEL', async () => {
    const ringing1 = await startSippUas({ localIp: '127.0.0.3', sf: scenario('uas-ring-cancel.xml') });
    const ringing2 = await startSippUas({ localIp: '127.0.0.4', sf: scenario('uas-ring-cancel.xml') });
    const answering = await startSippUas({ localIp: '127.0.0.5', sf: SCENARIO_UAS_RR });
    const targets = [`sip:a@127.0.0.3:${ringing1.localPort}`, `sip:b@127.0.0.4:${ringing2.localPort}`, `sip:c@127.0.0.5:${answering.localPort}`];
    await forkCalls(targets);
    for (const [name, uas] of [['ringing1', ringing1], ['ringing2', ringing2]] as const) {
      const res = await uas.stop();
      assert.equal(res.successful, 10, `${name} was cancelled 10 times (INVITE, 180, CANCEL, 200, 487, ACK)`);
      assert.equal(res.failed, 0, `${name}: ${errors(res.errorLogPath)}`);
    }
    await answering.stop({ graceful: false });
  });

  test('sequential: a busy callee (486), then the next one answers', async () => {
    const busy = await startSippUas({ localIp: '127.0.0.3', sf: scenario('uas-busy.xml') });
    const answering = await startSippUas({ localIp: '127.0.0.4', sf: SCENARIO_UAS_RR });
    const targets = [`sip:a@127.0.0.3:${busy.localPort}`, `sip:b@127.0.0.4:${answering.localPort}`];
    await forkCalls(targets, ['--option', 'mode=sequential']);
    const b = await busy.stop();
    assert.equal(b.successful, 10, 'the busy callee was tried first each time');
    await answering.stop({ graceful: false });
  });

  test('sequential: a callee that only rings is cancelled after the branch timeout, the next one answers', async () => {
    const ringing = await startSippUas({ localIp: '127.0.0.3', sf: scenario('uas-ring-cancel.xml') });
    const answering = await startSippUas({ localIp: '127.0.0.4', sf: SCENARIO_UAS_RR });
    const targets = [`sip:a@127.0.0.3:${ringing.localPort}`, `sip:b@127.0.0.4:${answering.localPort}`];
    await forkCalls(targets, ['--option', 'mode=sequential', '--option', 'branchTimeoutMs=300']);
    const rg = await ringing.stop();
    assert.equal(rg.successful, 10, `the ringing callee was cancelled each time: ${errors(rg.errorLogPath)}`);
    await answering.stop({ graceful: false });
  });
});
