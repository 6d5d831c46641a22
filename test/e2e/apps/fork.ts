import { defineApp, type SipApplication } from '../../../src/server/app/types.ts';

/** A test app: forks every INVITE to the `targets` option (comma-separated SIP URIs), in parallel or sequentially. */
export default function fork(options: Record<string, unknown>): SipApplication {
  const targets = String(options.targets ?? '').split(',').filter((t) => t !== '');
  const parallel = options.mode !== 'sequential';
  const branchTimeoutMs = Number(options.branchTimeoutMs ?? 0);
  return defineApp({
    name: 'fork',
    invite(req) {
      if (!req.isInitial) return req.proxyTo(req.uriText);
      req.proxyTo(targets, { parallel, branchTimeoutMs, recordRoute: true });
    },
    request(req) {
      req.proxyTo(req.uriText);
    },
  });
}
