/** One sample of Prometheus text exposition (format 0.0.4). */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus text exposition strictly enough for tests: every non-comment line must be a sample, every
 * sample's metric must have been declared by a # TYPE line; throws on anything else (so a malformed scrape fails).
 */
export function parsePrometheus(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: PromSample[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (m === null) throw new Error(`line ${i + 1}: bad comment: ${line}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`line ${i + 1}: bad type ${m[3]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (m === null) throw new Error(`line ${i + 1}: not a sample: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2] !== undefined && m[2] !== '') {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
      let l: RegExpExecArray | null;
      let consumed = 0;
      while ((l = re.exec(m[2])) !== null) {
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        consumed = re.lastIndex;
      }
      if (consumed !== m[2].length) throw new Error(`line ${i + 1}: bad labels: ${m[2]}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    // Prometheus reads values with Go's ParseFloat, which takes NaN in any case (prom-client writes "Nan": an
    // event-loop percentile before its first sample).
    if (Number.isNaN(value) && !/^nan$/i.test(m[3]!)) throw new Error(`line ${i + 1}: bad value ${m[3]}`);
    const base = m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]!) && !types.has(base)) throw new Error(`line ${i + 1}: ${m[1]} has no # TYPE`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sumOf(samples: readonly PromSample[], name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}
