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
    const socket = dgram.createSocket({ type, reuseAddr: false });
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

  send(data: Buffer, host: string, port: number, onError?: (err: Error) => void): void {
    if (this.#closed) {
      onError?.(new SipTransportError('UDP socket closed'));
      return;
    }
    this.#socket.send(data, port, host, onError === undefined ? undefined : (err) => {
      if (err) onError(new SipTransportError(`UDP send to ${host}:${port} failed: ${err.message}`, { cause: err }));
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}
