import { MessageStats } from './message-stats.ts';
import dns from 'node:dns';
import net from 'node:net';
import { SipError, SipParseError } from '../errors.ts';
import { createResponse, type SipRequest, type SipResponse } from '../message/message.ts';
import { DEFAULT_MAX_MESSAGE_SIZE, parseMessage } from '../message/parser.ts';
import { parseAddress, splitList } from '../message/address.ts';
import { formatUri, isSipUri, type Uri } from '../message/uri.ts';
import { defaultPort } from '../message/via.ts';
import { TcpEndpoint, type TcpConnection } from './tcp.ts';
import { formatHostPort, type Destination, type ListenAddress, type Source, type TransportProtocol } from './types.ts';
import { UdpEndpoint } from './udp.ts';

export interface TransportOptions {
  listen: ListenAddress[];
  maxMessageSize?: number;
  udpRecvBufferSize?: number;
  udpSendBufferSize?: number;
  tcpIdleTimeoutMs?: number;
  tcpConnectTimeoutMs?: number;
  /** RFC 3261 §18.1.1: a request larger than this that would go over UDP goes over TCP when we listen on TCP. */
  udpMtu?: number;
  /**
   * Every request leaves through this next hop (§8.1.2 outbound proxy): a node behind a balancer. When the message
   * itself would not lead the proxy to the next hop chosen for it, a Route to that hop is added.
   */
  outboundProxy?: Destination | null;
  /**
   * Asked before a message is parsed: false drops it unread (counted in `refused`). The balancer's per-source
   * limits use it, so a flood costs as little as possible. Null: everything is admitted.
   */
  admit?: ((source: Source, size: number) => boolean) | null;
}

/** The transport layer's user: the transaction layer, or a test. */
export interface TransportUser {
  receiveRequest(req: SipRequest, source: Source): void;
  receiveResponse(res: SipResponse, source: Source): void;
}

export interface TransportCounters {
  received: number;
  sent: number;
  /** Messages that did not parse (dropped, or answered 400/505/513 when they were requests). */
  malformed: number;
  sendErrors: number;
  /** Messages whose processing above the transport threw (counted, never propagated). */
  userErrors: number;
  /** Messages the `admit` hook refused (dropped before parsing). */
  refused: number;
}

type SendError = (err: Error) => void;

const DNS_TTL_MS = 30_000;

/**
 * UDP and TCP listening points behind one send/receive interface. Adds received/rport on the way in (§18.2.1,
 * RFC 3581), chooses where responses go (§18.2.2), moves large requests to TCP (§18.1.1), and answers requests
 * that do not parse with the status their error carries. Knows nothing of transactions.
 */
export class TransportLayer {
  readonly #udp: UdpEndpoint[] = [];
  readonly #tcp: TcpEndpoint[] = [];
  readonly #options: Required<TransportOptions>;
  #user: TransportUser | null = null;
  readonly #dnsCache = new Map<string, { address: string; expires: number }>();
  #listening: ListenAddress[] = [];
  readonly #sentBy = new Map<TransportProtocol, string>();
  readonly counters: TransportCounters = { received: 0, sent: 0, malformed: 0, sendErrors: 0, userErrors: 0, refused: 0 };
  /** Messages by method and response class (retransmissions are the transaction layer's count). */
  readonly stats = new MessageStats();
  /** Observes every message in or out (for --trace-sip and tests); null when unused, to keep the hot path lean. */
  tap: ((direction: 'in' | 'out', data: Buffer, peer: { protocol: string; host: string; port: number }) => void) | null = null;

  private constructor(options: Required<TransportOptions>) {
    this.#options = options;
  }

  static async start(options: TransportOptions): Promise<TransportLayer> {
    const opts: Required<TransportOptions> = {
      maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
      udpRecvBufferSize: 8 * 1024 * 1024,
      udpSendBufferSize: 4 * 1024 * 1024,
      tcpIdleTimeoutMs: 120_000,
      tcpConnectTimeoutMs: 5_000,
      udpMtu: 1300,
      outboundProxy: null,
      admit: null,
      ...options,
    };
    if (opts.listen.length === 0) throw new SipError('SIP_TRANSPORT', 500, 'no listening address');
    const layer = new TransportLayer(opts);
    try {
      // Port 0 means "any free port", but UDP and TCP on one host must share the number: a peer told to use
      // ;transport=tcp (or a request moved to TCP for its size) goes to the port our Via and Contact give.
      const chosen = new Map<string, number>();
      for (const listen of opts.listen) {
        const addr = listen.port === 0 && chosen.has(listen.host) ? { ...listen, port: chosen.get(listen.host)! } : listen;
        if (addr.protocol === 'UDP') {
          layer.#udp.push(await UdpEndpoint.listen(
            { host: addr.host, port: addr.port, recvBufferSize: opts.udpRecvBufferSize, sendBufferSize: opts.udpSendBufferSize },
            (data, host, port, ep) => layer.#receive(data, { protocol: 'UDP', host, port, localHost: ep.host, localPort: ep.port, connection: null }),
            () => { layer.counters.sendErrors++; },
          ));
        } else {
          layer.#tcp.push(await TcpEndpoint.listen(
            { host: addr.host, port: addr.port, idleTimeoutMs: opts.tcpIdleTimeoutMs, maxMessageSize: opts.maxMessageSize, connectTimeoutMs: opts.tcpConnectTimeoutMs },
            {
              message: (data, conn) => layer.#onStreamMessage(data, conn),
              framingError: () => { layer.counters.malformed++; },
            },
          ));
        }
        const bound = addr.protocol === 'UDP' ? layer.#udp.at(-1)! : layer.#tcp.at(-1)!;
        if (listen.port === 0 && !chosen.has(listen.host)) chosen.set(listen.host, bound.port);
      }
    } catch (err) {
      await layer.close();
      throw err;
    }
    layer.#listening = [
      ...layer.#udp.map((u) => ({ protocol: 'UDP' as const, host: u.host, port: u.port })),
      ...layer.#tcp.map((t) => ({ protocol: 'TCP' as const, host: t.host, port: t.port })),
    ];
    for (const p of ['UDP', 'TCP'] as const) {
      const ep = (p === 'UDP' ? layer.#udp[0] : layer.#tcp[0]) ?? layer.#udp[0] ?? layer.#tcp[0]!;
      layer.#sentBy.set(p, formatHostPort(ep.host, ep.port));
    }
    return layer;
  }

  setUser(user: TransportUser): void {
    this.#user = user;
  }

  /** The addresses actually bound (port 0 resolved). */
  get listening(): readonly ListenAddress[] {
    return this.#listening;
  }

  supports(protocol: TransportProtocol): boolean {
    return protocol === 'UDP' ? this.#udp.length > 0 : this.#tcp.length > 0;
  }

  /** host:port to put in a Via sent-by or Record-Route/Contact for this transport. */
  sentBy(protocol: TransportProtocol): string {
    return this.#sentBy.get(protocol)!;
  }

  get defaultProtocol(): TransportProtocol {
    return this.#udp.length > 0 ? 'UDP' : 'TCP';
  }

  // ---- receiving ----

  #onStreamMessage(data: Buffer, conn: TcpConnection): void {
    this.#receive(data, { protocol: 'TCP', host: conn.remoteHost, port: conn.remotePort, localHost: conn.localHost, localPort: conn.localPort, connection: conn });
  }

  #receive(data: Buffer, source: Source): void {
    this.counters.received++;
    const admit = this.#options.admit;
    if (admit !== null && !admit(source, data.length)) {
      this.counters.refused++;
      return;
    }
    if (this.tap !== null) this.tap('in', data, source);
    // A lone CRLF keep-alive on UDP (RFC 5626 §3.5.1 is for streams, but phones send them on UDP too).
    if (data.length <= 4 && data.every((b) => b === 0x0d || b === 0x0a)) return;
    let msg: SipRequest | SipResponse;
    try {
      msg = parseMessage(data, { maxSize: this.#options.maxMessageSize });
    } catch (err) {
      this.counters.malformed++;
      // A request in another SIP version is answered 505; anything else that does not parse has nothing to answer to.
      if (err instanceof SipParseError && err.status === 505) this.#answerOtherVersion(data, err, source);
      return;
    }
    try {
      msg.validate();
    } catch (err) {
      this.counters.malformed++;
      if (msg.isRequest && (msg as SipRequest).method !== 'ACK' && err instanceof SipParseError) this.#answerMalformed(msg as SipRequest, err, source);
      return;
    }
    try {
      if (msg.isRequest) {
        const req = msg as SipRequest;
        this.stats.request('in', req.method);
        this.#stampReceived(req, source);
        this.#user?.receiveRequest(req, source);
      } else {
        const res = msg as SipResponse;
        this.stats.response('in', res.cseq.method, res.status);
        this.#user?.receiveResponse(res, source);
      }
    } catch (err) {
      // A header read lazily above us was malformed, or a handler failed: this message is lost, the process is not.
      this.counters.userErrors++;
      if (err instanceof SipParseError) this.counters.malformed++;
      if (msg.isRequest && (msg as SipRequest).method !== 'ACK' && err instanceof SipParseError) this.#answerMalformed(msg as SipRequest, err, source);
    }
  }

  /** §18.2.1 and RFC 3581: note where the request really came from in its top Via. */
  #stampReceived(req: SipRequest, source: Source): void {
    const via = req.topVia;
    const needReceived = via.host !== source.host && via.host !== `[${source.host}]`;
    const needRport = via.rport === -1;
    if (!needReceived && !needRport) return;
    const first = req.getAll('via')[0]!;
    let value = first;
    if (needRport) value = value.replace(/;[ \t]*rport(?=[;, \t]|$)/i, `;rport=${source.port}`);
    if (needReceived || needRport) {
      if (via.received !== null) value = value.replace(/;[ \t]*received=[^;, \t]*/i, '');
      value += `;received=${source.host}`;
    }
    req.replaceFirst('via', value);
  }

  /** A request we cannot process gets its error's status, sent straight back to where it came from. */
  #answerMalformed(req: SipRequest, err: SipParseError, source: Source): void {
    try {
      const res = createResponse(req, err.status, undefined);
      res.reason = `${res.reason} (${err.message.replace(/[\r\n]+/g, ' ').slice(0, 120)})`;
      this.#sendTo(res.toBuffer(), { protocol: source.protocol, host: source.host, port: source.port }, source, undefined);
    } catch {
      // The headers a response needs are themselves broken: drop.
    }
  }

  /**
   * The parser rejects a request line with another version before there is a message to answer, so parse it
   * again as SIP/2.0 to get the headers the 505 needs.
   */
  #answerOtherVersion(data: Buffer, err: SipParseError, source: Source): void {
    const text = data.toString('latin1');
    const start = text.search(/[^\r\n]/);
    const eol = text.indexOf('\n', start);
    if (start === -1 || eol === -1) return;
    const lineEnd = text.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol;
    const sp = text.lastIndexOf(' ', lineEnd);
    if (sp <= start || /^sip\//i.test(text.slice(start, lineEnd))) return; // a response: never answered
    let req: SipRequest | SipResponse;
    try {
      req = parseMessage(Buffer.from(text.slice(0, sp + 1) + 'SIP/2.0' + text.slice(lineEnd), 'latin1'), { maxSize: this.#options.maxMessageSize });
    } catch {
      return;
    }
    if (req.isRequest && (req as SipRequest).method !== 'ACK') this.#answerMalformed(req as SipRequest, err, source);
  }

  // ---- sending ----

  /**
   * Sends a request to `dest` after adding our Via (branch given). Over UDP, a request larger than the MTU
   * threshold goes over TCP instead when we can (§18.1.1). Returns where it went and the bytes, which the client
   * transaction keeps for retransmission.
   */
  sendRequest(
    req: SipRequest,
    dest: Destination,
    branch: string,
    onError?: SendError,
    onFallback?: (dest: Destination, data: Buffer) => void,
  ): { dest: Destination; data: Buffer } {
    const outbound = this.#options.outboundProxy;
    if (outbound !== null && (dest.host !== outbound.host || dest.port !== outbound.port)) {
      if (!leadsTo(req, dest)) {
        req.prepend('route', `<sip:${formatHostPort(dest.host, dest.port)}${dest.protocol === 'TCP' ? ';transport=tcp' : ''};lr>`);
      }
      dest = outbound;
    }
    let protocol = dest.protocol;
    if (!this.supports(protocol)) protocol = this.defaultProtocol;
    this.stats.request('out', req.method);
    req.prepend('via', `SIP/2.0/${protocol} ${this.sentBy(protocol)};branch=${branch};rport`);
    let data = req.toBuffer();
    let target: Destination = protocol === dest.protocol ? dest : { ...dest, protocol };
    if (protocol === 'UDP' && data.length > this.#options.udpMtu && this.#tcp.length > 0) {
      req.replaceFirst('via', `SIP/2.0/TCP ${this.sentBy('TCP')};branch=${branch};rport`);
      const tcpData = req.toBuffer();
      const tcpTarget: Destination = { ...dest, protocol: 'TCP' };
      // If the peer refuses TCP, the request goes over UDP after all (§18.1.1); the caller must then retransmit.
      this.send(tcpData, tcpTarget, () => {
        req.replaceFirst('via', `SIP/2.0/UDP ${this.sentBy('UDP')};branch=${branch};rport`);
        data = req.toBuffer();
        this.send(data, target, onError);
        onFallback?.(target, data);
      });
      return { dest: tcpTarget, data: tcpData };
    }
    this.send(data, target, onError);
    return { dest: target, data };
  }

  /** Where a response to a request with this top Via goes (§18.2.2), and over what. */
  sendResponse(res: SipResponse, source: Source | null, onError?: SendError): { data: Buffer; dest: Destination } {
    const data = res.toBuffer();
    const dest = this.responseDestination(res);
    this.stats.response('out', res.cseq.method, res.status);
    this.sendResponseData(data, dest, source, onError);
    return { data, dest };
  }

  /**
   * Sends response bytes again (a retransmission): on the connection the request came on while it is open, else
   * to `dest` as computed by responseDestination, from the listening point the request came in on.
   */
  sendResponseData(data: Buffer, dest: Destination, source: Source | null, onError?: SendError): void {
    if (source?.connection != null && !source.connection.closed) {
      this.#sendOnConnection(data, source.connection as TcpConnection, onError);
      return;
    }
    // From the listening point the request came in on: a client (or NAT) expects the answer from where it sent.
    this.#sendFrom(data, dest, source, onError);
  }

  /** Where a response goes when not on the request's connection (§18.2.2, RFC 3581): from its top Via. */
  responseDestination(res: SipResponse): Destination {
    const via = res.topVia;
    const protocol: TransportProtocol = via.transport === 'UDP' ? 'UDP' : 'TCP';
    let host: string;
    let port: number;
    if (via.maddr !== null && protocol === 'UDP') {
      host = via.maddr;
      port = via.port ?? defaultPort(via.transport);
    } else {
      host = via.received ?? via.host;
      // RFC 3581 §4: rport applies to unreliable transports. Over TCP it is the source port of a connection that
      // is gone; a new connection goes to the sent-by port (§18.2.2).
      port = protocol === 'UDP' && via.rport !== null && via.rport > 0 ? via.rport : via.port ?? defaultPort(via.transport);
    }
    if (host.startsWith('[')) host = host.slice(1, -1);
    return { protocol, host, port };
  }

  /** Sends bytes to a destination: over UDP, or over the TCP connection to it (opened when needed). */
  send(data: Buffer, dest: Destination, onError?: SendError): void {
    this.#sendFrom(data, dest, null, onError);
  }

  #sendFrom(data: Buffer, dest: Destination, via: Source | null, onError: SendError | undefined): void {
    if (!isIpLiteral(dest.host)) {
      this.#lookup(dest.host).then(
        (address) => this.#sendTo(data, { ...dest, host: address }, via, onError),
        (err: Error) => { this.counters.sendErrors++; onError?.(err); },
      );
      return;
    }
    this.#sendTo(data, dest, via, onError);
  }

  #sendTo(data: Buffer, dest: Destination, via: Source | null, onError: SendError | undefined): void {
    this.counters.sent++;
    if (this.tap !== null) this.tap('out', data, dest);
    if (dest.protocol === 'UDP') {
      const ep = (via !== null ? this.#udp.find((u) => u.host === via.localHost && u.port === via.localPort) : undefined) ??
        this.#udpFor(dest.host);
      if (ep === undefined) {
        this.#fail(onError, new SipError('SIP_TRANSPORT', 503, 'no UDP listening point'));
        return;
      }
      if (!ep.send(data, dest.host, dest.port)) this.#fail(onError, new SipError('SIP_TRANSPORT', 503, 'UDP socket closed'));
      return;
    }
    if (via?.connection != null && !via.connection.closed) {
      this.#sendOnConnection(data, via.connection as TcpConnection, onError);
      return;
    }
    const v6 = dest.host.includes(':');
    const ep = this.#tcp.find((t) => t.host.includes(':') === v6) ?? this.#tcp[0];
    if (ep === undefined) {
      this.#fail(onError, new SipError('SIP_TRANSPORT', 503, 'no TCP listening point'));
      return;
    }
    this.#sendOnConnection(data, ep.connectionTo(dest.host, dest.port), onError);
  }

  #sendOnConnection(data: Buffer, conn: TcpConnection, onError: SendError | undefined): void {
    conn.send(data, (err) => this.#fail(onError, err));
  }

  #fail(onError: SendError | undefined, err: Error): void {
    this.counters.sendErrors++;
    onError?.(err);
  }

  #udpFor(host: string): UdpEndpoint | undefined {
    // Per message: a ':' tells an IPv6 literal from IPv4 (names were resolved before), no regex needed.
    if (this.#udp.length === 1) return this.#udp[0];
    const v6 = host.includes(':');
    return this.#udp.find((u) => u.host.includes(':') === v6) ?? this.#udp[0];
  }

  async #lookup(host: string): Promise<string> {
    const cached = this.#dnsCache.get(host);
    const now = Date.now();
    if (cached !== undefined && cached.expires > now) return cached.address;
    const { address } = await dns.promises.lookup(host);
    this.#dnsCache.set(host, { address, expires: now + DNS_TTL_MS });
    return address;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#udp.map((u) => u.close()), ...this.#tcp.map((t) => t.close())]);
  }
}

/** Whether a request's top Route (or, without one, its Request-URI) names this destination. */
function leadsTo(req: SipRequest, dest: Destination): boolean {
  const route = req.get('route');
  let uri: Uri;
  try {
    uri = route !== undefined ? parseAddress(splitList(route, 'Route')[0]!, 'Route').uri : req.uri;
  } catch {
    return false;
  }
  if (!isSipUri(uri)) return false;
  const d = uriDestination(uri);
  return d.host === dest.host && d.port === dest.port && d.protocol === dest.protocol;
}

/** A cheap test for "no DNS needed": dotted digits, or an IPv6 literal (validated by net.isIP only when unusual). */
function isIpLiteral(host: string): boolean {
  const c = host.charCodeAt(0);
  if (c >= 0x30 && c <= 0x39 && /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  return net.isIP(host) !== 0;
}

/**
 * Where a request for this URI goes (RFC 3261 §8.1.2, RFC 3263 without NAPTR/SRV): maddr or host, the port or
 * the scheme's default, the transport parameter (sips and ;transport=tls are carried over TCP until TLS lands).
 */
export function uriDestination(uri: Uri, fallback: TransportProtocol = 'UDP'): Destination {
  if (!isSipUri(uri)) throw new SipError('SIP_BAD_URI', 416, `cannot route to ${formatUri(uri)}`);
  const t = uri.params.get('transport')?.toLowerCase();
  const protocol: TransportProtocol = t === 'udp' ? 'UDP' : t === 'tcp' || t === 'tls' || uri.scheme === 'sips' ? 'TCP' : fallback;
  let host = uri.params.get('maddr') ?? uri.host;
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { protocol, host, port: uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060) };
}
