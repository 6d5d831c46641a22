import { pickNode } from '../server/cluster/affinity.ts';

export { pickNode };

/** What routing needs to know of a node. */
export interface RoutingNode {
  readonly id: string;
  /** hashString(id): a node's rendezvous seed depends only on its id, so every balancer ranks alike. */
  readonly seed: number;
  readonly version: string;
  /** Its heartbeat says it is past its overload limits. */
  readonly overloaded?: boolean;
}

/**
 * Compares versions as semver does: dotted parts numerically where both are numbers ("1.10.0" > "1.9.2"), else as
 * text; missing parts are 0 ("1.2" = "1.2.0"); a pre-release ranks below its release ("1.0.0-rc.1" < "1.0.0").
 */
export function compareVersions(a: string, b: string): number {
  const [mainA = '', preA] = splitPre(a);
  const [mainB = '', preB] = splitPre(b);
  const c = compareParts(mainA.split('.'), mainB.split('.'));
  if (c !== 0) return c;
  if (preA === undefined || preB === undefined) return preA === preB ? 0 : preA === undefined ? 1 : -1;
  return compareParts(preA.split('.'), preB.split('.'));
}

function splitPre(v: string): [string, string | undefined] {
  const dash = v.indexOf('-');
  return dash === -1 ? [v, undefined] : [v.slice(0, dash), v.slice(dash + 1)];
}

function compareParts(pa: string[], pb: string[]): number {
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '0';
    const y = pb[i] ?? '0';
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const c = !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return c < 0 ? -1 : 1;
  }
  return 0;
}

/** New calls go to the nodes of the highest version among those that take calls (a rolling upgrade). */
export function newCallCandidates<T extends RoutingNode>(accepting: readonly T[]): T[] {
  let top: string | null = null;
  for (const n of accepting) if (top === null || compareVersions(n.version, top) > 0) top = n.version;
  return accepting.filter((n) => compareVersions(n.version, top!) === 0);
}

/** Where a dead node's calls go: survivors of its version when there are any (failover stays within a version). */
export function failoverCandidates<T extends RoutingNode>(alive: readonly T[], version: string | null): T[] {
  if (version === null) return alive as T[];
  const same = alive.filter((n) => compareVersions(n.version, version) === 0);
  return same.length > 0 ? same : (alive as T[]);
}

/**
 * New calls avoid overloaded nodes; when every candidate is overloaded they still go to them, and each answers
 * what it cannot take with 503 and Retry-After (its own view of its load is fresher than its last heartbeat).
 * Applied after the version rule: an upgrade never sends new calls back to an older version.
 */
export function notOverloaded<T extends RoutingNode>(candidates: readonly T[]): T[] {
  const fit = candidates.filter((n) => n.overloaded !== true);
  return fit.length > 0 ? fit : (candidates as T[]);
}
