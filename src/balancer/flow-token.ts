import { createHmac } from 'node:crypto';
import type { Destination, TransportProtocol } from '../sip/transport/types.ts';

/**
 * Flow tokens (RFC 5626 §5.2): the user part of the balancer's Record-Route and Path entries names the client
 * connection (TLS, WS, WSS) a dialog or registration came in on, so requests from nodes towards that client go
 * back on it, whatever address its Contact gives (a browser's is `….invalid`). Signed with the cluster secret:
 * a forged token cannot make the balancer write to someone else's connection. Stateless, like the balancer.
 */
const CODES: Partial<Record<TransportProtocol, string>> = { TLS: 't', WS: 'w', WSS: 's' };
const PROTOCOL_OF: Record<string, TransportProtocol> = { t: 'TLS', w: 'WS', s: 'WSS' };
const PREFIX = 'sf-';
/** base64url characters of HMAC-SHA256 kept (72 bits). */
const MAC_CHARS = 12;

export class FlowTokens {
  readonly #key: Buffer;

  constructor(secret: string) {
    this.#key = createHmac('sha256', 'sipfleet flow token').update(secret).digest();
  }

  /** Whether requests towards a client on this transport need a token: only connections we cannot open. */
  static needed(protocol: TransportProtocol): boolean {
    return CODES[protocol] !== undefined;
  }

  /** `sf-<code><4|6><host>~<port>-<mac>`: URI user-part safe (IPv6 colons become '.'; the MAC may contain '-' and '_'). */
  encode(protocol: TransportProtocol, host: string, port: number): string {
    const body = CODES[protocol]! + (host.includes(':') ? '6' + host.replaceAll(':', '.') : '4' + host) + '~' + port;
    return PREFIX + body + '-' + this.#mac(body);
  }

  /** Whether a URI user part is shaped like a token of ours (valid or not). */
  static looksLike(user: string | null | undefined): boolean {
    return user != null && user.startsWith(PREFIX);
  }

  /** The connection a token names, or null when it is not one of ours or its signature is wrong. */
  decode(user: string | null | undefined): Destination | null {
    if (user == null || !user.startsWith(PREFIX)) return null;
    // The MAC is base64url, whose alphabet has '-': it is the last MAC_CHARS characters, after a '-', not
    // whatever follows the last '-' (that would reject about 1 token in 6).
    const dash = user.length - MAC_CHARS - 1;
    if (dash <= PREFIX.length || user[dash] !== '-') return null;
    const body = user.slice(PREFIX.length, dash);
    if (user.slice(dash + 1) !== this.#mac(body)) return null;
    const protocol = PROTOCOL_OF[body[0]!];
    const tilde = body.lastIndexOf('~');
    if (protocol === undefined || tilde === -1) return null;
    const port = Number(body.slice(tilde + 1));
    const raw = body.slice(2, tilde);
    const host = body[1] === '6' ? raw.replaceAll('.', ':') : raw;
    if (!Number.isInteger(port) || port <= 0 || port > 65535 || host.length === 0) return null;
    return { protocol, host, port };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url').slice(0, MAC_CHARS);
  }
}
