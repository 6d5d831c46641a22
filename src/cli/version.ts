import { readFileSync } from 'node:fs';

let cached: string | null = null;

/** The package's version, from the package.json above this file (src/cli in development, dist/src/cli built). */
export function packageVersion(): string {
  if (cached !== null) return cached;
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sipfleet' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch {
      // not this one
    }
  }
  return (cached = '0.0.0');
}
