import { MessageStats } from './message-stats.ts';
import dns from 'node:dns';
import net from 'node:net';
import { SipError, SipParseError } from '../errors.ts';
import { createResponse, type SipRequest, type SipResponse } from '../message/message.ts';
import { DEFAULT_MAX_HEADER_LENGTH, DEFAULT_MAX_HEADERS, DEFAULT_MAX_MESSAGE_SIZE, parseHead, parseMessage, type ParseOptions } from '../message/parser.ts';
import { parseAddress, splitList } from '../message/address.ts';
import { formatUri, isSipUri, type Uri } from '../message/uri.ts';
import { defaultPort } from '../message/via.ts';
import { SipTransportError } from '../errors.ts';
import { TcpEndpoint, type TcpConnection, type TlsOptions } from './tcp.ts';
import { WsEndpoint, type WsConnection } from './ws.ts';
import { formatHostPort, toProtocol, type Destination, type ListenAddress, type Source, type TransportProtocol } from './types.ts';
import { UdpEndpoint } from './udp.ts';
import { DEFAULT_REJECT_LOG, emptyRejectCounts, RejectLog, rejectReasonOf, type RejectCounts, type RejectListener, type RejectReason } from './rejects.ts';

export type { RejectCounts, RejectInfo, RejectListener, RejectReason } from './rejects.ts';

/**
 * What incoming messages may be. Past a limit a message is refused: a request whose headers can still be read is
 * answered 513, anything else is dropped; a stream message announcing more than the stream's size limit closes its
 * connection instead (the stream cannot be resynchronised). Every refusal is counted by reason
 * (`counters.rejected`) and reported to `onReject`.
 */
export interface InputLimits {
  /**
   * Bytes of one message, per transport; default DEFAULT_MAX_MESSAGE_SIZE (65535) for both, or the top-level
   * `maxMessageSize` when given. Over a stream the announced size counts: the connection is closed at once.
   */
  maxMessageSize?: { udp?: number; stream?: number };
  /** Header fields of one message, after unfolding; default DEFAULT_MAX_HEADERS (200). */
  maxHeaders?: number;
  /** Bytes of one header field, after unfolding; default DEFAULT_MAX_HEADER_LENGTH (8192). */
  maxHeaderLength?: number;
}

export interface TransportOptions {
  listen: ListenAddress[];
  /** Key and certificate for TLS and WSS listening points (and CAs for the TLS connections we open). */
  tls?: TlsOptions | null;
  /** The size limit of both transports (`limits.maxMessageSize` sets them one by one, and wins). */
  maxMessageSize?: number;
  limits?: InputLimits;
  /**
   * Told of rejected input (see InputLimits), rate-limited: at most one call per source address per
   * `rejectLogIntervalMs`, carrying the number of rejections it stands for. Null: not reported (still counted).
   */
  onReject?: RejectListener | null;
  /** Default 10 s. */
  rejectLogIntervalMs?: number;
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
  /**
   * Messages that did not parse or were over a limit (dropped, or answered 400/505/513 when they were requests):
   * every rejection but the `admit` hook's. `rejected` has them by reason.
   */
  malformed: number;
  sendErrors: number;
  /** Messages whose processing above the transport threw (counted, never propagated). */
  userErrors: number;
  /** Messages the `admit` hook refused (dropped before parsing). */
  refused: number;
  /** Rejected input by reason, `refused` included. */
  rejected: RejectCounts;
}

/** TransportOptions with its defaults applied; the limits resolved per transport. */
interface ResolvedOptions extends Required<Omit<TransportOptions, 'maxMessageSize' | 'limits' | 'onReject' | 'rejectLogIntervalMs'>> {
  udpParse: Required<ParseOptions>;
  streamParse: Required<ParseOptions>;
}

type SendError = (err: Error) => void;

/** A connection we can write to: TCP, TLS or WebSocket. */
type StreamConnection = TcpConnection | WsConnection;

const DNS_TTL_MS = 30_000;

/**
 * UDP and TCP listening points behind one send/receive interface. Adds received/rport on the way in (§18.2.1,
 * RFC 3581), chooses where responses go (§18.2.2), moves large requests to TCP (§18.1.1), and answers requests
 * that do not parse with the status their error carries. Knows nothing of transactions.
 */
export class TransportLayer {
  readonly #udp: UdpEndpoint[] = [];
  readonly #tcp: TcpEndpoint[] = [];
  readonly #tls: TcpEndpoint[] = [];
  /** WS and WSS. */
  readonly #ws: WsEndpoint[] = [];
  readonly #options: ResolvedOptions;
  readonly #rejectLog: RejectLog | null;
  #user: TransportUser | null = null;
  readonly #dnsCache = new Map<string, { address: string; expires: number }>();
  #listening: ListenAddress[] = [];
  readonly #sentBy = new Map<TransportProtocol, string>();
  readonly counters: TransportCounters = { received: 0, sent: 0, malformed: 0, sendErrors: 0, userErrors: 0, refused: 0, rejected: emptyRejectCounts() };
  /** Messages by method and response class (retransmissions are the transaction layer's count). */
  readonly stats = new MessageStats();
  /** Observes every message in or out (for --trace-sip and tests); null when unused, to keep the hot path lean. */
  tap: ((direction: 'in' | 'out', data: Buffer, peer: { protocol: string; host: string; port: number }) => void) | null = null;

  private constructor(options: ResolvedOptions, rejectLog: RejectLog | null) {
    this.#options = options;
    this.#rejectLog = rejectLog;
  }

  static async start(options: TransportOptions): Promise<TransportLayer> {
    const { maxMessageSize, limits, onReject, rejectLogIntervalMs, ...rest } = options;
    const size = maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const parseLimits = (maxSize: number): Required<ParseOptions> => ({
      maxSize,
      maxHeaders: limits?.maxHeaders ?? DEFAULT_MAX_HEADERS,
      maxHeaderLength: limits?.maxHeaderLength ?? DEFAULT_MAX_HEADER_LENGTH,
    });
    const opts: ResolvedOptions = {
      udpRecvBufferSize: 8 * 1024 * 1024,
      udpSendBufferSize: 4 * 1024 * 1024,
      tcpIdleTimeoutMs: 120_000,
      tcpConnectTimeoutMs: 5_000,
      udpMtu: 1300,
      outboundProxy: null,
      admit: null,
      tls: null,
      ...rest,
      udpParse: parseLimits(limits?.maxMessageSize?.udp ?? size),
      streamParse: parseLimits(limits?.maxMessageSize?.stream ?? size),
    };
    for (const [name, v] of [['maxMessageSize.udp', opts.udpParse.maxSize], ['maxMessageSize.stream', opts.streamParse.maxSize], ['maxHeaders', opts.udpParse.maxHeaders], ['maxHeaderLength', opts.udpParse.maxHeaderLength]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SipError('SIP_TRANSPORT', 500, `limits.${name} must be a positive integer, got ${v}`);
    }
    const rejectLog = onReject == null ? null : new RejectLog(onReject, { ...DEFAULT_REJECT_LOG, intervalMs: rejectLogIntervalMs ?? DEFAULT_REJECT_LOG.intervalMs });
    if (opts.listen.length === 0) throw new SipError('SIP_TRANSPORT', 500, 'no listening address');
    const layer = new TransportLayer(opts, rejectLog);
    try {
      // Port 0 means "any free port", but UDP and TCP on one host must share the number: a peer told to use
      // ;transport=tcp (or a request moved to TCP for its size) goes to the port our Via and Contact give.
      const chosen = new Map<string, number>();
      for (const listen of opts.listen) {
        const shared = listen.protocol === 'UDP' || listen.protocol === 'TCP';
        const addr = shared && listen.port === 0 && chosen.has(listen.host) ? { ...listen, port: chosen.get(listen.host)! } : listen;
        if ((addr.protocol === 'TLS' || addr.protocol === 'WSS') && opts.tls === null) {
          throw new SipError('SIP_TRANSPORT', 500, `${addr.protocol} on ${formatHostPort(addr.host, addr.port)} needs a key and certificate (tls option)`);
        }
        if (addr.protocol === 'WS' || addr.protocol === 'WSS') {
          layer.#ws.push(await WsEndpoint.listen(
            { host: addr.host, port: addr.port, tls: addr.protocol === 'WSS' ? opts.tls : null, maxMessageSize: opts.streamParse.maxSize, idleTimeoutMs: opts.tcpIdleTimeoutMs },
            {
              message: (data, conn) => layer.#onStreamMessage(data, conn),
              framingError: (err, tooLarge, conn) => layer.#reject(tooLarge ? 'too-large' : 'malformed', conn.protocol, conn.remoteHost, conn.remotePort, err),
            },
          ));
          continue;
        }
        if (addr.protocol === 'UDP') {
          layer.#udp.push(await UdpEndpoint.listen(
            { host: addr.host, port: addr.port, recvBufferSize: opts.udpRecvBufferSize, sendBufferSize: opts.udpSendBufferSize },
            (data, host, port, ep) => layer.#receive(data, { protocol: 'UDP', host, port, localHost: ep.host, localPort: ep.port, connection: null }),
            () => { layer.counters.sendErrors++; },
          ));
        } else {
          (addr.protocol === 'TLS' ? layer.#tls : layer.#tcp).push(await TcpEndpoint.listen(
            {
              host: addr.host, port: addr.port, idleTimeoutMs: opts.tcpIdleTimeoutMs, maxMessageSize: opts.streamParse.maxSize,
              connectTimeoutMs: opts.tcpConnectTimeoutMs, tls: addr.protocol === 'TLS' ? opts.tls : null,
            },
            {
              message: (data, conn) => layer.#onStreamMessage(data, conn),
              // The connection is closed after this: nothing can be answered on it.
              framingError: (err, conn) => layer.#reject(rejectReasonOf(err), conn.protocol, conn.remoteHost, conn.remotePort, err),
            },
          ));
        }
        const bound = addr.protocol === 'UDP' ? layer.#udp.at(-1)! : addr.protocol === 'TCP' ? layer.#tcp.at(-1)! : null;
        if (bound !== null && listen.port === 0 && !chosen.has(listen.host)) chosen.set(listen.host, bound.port);
      }
    } catch (err) {
      await layer.close();
      throw err;
    }
    layer.#listening = [
      ...layer.#udp.map((u) => ({ protocol: 'UDP' as const, host: u.host, port: u.port })),
      ...layer.#tcp.map((t) => ({ protocol: 'TCP' as const, host: t.host, port: t.port })),
      ...layer.#tls.map((t) => ({ protocol: 'TLS' as const, host: t.host, port: t.port })),
      ...layer.#ws.map((w) => ({ protocol: w.protocol, host: w.host, port: w.port })),
    ];
    // A transport we do not listen on borrows the first listening point's address (Via sent-by of a request
    // that falls back to another transport).
    const first = layer.#listening[0]!;
    for (const p of ['UDP', 'TCP', 'TLS', 'WS', 'WSS'] as const) {
      const ep = layer.#listening.find((l) => l.protocol === p) ?? (p === 'TCP' ? undefined : layer.#listening.find((l) => l.protocol === 'TCP')) ?? first;
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
    switch (protocol) {
      case 'UDP': return this.#udp.length > 0;
      case 'TCP': return this.#tcp.length > 0;
      case 'TLS': return this.#tls.length > 0;
      default: return this.#ws.some((w) => w.protocol === protocol);
    }
  }

  /**
   * Whether a message to `dest` can go on an open connection (always true for UDP). A WebSocket client can only be
   * reached on the connection it opened; over TCP and TLS, a missing connection would be opened.
   */
  hasConnection(dest: Destination): boolean {
    switch (dest.protocol) {
      case 'UDP': return true;
      case 'TCP': return this.#tcp.some((t) => t.hasConnection(dest.host, dest.port));
      case 'TLS': return this.#tls.some((t) => t.hasConnection(dest.host, dest.port));
      default: return this.#ws.some((w) => w.protocol === dest.protocol && w.connectionFrom(dest.host, dest.port) !== undefined);
    }
  }

  /** host:port to put in a Via sent-by or Record-Route/Contact for this transport. */
  sentBy(protocol: TransportProtocol): string {
    return this.#sentBy.get(protocol)!;
  }

  get defaultProtocol(): TransportProtocol {
    return this.#udp.length > 0 ? 'UDP' : this.#tcp.length > 0 ? 'TCP' : this.#listening[0]!.protocol;
  }

  // ---- receiving ----

  #onStreamMessage(data: Buffer, conn: StreamConnection): void {
    this.#receive(data, { protocol: conn.protocol, host: conn.remoteHost, port: conn.remotePort, localHost: conn.localHost, localPort: conn.localPort, connection: conn });
  }

  #receive(data: Buffer, source: Source): void {
    this.counters.received++;
    const admit = this.#options.admit;
    if (admit !== null && !admit(source, data.length)) {
      this.counters.refused++;
      this.counters.rejected.refused++;
      this.#rejectLog?.report('refused', source.protocol, source.host, source.port, '');
      return;
    }
    if (this.tap !== null) this.tap('in', data, source);
    // A lone CRLF keep-alive on UDP (RFC 5626 §3.5.1 is for streams, but phones send them on UDP too).
    if (data.length <= 4 && data.every((b) => b === 0x0d || b === 0x0a)) return;
    const limits = source.protocol === 'UDP' ? this.#options.udpParse : this.#options.streamParse;
    let msg: SipRequest | SipResponse;
    try {
      msg = parseMessage(data, limits);
    } catch (err) {
      this.#reject(rejectReasonOf(err), source.protocol, source.host, source.port, err);
      if (!(err instanceof SipParseError)) return;
      // A request in another SIP version is answered 505, one over a limit 513 (when its headers can be read);
      // anything else that does not parse has nothing to answer to.
      if (err.status === 505) this.#answerOtherVersion(data, err, source, limits);
      else if (err.status === 513) this.#answerTooLarge(data, err, source, limits);
      return;
    }
    try {
      msg.validate();
    } catch (err) {
      this.#reject('malformed', source.protocol, source.host, source.port, err);
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
      if (err instanceof SipParseError) this.#reject('malformed', source.protocol, source.host, source.port, err);
      if (msg.isRequest && (msg as SipRequest).method !== 'ACK' && err instanceof SipParseError) this.#answerMalformed(msg as SipRequest, err, source);
    }
  }

  /** Counts rejected input and reports it (rate-limited). Never throws. */
  #reject(reason: RejectReason, protocol: TransportProtocol, host: string, port: number, err: unknown): void {
    this.counters.malformed++;
    this.counters.rejected[reason]++;
    this.#rejectLog?.report(reason, protocol, host, port, err instanceof Error ? err.message : String(err));
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
  #answerOtherVersion(data: Buffer, err: SipParseError, source: Source, limits: ParseOptions): void {
    const text = data.toString('latin1');
    const start = text.search(/[^\r\n]/);
    const eol = text.indexOf('\n', start);
    if (start === -1 || eol === -1) return;
    const lineEnd = text.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol;
    const sp = text.lastIndexOf(' ', lineEnd);
    if (sp <= start || /^sip\//i.test(text.slice(start, lineEnd))) return; // a response: never answered
    let req: SipRequest | SipResponse;
    try {
      req = parseMessage(Buffer.from(text.slice(0, sp + 1) + 'SIP/2.0' + text.slice(lineEnd), 'latin1'), limits);
    } catch {
      return;
    }
    if (req.isRequest && (req as SipRequest).method !== 'ACK') this.#answerMalformed(req as SipRequest, err, source);
  }

  /**
   * A request over a limit is answered 513 when its start line and the headers a response needs can be read
   * within the header limits (fields past them are left out); else it is dropped.
   */
  #answerTooLarge(data: Buffer, err: SipParseError, source: Source, limits: ParseOptions): void {
    let req: SipRequest | SipResponse;
    try {
      req = parseHead(data, limits);
      if (!req.isRequest || (req as SipRequest).method === 'ACK') return;
      req.validate();
    } catch {
      return;
    }
    this.#answerMalformed(req as SipRequest, err, source);
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
    // sips:/TLS where we have no TLS (a node: its balancer terminates TLS) goes over TCP, else our default.
    if (!this.supports(protocol)) protocol = protocol === 'TLS' && this.supports('TCP') ? 'TCP' : this.defaultProtocol;
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
      this.#sendOnConnection(data, source.connection as StreamConnection, onError);
      return;
    }
    // From the listening point the request came in on: a client (or NAT) expects the answer from where it sent.
    this.#sendFrom(data, dest, source, onError);
  }

  /** Where a response goes when not on the request's connection (§18.2.2, RFC 3581): from its top Via. */
  responseDestination(res: SipResponse): Destination {
    const via = res.topVia;
    const protocol: TransportProtocol = via.transport === 'UDP' ? 'UDP' : toProtocol(via.transport) ?? 'TCP';
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
      this.#sendOnConnection(data, via.connection as StreamConnection, onError);
      return;
    }
    if (dest.protocol === 'WS' || dest.protocol === 'WSS') {
      // We cannot connect to a WebSocket client: only the connection it opened (RFC 7118 §5) will do.
      const conn = this.#ws.find((w) => w.protocol === dest.protocol)?.connectionFrom(dest.host, dest.port);
      if (conn === undefined) this.#fail(onError, new SipTransportError(`no ${dest.protocol} connection from ${formatHostPort(dest.host, dest.port)} (a WebSocket client cannot be connected to)`));
      else this.#sendOnConnection(data, conn, onError);
      return;
    }
    const endpoints = dest.protocol === 'TLS' ? this.#tls : this.#tcp;
    const v6 = dest.host.includes(':');
    const ep = endpoints.find((t) => t.host.includes(':') === v6) ?? endpoints[0];
    if (ep === undefined) {
      this.#fail(onError, new SipError('SIP_TRANSPORT', 503, `no ${dest.protocol} listening point`));
      return;
    }
    this.#sendOnConnection(data, ep.connectionTo(dest.host, dest.port), onError);
  }

  #sendOnConnection(data: Buffer, conn: StreamConnection, onError: SendError | undefined): void {
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
    await Promise.all([...this.#udp, ...this.#tcp, ...this.#tls, ...this.#ws].map((e) => e.close()));
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
 * the scheme's default, the transport parameter (udp, tcp, tls, ws, wss); sips: means TLS (§26.2.2).
 */
export function uriDestination(uri: Uri, fallback: TransportProtocol = 'UDP'): Destination {
  if (!isSipUri(uri)) throw new SipError('SIP_BAD_URI', 416, `cannot route to ${formatUri(uri)}`);
  const t = uri.params.get('transport');
  const named = t == null ? null : toProtocol(t);
  const protocol: TransportProtocol = uri.scheme === 'sips' && (named === null || named === 'TCP') ? 'TLS' : named ?? fallback;
  let host = uri.params.get('maddr') ?? uri.host;
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { protocol, host, port: uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060) };
}
