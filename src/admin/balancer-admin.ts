import type { Balancer } from '../balancer/balancer.ts';
import { balancerMetrics } from './metrics.ts';
import { DashboardFeed, dashboardPage } from './dashboard.ts';
import { startAdminServer, type AdminServer } from './server.ts';

/**
 * A balancer's admin endpoint: status (`status` may add to the balancer's own, as `sipfleet up` does), drain,
 * Prometheus metrics, and the live dashboard with its feed.
 */
export async function startBalancerAdmin(
  balancer: Balancer, host: string, port: number, options: { status?: () => unknown; token?: string | null } = {},
): Promise<AdminServer> {
  const registry = balancerMetrics(balancer);
  const feed = new DashboardFeed(balancer);
  const page = dashboardPage();
  let server: AdminServer;
  try {
    server = await startAdminServer(host, port, {
      status: options.status ?? (() => balancer.status()),
      drain: (id, d) => balancer.drain(id, d),
      metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
      dashboard: () => page,
      events: (send) => feed.subscribe(send),
    }, { token: options.token ?? null });
  } catch (err) {
    feed.close();
    throw err;
  }
  return {
    url: server.url,
    close: async () => {
      feed.close();
      await server.close();
    },
  };
}

/** The admin token, from the environment (never from a command line, where `ps` shows it). */
export function adminToken(): string | null {
  const t = process.env.SIPFLEET_ADMIN_TOKEN;
  return t === undefined || t.length === 0 ? null : t;
}
