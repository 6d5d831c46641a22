import { defineApp, type SipApplication } from '../src/server/app/types.ts';
import type { IncomingRequest } from '../src/server/app/messages.ts';
import type { DigestAuthenticator } from '../src/server/auth/digest.ts';
import { canonicalAor, type Registrar } from '../src/server/registrar.ts';

export interface ProxyAppOptions {
  /** Next hop (`HOST:PORT`) for requests to AORs nobody registered, and for requests addressed to this node. */
  routeTo?: string;
  /** Insert Record-Route (default true). */
  recordRoute?: boolean;
  /** Registrar and location service; without one, REGISTER is refused (405) and every request goes to routeTo. */
  registrar?: Registrar;
  /** Challenges initial INVITEs (407) when set. */
  inviteAuthenticator?: DigestAuthenticator;
}

/**
 * The `proxy` app: registrar and record-routing proxy. A request to an AOR with registered contacts forks to all of
 * them in parallel; anything else goes to `routeTo` with its Request-URI unchanged. In-dialog requests this node
 * does not hold (a caller that ignored Record-Route, a dialog of another node) are routed the same way. Written
 * against the public application API only.
 */
export default function proxy(options: ProxyAppOptions = {}): SipApplication {
  const recordRoute = options.recordRoute ?? true;
  const registrar = options.registrar;
  const auth = options.inviteAuthenticator;

  function route(req: IncomingRequest): void {
    if (options.routeTo === undefined) {
      req.reply(404, 'No Route');
      return;
    }
    req.proxyTo(req.uriText, { nextHop: options.routeTo, recordRoute });
  }

  async function initial(req: IncomingRequest, reg: Registrar): Promise<void> {
    if (auth !== undefined && req.method === 'INVITE') {
      const result = await auth.authenticate(req.raw);
      if (!result.ok) {
        const out = req.createResponse(result.challenge.status, result.challenge.reason);
        for (const v of result.challenge.getAll('proxy-authenticate')) out.addHeader('Proxy-Authenticate', v);
        out.send();
        return;
      }
    }
    const contacts = await reg.contacts(canonicalAor(req.uri));
    if (contacts.length > 0) req.proxyTo(contacts, { recordRoute, parallel: true });
    else route(req);
  }

  return defineApp({
    name: 'proxy',
    register(req) {
      if (registrar === undefined) return req.reply(405, 'No registrar (start the node with --store)', { Allow: 'INVITE, ACK, CANCEL, BYE, OPTIONS' });
      return registrar.handle(req);
    },
    request(req) {
      if (registrar !== undefined && req.isInitial && req.method !== 'ACK') return initial(req, registrar);
      route(req);
    },
  });
}
