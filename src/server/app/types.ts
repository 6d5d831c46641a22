import type { JsonValue } from './attributes.ts';
import type { IncomingRequest, IncomingResponse, OutgoingRequest } from './messages.ts';
import type { SipApplicationSession, SipSession } from './session.ts';

export type Awaitable<T> = T | Promise<T>;
export type RequestHandler = (req: IncomingRequest) => Awaitable<void>;
export type ResponseHandler = (res: IncomingResponse) => Awaitable<void>;

export const HANDLED_METHODS = [
  'invite', 'ack', 'bye', 'cancel', 'register', 'options', 'message', 'info', 'update', 'prack', 'subscribe', 'notify', 'refer',
] as const;
export type HandledMethod = (typeof HANDLED_METHODS)[number];

/** A timer of the timer service (JSR 289 ServletTimer). */
export interface AppTimer {
  readonly id: string;
  readonly info: JsonValue;
  readonly appSession: SipApplicationSession;
  /** Whether it is stored with its session and fires on a surviving node (failover). */
  readonly persistent: boolean;
  cancel(): void;
}

/** What the container offers an application beyond the messages it is handed. */
export interface AppContext {
  /** A new request outside any dialog (UAC), in a new or given application session. */
  createRequest(method: string, options: {
    from: string;
    to: string;
    requestUri?: string;
    appSession?: SipApplicationSession;
    headers?: Record<string, string>;
    body?: Buffer | string;
    contentType?: string;
  }): OutgoingRequest;
  /** A request inside a leg's dialog (BYE, re-INVITE, INFO…); a BYE ends the leg once answered. */
  createRequestInDialog(session: SipSession, method: string): OutgoingRequest;
  createTimer(appSession: SipApplicationSession, delayMs: number, info: unknown, options?: { persistent?: boolean }): AppTimer;
  createApplicationSession(): SipApplicationSession;
  /** The SIP URI that reaches this node (for Contact and Record-Route). */
  readonly localUri: string;
  /** Options given on the command line or in the config for this app. */
  readonly options: Readonly<Record<string, unknown>>;
}

/**
 * A SIP application: handlers per method and per response class, in the spirit of SIP Servlets (JSR 289/359).
 * Every handler may be async; a handler that throws gets its request answered 500 with the reason.
 */
export interface SipApplication extends Partial<Record<HandledMethod, RequestHandler>> {
  readonly name: string;
  /** Methods without a handler of their own. */
  request?: RequestHandler;
  provisionalResponse?: ResponseHandler;
  successResponse?: ResponseHandler;
  errorResponse?: ResponseHandler;
  timeout?(timer: AppTimer): Awaitable<void>;
  sessionCreated?(session: SipApplicationSession): void;
  sessionDestroyed?(session: SipApplicationSession): void;
  /** The session was loaded on this node after the node that held it failed. */
  sessionActivated?(session: SipApplicationSession): void;
  init?(ctx: AppContext): Awaitable<void>;
  destroy?(): Awaitable<void>;
}

/** Identity function that types an application module's default export. */
export function defineApp<T extends SipApplication>(app: T): T {
  return app;
}
