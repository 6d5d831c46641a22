/**
 * SIP.js (npm `sip.js`, the browser SIP stack) run in Node as a WebSocket SIP client (RFC 7118): its own
 * transport over a real WebSocket (the `ws` package, trusting the test CA), its own transaction and dialog layers.
 * Only media is replaced: SIP.js's session description handler is WebRTC, which Node does not have, so a
 * handler offers a fixed audio SDP and accepts any answer — SIP signalling is what these tests exercise.
 */
import { WebSocket as NodeWebSocket, type ClientOptions } from 'ws';
import {
  Inviter, Registerer, SessionState, UserAgent, type Core, type Invitation, type Session, type SessionDescriptionHandler,
} from 'sip.js';

type IncomingResponse = Core.IncomingResponse;

const OFFER = [
  'v=0', 'o=sipjs 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
  'm=audio 40000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', '',
].join('\r\n');

class FixedSdpHandler implements SessionDescriptionHandler {
  #remote: string | null = null;
  close(): void {}
  getDescription(): Promise<{ body: string; contentType: string }> {
    return Promise.resolve({ body: OFFER, contentType: 'application/sdp' });
  }
  hasDescription(contentType: string): boolean {
    return contentType === 'application/sdp';
  }
  setDescription(sdp: string): Promise<void> {
    this.#remote = sdp;
    return Promise.resolve();
  }
  sendDtmf(): boolean {
    return false;
  }
  get remote(): string | null {
    return this.#remote;
  }
}

/** SIP.js opens its WebSocket with `new WebSocket(url, "sip")`: give it `ws`, trusting `ca` for wss:. */
function installWebSocket(ca: Buffer | undefined): void {
  const options: ClientOptions = ca === undefined ? {} : { ca };
  (globalThis as { WebSocket?: unknown }).WebSocket = class extends NodeWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, options);
    }
  };
}

export interface SipJsClient {
  readonly ua: UserAgent;
  /** REGISTER; resolves with the final status. */
  register(expiresS?: number): Promise<number>;
  /** INVITE `target`; resolves once the call is established (rejects with the final status otherwise). */
  call(target: string, timeoutMs?: number): Promise<Session>;
  /** The next incoming call, answered (200), its ACK received (rejects after `timeoutMs`). */
  answer(timeoutMs?: number): Promise<Session>;
  /** Resolves when the call is ended (by a BYE from the other side, or ours). */
  ended(session: Session, timeoutMs?: number): Promise<void>;
  /** BYE on an established call; resolves with the BYE's final status (rejects after `timeoutMs`). */
  bye(session: Session, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** A SIP.js user agent connected to `server` (ws:// or wss://) as `uri`. */
export async function startSipJs(options: { server: string; uri: string; ca?: Buffer }): Promise<SipJsClient> {
  installWebSocket(options.ca);
  const uri = UserAgent.makeURI(options.uri);
  if (uri === undefined) throw new Error(`bad SIP URI ${options.uri}`);
  const invitations: Invitation[] = [];
  const invitationWaiters: Array<(i: Invitation) => void> = [];
  const ua = new UserAgent({
    delegate: {
      onInvite: (invitation) => {
        const w = invitationWaiters.shift();
        if (w !== undefined) w(invitation);
        else invitations.push(invitation);
      },
    },
    uri,
    transportOptions: { server: options.server, connectionTimeout: 5 },
    sessionDescriptionHandlerFactory: () => new FixedSdpHandler(),
    logBuiltinEnabled: false,
    logLevel: 'error',
    noAnswerTimeout: 30,
  });
  await ua.start();
  const registerer = new Registerer(ua);
  return {
    ua,
    register(expiresS = 300) {
      return new Promise((resolve, reject) => {
        registerer.register({
          requestOptions: { extraHeaders: [`Expires: ${expiresS}`] },
          requestDelegate: {
            onAccept: (r: IncomingResponse) => resolve(r.message.statusCode ?? 0),
            onReject: (r: IncomingResponse) => resolve(r.message.statusCode ?? 0),
          },
        }).catch(reject);
      });
    },
    call(target, timeoutMs = 10_000) {
      const to = UserAgent.makeURI(target);
      if (to === undefined) return Promise.reject(new Error(`bad target ${target}`));
      const inviter = new Inviter(ua, to);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`call to ${target}: not established within ${timeoutMs} ms`)), timeoutMs);
        inviter.stateChange.addListener((state) => {
          if (state === SessionState.Established) {
            clearTimeout(timer);
            resolve(inviter);
          } else if (state === SessionState.Terminated) {
            clearTimeout(timer);
            reject(new Error(`call to ${target} ended before it was established`));
          }
        });
        inviter.invite({
          requestDelegate: {
            onReject: (r: IncomingResponse) => {
              clearTimeout(timer);
              reject(new Error(`call to ${target} rejected: ${r.message.statusCode} ${r.message.reasonPhrase}`));
            },
          },
        }).catch((err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        });
      });
    },
    answer(timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        let invited = false;
        const timer = setTimeout(() => reject(new Error(invited
          ? `incoming call answered 200, but its ACK did not come within ${timeoutMs} ms`
          : `no incoming INVITE within ${timeoutMs} ms`)), timeoutMs);
        const take = (invitation: Invitation): void => {
          invited = true;
          // SIP.js holds a callee's BYE until the ACK of its 2xx arrives (RFC 3261 §15): "answered" means the ACK came.
          invitation.delegate = {
            ...invitation.delegate,
            onAck: () => {
              clearTimeout(timer);
              resolve(invitation);
            },
          };
          invitation.stateChange.addListener((state) => {
            if (state === SessionState.Terminated) {
              clearTimeout(timer);
              reject(new Error('the incoming call ended before its ACK'));
            }
          });
          invitation.accept().catch((err: unknown) => {
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(String(err)));
          });
        };
        const waiting = invitations.shift();
        if (waiting !== undefined) take(waiting);
        else invitationWaiters.push(take);
      });
    },
    ended(session, timeoutMs = 10_000) {
      if (session.state === SessionState.Terminated) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`call not ended within ${timeoutMs} ms`)), timeoutMs);
        session.stateChange.addListener((state) => {
          if (state === SessionState.Terminated) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    },
    bye(session, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`BYE: no final response within ${timeoutMs} ms`)), timeoutMs);
        const done = (r: IncomingResponse): void => {
          clearTimeout(timer);
          resolve(r.message.statusCode ?? 0);
        };
        session.bye({ requestDelegate: { onAccept: done, onReject: done } }).catch((err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        });
      });
    },
    async stop() {
      await ua.stop();
    },
  };
}
