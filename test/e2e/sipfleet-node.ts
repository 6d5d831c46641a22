import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnProcess, type ProcessHandle } from '../helpers/proc.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface NodeProcess {
  readonly process: ProcessHandle;
  stop(): Promise<void>;
}

/** Starts `sipfleet node …` from the sources (tsx) and resolves once it says it is listening. */
export async function startSipfleetNode(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<NodeProcess> {
  const proc = spawnProcess(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'node', ...args], {
    cwd: root,
    env,
    name: `sipfleet node ${args.join(' ')}`,
  });
  try {
    await proc.waitForOutput(/listening on/, 15_000, 'stdout');
  } catch (err) {
    await proc.stop(500);
    throw new Error(`${(err as Error).message}\nstderr: ${proc.stderr}`);
  }
  return {
    process: proc,
    async stop(): Promise<void> {
      await proc.stop(3000);
    },
  };
}
