import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { SipTransportError } from '../errors.ts';
import { listenServer, type TlsOptions } from './tcp.ts';
import type { Connection } from './types.ts';

export interface WsOptions {
  host: string;
  port: number;
  /** WSS: the HTTP server is HTTPS with this key and certificate. */
  tls?: TlsOptions | null;
  maxMessageSize: number;
  /** Close a connection after this long without traffic; pings keep a live but quiet one open. */
  idleTimeoutMs: number;
}

export interface WsHandlers {
  message(data: Buffer, conn: WsConnection): void;
  /** A WebSocket protocol error or a frame over the size limit (`tooLarge`); the connection is closed after. */
  framingError(err: Error, tooLarge: boolean, conn: WsConnection): void;
}

let nextConnectionId = 1;

/** Unsent bytes a connection may hold before it is closed as a slow reader. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** One WebSocket carrying SIP (RFC 7118): each frame is one whole message, text or binary. */
export class WsConnection implements Connection {
  readonly id = nextConnectionId++;
  readonly protocol: 'WS' | 'WSS';
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localHost: string;
  readonly localPort: number;
  readonly #ws: WebSocket;
  #closed = false;
  #lastTraffic = Date.now();
  #onClose: Array<(conn: WsConnection) => void> = [];

  constructor(ws: WebSocket, protocol: 'WS' | 'WSS', remoteHost: string, remotePort: number, options: WsOptions, handlers: WsHandlers) {
    this.#ws = ws;
    this.protocol = protocol;
    this.remoteHost = remoteHost;
    this.remotePort = remotePort;
    this.localHost = options.host;
    this.localPort = options.port;
    // RFC 7118 §5: text frames carry UTF-8 messages, binary frames anything; both parse the same.
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      this.#lastTraffic = Date.now();
      handlers.message(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data), this);
    });
    ws.on('pong', () => { this.#lastTraffic = Date.now(); });
    ws.on('error', (err: Error & { code?: string }) => {
      handlers.framingError(err, err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', this);
      this.close();
    });
    ws.on('close', () => this.close());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Since the last frame received. */
  get idleMs(): number {
    return Date.now() - this.#lastTraffic;
  }

  onClose(cb: (conn: WsConnection) => void): void {
    this.#onClose.push(cb);
  }

  ping(): void {
    if (!this.#closed) this.#ws.ping();
  }

  send(data: Buffer, onError?: (err: Error) => void): void {
    if (this.#closed) {
      onError?.(new SipTransportError(`${this.protocol} connection to ${this.remoteHost}:${this.remotePort} is closed`));
      return;
    }
    if (this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      onError?.(new SipTransportError(`${this.protocol} connection to ${this.remoteHost}:${this.remotePort} is not reading; closed`));
      this.close();
      return;
    }
    // SIP is text: a text frame, as browsers' SIP stacks send and expect (RFC 7118 §5).
    this.#ws.send(data, { binary: false }, (err) => {
      if (err != null) onError?.(err);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ws.terminate();
    for (const cb of this.#onClose) cb(this);
    this.#onClose = [];
  }
}

/**
 * A WS or WSS listening point (RFC 7118). It only accepts: a server cannot open a WebSocket to a browser, so
 * requests for a WebSocket client go on the connection it opened (found by its address), or fail.
 */
export class WsEndpoint {
  readonly host: string;
  port: number;
  readonly protocol: 'WS' | 'WSS';
  readonly #http: http.Server | https.Server;
  readonly #wss: WebSocketServer;
  readonly #connections = new Map<string, WsConnection>();
  readonly #pinger: NodeJS.Timeout;

  private constructor(server: http.Server | https.Server, options: WsOptions, handlers: WsHandlers) {
    this.#http = server;
    this.host = options.host;
    this.port = options.port;
    this.protocol = options.tls != null ? 'WSS' : 'WS';
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxMessageSize,
      // RFC 7118 §4.1: the client asks for the "sip" subprotocol; anything else is not ours.
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
      perMessageDeflate: false,
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const asked = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim().toLowerCase());
      if (!asked.includes('sip')) {
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nthe "sip" WebSocket subprotocol is required (RFC 7118)\n');
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        const raw = req.socket.remoteAddress ?? '';
        const host = raw.startsWith('::ffff:') ? raw.slice(7) : raw;
        const conn = new WsConnection(ws, this.protocol, host, req.socket.remotePort ?? 0, { ...options, port: this.port }, handlers);
        const key = host + '|' + conn.remotePort;
        this.#connections.set(key, conn);
        conn.onClose(() => { if (this.#connections.get(key) === conn) this.#connections.delete(key); });
      });
    });
    // Anything but an upgrade: this port speaks SIP over WebSocket only.
    server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('SIP over WebSocket only (RFC 7118)\n');
    });
    // Pings find dead peers (a browser tab closed without a close frame); quiet connections past the idle limit go.
    const every = Math.max(1_000, Math.floor(options.idleTimeoutMs / 4));
    this.#pinger = setInterval(() => {
      for (const c of this.#connections.values()) {
        if (c.idleMs > options.idleTimeoutMs) c.close();
        else if (c.idleMs > every) c.ping();
      }
    }, every);
    this.#pinger.unref();
  }

  static listen(options: WsOptions, handlers: WsHandlers): Promise<WsEndpoint> {
    const t = options.tls;
    const server = t == null ? http.createServer() : https.createServer({ key: t.key, cert: t.cert, ca: t.ca, maxVersion: t.maxVersion });
    const endpoint = new WsEndpoint(server, options, handlers);
    if (t != null) server.on('tlsClientError', (_err: Error, socket: Duplex) => socket.destroy());
    return listenServer(server, endpoint.protocol, options.host, options.port).then((port) => {
      endpoint.port = port;
      return endpoint;
    });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** The open connection from host:port, or undefined: we cannot connect to a WebSocket client. */
  connectionFrom(host: string, port: number): WsConnection | undefined {
    const c = this.#connections.get(host + '|' + port);
    return c !== undefined && !c.closed ? c : undefined;
  }

  close(): Promise<void> {
    clearInterval(this.#pinger);
    for (const c of [...this.#connections.values()]) c.close();
    this.#wss.close();
    return new Promise((resolve) => this.#http.close(() => resolve()));
  }
}
