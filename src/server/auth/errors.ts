import { SipParseError } from '../../sip/errors.ts';

/**
 * A malformed Authorization / Proxy-Authorization header: status 400 with the fault in the message. A
 * SipParseError, so code that answers SipErrors with their status needs nothing new.
 */
export class DigestParseError extends SipParseError {
  constructor(message: string) {
    super(message, 400);
    this.name = 'DigestParseError';
  }
}

/**
 * A bad authenticator setting: names the configuration key (`auth.secret`, `auth.realm`…) and what was expected.
 * Same shape as the CLI's ConfigError, which lives above src/server and so cannot be imported from here.
 */
export class AuthConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'AuthConfigError';
    this.key = key;
  }
}
