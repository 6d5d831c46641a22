// An example written only against sipfleet's public API: a proxy that refuses callers on a blocklist.
//   sipfleet node --app examples/blocklist-proxy/app.ts --route-to 127.0.0.3:5060 --option block=spam,robocall
import { defineApp, type SipApplication } from '../../src/index.ts';

export default function blocklistProxy(options: Record<string, unknown>): SipApplication {
  const blocked = new Set(String(options.block ?? '').split(',').filter((u) => u !== ''));
  const routeTo = typeof options.routeTo === 'string' ? options.routeTo : undefined;
  return defineApp({
    name: 'blocklist-proxy',
    request(req) {
      const from = req.from.uri;
      const user = 'user' in from ? from.user : null;
      if (req.isInitial && user !== null && blocked.has(user)) {
        req.reply(403, 'Caller Blocked');
        return;
      }
      if (routeTo === undefined) {
        req.reply(404, 'No Route');
        return;
      }
      if (req.isInitial) req.appSession.setAttribute('caller', user);
      req.proxyTo(req.uriText, { nextHop: routeTo });
    },
  });
}
