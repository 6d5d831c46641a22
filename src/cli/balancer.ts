import { parseArgs } from 'node:util';
import { adminToken, startBalancerAdmin } from '../admin/balancer-admin.ts';
import { checkAdminBinding } from '../admin/server.ts';
import { Balancer } from '../balancer/balancer.ts';
import { DEFAULT_DEAD_AFTER_MS } from '../balancer/membership.ts';
import type { ListenAddress, TransportProtocol } from '../sip/transport/types.ts';
import { ConfigError, edgeConfig, hostPort, logLevel, parseTransports, positiveInt, sourceLimits } from './config.ts';
import { createLog } from './log.ts';


export function clusterSecret(): string {
  const secret = process.env.SIPFLEET_CLUSTER_SECRET;
  if (secret === undefined || secret.length < 8) {
    throw new ConfigError('SIPFLEET_CLUSTER_SECRET', 'set the cluster secret (at least 8 characters) in the environment: nodes and balancers sign heartbeats with it');
  }
  return secret;
}

export function listenOn(protocols: TransportProtocol[], hp: { host: string; port: number }): ListenAddress[] {
  return protocols.map((protocol) => ({ protocol, host: hp.host, port: hp.port }));
}

/** `sipfleet balancer`: the balancer alone, for clusters whose nodes run on other hosts. */
export async function runBalancer(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', multiple: true },
      internal: { type: 'string' },
      control: { type: 'string' },
      transport: { type: 'string' },
      'dead-after-ms': { type: 'string' },
      'source-rate': { type: 'string' },
      'source-burst': { type: 'string' },
      'max-sources': { type: 'string' },
      tls: { type: 'string' },
      ws: { type: 'string' },
      wss: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-max-version': { type: 'string' },
      admin: { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  const log = createLog('balancer', logLevel('--log-level', values['log-level']));
  const secret = clusterSecret();
  const protocols = parseTransports(values.transport);
  const ext = (values.listen ?? ['127.0.0.1:5060']).map((l) => hostPort('--listen', l));
  const first = ext[0]!;
  const internal = values.internal === undefined ? { host: first.host, port: first.port + 1 } : hostPort('--internal', values.internal);
  const control = values.control === undefined ? { host: internal.host, port: internal.port + 1 } : hostPort('--control', values.control);
  const adminAt = values.admin === undefined ? null : hostPort('--admin', values.admin, 0);
  if (adminAt !== null) checkAdminBinding(adminAt.host, adminToken()); // before binding anything
  const limits = sourceLimits((k) => values[k]);
  const edge = edgeConfig((k) => values[k]);
  const deadAfterMs = positiveInt('--dead-after-ms', values['dead-after-ms'], DEFAULT_DEAD_AFTER_MS, false);
  const balancer = await Balancer.start({
    external: [...ext.flatMap((hp) => listenOn(protocols, hp)), ...edge.listen],
    internal: listenOn(protocols, internal),
    control,
    secret,
    transport: { tls: edge.tls, onReject: (r) => log.warn(r, 'rejected SIP input') },
    deadAfterMs,
    sourceLimits: limits,
    log: (line) => log.info(line),
  });
  const admin = adminAt === null ? null : await startBalancerAdmin(balancer, adminAt.host, adminAt.port, { token: adminToken() });
  const st = balancer.status();
  const perSource = limits === null ? '' : `, per-source limit ${limits.rate}/s (burst ${balancer.sourceLimiter!.burst})`;
  log.info(`sipfleet balancer: external ${st.external.join(' ')}, internal ${st.internal.join(' ')}, control ${st.control}${perSource}${admin === null ? '' : `, admin ${admin.url}`}`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await admin?.close();
  await balancer.close();
  return 0;
}
