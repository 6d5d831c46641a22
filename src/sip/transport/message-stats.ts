/**
 * Counts of SIP messages by direction: requests by method, responses by CSeq method and class (1xx..6xx). Plain
 * maps keyed by the method (no string built per message), incremented on the hot path; the admin layer reads them
 * when scraped.
 */
export class MessageStats {
  /** method → count, per direction. */
  readonly requests = { in: new Map<string, number>(), out: new Map<string, number>() };
  /** method → counts by class (index 1..6), per direction. */
  readonly responses = { in: new Map<string, number[]>(), out: new Map<string, number[]>() };

  request(direction: 'in' | 'out', method: string): void {
    const m = this.requests[direction];
    const key = KNOWN_METHODS.has(method) ? method : 'other';
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  response(direction: 'in' | 'out', method: string, status: number): void {
    const m = this.responses[direction];
    const key = KNOWN_METHODS.has(method) ? method : 'other';
    let counts = m.get(key);
    if (counts === undefined) {
      counts = [0, 0, 0, 0, 0, 0, 0];
      m.set(key, counts);
    }
    const cls = (status / 100) | 0;
    if (cls >= 1 && cls <= 6) counts[cls]!++;
  }
}

/** Extension methods share one label: a peer inventing methods must not grow the series without bound. */
const KNOWN_METHODS = new Set(['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE']);
