import dgram from 'node:dgram';
import { parseMessage } from '../../../src/sip/message/parser.ts';
import type { SipRequest, SipResponse } from '../../../src/sip/message/message.ts';

export type Direction = 'forward' | 'back';
/** Return true to drop the datagram. `index` counts matching messages per direction and start line. */
export type DropRule = (msg: SipRequest | SipResponse, direction: Direction) => boolean;

/**
 * A UDP relay between a client stack and a server stack that drops chosen packets. The client sends to `front`;
 * the relay forwards from `back` to the server, whose responses (sent to received/rport, RFC 3581) come back to
 * `back` and are relayed to the client's last address. Everything that passes or is dropped is recorded.
 */
export class LossyRelay {
  readonly front = dgram.createSocket('udp4');
  readonly back = dgram.createSocket('udp4');
  readonly passed: string[] = [];
  readonly dropped: string[] = [];
  #client: { address: string; port: number } | null = null;
  drop: DropRule = () => false;

  static async start(host: string, server: { host: string; port: number }): Promise<LossyRelay> {
    const r = new LossyRelay();
    await Promise.all([
      new Promise<void>((res) => r.front.bind(0, host, () => res())),
      new Promise<void>((res) => r.back.bind(0, host, () => res())),
    ]);
    r.front.on('message', (data, rinfo) => {
      r.#client = { address: rinfo.address, port: rinfo.port };
      r.#relay(data, 'forward', () => r.back.send(data, server.port, server.host));
    });
    r.back.on('message', (data) => {
      const c = r.#client;
      if (c !== null) r.#relay(data, 'back', () => r.front.send(data, c.port, c.address));
    });
    return r;
  }

  get port(): number {
    return this.front.address().port;
  }

  #relay(data: Buffer, direction: Direction, send: () => void): void {
    const msg = parseMessage(data);
    const label = (msg.isRequest ? (msg as SipRequest).method : String((msg as SipResponse).status)) + '/' + msg.cseq.method;
    if (this.drop(msg, direction)) {
      this.dropped.push(`${direction} ${label}`);
      return;
    }
    this.passed.push(`${direction} ${label}`);
    send();
  }

  /** How many messages with this label (`INVITE/INVITE`, `486/INVITE`, `ACK/INVITE`…) passed or were dropped. */
  count(list: 'passed' | 'dropped', label: string, direction?: Direction): number {
    return this[list].filter((l) => l.endsWith(' ' + label) && (direction === undefined || l.startsWith(direction))).length;
  }

  close(): void {
    this.front.close();
    this.back.close();
  }
}

/** Drops the first `n` messages that match `pred`. */
export function dropFirst(n: number, pred: (msg: SipRequest | SipResponse, direction: Direction) => boolean): DropRule {
  let left = n;
  return (msg, direction) => {
    if (left > 0 && pred(msg, direction)) {
      left--;
      return true;
    }
    return false;
  };
}
