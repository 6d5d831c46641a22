/**
 * Affinity keys: which node serves a call. The balancer hashes the Call-ID (or the key a node stamped into its
 * Record-Route/Contact as `sfk`, so that both legs of a B2BUA, with different Call-IDs, go to one node) and ranks
 * the nodes by rendezvous hashing. Nodes and balancers share this file so they compute the same key.
 */

/** The URI parameter carrying an affinity key (8 hex digits). */
export const AFFINITY_PARAM = 'sfk';

/** MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units: fast, well mixed, identical everywhere. */
export function hashString(text: string, seed = 0): number {
  let h = seed >>> 0;
  const n = text.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = (text.charCodeAt(i) & 0xffff) | ((text.charCodeAt(i + 1) & 0xffff) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  return mix32(h);
}

/** MurmurHash3's finaliser: a bijection on 32 bits that spreads every input bit over the output. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The affinity key of a call: the hash of the Call-ID that started it, as 8 hex digits. */
export function affinityKey(callId: string): string {
  return hashString(callId).toString(16).padStart(8, '0');
}

/** The hash an affinity key stands for, or null when the text is not one. */
export function parseAffinityKey(text: string | null | undefined): number | null {
  if (text == null || text.length !== 8) return null;
  const v = Number.parseInt(text, 16);
  return Number.isNaN(v) || !/^[0-9a-f]{8}$/i.test(text) ? null : v >>> 0;
}

/** Rendezvous weight of a node (its seed: hashString(node id)) for a key hash; the highest weight wins. */
export function rendezvousWeight(nodeSeed: number, keyHash: number): number {
  return mix32((nodeSeed ^ Math.imul(keyHash, 0x9e3779b1)) >>> 0);
}

/** A node as rendezvous hashing sees it: its id and seed (hashString(id)). */
export interface RendezvousNode {
  readonly id: string;
  readonly seed: number;
}

/**
 * Rendezvous (highest random weight) hashing: the node with the highest weight for the key wins. When a node
 * leaves, only its keys move, and they spread evenly over the rest. Ties (one in 2^32) go to the lower id, so
 * every balancer and node agrees.
 */
export function pickNode<T extends RendezvousNode>(candidates: readonly T[], keyHash: number): T | null {
  let best: T | null = null;
  let bestWeight = -1;
  for (const n of candidates) {
    const w = rendezvousWeight(n.seed, keyHash);
    if (w > bestWeight || (w === bestWeight && best !== null && n.id < best.id)) {
      best = n;
      bestWeight = w;
    }
  }
  return best;
}
