import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Balancer } from '../balancer/balancer.ts';
import type { NodeLoad, SipNode } from '../server/node.ts';
import type { ReplicationCounters, StoreLatencyObserver } from '../server/replication.ts';

/**
 * Prometheus metrics (prom-client). The SIP layers keep plain counters on their hot paths; the series here read
 * them when scraped (`collect`), so a node without a scraper pays nothing for them. Store latency is the exception:
 * a histogram observed per store operation.
 */

/** A counter whose value is read from our own counters at scrape time (they only grow, as a counter must). */
function readCounter(registry: Registry, name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      read((labels, v) => { if (v > 0) this.inc(labels, v); });
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Gauge({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      read((labels, v) => this.set(labels, v));
    },
  });
}

/** What a node's metrics read; the node itself is attached once started (the store latency observer is needed first). */
export interface NodeMetricsSources {
  node: SipNode;
  load: () => NodeLoad;
  replication: ReplicationCounters | null;
  /** Since the last heartbeat this node sent (ms); null without a balancer. */
  heartbeatAgeMs: (() => number) | null;
}

export class NodeMetrics {
  readonly registry = new Registry();
  readonly #storeLatency: Histogram<'op' | 'outcome'>;
  #sources: NodeMetricsSources | null = null;

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'sipfleet_' });
    this.#storeLatency = new Histogram({
      name: 'sipfleet_store_operation_seconds',
      help: 'Replication store operations (put, get, delete, timers), by outcome',
      labelNames: ['op', 'outcome'],
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [this.registry],
    });
    const r = this.registry;
    const src = (): NodeMetricsSources | null => this.#sources;
    readCounter(r, 'sipfleet_sip_requests_total', 'SIP requests received (in) and sent (out), by method', ['direction', 'method'], (set) => {
      const stats = src()?.node.stack.transport.stats;
      if (stats === undefined) return;
      for (const direction of ['in', 'out'] as const) {
        for (const [method, v] of stats.requests[direction]) set({ direction, method }, v);
      }
    });
    readCounter(r, 'sipfleet_sip_responses_total', 'SIP responses received (in) and sent (out), by CSeq method and class', ['direction', 'method', 'class'], (set) => {
      const stats = src()?.node.stack.transport.stats;
      if (stats === undefined) return;
      for (const direction of ['in', 'out'] as const) {
        for (const [method, counts] of stats.responses[direction]) {
          for (let c = 1; c <= 6; c++) set({ direction, method, class: `${c}xx` }, counts[c]!);
        }
      }
    });
    readCounter(r, 'sipfleet_sip_malformed_total', 'Messages that did not parse (dropped, or answered 400/505/513)', [], (set) => {
      const s = src();
      if (s !== null) set({}, s.node.stack.transport.counters.malformed);
    });
    readCounter(r, 'sipfleet_sip_rejected_total', 'Messages rejected, by reason: over a limit, malformed, another version, refused unread (admission)', ['reason'], (set) => {
      const rejected = src()?.node.stack.transport.counters.rejected;
      if (rejected === undefined) return;
      for (const [reason, v] of Object.entries(rejected)) set({ reason }, v);
    });
    readCounter(r, 'sipfleet_sip_transactions_created_total', 'Transactions created, by kind', ['kind'], (set) => {
      const t = src()?.node.stack.transactions.counters;
      if (t === undefined) return;
      set({ kind: 'server' }, t.serverCreated);
      set({ kind: 'client' }, t.clientCreated);
    });
    readGauge(r, 'sipfleet_sip_transactions', 'Transactions alive, by kind', ['kind'], (set) => {
      const t = src()?.node.stack.transactions;
      if (t === undefined) return;
      set({ kind: 'server' }, t.serverCount);
      set({ kind: 'client' }, t.clientCount);
    });
    readCounter(r, 'sipfleet_sip_retransmissions_total', 'Retransmissions sent: requests (timers A/E), 2xx awaiting ACK; and absorbed requests', ['kind'], (set) => {
      const s = src();
      if (s === null) return;
      set({ kind: 'request' }, s.node.stack.transactions.counters.retransmissions);
      set({ kind: '2xx' }, s.node.stack.dialogs.counters.answerRetransmissions);
      set({ kind: 'absorbed' }, s.node.stack.transactions.counters.absorbed);
    });
    readCounter(r, 'sipfleet_sip_transaction_timeouts_total', 'Client transactions that timed out (timers B/F)', [], (set) => {
      const s = src();
      if (s !== null) set({}, s.node.stack.transactions.counters.timeouts);
    });
    readGauge(r, 'sipfleet_sip_dialogs', 'Dialogs held, by state', ['state'], (set) => {
      const s = src();
      if (s === null) return;
      for (const [state, v] of Object.entries(s.node.stack.dialogs.countByState())) set({ state }, v);
    });
    readGauge(r, 'sipfleet_calls', 'Calls in progress (application sessions), and those being set up', ['phase'], (set) => {
      const s = src();
      if (s === null) return;
      const load = s.load();
      set({ phase: 'all' }, load.calls);
      set({ phase: 'setting_up' }, load.settingUp ?? 0);
    });
    readCounter(r, 'sipfleet_unknown_dialog_requests_total', 'In-dialog requests for calls this node did not hold', [], (set) => {
      const s = src();
      if (s !== null) set({}, s.load().unknownDialogs);
    });
    const rep = (name: string, help: string, key: keyof ReplicationCounters): void => {
      readCounter(r, name, help, [], (set) => {
        const c = src()?.replication;
        if (c != null) set({}, c[key]);
      });
    };
    rep('sipfleet_replication_writes_total', 'Call records written to the store', 'writes');
    rep('sipfleet_replication_bytes_total', 'Bytes of call records written', 'bytes');
    rep('sipfleet_replication_deletes_total', 'Call records deleted (calls ended)', 'deletes');
    rep('sipfleet_failovers_total', 'Calls continued here after their node died (loaded from the store)', 'failovers');
    rep('sipfleet_replication_conflicts_total', 'Writes refused because another node wrote the record first', 'conflicts');
    rep('sipfleet_replication_errors_total', 'Store operations that failed (retried)', 'errors');
    rep('sipfleet_timers_taken_over_total', 'Persistent timers of dead nodes claimed by this node', 'timersTakenOver');
    readCounter(r, 'sipfleet_node_overload_rejected_total', 'New calls answered 503 while overloaded, by the limit crossed', ['reason'], (set) => {
      const c = src()?.node.overload?.counters;
      if (c === undefined) return;
      set({ reason: 'lag' }, c.rejectedLag);
      set({ reason: 'calls' }, c.rejectedCalls);
      set({ reason: 'transactions' }, c.rejectedTransactions);
      set({ reason: 'heap' }, c.rejectedHeap);
    });
    readCounter(r, 'sipfleet_node_overload_episodes_total', 'Times the node became overloaded', [], (set) => {
      const o = src()?.node.overload;
      if (o != null) set({}, o.counters.episodes);
    });
    readGauge(r, 'sipfleet_node_overloaded', '1 while the node is overloaded (new calls answered 503)', [], (set) => {
      const o = src()?.node.overload;
      if (o != null) set({}, o.overloaded ? 1 : 0);
    });
    readGauge(r, 'sipfleet_heartbeat_age_seconds', 'Since this node last sent a heartbeat to its balancers', [], (set) => {
      const age = src()?.heartbeatAgeMs;
      if (age != null) set({}, age() / 1000);
    });
  }

  /** Times store operations into the histogram (give it to the Replicator). */
  readonly observeStore: StoreLatencyObserver = (op, seconds, ok) => {
    this.#storeLatency.observe({ op, outcome: ok ? 'ok' : 'error' }, seconds);
  };

  attach(sources: NodeMetricsSources): void {
    this.#sources = sources;
  }
}

/** The balancer's metrics: its forwarding counters, membership, and each node as its heartbeats describe it. */
export function balancerMetrics(balancer: Balancer): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r, prefix: 'sipfleet_balancer_' });
  const f = balancer.forwarder.counters;
  const m = balancer.membership.counters;
  const events: Record<string, [string, () => number]> = {
    requests: ['Requests received (both sides)', () => f.requests],
    responses: ['Responses received (both sides)', () => f.responses],
    to_nodes: ['Messages sent to nodes', () => f.toNodes],
    outward: ['Messages sent out of the cluster', () => f.outward],
    failovers: ['Messages of a dead node\'s calls sent to a survivor', () => f.failovers],
    no_node: ['Requests answered 503 (no node alive)', () => f.noNode],
    too_many_hops: ['Requests answered 483', () => f.tooManyHops],
    dropped: ['Messages dropped (nowhere to send)', () => f.dropped],
    node_send_errors: ['Sends to a node that failed', () => f.nodeSendErrors],
    heartbeats: ['Heartbeats accepted', () => m.heartbeats],
    heartbeats_refused: ['Heartbeats refused (bad MAC, format, replay)', () => m.refusedMac + m.refusedFormat + m.refusedStale],
    deaths: ['Nodes declared dead', () => m.deaths],
  };
  for (const [name, [help, read]] of Object.entries(events)) {
    readCounter(r, `sipfleet_balancer_${name}_total`, help, [], (set) => set({}, read()));
  }
  // Protection: per-source limits, refusals before parsing, rejected input, and flows that could not be followed.
  readCounter(r, 'sipfleet_balancer_source_refused_total', 'External messages refused by the per-source limits, by reason', ['reason'], (set) => {
    const c = balancer.sourceLimiter?.counters;
    set({ reason: 'rate' }, c?.refusedRate ?? 0);
    set({ reason: 'table_full' }, c?.refusedTableFull ?? 0);
  });
  readCounter(r, 'sipfleet_balancer_external_refused_total', 'External messages refused before parsing (every reason)', [], (set) => set({}, balancer.forwarder.external.counters.refused));
  readCounter(r, 'sipfleet_balancer_source_evicted_total', 'Idle sources forgotten to make room in the source table', [], (set) => set({}, balancer.sourceLimiter?.counters.evicted ?? 0));
  readGauge(r, 'sipfleet_balancer_sources_tracked', 'Source addresses the per-source limits track now', [], (set) => set({}, balancer.sourceLimiter?.tracked ?? 0));
  readCounter(r, 'sipfleet_balancer_rejected_total', 'Messages rejected by the transport, by side and reason (over a limit, malformed, another version, refused)', ['side', 'reason'], (set) => {
    for (const [side, layer] of [['external', balancer.forwarder.external], ['internal', balancer.forwarder.internal]] as const) {
      for (const [reason, v] of Object.entries(layer.counters.rejected)) set({ side, reason }, v);
    }
  });
  readCounter(r, 'sipfleet_balancer_flow_failed_total', 'Requests for a client whose connection (flow) is gone, answered 430 Flow Failed', [], (set) => set({}, f.flowFailed));
  readCounter(r, 'sipfleet_balancer_flow_invalid_total', 'Requests from nodes whose route carries a flow token that does not verify, answered 403 (an ACK dropped)', [], (set) => set({}, f.flowInvalid));
  const perNode = (name: string, help: string, kind: 'gauge' | 'counter', value: (n: ReturnType<Balancer['status']>['nodes'][number]) => number | null): void => {
    (kind === 'gauge' ? readGauge : readCounter)(r, name, help, ['node'], (set) => {
      for (const n of balancer.status().nodes) {
        const v = value(n);
        if (v !== null) set({ node: n.id }, v);
      }
    });
  };
  perNode('sipfleet_node_up', '1 while the node is alive (up or draining), 0 once dead', 'gauge', (n) => (n.state === 'dead' ? 0 : 1));
  perNode('sipfleet_balancer_node_overloaded', '1 while the node\'s heartbeat says it is overloaded (new calls go to other nodes)', 'gauge', (n) => (n.overloaded ? 1 : 0));
  perNode('sipfleet_node_draining', '1 while the node drains', 'gauge', (n) => (n.state === 'draining' ? 1 : 0));
  perNode('sipfleet_node_calls', 'Calls in progress on the node (its last heartbeat)', 'gauge', (n) => n.calls);
  perNode('sipfleet_node_calls_setting_up', 'Calls being set up on the node', 'gauge', (n) => n.settingUp);
  perNode('sipfleet_node_heartbeat_age_seconds', 'Since the node\'s last heartbeat', 'gauge', (n) => n.heartbeatAgeMs / 1000);
  perNode('sipfleet_node_new_calls_total', 'New calls the balancer sent to the node', 'counter', (n) => n.traffic.newCalls);
  perNode('sipfleet_node_requests_total', 'Requests the balancer sent to the node', 'counter', (n) => n.traffic.requests);
  perNode('sipfleet_node_replication_writes_total', 'Replication writes the node reports', 'counter', (n) => n.replication?.writes ?? null);
  perNode('sipfleet_node_failovers_total', 'Calls the node continued after their node died', 'counter', (n) => n.replication?.failovers ?? null);
  perNode('sipfleet_node_replication_lag_seconds', 'Store write latency of the node\'s replicas (moving average)', 'gauge', (n) => (n.replication?.lagMs === undefined ? null : n.replication.lagMs / 1000));
  perNode('sipfleet_node_replication_pending', 'Calls whose replica waits for a retry (store unreachable)', 'gauge', (n) => n.replication?.pending ?? null);
  perNode('sipfleet_node_calls_per_second', 'New calls sent to the node over the last second', 'gauge', (n) => n.callsPerSec);
  return r;
}
