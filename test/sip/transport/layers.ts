/** Transport layers for the transport tests: started, recorded, and closed after the file's tests. */
import { after } from 'node:test';
import type { SipRequest, SipResponse } from '../../../src/sip/message/index.ts';
import { TransportLayer, type TransportOptions, type TransportUser } from '../../../src/sip/transport/transport-layer.ts';
import type { Source } from '../../../src/sip/transport/types.ts';
import { Inbox } from './wait.ts';

/** Records what the transport layer delivers. */
export class Recorder implements TransportUser {
  readonly requests = new Inbox<{ req: SipRequest; source: Source }>();
  readonly responses = new Inbox<{ res: SipResponse; source: Source }>();
  receiveRequest(req: SipRequest, source: Source): void {
    this.requests.push({ req, source });
  }
  receiveResponse(res: SipResponse, source: Source): void {
    this.responses.push({ res, source });
  }
}

/** Run after the file's tests, last registered first (sockets, clients, layers). */
export const closers: Array<() => Promise<void> | void> = [];

after(async () => {
  for (const c of closers.reverse()) await c();
});

export async function startLayer(options: TransportOptions): Promise<{ layer: TransportLayer; user: Recorder }> {
  const layer = await TransportLayer.start(options);
  closers.push(() => layer.close());
  const user = new Recorder();
  layer.setUser(user);
  return { layer, user };
}
