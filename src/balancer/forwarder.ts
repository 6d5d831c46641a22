import { randomBytes } from 'node:crypto';
import { AFFINITY_PARAM, hashString, parseAffinityKey } from '../server/cluster/affinity.ts';
import { createResponse, type SipRequest, type SipResponse } from '../sip/message/message.ts';
import { formatAddress, type Address } from '../sip/message/address.ts';
import { cloneUri, isSipUri, type Uri } from '../sip/message/uri.ts';
import { MAGIC_COOKIE } from '../sip/message/via.ts';
import { TransportLayer, uriDestination, type TransportOptions } from '../sip/transport/transport-layer.ts';
import { formatHostPort, transportParam, type Destination, type ListenAddress, type Source, type TransportProtocol } from '../sip/transport/types.ts';
import { FlowTokens } from './flow-token.ts';
import type { Member, Membership } from './membership.ts';
import { pickNode } from './routing.ts';

export interface ForwarderOptions {
  /** Where clients reach the cluster. */
  external: ListenAddress[];
  /** Where nodes reach the balancer (their outbound proxy); another address or port than `external`. */
  internal: ListenAddress[];
  membership: Membership;
  /** Seconds in the Retry-After of the 503 sent when no node can take a request (default 5). */
  retryAfterS?: number;
  transport?: Omit<TransportOptions, 'listen'>;
  /** Signs the flow tokens naming client connections (the cluster secret; default: a random one). */
  secret?: string;
  /** Asked for each message from outside before it is parsed (per-source limits); the internal side has none. */
  externalAdmit?: TransportOptions['admit'];
}

export interface NodeTraffic {
  /** Initial INVITEs routed to the node (new calls). */
  newCalls: number;
  requests: number;
  responses: number;
}

const DIALOG_CREATING = new Set(['INVITE', 'SUBSCRIBE', 'REFER']);
const ALL_PROTOCOLS: readonly TransportProtocol[] = ['UDP', 'TCP', 'TLS', 'WS', 'WSS'];
/** Our branches: cookie, "sf", the call's affinity key (8 hex), then "p<port>" for a stream (TCP, TLS, WS) client, "x", the rest. */
const OUR_BRANCH = MAGIC_COOKIE + 'sf';

/**
 * The balancer's forwarding plane: a stateless SIP proxy (RFC 3261 §16.11) between clients (external side) and
 * nodes (internal side). Requests from outside go to a node: the one their Route/Request-URI names while it
 * lives (a call stays where it is, even when nodes join), else the rendezvous choice for the call's affinity key
 * (a dead node's calls spread over the survivors; new calls over the nodes that take them). Requests from nodes
 * go out to their next hop. Record-Route (one entry per side) keeps both parties' in-dialog requests coming
 * through; our Via brings responses back and carries the affinity key, so a response for a dead node goes to the
 * survivor its call moved to. Nothing is kept per call: any number of balancers with the same nodes agree.
 */
export class Forwarder {
  readonly external: TransportLayer;
  readonly internal: TransportLayer;
  readonly #membership: Membership;
  readonly #own = new Set<string>();
  readonly #ownSentBy = new Set<string>();
  /** Per side and transport: our Record-Route entry, as `<sip:` + user@ + this + `;lr>` (user: a flow token). */
  readonly #extRR = new Map<TransportProtocol, string>();
  readonly #intRR = new Map<TransportProtocol, string>();
  readonly #flows: FlowTokens;
  readonly #retryAfter: string;
  readonly counters = {
    requests: 0, responses: 0, toNodes: 0, outward: 0, failovers: 0, noNode: 0, tooManyHops: 0, dropped: 0,
    nodeSendErrors: 0, resent: 0, flowFailed: 0, flowInvalid: 0,
  };
  readonly traffic = new Map<string, NodeTraffic>();

  private constructor(external: TransportLayer, internal: TransportLayer, options: ForwarderOptions) {
    this.external = external;
    this.internal = internal;
    this.#membership = options.membership;
    this.#retryAfter = String(options.retryAfterS ?? 5);
    this.#flows = new FlowTokens(options.secret ?? randomBytes(16).toString('hex'));
    for (const [layer, rr] of [[external, this.#extRR], [internal, this.#intRR]] as const) {
      for (const l of layer.listening) {
        const hp = formatHostPort(l.host, l.port);
        this.#own.add(hp);
        this.#ownSentBy.add(hp);
      }
      for (const p of ALL_PROTOCOLS) {
        if (layer.supports(p)) rr.set(p, `${layer.sentBy(p)}${transportParam(p)};lr>`);
      }
    }
    external.setUser({ receiveRequest: (r, s) => this.#onRequest(r, s, false), receiveResponse: (r) => this.#onResponse(r, false) });
    internal.setUser({ receiveRequest: (r, s) => this.#onRequest(r, s, true), receiveResponse: (r) => this.#onResponse(r, true) });
  }

  static async start(options: ForwarderOptions): Promise<Forwarder> {
    const external = await TransportLayer.start({ ...options.transport, listen: options.external, admit: options.externalAdmit ?? null });
    let internal: TransportLayer;
    try {
      internal = await TransportLayer.start({ ...options.transport, listen: options.internal });
    } catch (err) {
      await external.close();
      throw err;
    }
    return new Forwarder(external, internal, options);
  }

  #isOwn(uri: Uri): boolean {
    if (!isSipUri(uri)) return false;
    const port = uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060);
    return this.#own.has(uri.host + ':' + port);
  }

  #memberAt(uri: Uri): Member | undefined {
    if (!isSipUri(uri)) return undefined;
    const host = uri.host.startsWith('[') ? uri.host.slice(1, -1) : uri.host;
    return this.#membership.byAddress(host, uri.port ?? 5060);
  }

  #trafficOf(id: string): NodeTraffic {
    let t = this.traffic.get(id);
    if (t === undefined) {
      t = { newCalls: 0, requests: 0, responses: 0 };
      this.traffic.set(id, t);
    }
    return t;
  }

  // ---- requests ----

  #onRequest(req: SipRequest, source: Source, fromNode: boolean): void {
    this.counters.requests++;
    const layer = fromNode ? this.internal : this.external;
    const mf = req.maxForwards;
    if (mf !== null && mf <= 0) {
      this.counters.tooManyHops++;
      if (req.method !== 'ACK') layer.sendResponse(createResponse(req, 483), source);
      return;
    }
    req.set('max-forwards', mf === null ? 70 : mf - 1);
    // Our own Record-Route entries (one per side) come back as the top Routes: they have done their job.
    let next: Address | null = null;
    let flow: Destination | null = null;
    let badFlow = false;
    if (req.has('route')) {
      const routes = req.routes();
      let i = 0;
      while (i < routes.length && this.#isOwn(routes[i]!.uri)) i++;
      for (let k = 0; k < i; k++) {
        req.removeFirst('route');
        const uri = routes[k]!.uri;
        if (fromNode && flow === null && isSipUri(uri) && FlowTokens.looksLike(uri.user)) {
          flow = this.#flows.decode(uri.user);
          badFlow ||= flow === null;
        }
      }
      if (i < routes.length) next = routes[i]!;
    }
    const target = next?.uri ?? req.uri;
    const member = this.#memberAt(target);
    if (!fromNode || member !== undefined || (next === null && this.#isOwn(req.uri))) {
      this.#toNode(req, source, layer, next, member);
    } else {
      this.#outward(req, source, target, flow, badFlow);
    }
  }

  /** Our Record-Route (or Path) entry on one side for a transport, naming a client connection when given. */
  #rrEntry(side: Map<TransportProtocol, string>, protocol: TransportProtocol, flow: string | null): string {
    const hostPart = side.get(protocol) ?? side.get('UDP') ?? side.values().next().value!;
    return flow === null ? '<sip:' + hostPart : '<sip:' + flow + '@' + hostPart;
  }

  /** The flow token of a client connection we could not open ourselves (TLS, WS, WSS), else null. */
  #flowOf(peer: Destination): string | null {
    return FlowTokens.needed(peer.protocol) ? this.#flows.encode(peer.protocol, peer.host, peer.port) : null;
  }

  /**
   * A request for the cluster: to the node its call lives on, or to the one its affinity key picks. `resent`: the
   * node it first went to refused the connection, and it goes again (our Via removed, our entries already in).
   */
  #toNode(req: SipRequest, source: Source, layer: TransportLayer, nextRoute: Address | null, named: Member | undefined, resent = false): void {
    const target = nextRoute?.uri ?? req.uri;
    let node: Member | null;
    const keyText = isSipUri(target) ? target.params.get(AFFINITY_PARAM) : undefined;
    const keyHash = parseAffinityKey(keyText) ?? hashString(req.callId);
    if (named !== undefined && !named.dead) {
      node = named;
    } else if (named !== undefined) {
      node = pickNode(this.#membership.failoverNodes(named), keyHash);
      this.counters.failovers++;
      if (node !== null) this.#readdress(req, nextRoute, node);
    } else if (req.toTag === null) {
      // A new call (or its CANCEL, which must follow the INVITE): never to a draining node.
      node = pickNode(this.#membership.newCallNodes, keyHash);
    } else {
      // In a dialog but naming no node (a peer that ignored Record-Route and Contact): by its key, over all.
      node = pickNode(this.#membership.failoverNodes(null), keyHash);
    }
    if (node === null) {
      this.counters.noNode++;
      if (req.method !== 'ACK') {
        const res = createResponse(req, 503, 'No Node Available');
        res.set('retry-after', this.#retryAfter);
        layer.sendResponse(res, source);
      }
      return;
    }
    const traffic = this.#trafficOf(node.id);
    traffic.requests++;
    if (req.method === 'INVITE' && req.toTag === null) traffic.newCalls++;
    this.counters.toNodes++;
    // Nodes speak UDP and TCP: a client's stream (TCP, TLS, WS) continues as TCP when the node has it.
    const addr = node.address(source.protocol === 'UDP' ? 'UDP' : 'TCP')!;
    const dest: Destination = { protocol: addr.protocol, host: addr.host, port: addr.port };
    if (resent) {
      // Record-Route and Path are the balancer's own, whichever node: already in.
    } else if (req.toTag === null && DIALOG_CREATING.has(req.method)) {
      req.prepend('record-route', this.#rrEntry(this.#extRR, source.protocol, this.#flowOf(source)));
      req.prepend('record-route', this.#rrEntry(this.#intRR, dest.protocol, null));
    } else if (req.method === 'REGISTER' && req.toTag === null) {
      // RFC 3327 Path: requests for this contact must come back through us, on this very connection when we
      // cannot open one to the client (RFC 5626 §5.2: the Path entry carries the flow token).
      const flow = this.#flowOf(source);
      if (flow !== null) req.prepend('path', this.#rrEntry(this.#intRR, dest.protocol, flow).replace(/;lr>$/, ';lr;ob>'));
    }
    const branch = this.#branch(req, keyHash, source);
    const attempt = node;
    this.internal.sendRequest(req, dest, branch, () => {
      // The node refused the connection: it is gone, and it never saw the request. Over a stream nobody
      // retransmits (a UDP client would), so it goes once more, to the survivor its call now maps to.
      this.counters.nodeSendErrors++;
      this.#membership.markDead(attempt, 'connection');
      if (resent) return;
      this.counters.resent++;
      req.removeFirst('via');
      this.#toNode(req, source, layer, nextRoute, named, true);
    });
  }

  /**
   * A request naming a dead node now names its successor: the Route entry (the dead node's Record-Route) or the
   * Request-URI (its Contact) gets the successor's address, parameters kept, so the successor sees the request
   * as addressed to itself and finds the call from the keys in it.
   */
  #readdress(req: SipRequest, nextRoute: Address | null, node: Member): void {
    const uri = nextRoute?.uri ?? req.uri;
    if (!isSipUri(uri)) return;
    const protocol: TransportProtocol = uri.params.get('transport')?.toLowerCase() === 'tcp' ? 'TCP' : 'UDP';
    const addr = node.address(protocol)!;
    const moved = cloneUri(uri);
    moved.host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
    moved.port = addr.port;
    if (nextRoute !== null) req.replaceFirst('route', formatAddress({ ...nextRoute, uri: moved }));
    else req.uri = moved;
  }

  /**
   * A request from a node to the world: on the client connection its route's flow token names, else to its next
   * Route or its Request-URI.
   */
  #outward(req: SipRequest, source: Source, target: Uri, flow: Destination | null, badFlow: boolean): void {
    let dest: Destination;
    let flowToken: string | null = null;
    if (flow === null && badFlow) {
      // A route of ours whose flow token does not verify (another secret, or tampered with): the connection it
      // meant is unknown, and the Request-URI (a browser's ….invalid Contact) leads nowhere (RFC 5626 §5.3: 403).
      this.counters.flowInvalid++;
      if (req.method !== 'ACK') this.internal.sendResponse(createResponse(req, 403, 'Invalid Flow Token'), source);
      return;
    }
    if (flow !== null && this.external.hasConnection(flow)) {
      dest = flow;
      flowToken = this.#flowOf(flow);
    } else {
      if (flow !== null && flow.protocol !== 'TLS') {
        // RFC 5626 §5.3: the client's WebSocket is gone and only it can open another; it will re-register.
        this.counters.flowFailed++;
        if (req.method !== 'ACK') this.internal.sendResponse(createResponse(req, 430, 'Flow Failed'), source);
        return;
      }
      try {
        dest = uriDestination(target, 'UDP');
      } catch (err) {
        this.counters.dropped++;
        if (req.method !== 'ACK') this.internal.sendResponse(createResponse(req, 416, (err as Error).message.slice(0, 80)), source);
        return;
      }
    }
    this.counters.outward++;
    if (req.toTag === null && DIALOG_CREATING.has(req.method)) {
      req.prepend('record-route', this.#rrEntry(this.#intRR, source.protocol, null));
      req.prepend('record-route', this.#rrEntry(this.#extRR, dest.protocol, flowToken));
    }
    // The affinity key of the node's call: stamped in its Contact (a B2BUA leg), else the Call-ID's.
    const contact = req.get('contact');
    const at = contact === undefined ? -1 : contact.indexOf(';' + AFFINITY_PARAM + '=');
    const keyHash = (at === -1 ? null : parseAffinityKey(contact!.slice(at + AFFINITY_PARAM.length + 2, at + AFFINITY_PARAM.length + 10))) ?? hashString(req.callId);
    this.external.sendRequest(req, dest, this.#branch(req, keyHash, null));
  }

  /**
   * A stateless proxy's branch is the same for a retransmission (§16.11): derived from the incoming branch. A
   * CANCEL or an ACK for a non-2xx shares its INVITE's branch, so it does here too.
   */
  #branch(req: SipRequest, keyHash: number, tcpClient: Source | null): string {
    const via = req.topVia;
    let rest = via.branch ?? '';
    if (rest.startsWith(MAGIC_COOKIE)) {
      rest = rest.slice(MAGIC_COOKIE.length);
    } else {
      // RFC 2543 peers: hash what identifies the transaction.
      rest = hashString(`${req.callId}|${req.cseq.seq}|${req.fromTag ?? ''}|${req.get('via') ?? ''}|${req.uriText}`).toString(36);
    }
    const key = keyHash.toString(16).padStart(8, '0');
    const conn = tcpClient !== null && tcpClient.protocol !== 'UDP' ? 'p' + tcpClient.port : '';
    return OUR_BRANCH + key + conn + 'x' + rest;
  }

  // ---- responses ----

  #onResponse(res: SipResponse, arrivedFromNode: boolean): void {
    this.counters.responses++;
    const via = res.topVia;
    const branch = via.branch ?? '';
    if (!this.#ownSentBy.has(formatHostPort(via.host.startsWith('[') ? via.host.slice(1, -1) : via.host, via.port ?? 5060)) || !branch.startsWith(OUR_BRANCH)) {
      this.counters.dropped++; // not ours (§16.11: a stateless proxy drops it)
      return;
    }
    res.removeFirst('via');
    if (!res.has('via')) {
      this.counters.dropped++;
      return;
    }
    const layer = arrivedFromNode ? this.external : this.internal;
    let dest = layer.responseDestination(res);
    if (arrivedFromNode) {
      // Back to a client; over a stream, on the connection its request came on (its source port is in our branch).
      const p = branch.charCodeAt(OUR_BRANCH.length + 8) === 0x70 ? Number.parseInt(branch.slice(OUR_BRANCH.length + 9), 10) : NaN;
      if (dest.protocol !== 'UDP' && !Number.isNaN(p)) dest = { ...dest, port: p };
      layer.sendResponseData(res.toBuffer(), dest, null);
      return;
    }
    // Back to the node that sent the request; when it has died, to the survivor its call moved to.
    const member = this.#membership.byAddress(dest.host, dest.port);
    if (member !== undefined) {
      let node: Member | null = member;
      if (member.dead) {
        const keyHash = parseAffinityKey(branch.slice(OUR_BRANCH.length, OUR_BRANCH.length + 8)) ?? hashString(res.callId);
        node = pickNode(this.#membership.failoverNodes(member), keyHash);
        this.counters.failovers++;
        if (node === null) {
          this.counters.dropped++;
          return;
        }
        const addr = node.address(dest.protocol)!;
        dest = { protocol: addr.protocol, host: addr.host, port: addr.port };
      }
      this.#trafficOf(node.id).responses++;
    }
    layer.sendResponseData(res.toBuffer(), dest, null);
  }

  async close(): Promise<void> {
    await Promise.all([this.external.close(), this.internal.close()]);
  }
}
