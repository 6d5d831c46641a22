import type { SipMessage, SipRequest } from '../message/message.ts';
import { MAGIC_COOKIE } from '../message/via.ts';

let counter = 0;
const prefix = Math.random().toString(36).slice(2, 8) + Date.now().toString(36).slice(-4);

/** A branch unique to this process and start (RFC 3261 §8.1.1.7): magic cookie, random prefix, counter. */
export function newBranch(): string {
  counter = (counter + 1) % 0x7fffffff;
  return MAGIC_COOKIE + prefix + counter.toString(36);
}

/** A tag for From/To (§19.3): random enough to be globally unique with the prefix. */
export function newTag(): string {
  counter = (counter + 1) % 0x7fffffff;
  return prefix + counter.toString(36) + Math.floor(Math.random() * 0x10000).toString(36);
}

export function isRfc3261Branch(branch: string | null): branch is string {
  return branch !== null && branch.startsWith(MAGIC_COOKIE);
}

/**
 * Server transaction key (§17.2.3): branch, sent-by and method, where ACK matches INVITE. For requests from
 * RFC 2543 elements (no magic cookie) the key is built from the Request-URI, From tag, Call-ID, CSeq number and
 * top Via instead; the To tag is checked separately for ACK.
 */
export function serverKey(req: SipRequest, methodOverride?: string): string {
  const via = req.topVia;
  const method = methodOverride ?? (req.method === 'ACK' ? 'INVITE' : req.method);
  if (isRfc3261Branch(via.branch)) {
    return via.branch + '|' + via.host + ':' + (via.port ?? '') + '|' + method;
  }
  return '2543|' + req.uriText + '|' + (req.fromTag ?? '') + '|' + req.callId + '|' + req.cseq.seq + '|' +
    req.getAll('via')[0] + '|' + method;
}

/** Client transaction key (§17.1.3): the branch of our Via and the CSeq method. */
export function clientKey(msg: SipMessage): string | null {
  const branch = msg.topVia.branch;
  if (branch === null) return null;
  return branch + '|' + msg.cseq.method;
}
