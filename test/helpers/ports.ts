/**
 * Port helpers for tests that start real SIP peers (SIPp, Kamailio, sipfleet) on loopback addresses.
 *
 * SIP uses the same port number for UDP and TCP, so by default a port is only handed out when it can be bound
 * for both. Every address in 127.0.0.0/8 is local on Linux, which lets tests give each peer its own IP
 * (127.0.0.1 / .2 / .3) and keep source addresses distinct.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFile } from 'node:fs/promises';

export type PortProto = 'udp' | 'tcp' | 'both';

// Ports handed out by this process recently: the kernel may give the same ephemeral port to two calls in a
// row once the probe sockets are closed, and two peers asking for "a free port" must not get the same one.
const handedOut = new Set<number>();

function bindTcp(host: string, port: number): Promise<net.Server | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(null));
    srv.listen({ host, port, exclusive: true }, () => resolve(srv));
  });
}

function bindUdp(host: string, port: number): Promise<dgram.Socket | null> {
  return new Promise((resolve) => {
    const type = net.isIPv6(host) ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({ type, reuseAddr: false });
    sock.once('error', () => {
      sock.close();
      resolve(null);
    });
    sock.bind({ address: host, port, exclusive: true }, () => resolve(sock));
  });
}

const closeTcp = (s: net.Server | null): Promise<void> =>
  new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
const closeUdp = (s: dgram.Socket | null): Promise<void> =>
  new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));

/**
 * A port that was free on `host` for `proto` ('both' = UDP and TCP) at the time of the call: both sockets are
 * bound, then closed. There is an unavoidable window before the caller binds it; ports are never reused within
 * this process to keep that to other processes only.
 */
export async function freePort(host = '127.0.0.1', proto: PortProto = 'both'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    let tcp: net.Server | null = null;
    let udp: dgram.Socket | null = null;
    let port = 0;
    try {
      if (proto === 'udp') {
        udp = await bindUdp(host, 0);
        port = udp ? udp.address().port : 0;
      } else {
        // Let the kernel pick via TCP, then check the same number for UDP.
        tcp = await bindTcp(host, 0);
        const addr = tcp?.address();
        port = addr && typeof addr === 'object' ? addr.port : 0;
        if (port && proto === 'both') {
          udp = await bindUdp(host, port);
          if (!udp) port = 0;
        }
      }
    } finally {
      await closeTcp(tcp);
      await closeUdp(udp);
    }
    if (port && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free ${proto} port found on ${host}`);
}

/**
 * A free port within [min, max] (e.g. 5060..9999 for sipsak, which mishandles five-digit ports).
 * Starts at a random offset so parallel test files rarely race for the same number.
 */
export async function freePortInRange(host: string, min: number, max: number, proto: PortProto = 'both'): Promise<number> {
  const span = max - min + 1;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = min + ((start + i) % span);
    if (handedOut.has(port)) continue;
    const tcp = proto === 'udp' ? null : await bindTcp(host, port);
    const udp = proto === 'tcp' ? null : await bindUdp(host, port);
    const ok = (proto === 'udp' || tcp !== null) && (proto === 'tcp' || udp !== null);
    await closeTcp(tcp);
    await closeUdp(udp);
    if (ok) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePortInRange: no free ${proto} port in ${min}-${max} on ${host}`);
}

/** `n` distinct free ports on `host`. */
export async function freePorts(n: number, host = '127.0.0.1', proto: PortProto = 'both'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort(host, proto));
  return out;
}

/** "127.0.0.2" -> "0200007F" as written (little-endian) in /proc/net/{udp,tcp}. */
function procHexV4(ip: string): string {
  return ip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0').toUpperCase())
    .reverse()
    .join('');
}

/**
 * True when some process on this machine has a socket bound to host:port for `proto` (for TCP: listening).
 * Reads /proc/net (Linux only), so it never sends anything to the peer: useful for peers such as a SIPp UAS
 * that would count a probe request as a failed call. A socket bound to 0.0.0.0 counts as bound on every host.
 */
export async function isListening(host: string, port: number, proto: 'udp' | 'tcp'): Promise<boolean> {
  const portHex = port.toString(16).padStart(4, '0').toUpperCase();
  const wanted = new Set([`${procHexV4(host)}:${portHex}`, `00000000:${portHex}`]);
  let text: string;
  try {
    text = await readFile(`/proc/net/${proto}`, 'utf8');
  } catch {
    return false;
  }
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4) continue;
    const local = cols[1] ?? '';
    const state = cols[3] ?? '';
    // UDP sockets show state 07 (unconnected); TCP listeners show 0A (LISTEN).
    if (wanted.has(local) && (proto === 'udp' || state === '0A')) return true;
  }
  return false;
}

/** Polls isListening until true; rejects after timeoutMs. `alive` lets the caller stop waiting when the peer died. */
export async function waitForListening(
  host: string,
  port: number,
  proto: 'udp' | 'tcp',
  timeoutMs = 5000,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await isListening(host, port, proto)) return;
    if (!alive()) throw new Error(`waitForListening: process exited before ${proto} ${host}:${port} was bound`);
    if (Date.now() > deadline) throw new Error(`waitForListening: nothing bound on ${proto} ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
