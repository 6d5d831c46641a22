/**
 * Typed errors of the SIP stack. Every error that leaves src/sip is a SipError: it carries the SIP status a
 * server would answer with and a stable code, so callers branch on data, not on message text.
 */
export type SipErrorCode =
  | 'SIP_PARSE'
  | 'SIP_VERSION'
  | 'SIP_TOO_LARGE'
  | 'SIP_TOO_MANY_HEADERS'
  | 'SIP_HEADER_TOO_LONG'
  | 'SIP_BAD_URI'
  | 'SIP_TRANSPORT'
  | 'SIP_TIMEOUT'
  | 'SIP_NO_DIALOG'
  | 'SIP_INVALID_STATE';

export class SipError extends Error {
  readonly status: number;
  readonly code: SipErrorCode;
  constructor(code: SipErrorCode, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SipError';
    this.code = code;
    this.status = status;
  }
}

/** A message that cannot be parsed. `status` is 400 (with the fault in the message), 505 or 513. */
export class SipParseError extends SipError {
  constructor(message: string, status = 400, code: SipErrorCode = 'SIP_PARSE') {
    super(code, status, message);
    this.name = 'SipParseError';
  }
}

export function badMessage(reason: string): SipParseError {
  return new SipParseError(reason, 400);
}

export class SipTransportError extends SipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SIP_TRANSPORT', 503, message, options);
    this.name = 'SipTransportError';
  }
}
