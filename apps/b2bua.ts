import { defineApp, type SipApplication } from '../src/server/app/types.ts';

export interface B2buaAppOptions {
  /** Where the outgoing leg goes (`HOST:PORT`); default: resolved from the Request-URI. */
  routeTo?: string;
}

/**
 * The `b2bua` app: every INVITE becomes two dialogs with different Call-IDs, linked by the container, which relays
 * provisional and final responses, CANCEL, BYE from either side and re-INVITE/UPDATE/INFO. Written against the
 * public application API only.
 */
export default function b2bua(options: B2buaAppOptions = {}): SipApplication {
  return defineApp({
    name: 'b2bua',
    invite(req) {
      // In-dialog requests of known legs never get here: the container relays them to the other leg.
      if (req.unknownDialog) return req.reply(481);
      req.b2bua({ via: options.routeTo });
    },
    options(req) {
      req.reply(200);
    },
  });
}
