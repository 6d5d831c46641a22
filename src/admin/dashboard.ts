import type { Balancer } from '../balancer/balancer.ts';

/** One point of the dashboard's charts. */
export interface DashboardSample {
  t: number;
  callsPerSec: number;
  /** Messages of dead nodes' calls sent to survivors, per second. */
  failoversPerSec: number;
}

export interface DashboardNode {
  id: string;
  state: 'up' | 'draining' | 'dead';
  calls: number;
  settingUp: number;
  newCalls: number;
  failovers: number;
  callsPerSec: number;
  /** Its replicas' write latency (ms) and calls whose replica waits for a retry; null without replication. */
  lagMs: number | null;
  pending: number;
  version: string;
  deadReason: string | null;
  /** Past its overload limits: the reason (lag, calls, transactions, heap), else null. */
  overloaded: string | null;
}

export interface DashboardSnapshot {
  t: number;
  nodes: DashboardNode[];
  failovers: number;
}

const HISTORY = 300;

/**
 * What the dashboard shows, kept by the balancer: a snapshot of the nodes (pushed at every membership change and
 * twice a second) and five minutes of per-second samples, so a page opened late still draws its charts.
 */
export class DashboardFeed {
  readonly #balancer: Balancer;
  readonly #history: DashboardSample[] = [];
  readonly #subscribers = new Set<(event: string, data: unknown) => void>();
  #last: { t: number; newCalls: number; failovers: number } | null = null;
  readonly #sampler: NodeJS.Timeout;
  readonly #pusher: NodeJS.Timeout;
  readonly #unsubscribe: () => void;

  constructor(balancer: Balancer, pushMs = 500) {
    this.#balancer = balancer;
    this.#sample();
    this.#sampler = setInterval(() => this.#sample(), 1000);
    this.#sampler.unref();
    this.#pusher = setInterval(() => this.#push(), pushMs);
    this.#pusher.unref();
    this.#unsubscribe = balancer.subscribe(() => this.#push());
  }

  snapshot(): DashboardSnapshot {
    const st = this.#balancer.status();
    return {
      t: Date.now(),
      failovers: st.counters.failovers,
      nodes: st.nodes.map((n) => ({
        id: n.id, state: n.state, calls: n.calls, settingUp: n.settingUp, newCalls: n.traffic.newCalls,
        failovers: n.replication?.failovers ?? 0, callsPerSec: n.callsPerSec, lagMs: n.replication?.lagMs ?? null,
        pending: n.replication?.pending ?? 0, version: n.version, deadReason: n.deadReason,
        overloaded: n.overloaded ? n.overloadReason ?? 'overloaded' : null,
      })),
    };
  }

  get history(): readonly DashboardSample[] {
    return this.#history;
  }

  /** A dashboard's event stream: the history at once, then snapshots and samples. */
  subscribe(send: (event: string, data: unknown) => void): () => void {
    send('history', this.#history);
    send('snapshot', this.snapshot());
    this.#subscribers.add(send);
    return () => { this.#subscribers.delete(send); };
  }

  close(): void {
    clearInterval(this.#sampler);
    clearInterval(this.#pusher);
    this.#unsubscribe();
    this.#subscribers.clear();
  }

  #push(): void {
    if (this.#subscribers.size === 0) return;
    const snap = this.snapshot();
    for (const s of this.#subscribers) s('snapshot', snap);
  }

  #sample(): void {
    const st = this.#balancer.status();
    const now = Date.now();
    const newCalls = st.nodes.reduce((a, n) => a + n.traffic.newCalls, 0);
    const failovers = st.counters.failovers;
    const last = this.#last;
    this.#last = { t: now, newCalls, failovers };
    if (last === null) return;
    const dt = Math.max(0.001, (now - last.t) / 1000);
    const sample = { t: now, callsPerSec: (newCalls - last.newCalls) / dt, failoversPerSec: (failovers - last.failovers) / dt };
    this.#history.push(sample);
    if (this.#history.length > HISTORY) this.#history.shift();
    for (const s of this.#subscribers) s('sample', sample);
  }
}

/**
 * The dashboard: one self-contained page (no build step, no external asset). Tiles per node (state, calls,
 * calls being set up, failovers), and calls/s and failovers/s over the last minutes, fed by /events.
 */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sipfleet</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { color-scheme: light dark; --up: #2e9d57; --draining: #d08a12; --dead: #c93636; --fg: #1d232b; --muted: #6b7480; --bg: #f6f7f9; --card: #fff; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #98a1ad; --bg: #14171c; --card: #1d2128; } }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: var(--bg); color: var(--fg); }
  header { display: flex; gap: 1.5rem; align-items: baseline; padding: 1rem 1.5rem; }
  h1 { font-size: 1.2rem; margin: 0; }
  #conn { color: var(--muted); }
  #tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 1rem; padding: 0 1.5rem; }
  .tile { background: var(--card); border-radius: 8px; padding: .8rem 1rem; border-left: 6px solid var(--up); box-shadow: 0 1px 2px #0002; transition: border-color .2s; }
  .tile[data-state=draining] { border-color: var(--draining); }
  .tile[data-state=dead] { border-color: var(--dead); opacity: .75; }
  .tile .head { display: flex; justify-content: space-between; gap: .5rem; align-items: baseline; }
  .tile .id { font-weight: 600; }
  .tile .state { font-size: .75rem; text-transform: uppercase; text-align: right; }
  .tile[data-state=up] .state { color: var(--up); }
  .tile[data-state=draining] .state { color: var(--draining); }
  .tile[data-state=dead] .state { color: var(--dead); }
  .tile .calls { font-size: 1.8rem; font-variant-numeric: tabular-nums; }
  .tile .meta { color: var(--muted); font-size: .8rem; }
  #charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; padding: 1rem 1.5rem; }
  figure { margin: 0; background: var(--card); border-radius: 8px; padding: .6rem 1rem; box-shadow: 0 1px 2px #0002; }
  figcaption { color: var(--muted); }
  canvas { width: 100%; height: 160px; }
</style>
</head>
<body>
<header><h1>sipfleet</h1><span id="summary"></span><span id="conn">connecting…</span></header>
<section id="tiles" aria-label="nodes"></section>
<section id="charts">
  <figure><figcaption>calls/s (new calls through the balancer), last 5 min: <b id="cps">0</b></figcaption><canvas id="callsChart"></canvas></figure>
  <figure><figcaption>failovers/s (messages of dead nodes' calls sent to survivors): <b id="fps">0</b></figcaption><canvas id="failoverChart"></canvas></figure>
</section>
<script>
"use strict";
const samples = [];
const tiles = new Map();
const $ = (id) => document.getElementById(id);
function tile(id) {
  let t = tiles.get(id);
  if (!t) {
    t = document.createElement("div");
    t.className = "tile";
    t.dataset.node = id;
    t.innerHTML = '<div class="head"><span class="id"></span><span class="state"></span></div><div class="calls"></div><div class="meta"></div>';
    t.querySelector(".id").textContent = id;
    $("tiles").appendChild(t);
    tiles.set(id, t);
  }
  return t;
}
function render(snap) {
  let up = 0, calls = 0;
  for (const n of snap.nodes) {
    const t = tile(n.id);
    t.dataset.state = n.state;
    t.dataset.calls = String(n.calls);
    t.querySelector(".state").textContent = n.state + (n.deadReason ? " (" + n.deadReason + ")" : "") + (n.overloaded ? " · overloaded (" + n.overloaded + ")" : "");
    t.querySelector(".calls").textContent = String(n.calls);
    t.querySelector(".meta").textContent = "calls · " + n.callsPerSec + "/s · " + n.settingUp + " setting up · " + n.failovers + " taken over" +
      (n.lagMs === null ? "" : " · replica " + n.lagMs.toFixed(1) + " ms" + (n.pending > 0 ? " (" + n.pending + " behind)" : "")) + " · v" + n.version;
    if (n.state !== "dead") up++;
    calls += n.calls;
  }
  $("summary").textContent = up + "/" + snap.nodes.length + " nodes up · " + calls + " calls";
}
function draw(canvas, key, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const pts = samples.slice(-300);
  const max = Math.max(1, ...pts.map((p) => p[key]));
  g.strokeStyle = getComputedStyle(document.body).color; g.globalAlpha = .25;
  g.beginPath(); g.moveTo(0, h - .5); g.lineTo(w, h - .5); g.stroke(); g.globalAlpha = 1;
  g.fillStyle = getComputedStyle(document.body).color; g.font = "11px system-ui"; g.fillText(String(Math.round(max)), 2, 11);
  if (pts.length < 2) return;
  const t0 = pts[pts.length - 1].t - 300000;
  g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
  pts.forEach((p, i) => {
    const x = Math.max(0, (p.t - t0) / 300000) * w, y = h - 2 - (p[key] / max) * (h - 16);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}
function redraw() {
  draw($("callsChart"), "callsPerSec", "#2f6fdb");
  draw($("failoverChart"), "failoversPerSec", "#c93636");
  const last = samples[samples.length - 1];
  if (last) { $("cps").textContent = last.callsPerSec.toFixed(0); $("fps").textContent = last.failoversPerSec.toFixed(1); }
}
const token = new URLSearchParams(location.search).get("token");
const es = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
es.addEventListener("open", () => { $("conn").textContent = "live"; });
es.addEventListener("error", () => { $("conn").textContent = "reconnecting…"; });
es.addEventListener("history", (e) => { samples.length = 0; samples.push(...JSON.parse(e.data)); redraw(); });
es.addEventListener("sample", (e) => { samples.push(JSON.parse(e.data)); if (samples.length > 300) samples.shift(); redraw(); });
es.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
window.addEventListener("resize", redraw);
</script>
</body>
</html>
`;
}
