/** UDP and TCP everywhere; TLS, WS and WSS (RFC 7118) where clients connect: the balancer's external side. */
export type TransportProtocol = 'UDP' | 'TCP' | 'TLS' | 'WS' | 'WSS';

const PROTOCOLS: ReadonlySet<string> = new Set(['UDP', 'TCP', 'TLS', 'WS', 'WSS']);

/** A Via transport or a URI's transport parameter, upper-cased, as one of ours; null when we do not speak it. */
export function toProtocol(text: string): TransportProtocol | null {
  const p = text.toUpperCase();
  return PROTOCOLS.has(p) ? (p as TransportProtocol) : null;
}

/** A URI's `;transport=` value for a protocol (none for UDP, the default). */
export function transportParam(protocol: TransportProtocol): string {
  return protocol === 'UDP' ? '' : `;transport=${protocol.toLowerCase()}`;
}

export function isReliable(protocol: string): boolean {
  return protocol !== 'UDP';
}

/** Where a message goes: resolved transport, address and port. */
export interface Destination {
  protocol: TransportProtocol;
  host: string;
  port: number;
}

/** A stream connection, as far as the layers above need to know it: to answer on it, and to see it is gone. */
export interface Connection {
  readonly id: number;
  readonly protocol: TransportProtocol;
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly closed: boolean;
}

/** Where a message came from. */
export interface Source {
  protocol: TransportProtocol;
  host: string;
  port: number;
  localHost: string;
  localPort: number;
  /** Set for stream transports: the connection the message arrived on. */
  connection: Connection | null;
}

export interface ListenAddress {
  protocol: TransportProtocol;
  host: string;
  port: number;
}

/** Parses `HOST:PORT`, `[v6]:PORT` or `HOST` (port 5060). */
export function parseHostPort(text: string, defaultPort = 5060): { host: string; port: number } {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) throw new Error(`bad address "${text}": unterminated IPv6 reference`);
    host = text.slice(1, close);
    if (text.length > close + 1) {
      if (text[close + 1] !== ':') throw new Error(`bad address "${text}"`);
      portText = text.slice(close + 2);
    }
  } else {
    const colon = text.lastIndexOf(':');
    if (colon !== -1 && text.indexOf(':') === colon) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else {
      host = text;
    }
  }
  if (host.length === 0) throw new Error(`bad address "${text}": no host`);
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error(`bad address "${text}": bad port`);
    port = Number(portText);
  }
  return { host, port };
}

/** host:port as written in a Via sent-by or a URI (IPv6 in brackets). */
export function formatHostPort(host: string, port: number): string {
  return (host.includes(':') && !host.startsWith('[') ? `[${host}]` : host) + ':' + port;
}
