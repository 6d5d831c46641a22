import { defineApp, type SipApplication } from '../src/server/app/types.ts';
import type { IncomingRequest } from '../src/server/app/messages.ts';

export interface ProxyAppOptions {
  /** Next hop (`HOST:PORT`) for requests to AORs nobody registered, and for requests addressed to this node. */
  routeTo?: string;
  /** Insert Record-Route (default true). */
  recordRoute?: boolean;
  /** Contacts of the AOR in the Request-URI, when a location service is configured (registered bindings). */
  lookup?: (aor: string) => Promise<string[]>;
}

/**
 * The `proxy` app: a record-routing proxy. A request to an AOR with registered contacts forks to all of them in
 * parallel; anything else goes to `routeTo` with its Request-URI unchanged. In-dialog requests this node does not
 * hold (a caller that ignored Record-Route, a dialog of another node) are routed the same way. Written against the
 * public application API only.
 */
export default function proxy(options: ProxyAppOptions = {}): SipApplication {
  const recordRoute = options.recordRoute ?? true;

  function route(req: IncomingRequest): void {
    if (options.routeTo === undefined) {
      req.reply(404, 'No Route');
      return;
    }
    req.proxyTo(req.uriText, { nextHop: options.routeTo, recordRoute });
  }

  return defineApp({
    name: 'proxy',
    request(req) {
      if (!req.isInitial || options.lookup === undefined || req.method === 'ACK') {
        route(req);
        return;
      }
      const lookup = options.lookup;
      const aor = aorOf(req.uriText);
      return lookup(aor).then((contacts) => {
        if (contacts.length > 0) req.proxyTo(contacts, { recordRoute, parallel: true });
        else route(req);
      });
    },
  });
}

/** The address-of-record of a Request-URI: scheme, user and host, without port or parameters. */
export function aorOf(uri: string): string {
  const m = /^(sips?):(?:([^@;?]+)@)?([^:;?>]+)/i.exec(uri);
  if (m === null) return uri;
  return `${m[1]!.toLowerCase()}:${m[2] !== undefined ? m[2] + '@' : ''}${m[3]!.toLowerCase()}`;
}
