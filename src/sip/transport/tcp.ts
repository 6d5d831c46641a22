import net from 'node:net';
import tls from 'node:tls';
import { SipTransportError, type SipParseError } from '../errors.ts';
import { StreamFramer } from './stream-framer.ts';
import type { Connection } from './types.ts';

export interface TcpOptions {
  host: string;
  port: number;
  /** Close a connection after this long without traffic in either direction. */
  idleTimeoutMs: number;
  maxMessageSize: number;
  connectTimeoutMs: number;
  /**
   * TLS (RFC 3261 §26.2.1, RFC 5630): this listening point accepts and opens TLS connections. Server key and
   * certificate; `ca` and `rejectUnauthorized` apply to the connections we open.
   */
  tls?: TlsOptions | null;
}

export interface TlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  ca?: string | Buffer | Array<string | Buffer>;
  /** Whether a peer we connect to must present a certificate our CAs trust (default true). */
  rejectUnauthorized?: boolean;
  /** Ask clients for a certificate (mutual TLS) and refuse those without a trusted one (default false). */
  requestClientCert?: boolean;
  /** Highest TLS version offered (default TLSv1.3). Some peers' TLS 1.3 stacks choke on session tickets. */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}

/** Writes a connection may hold unsent before it is closed as a slow reader (a flood must not grow memory). */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export interface StreamHandlers {
  message(data: Buffer, conn: TcpConnection): void;
  framingError(error: SipParseError, conn: TcpConnection): void;
}

let nextConnectionId = 1;

const PONG = Buffer.from('\r\n');

/** A TCP or TLS connection carrying SIP, framed by Content-Length, answering CRLF keep-alives. */
export class TcpConnection implements Connection {
  readonly id = nextConnectionId++;
  readonly protocol: 'TCP' | 'TLS';
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localHost: string;
  readonly localPort: number;
  readonly #socket: net.Socket;
  readonly #framer: StreamFramer;
  #closed = false;
  #connected: boolean;
  /** Writes queued until an outbound connection is up, with who to tell if it never comes up. */
  #pending: Array<{ data: Buffer; onError: ((err: Error) => void) | undefined }> = [];
  #onClose: Array<(conn: TcpConnection) => void> = [];

  constructor(socket: net.Socket, remoteHost: string, remotePort: number, connected: boolean, options: TcpOptions, handlers: StreamHandlers) {
    this.#socket = socket;
    this.remoteHost = remoteHost;
    this.remotePort = remotePort;
    this.localHost = options.host;
    this.localPort = options.port;
    this.#connected = connected;
    this.protocol = options.tls != null ? 'TLS' : 'TCP';
    this.#framer = new StreamFramer(options.maxMessageSize);
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs, () => this.close());
    socket.on('data', (chunk: Buffer) => {
      this.#framer.push(chunk, (ev) => {
        if (ev.kind === 'message') handlers.message(ev.data, this);
        else if (ev.kind === 'ping') socket.write(PONG);
        else {
          handlers.framingError(ev.error, this);
          this.close();
        }
      });
    });
    socket.on(this.protocol === 'TLS' ? 'secureConnect' : 'connect', () => {
      this.#connected = true;
      for (const p of this.#pending) socket.write(p.data);
      this.#pending = [];
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  get closed(): boolean {
    return this.#closed;
  }

  onClose(cb: (conn: TcpConnection) => void): void {
    this.#onClose.push(cb);
  }

  send(data: Buffer, onError?: (err: Error) => void): void {
    if (this.#closed) {
      onError?.(new SipTransportError(`TCP connection to ${this.remoteHost}:${this.remotePort} is closed`));
      return;
    }
    if (!this.#connected) {
      this.#pending.push({ data, onError });
      return;
    }
    if (this.#socket.writableLength > MAX_BUFFERED_BYTES) {
      // The peer does not read: holding more would let it grow our memory without bound.
      onError?.(new SipTransportError(`${this.protocol} connection to ${this.remoteHost}:${this.remotePort} is not reading; closed`));
      this.close();
      return;
    }
    this.#socket.write(data);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    const unsent = this.#pending;
    this.#pending = [];
    for (const p of unsent) p.onError?.(new SipTransportError(`TCP connection to ${this.remoteHost}:${this.remotePort} failed`));
    for (const cb of this.#onClose) cb(this);
    this.#onClose = [];
  }
}

/** Binds a stream server (TCP, TLS, HTTP for WebSocket); resolves with the port bound (port 0: any). */
export function listenServer(server: net.Server, name: string, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const failBind = (err: Error): void => reject(new SipTransportError(`cannot listen on ${name} ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', failBind);
    server.listen(port, host, () => {
      server.off('error', failBind);
      const addr = server.address();
      resolve(addr !== null && typeof addr === 'object' ? addr.port : port);
    });
  });
}

function connectionKey(host: string, port: number): string {
  return host + '|' + port;
}

/**
 * A TCP (or TLS) listening point and the connections it owns, inbound and outbound. Connections are reused by remote
 * address (§18: "a persistent connection… reused"), so responses and new requests to the same peer share one.
 */
export class TcpEndpoint {
  readonly host: string;
  port: number;
  readonly #server: net.Server | tls.Server;
  readonly #options: TcpOptions;
  readonly #handlers: StreamHandlers;
  readonly #connections = new Map<string, TcpConnection>();

  private constructor(server: net.Server | tls.Server, options: TcpOptions, handlers: StreamHandlers) {
    this.#server = server;
    this.host = options.host;
    this.port = options.port;
    this.#options = options;
    this.#handlers = handlers;
  }

  static listen(options: TcpOptions, handlers: StreamHandlers): Promise<TcpEndpoint> {
    const t = options.tls;
    const server = t == null
      ? net.createServer()
      : tls.createServer({ key: t.key, cert: t.cert, ca: t.ca, maxVersion: t.maxVersion, requestCert: t.requestClientCert === true, rejectUnauthorized: t.requestClientCert === true });
    const endpoint = new TcpEndpoint(server, options, handlers);
    // A TLS server hands over its sockets once the handshake is done; a failed handshake never reaches us.
    server.on(t == null ? 'connection' : 'secureConnection', (socket: net.Socket) => endpoint.#adopt(socket, socket.remoteAddress ?? '', socket.remotePort ?? 0, true));
    if (t != null) server.on('tlsClientError', (_err, socket) => socket.destroy());
    return listenServer(server, t == null ? 'TCP' : 'TLS', options.host, options.port).then((port) => {
      endpoint.port = port;
      return endpoint;
    });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  #adopt(socket: net.Socket, host: string, port: number, connected: boolean): TcpConnection {
    const normalizedHost = host.startsWith('::ffff:') ? host.slice(7) : host;
    const conn = new TcpConnection(socket, normalizedHost, port, connected, { ...this.#options, port: this.port }, this.#handlers);
    const key = connectionKey(normalizedHost, port);
    this.#connections.set(key, conn);
    conn.onClose(() => {
      if (this.#connections.get(key) === conn) this.#connections.delete(key);
    });
    return conn;
  }

  /** Whether a connection with host:port is open (ours or theirs). */
  hasConnection(host: string, port: number): boolean {
    const c = this.#connections.get(connectionKey(host, port));
    return c !== undefined && !c.closed;
  }

  /** The open connection to host:port, or a new one (connected from this listening address). */
  connectionTo(host: string, port: number): TcpConnection {
    const existing = this.#connections.get(connectionKey(host, port));
    if (existing !== undefined && !existing.closed) return existing;
    const localAddress = this.host === '0.0.0.0' || this.host === '::' ? undefined : this.host;
    const t = this.#options.tls;
    const socket = t == null
      ? net.connect({ host, port, localAddress })
      // tls.connect has no localAddress: it runs over a TCP socket opened from our address.
      : tls.connect({ socket: net.connect({ host, port, localAddress }), ca: t.ca, key: t.key, cert: t.cert, maxVersion: t.maxVersion, rejectUnauthorized: t.rejectUnauthorized !== false, servername: net.isIP(host) === 0 ? host : undefined });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), this.#options.connectTimeoutMs);
    socket.once(t == null ? 'connect' : 'secureConnect', () => clearTimeout(timer));
    socket.once('error', () => clearTimeout(timer));
    // close() before the connect completes destroys the socket without an 'error': the timer must not outlive it.
    socket.once('close', () => clearTimeout(timer));
    return this.#adopt(socket, host, port, false);
  }

  close(): Promise<void> {
    for (const c of [...this.#connections.values()]) c.close();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
