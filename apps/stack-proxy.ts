import type { NodeApp, SipNode } from '../src/server/node.ts';
import type { AppOptions } from '../src/server/app-options.ts';
import { ProxyCore } from '../src/server/proxy.ts';
import { SipError } from '../src/sip/errors.ts';
import { uriDestination } from '../src/sip/transport/transport-layer.ts';
import { parseHostPort, type Destination } from '../src/sip/transport/types.ts';

/**
 * The `stack-proxy` app: the bare stack's transaction-stateful, record-routing proxy, with no application layer
 * (the baseline the `proxy` app is measured against). Initial requests go to `routeTo` (a fixed next
 * hop) with their Request-URI unchanged; requests with a Route left follow it; in-dialog requests without one go to
 * their Request-URI, or to the next hop when that names us.
 */
export function createApp(options: AppOptions = {}): NodeApp {
  let core: ProxyCore;
  let nextHop: Destination | null = null;

  return {
    name: 'stack-proxy',
    start(node: SipNode): void {
      core = new ProxyCore(node.stack, { recordRoute: options.recordRoute ?? true });
      if (options.routeTo !== undefined) {
        const { host, port } = parseHostPort(options.routeTo);
        nextHop = { protocol: node.stack.transport.defaultProtocol, host, port };
      }
    },
    onRequest(req, tx): void {
      if (!core.receive(req, tx)) return;
      let dest = core.routeDestination(req);
      if (dest === null) {
        // Initial requests, and requests addressed to us (peers that ignore Record-Route), go to the next hop.
        if (nextHop !== null && (req.toTag === null || core.isLocal(req.uri))) dest = nextHop;
        else if (!core.isLocal(req.uri)) dest = uriDestination(req.uri);
      }
      if (dest === null) {
        // Addressed to us and nowhere to send it.
        if (req.method === 'OPTIONS') tx?.reply(200);
        else tx?.reply(404);
        return;
      }
      if (tx === null && req.method !== 'ACK') throw new SipError('SIP_INVALID_STATE', 500, 'request without transaction');
      core.forward(req, tx, { dest });
    },
    onStrayResponse(res, source): void {
      core.forwardStray(res, source);
    },
  };
}
