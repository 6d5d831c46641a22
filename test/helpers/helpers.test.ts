/**
 * Smoke tests of the peer helpers themselves (ports, processes, SIPp, Kamailio, sipsak), so a broken peer
 * install or helper shows up here, not as a puzzling failure in a sipfleet test. Kept small (~15 s).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { startKamailio } from './kamailio.ts';
import { freePort, freePortInRange, isListening } from './ports.ts';
import { killAll, runningProcesses, spawnProcess } from './proc.ts';
import { sipPing } from './sip-ping.ts';
import { sipsakOptions } from './sipsak.ts';
import { runSipp, SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSippUas } from './sipp.ts';

after(() => killAll());

describe('ports', () => {
  test('freePort gives distinct ports bindable for UDP and TCP', async () => {
    const a = await freePort('127.0.0.2');
    const b = await freePort('127.0.0.2');
    assert.notEqual(a, b);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(a, '127.0.0.2', () => resolve());
    });
    assert.equal(await isListening('127.0.0.2', a, 'udp'), true);
    await new Promise<void>((resolve) => sock.close(() => resolve()));
    assert.equal(await isListening('127.0.0.2', a, 'udp'), false);
  });
});

describe('proc', () => {
  test('collects output, waits for a pattern, kills a detached group', async () => {
    // The shell forks a child sleep: stop() must take the whole group down.
    const p = spawnProcess('sh', ['-c', 'echo ready; sleep 30 & wait'], { detached: true, name: 'sh' });
    await p.waitForOutput(/ready/, 10_000);
    assert.ok(runningProcesses().includes(p));
    const info = await p.stop(1000);
    assert.equal(info.signal, 'SIGTERM');
    assert.ok(!runningProcesses().includes(p));
    // The orphaned `sleep` got the group SIGTERM too; give init a moment to reap it.
    const groupGone = async (): Promise<boolean> => {
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(-p.pid, 0);
        } catch {
          return true;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return false;
    };
    assert.ok(await groupGone(), 'no process left in the group');
  });

  test('waitForOutput rejects when the process exits first', async () => {
    const p = spawnProcess('sh', ['-c', 'echo bye; exit 3']);
    await assert.rejects(p.waitForOutput(/never/, 2000), /exited/);
    assert.deepEqual(await p.exited, { code: 3, signal: null });
  });
});

describe('sipp', () => {
  for (const transport of ['udp', 'tcp'] as const) {
    test(`uac -> uas over ${transport}: 200 calls at 100/s`, async () => {
      const uas = await startSippUas({ localIp: '127.0.0.3', transport });
      try {
        const r = await runSipp({ sn: 'uac', remote: `127.0.0.3:${uas.localPort}`, localIp: '127.0.0.1', transport, rate: 100, maxCalls: 200, timeoutSec: 20 });
        assert.equal(r.exitCode, 0, r.stdout.slice(-1500));
        assert.equal(r.successful, 200);
        assert.equal(r.failed, 0);
        assert.equal(r.retransmissions, 0);
      } finally {
        await uas.stop({ graceful: false });
      }
    });
  }
});

describe('kamailio', () => {
  test('stateful record-routing proxy: 500 record-routed calls at 100/s over UDP, 0 failed; answers sipsak', async () => {
    const uas = await startSippUas({ localIp: '127.0.0.3', sf: SCENARIO_UAS_RR, ignoreUnexpected: true });
    // A four-digit port: sipsak 0.9.8 mangles five-digit ones.
    const port = await freePortInRange('127.0.0.2', 5060, 9999);
    const kam = await startKamailio({ host: '127.0.0.2', port, transports: ['udp', 'tcp'], nextHop: `127.0.0.3:${uas.localPort}` });
    try {
      assert.ok(kam.pids().length >= 3, 'creator plus forked workers');
      const ping = await sipPing('127.0.0.2', port, { transport: 'tcp' });
      assert.equal(ping.status, 200);
      const sak = await sipsakOptions(`sip:127.0.0.2:${port}`);
      assert.equal(sak.exitCode, 0, sak.stdout + sak.stderr);
      assert.equal(sak.status, 200);

      const r = await runSipp({
        sf: SCENARIO_UAC_RR,
        remote: `127.0.0.2:${port}`,
        localIp: '127.0.0.1',
        rate: 100,
        maxCalls: 500,
        timeoutSec: 30,
        recvTimeoutMs: 5000,
        ignoreUnexpected: true,
      });
      assert.equal(r.failed, 0, `${JSON.stringify(r.failures)}\n${kam.process.stderr.slice(-1500)}`);
      assert.equal(r.successful, 500);
      // The uac scenario sends ACK/BYE to the Contact via the recorded route: a 200 to every BYE means
      // Kamailio loose-routed them to the UAS.
      const bye = r.messages.find((m) => m.message === 'BYE');
      assert.equal(bye?.count, 500);
    } finally {
      const pids = kam.pids();
      await kam.stop();
      await uas.stop({ graceful: false });
      for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `kamailio pid ${pid} left running`);
    }
  });
});
