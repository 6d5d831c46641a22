import http from 'node:http';

/** What the admin endpoint exposes: the cluster's status and draining. */
export interface AdminHandlers {
  status(): unknown;
  /** Resolves true when the node confirmed; false when it is unknown, dead or did not answer. */
  drain(id: string, drain: boolean): Promise<boolean>;
}

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A small HTTP/JSON endpoint for operators and `sipfleet status` / `sipfleet drain`: GET /status,
 * POST /nodes/ID/drain, POST /nodes/ID/undrain. Bind it to loopback (or a management network): it is not
 * authenticated.
 */
export async function startAdminServer(host: string, port: number, handlers: AdminHandlers): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method === 'GET' && url.pathname === '/status') {
      send(200, handlers.status());
      return;
    }
    const m = /^\/nodes\/([^/]+)\/(drain|undrain)$/.exec(url.pathname);
    if (m !== null && req.method === 'POST') {
      const id = decodeURIComponent(m[1]!);
      handlers.drain(id, m[2] === 'drain').then(
        (ok) => send(ok ? 200 : 404, ok ? { id, draining: m[2] === 'drain' } : { error: `node ${id} is unknown, dead or did not answer` }),
        (err: Error) => send(500, { error: err.message }),
      );
      return;
    }
    send(404, { error: `no ${req.method} ${url.pathname} (GET /status, POST /nodes/ID/drain|undrain)` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as { port: number };
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
