import { readFileSync } from 'node:fs';

let cached: string | null = null;

/** The package's version (src/cli and dist/src/cli are both three levels below the package root). */
export function packageVersion(): string {
  if (cached === null) {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    cached = pkg.version;
  }
  return cached;
}
