import type { NodeApp } from '../../src/server/node.ts';
import type { SipRequest } from '../../src/sip/message/message.ts';
import type { ServerTransaction } from '../../src/sip/transaction/server.ts';

/** A node's app for the balancer tests: answers every request 200 and remembers what it received. */
export class EchoApp implements NodeApp {
  readonly name = 'echo';
  readonly received: SipRequest[] = [];
  onRequest(req: SipRequest, tx: ServerTransaction | null): void {
    this.received.push(req);
    tx?.reply(200);
  }
}
