import type { NodeApp, SipNode } from '../src/server/node.ts';
import type { AppOptions } from '../src/server/app-options.ts';
import { Dialog } from '../src/sip/dialog/dialog.ts';
import { createResponse, type SipRequest } from '../src/sip/message/message.ts';
import { newTag } from '../src/sip/transaction/keys.ts';
import type { ServerTransaction } from '../src/sip/transaction/server.ts';

const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE';

/** A minimal SDP answer: one audio stream, PCMU. */
function sdpAnswer(host: string): Buffer {
  const id = Date.now();
  return Buffer.from(
    `v=0\r\no=sipfleet ${id} ${id} IN IP4 ${host}\r\ns=sipfleet\r\nc=IN IP4 ${host}\r\nt=0 0\r\n` +
    'm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n',
    'latin1',
  );
}

/**
 * The `stack-uas` app, on the bare stack (no application layer): answers INVITE with 180 then 200 (after `ringMs`), takes the ACK, answers BYE, re-INVITE, INFO,
 * UPDATE and OPTIONS, honours CANCEL during ringing (200 to CANCEL, 487 to INVITE), and answers 481 to in-dialog
 * requests for dialogs it does not have. With `callMs` it hangs up itself (callee-side BYE).
 */
export function createApp(options: AppOptions = {}): NodeApp {
  let node: SipNode;
  let contact = '';
  let host = '';
  const ringMs = options.ringMs ?? 0;
  const callMs = options.callMs ?? 0;
  const ringing = new Map<ServerTransaction, NodeJS.Timeout>();

  function hangUp(dialog: Dialog): void {
    if (dialog.state === 'terminated') return;
    const bye = dialog.createRequest('BYE');
    node.stack.dialogs.remove(dialog);
    node.stack.dialogs.send(bye, { onResponse: () => {} });
  }

  function answer(req: SipRequest, tx: ServerTransaction, dialog: Dialog): void {
    ringing.delete(tx);
    if (tx.state === 'terminated' || tx.lastStatus >= 200) return;
    const ok = createResponse(req, 200, undefined, dialog.record.localTag);
    ok.set('contact', contact);
    ok.set('content-type', 'application/sdp');
    ok.body = sdpAnswer(host);
    node.stack.dialogs.answer(tx, ok, dialog, () => hangUp(dialog));
    if (callMs > 0) setTimeout(() => hangUp(dialog), callMs).unref();
  }

  function onInvite(req: SipRequest, tx: ServerTransaction): void {
    const existing = node.stack.dialogs.forRequest(req);
    if (req.toTag !== null) {
      if (existing === undefined) {
        tx.reply(481);
        return;
      }
      existing.receiveRequest(req); // re-INVITE: target refresh
      const ok = createResponse(req, 200);
      ok.set('contact', contact);
      if (req.body.length > 0) {
        ok.set('content-type', 'application/sdp');
        ok.body = sdpAnswer(host);
      }
      node.stack.dialogs.answer(tx, ok, existing, () => hangUp(existing));
      return;
    }
    const tag = newTag();
    const ringing180 = createResponse(req, 180, undefined, tag);
    ringing180.set('contact', contact);
    const dialog = node.stack.dialogs.add(Dialog.fromUas(req, ringing180));
    tx.respond(ringing180);
    tx.onCancel = () => {
      const t = ringing.get(tx);
      if (t !== undefined) clearTimeout(t);
      ringing.delete(tx);
      node.stack.dialogs.remove(dialog);
      tx.reply(487, undefined, tag);
    };
    if (ringMs <= 0) answer(req, tx, dialog);
    else ringing.set(tx, setTimeout(() => answer(req, tx, dialog), ringMs));
  }

  return {
    name: 'stack-uas',
    start(n: SipNode): void {
      node = n;
      const proto = n.stack.transport.defaultProtocol;
      const sentBy = n.stack.transport.sentBy(proto);
      host = n.stack.transport.listening[0]!.host;
      contact = `<sip:uas@${sentBy}${proto === 'TCP' ? ';transport=tcp' : ''}>`;
    },
    onRequest(req, tx): void {
      if (tx === null) {
        // ACK for our 2xx.
        if (req.method === 'ACK') {
          const d = node.stack.dialogs.forRequest(req);
          if (d !== undefined) node.stack.dialogs.receiveAck(req, d);
        }
        return;
      }
      switch (req.method) {
        case 'INVITE':
          onInvite(req, tx);
          return;
        case 'CANCEL': {
          const invite = node.stack.transactions.findInviteForCancel(req);
          if (invite === undefined) {
            tx.reply(481);
            return;
          }
          tx.reply(200);
          invite.onCancel?.(req);
          return;
        }
        case 'OPTIONS': {
          const res = createResponse(req, 200, undefined, req.toTag === null ? newTag() : undefined);
          res.set('allow', ALLOW);
          res.set('accept', 'application/sdp');
          tx.respond(res);
          return;
        }
        case 'BYE':
        case 'INFO':
        case 'UPDATE': {
          const d = node.stack.dialogs.forRequest(req);
          if (d === undefined) {
            tx.reply(481);
            return;
          }
          d.receiveRequest(req);
          if (req.method === 'BYE') node.stack.dialogs.remove(d);
          tx.reply(200);
          return;
        }
        default: {
          const res = createResponse(req, 405, undefined, req.toTag === null ? newTag() : undefined);
          res.set('allow', ALLOW);
          tx.respond(res);
        }
      }
    },
    stop(): void {
      for (const t of ringing.values()) clearTimeout(t);
      ringing.clear();
    },
  };
}
