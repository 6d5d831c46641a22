import dgram from 'node:dgram';
import net from 'node:net';
import { SipTransportError } from '../errors.ts';

export interface UdpOptions {
  host: string;
  port: number;
  /** SO_RCVBUF. The kernel default (~208 KB) overflows during GC pauses at ~1,000 calls/s. */
  recvBufferSize: number;
  sendBufferSize: number;
}

export type DatagramHandler = (data: Buffer, host: string, port: number, endpoint: UdpEndpoint) => void;

/** One bound UDP socket. */
export class UdpEndpoint {
  readonly host: string;
  port: number;
  readonly #socket: dgram.Socket;
  #closed = false;

  private constructor(host: string, port: number, socket: dgram.Socket) {
    this.host = host;
    this.port = port;
    this.#socket = socket;
  }

  static listen(options: UdpOptions, onDatagram: DatagramHandler, onError: (err: Error) => void): Promise<UdpEndpoint> {
    const type = net.isIPv6(options.host) ? 'udp6' : 'udp4';
    // The transport layer only sends to IP addresses (names are resolved above it), so the lookup dgram does
    // before every send can answer at once instead of going through dns.lookup and a nextTick.
    const family = type === 'udp6' ? 6 : 4;
    const socket = dgram.createSocket({
      type,
      reuseAddr: false,
      lookup: (address: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void) => cb(null, address, family),
    } as dgram.SocketOptions);
    return new Promise((resolve, reject) => {
      const failBind = (err: Error): void => reject(new SipTransportError(`cannot bind UDP ${options.host}:${options.port}: ${err.message}`, { cause: err }));
      socket.once('error', failBind);
      socket.bind(options.port, options.host, () => {
        socket.off('error', failBind);
        try {
          socket.setRecvBufferSize(options.recvBufferSize);
          socket.setSendBufferSize(options.sendBufferSize);
        } catch {
          // The kernel may cap the sizes (net.core.rmem_max); the socket still works with what it got.
        }
        const endpoint = new UdpEndpoint(options.host, socket.address().port, socket);
        socket.on('message', (data, rinfo) => onDatagram(data, rinfo.address, rinfo.port, endpoint));
        socket.on('error', onError);
        resolve(endpoint);
      });
    });
  }

  get recvBufferSize(): number {
    return this.#socket.getRecvBufferSize();
  }

  /**
   * Sends a datagram. No completion callback is asked for: on an unconnected UDP socket it only reports local
   * failures, and asking for it costs a callback into JS per message. Those failures reach the 'error' handler.
   */
  send(data: Buffer, host: string, port: number): boolean {
    if (this.#closed) return false;
    this.#socket.send(data, port, host);
    return true;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}
