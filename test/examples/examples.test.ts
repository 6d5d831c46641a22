import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { freePort, freePortInRange } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { runSipp, startSippUas } from '../helpers/sipp.ts';
import { sipsakOptions } from '../helpers/sipsak.ts';
import { startSipfleetNode } from '../e2e/sipfleet-node.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const calleeBye = path.join(root, 'test/scenarios/uac-callee-bye.xml');

after(() => killAll());

test('examples/blocklist-proxy: blocked callers get 403, others reach the callee', async () => {
  const uas = await startSippUas({ localIp: '127.0.0.3' });
  const port = await freePortInRange('127.0.0.2', 5070, 9999);
  const node = await startSipfleetNode(['--app', path.join(root, 'examples/blocklist-proxy/app.ts'), '--listen', `127.0.0.2:${port}`,
    '--route-to', `127.0.0.3:${uas.localPort}`, '--option', 'block=sipsak,robocall']);
  try {
    const blocked = await sipsakOptions(`sip:bob@127.0.0.2:${port}`);
    assert.equal(blocked.status, 403, blocked.stdout);
    const r = await runSipp({ sn: 'uac', remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', rate: 10, maxCalls: 20, timeoutSec: 30 });
    assert.equal(r.failed, 0, r.stdout.slice(-1000));
    assert.equal(r.successful, 20);
  } finally {
    await node.stop();
    await uas.stop({ graceful: false });
  }
});

for (const [name, args] of [
  ['examples/timed-call', ['--app', path.join(root, 'examples/timed-call/app.ts'), '--option', 'seconds=0.2']],
  ['the bundled uas with --call-ms (callee hangs up)', ['--app', 'uas', '--call-ms', '200']],
] as const) {
  test(`${name}: the callee side hangs up with a timer; the caller gets the BYE`, async () => {
    const port = await freePort('127.0.0.2');
    const node = await startSipfleetNode([...args, '--listen', `127.0.0.2:${port}`]);
    try {
      const r = await runSipp({ sf: calleeBye, remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', rate: 10, maxCalls: 20, timeoutSec: 30 });
      assert.equal(r.failed, 0, r.stdout.slice(-1000));
      assert.equal(r.successful, 20);
    } finally {
      await node.stop();
    }
  });
}
