/**
 * sipfleet's public API for applications: define an app, handle requests and responses, use sessions,
 * proxying, B2BUA and timers. Import from 'sipfleet' (or this file).
 */
export { defineApp } from './server/app/types.ts';
export type { SipApplication, AppContext, AppTimer, RequestHandler, ResponseHandler } from './server/app/types.ts';
export { IncomingRequest, IncomingResponse, OutgoingRequest, OutgoingResponse } from './server/app/messages.ts';
export type { ProxyToOptions, ProxyBranch, B2buaOptions } from './server/app/messages.ts';
export type { SipApplicationSession, SipSession } from './server/app/session.ts';
export { AttributeError, type JsonValue } from './server/app/attributes.ts';
export { SipError, SipParseError } from './sip/errors.ts';
export type { Address } from './sip/message/address.ts';
export { parseUri, formatUri, type Uri, type SipUri } from './sip/message/uri.ts';
