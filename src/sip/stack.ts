import { DialogLayer } from './dialog/dialog-layer.ts';
import { TransactionLayer } from './transaction/layer.ts';
import type { TimerSettings } from './transaction/timers.ts';
import { TransportLayer, type TransportOptions } from './transport/transport-layer.ts';

export interface StackOptions extends TransportOptions {
  timers?: Partial<TimerSettings>;
}

/** The three layers wired together: transport → transactions → dialogs. The TU sets itself on `transactions`. */
export class SipStack {
  readonly transport: TransportLayer;
  readonly transactions: TransactionLayer;
  readonly dialogs: DialogLayer;

  private constructor(transport: TransportLayer, timers: Partial<TimerSettings> | undefined) {
    this.transport = transport;
    this.transactions = new TransactionLayer(transport, timers);
    this.dialogs = new DialogLayer(this.transactions);
  }

  static async start(options: StackOptions): Promise<SipStack> {
    const transport = await TransportLayer.start(options);
    return new SipStack(transport, options.timers);
  }

  async close(): Promise<void> {
    this.dialogs.shutdown();
    this.transactions.shutdown();
    await this.transport.close();
  }
}
