/**
 * Temporary directories for peer configs and logs (SIPp stats, Kamailio cfg). They stay on disk while the
 * test process runs, so paths returned to a test remain readable, and are removed when it exits.
 * Set SIPFLEET_KEEP_TMP=1 to keep them for post-mortem debugging.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const dirs: string[] = [];
let hooked = false;

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sipfleet-${prefix}-`));
  dirs.push(dir);
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      if (process.env.SIPFLEET_KEEP_TMP === '1') return;
      for (const d of dirs) {
        try {
          rmSync(d, { recursive: true, force: true });
        } catch {
          // best effort: a leftover temp dir must not change the test outcome
        }
      }
    });
  }
  return dir;
}
