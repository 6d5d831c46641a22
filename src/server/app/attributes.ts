import { SipError } from '../../sip/errors.ts';

/** A value a session attribute or timer info may hold: what JSON carries without loss. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Raised at setAttribute (not later, at replication) when a value could not be replicated. */
export class AttributeError extends SipError {
  readonly attribute: string;
  constructor(attribute: string, why: string) {
    super('SIP_INVALID_STATE', 500, `attribute "${attribute}" is not JSON-serialisable: ${why}`);
    this.name = 'AttributeError';
    this.attribute = attribute;
  }
}

/**
 * Checks that `value` survives a JSON round trip unchanged: plain objects, arrays, strings, finite numbers,
 * booleans and null. A Date, Map, class instance, function, undefined, bigint, NaN or a cycle is refused, since
 * a node taking over the session after failover would get something else.
 */
export function assertJson(name: string, value: unknown, path = '', seen: Set<object> = new Set()): asserts value is JsonValue {
  const where = path === '' ? '' : ` at ${path}`;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new AttributeError(name, `${value} is not a finite number${where}`);
      return;
    case 'object': {
      if (value === null) return;
      if (seen.has(value)) throw new AttributeError(name, `cycle${where}`);
      seen.add(value);
      if (Array.isArray(value)) {
        value.forEach((v, i) => assertJson(name, v, `${path}[${i}]`, seen));
      } else {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new AttributeError(name, `${(value as object).constructor?.name ?? 'object'} is not a plain object${where}`);
        }
        for (const [k, v] of Object.entries(value)) assertJson(name, v, path === '' ? k : `${path}.${k}`, seen);
      }
      seen.delete(value);
      return;
    }
    default:
      throw new AttributeError(name, `${typeof value}${where}`);
  }
}

/** Attributes of a session: validated on write, copied on write so later mutation by the app is not shared. */
export class Attributes {
  /** Created on first write: most proxied calls never set an attribute. */
  #values: Map<string, JsonValue> | null = null;
  /** Set by every change; cleared by whoever replicates the session (failover). */
  dirty = false;

  get<T extends JsonValue = JsonValue>(name: string): T | undefined {
    return this.#values?.get(name) as T | undefined;
  }

  set(name: string, value: unknown): void {
    if (typeof name !== 'string' || name.length === 0) throw new AttributeError(String(name), 'the name must be a non-empty string');
    assertJson(name, value);
    (this.#values ??= new Map()).set(name, structuredClone(value));
    this.dirty = true;
  }

  remove(name: string): boolean {
    const had = this.#values?.delete(name) ?? false;
    if (had) this.dirty = true;
    return had;
  }

  names(): string[] {
    return this.#values === null ? [] : [...this.#values.keys()];
  }

  toJSON(): Record<string, JsonValue> {
    return this.#values === null ? {} : Object.fromEntries(this.#values);
  }

  static fromJSON(data: Record<string, JsonValue>): Attributes {
    const a = new Attributes();
    for (const [k, v] of Object.entries(data)) (a.#values ??= new Map()).set(k, v);
    return a;
  }
}
