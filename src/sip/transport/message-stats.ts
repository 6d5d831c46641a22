/**
 * Counts of SIP messages by direction: requests by method, responses by class (1xx..6xx) and CSeq method. Plain
 * maps incremented on the hot path (no metrics library below the admin layer, which reads them when scraped).
 */
export class MessageStats {
  /** `${direction} ${method}` → count. */
  readonly requests = new Map<string, number>();
  /** `${direction} ${method} ${class}` → count, class as '2xx'. */
  readonly responses = new Map<string, number>();

  request(direction: 'in' | 'out', method: string): void {
    const key = `${direction} ${boundedMethod(method)}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  response(direction: 'in' | 'out', method: string, status: number): void {
    const key = `${direction} ${boundedMethod(method)} ${Math.trunc(status / 100)}xx`;
    this.responses.set(key, (this.responses.get(key) ?? 0) + 1);
  }
}

const KNOWN_METHODS = new Set(['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE']);

/** Extension methods share one label: a peer inventing methods must not grow the series without bound. */
function boundedMethod(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'other';
}
