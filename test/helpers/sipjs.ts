/**
 * SIP.js (npm `sip.js`, the browser SIP stack) run in Node as a WebSocket SIP client (RFC 7118): its own
 * transport over a real WebSocket (the `ws` package, trusting the test CA), its own transaction and dialog layers.
 * Only media is replaced: SIP.js's session description handler is WebRTC, which Node does not have, so a
 * handler offers a fixed audio SDP and accepts any answer — SIP signalling is what these tests exercise.
 */
import { WebSocket as NodeWebSocket, type ClientOptions } from 'ws';
import {
  Inviter, Registerer, SessionState, UserAgent, type Core, type Session, type SessionDescriptionHandler,
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
  /** BYE on an established call; resolves with the BYE's final status (rejects after `timeoutMs`). */
  bye(session: Session, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** A SIP.js user agent connected to `server` (ws:// or wss://) as `uri`. */
export async function startSipJs(options: { server: string; uri: string; ca?: Buffer }): Promise<SipJsClient> {
  installWebSocket(options.ca);
  const uri = UserAgent.makeURI(options.uri);
  if (uri === undefined) throw new Error(`bad SIP URI ${options.uri}`);
  const ua = new UserAgent({
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
