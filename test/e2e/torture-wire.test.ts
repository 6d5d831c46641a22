import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { sipPing } from '../helpers/sip-ping.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

const corpus = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/rfc4475');

after(() => killAll());

/** Sends one datagram and collects what comes back for `ms` (most torture messages get one answer or none). */
async function exchange(data: Buffer, port: number, ms: number): Promise<string[]> {
  const s = dgram.createSocket('udp4');
  const got: string[] = [];
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.on('message', (m) => got.push(m.toString('latin1')));
  s.send(data, port, '127.0.0.5');
  // A bounded listening window: no answer is a valid outcome (drop), so there is no event to wait for.
  await new Promise((r) => setTimeout(r, ms));
  s.close();
  return got;
}

test('RFC 4475 torture messages over UDP: invalid ones get 400/505 or are dropped, the node never dies', async (t) => {
  if (!existsSync(path.join(corpus, 'INDEX.tsv'))) {
    t.skip(`RFC 4475 corpus not found at ${corpus}`);
    return;
  }
  const port = await freePort('127.0.0.5');
  const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.5:${port}`]);
  try {
    const rows = readFileSync(path.join(corpus, 'INDEX.tsv'), 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    const strict = new Set(['badinv01', 'clerr', 'ncl', 'scalar02', 'quotbal', 'ltgtruri', 'lwsruri', 'lwsstart', 'trws', 'badvers', 'mismatch01', 'mismatch02', 'insuf', 'multi01', 'mcl01']);
    let checked = 0;
    for (const row of rows) {
      const [, file, kind] = row.split('\t');
      const name = file!.replace(/\.dat$/, '');
      const data = readFileSync(path.join(corpus, file!));
      const answers = await exchange(data, port, 150);
      const statuses = answers.map((a) => Number(/^SIP\/2\.0 (\d{3})/.exec(a)?.[1] ?? 0));
      if (strict.has(name)) {
        // A malformed request is answered with its error, or dropped when even its Via cannot be read.
        for (const s of statuses) assert.ok(s === 400 || s === 505, `${name}: answered ${s}`);
        if (name === 'badvers') assert.deepEqual(statuses, [505], 'badvers gets 505');
      }
      if (kind === 'valid' && name !== 'dblreq' && !data.toString('latin1').startsWith('SIP/2.0')) {
        assert.ok(statuses.every((s) => s !== 400 && s !== 505), `${name} is valid but was answered ${statuses.join(',')}`);
      }
      // The node is still alive and answering after every message.
      const ping = await sipPing('127.0.0.5', port, { timeoutMs: 2000 });
      assert.equal(ping.status, 200, `node answers OPTIONS after ${name}`);
      assert.equal(node.process.running, true, `node alive after ${name}`);
      checked++;
    }
    assert.ok(checked >= 40, `checked ${checked} messages`);
  } finally {
    await node.stop();
  }
});
