import net from 'node:net';
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
}

export interface StreamHandlers {
  message(data: Buffer, conn: TcpConnection): void;
  framingError(error: SipParseError, conn: TcpConnection): void;
}

let nextConnectionId = 1;

const PONG = Buffer.from('\r\n');

/** A TCP connection carrying SIP, framed by Content-Length, answering CRLF keep-alives. */
export class TcpConnection implements Connection {
  readonly id = nextConnectionId++;
  readonly protocol = 'TCP' as const;
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
    socket.on('connect', () => {
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
    if (this.#connected) this.#socket.write(data);
    else this.#pending.push({ data, onError });
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

function connectionKey(host: string, port: number): string {
  return host + '|' + port;
}

/**
 * A TCP listening point and the connections it owns, inbound and outbound. Connections are reused by remote
 * address (§18: "a persistent connection… reused"), so responses and new requests to the same peer share one.
 */
export class TcpEndpoint {
  readonly host: string;
  port: number;
  readonly #server: net.Server;
  readonly #options: TcpOptions;
  readonly #handlers: StreamHandlers;
  readonly #connections = new Map<string, TcpConnection>();

  private constructor(server: net.Server, options: TcpOptions, handlers: StreamHandlers) {
    this.#server = server;
    this.host = options.host;
    this.port = options.port;
    this.#options = options;
    this.#handlers = handlers;
  }

  static listen(options: TcpOptions, handlers: StreamHandlers): Promise<TcpEndpoint> {
    const server = net.createServer();
    const endpoint = new TcpEndpoint(server, options, handlers);
    server.on('connection', (socket) => endpoint.#adopt(socket, socket.remoteAddress ?? '', socket.remotePort ?? 0, true));
    return new Promise((resolve, reject) => {
      const failBind = (err: Error): void => reject(new SipTransportError(`cannot listen on TCP ${options.host}:${options.port}: ${err.message}`, { cause: err }));
      server.once('error', failBind);
      server.listen(options.port, options.host, () => {
        server.off('error', failBind);
        const addr = server.address();
        if (addr !== null && typeof addr === 'object') endpoint.port = addr.port;
        resolve(endpoint);
      });
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

  /** The open connection to host:port, or a new one (connected from this listening address). */
  connectionTo(host: string, port: number): TcpConnection {
    const existing = this.#connections.get(connectionKey(host, port));
    if (existing !== undefined && !existing.closed) return existing;
    const socket = net.connect({ host, port, localAddress: this.host === '0.0.0.0' || this.host === '::' ? undefined : this.host });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), this.#options.connectTimeoutMs);
    socket.once('connect', () => clearTimeout(timer));
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
