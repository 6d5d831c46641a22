import { defineApp, type AppContext, type SipApplication } from '../src/server/app/types.ts';
import type { IncomingRequest } from '../src/server/app/messages.ts';

export interface UasOptions {
  /** Ring this long before answering (ms; 0: answer at once). */
  ringMs?: number;
  /** Hang up from the callee side after this long (ms; 0: wait for the caller's BYE). */
  callMs?: number;
}

const SDP_ANSWER = (host: string): string => {
  const id = Date.now();
  return `v=0\r\no=sipfleet ${id} ${id} IN IP4 ${host}\r\ns=sipfleet\r\nc=IN IP4 ${host}\r\nt=0 0\r\n` +
    'm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n';
};

/**
 * The `uas` app: answers INVITE with 180 then 200 (after ringMs), answers re-INVITE, INFO, UPDATE, OPTIONS and
 * BYE, honours CANCEL while ringing (the container answers 487), answers 481 for dialogs it does not know, and
 * with callMs hangs up itself. Written against the public application API only.
 */
export default function uas(options: UasOptions = {}): SipApplication {
  const ringMs = Number(options.ringMs ?? 0);
  const callMs = Number(options.callMs ?? 0);
  let host = '127.0.0.1';
  let ctx: AppContext;

  function answer(req: IncomingRequest): void {
    if (req.committed) return; // cancelled while ringing
    const ok = req.createResponse(200);
    ok.setBody(SDP_ANSWER(host), 'application/sdp');
    ok.send();
    if (callMs > 0) req.appSession.setAttribute('hangUpAfterMs', callMs);
  }

  return defineApp({
    name: 'uas',
    init(context) {
      ctx = context;
      host = /sip:([^:;>]+)/.exec(ctx.localUri)?.[1] ?? host;
    },
    invite(req) {
      if (!req.isInitial) {
        if (req.unknownDialog) return req.reply(481);
        const ok = req.createResponse(200);
        if (req.body.length > 0) ok.setBody(SDP_ANSWER(host), 'application/sdp');
        ok.send();
        return;
      }
      if (ringMs <= 0) {
        req.createResponse(180).send();
        answer(req);
        return;
      }
      // Persistent: under EarlyDialog, if this node dies while the call rings, a survivor answers it (once).
      ctx.createTimer(req.appSession, ringMs, { answer: req.session.id }, { persistent: true });
      req.createResponse(180).send();
    },
    ack(req) {
      const after = req.appSession.getAttribute<number>('hangUpAfterMs');
      // Persistent: if this node dies, a survivor hangs up in its place (once).
      if (after !== undefined) ctx.createTimer(req.appSession, after, { hangUp: req.session.id }, { persistent: true });
    },
    timeout(timer) {
      const info = timer.info as { hangUp?: string; answer?: string };
      const leg = timer.appSession.sessions.get(info.hangUp ?? info.answer ?? '');
      if (leg === undefined) return;
      if (info.answer !== undefined && leg.pendingInvite !== null) answer(leg.pendingInvite);
      else if (info.hangUp !== undefined && leg.state === 'confirmed') ctx.createRequestInDialog(leg, 'BYE').send();
    },
    bye(req) {
      req.reply(req.unknownDialog ? 481 : 200);
    },
    info(req) {
      req.reply(req.unknownDialog ? 481 : 200);
    },
    update(req) {
      req.reply(req.unknownDialog ? 481 : 200);
    },
    options(req) {
      req.reply(200, undefined, { Allow: 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE', Accept: 'application/sdp' });
    },
  });
}
