import http from 'node:http';
import { isIP } from 'node:net';
import { timingSafeEqual } from 'node:crypto';

/** What the admin endpoint exposes; each part is optional (a node serves its metrics, the balancer everything). */
export interface AdminHandlers {
  status?(): unknown;
  /** Resolves true when the node confirmed; false when it is unknown, dead or did not answer. */
  drain?(id: string, drain: boolean): Promise<boolean>;
  /** Prometheus text exposition. */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /** The dashboard page (GET /). */
  dashboard?(): string;
  /** Server-sent events for the dashboard (GET /events): `send` a snapshot now and then; returns the unsubscribe. */
  events?(send: (event: string, data: unknown) => void): () => void;
}

export interface AdminOptions {
  /**
   * Required when binding anywhere but loopback: then every request must carry `Authorization: Bearer TOKEN`
   * (or `?token=TOKEN`, for a browser opening the dashboard).
   */
  token?: string | null;
}

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

/** A misconfigured admin endpoint (refused before binding). */
export class AdminConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'AdminConfigError';
    this.key = key;
  }
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * The admin HTTP endpoint for operators, `sipfleet status` / `drain` and Prometheus: GET /status (JSON),
 * POST /nodes/ID/drain|undrain, GET /metrics, GET / (the live dashboard) and GET /events (its feed). Bound to
 * loopback it is open; bound elsewhere it needs a token.
 */
/** Refuses what startAdminServer would (for a command to check before it binds anything). */
export function checkAdminBinding(host: string, token: string | null): void {
  if (token !== null && token.length < 16) throw new AdminConfigError('SIPFLEET_ADMIN_TOKEN', 'must be at least 16 characters');
  if (token === null && !isLoopback(host)) {
    throw new AdminConfigError('admin', `binding ${host} (not loopback) needs a token (SIPFLEET_ADMIN_TOKEN)`);
  }
}

export async function startAdminServer(host: string, port: number, handlers: AdminHandlers, options: AdminOptions = {}): Promise<AdminServer> {
  const token = options.token ?? null;
  checkAdminBinding(host, token);
  const expected = token === null ? null : Buffer.from(token);
  const authorised = (req: http.IncomingMessage, url: URL): boolean => {
    if (expected === null) return true;
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ') === true ? header.slice(7) : url.searchParams.get('token') ?? '';
    const g = Buffer.from(given);
    return g.length === expected.length && timingSafeEqual(g, expected);
  };
  const streams = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://admin');
    if (!authorised(req, url)) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
      res.end(JSON.stringify({ error: 'a valid admin token is required' }));
      return;
    }
    const get = req.method === 'GET';
    if (get && url.pathname === '/status' && handlers.status !== undefined) {
      send(200, handlers.status());
      return;
    }
    if (get && url.pathname === '/metrics' && handlers.metrics !== undefined) {
      handlers.metrics().then(
        (m) => { res.writeHead(200, { 'content-type': m.contentType }); res.end(m.body); },
        (err: Error) => send(500, { error: err.message }),
      );
      return;
    }
    if (get && (url.pathname === '/' || url.pathname === '/dashboard') && handlers.dashboard !== undefined) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(handlers.dashboard());
      return;
    }
    if (get && url.pathname === '/events' && handlers.events !== undefined) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      streams.add(res);
      const unsubscribe = handlers.events((event, data) => { res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`); });
      req.on('close', () => { unsubscribe(); streams.delete(res); });
      return;
    }
    const m = /^\/nodes\/([^/]+)\/(drain|undrain)$/.exec(url.pathname);
    if (m !== null && req.method === 'POST' && handlers.drain !== undefined) {
      const id = decodeURIComponent(m[1]!);
      handlers.drain(id, m[2] === 'drain').then(
        (ok) => send(ok ? 200 : 404, ok ? { id, draining: m[2] === 'drain' } : { error: `node ${id} is unknown, dead or did not answer` }),
        (err: Error) => send(500, { error: err.message }),
      );
      return;
    }
    const offered = [
      handlers.status && 'GET /status', handlers.metrics && 'GET /metrics', handlers.dashboard && 'GET /',
      handlers.events && 'GET /events', handlers.drain && 'POST /nodes/ID/drain|undrain',
    ].filter(Boolean).join(', ');
    send(404, { error: `no ${req.method} ${url.pathname} (${offered})` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as { port: number };
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    close: () => new Promise<void>((resolve) => {
      for (const s of streams) s.end();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
