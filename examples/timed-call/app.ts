// An example written only against sipfleet's public API: answers every call and hangs up after `seconds`
// with a timer of the container's timer service (so, with replication, it fires on a surviving node too).
//   sipfleet node --app examples/timed-call/app.ts --option seconds=30
import { defineApp, type AppContext, type SipApplication } from '../../src/index.ts';

export default function timedCall(options: Record<string, unknown>): SipApplication {
  const ms = Math.round(Number(options.seconds ?? 30) * 1000);
  let ctx: AppContext;
  return defineApp({
    name: 'timed-call',
    init(context) {
      ctx = context;
    },
    invite(req) {
      if (req.unknownDialog) return req.reply(481);
      if (!req.isInitial) return req.reply(200);
      req.reply(200, 'OK', { 'Content-Type': 'application/sdp' }, 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n');
      req.appSession.setAttribute('leg', req.session.id);
    },
    ack(req) {
      ctx.createTimer(req.appSession, ms, { hangUp: req.session.id }, { persistent: true });
    },
    timeout(timer) {
      const leg = timer.appSession.sessions.get((timer.info as { hangUp: string }).hangUp);
      if (leg !== undefined && leg.state === 'confirmed') ctx.createRequestInDialog(leg, 'BYE').send();
    },
  });
}
