/**
 * A scripted stand-in for Redis Sentinel, in the test process: it answers what a Sentinel client asks (the master's
 * address, the other Sentinels: none) and publishes +switch-master when the test says, so a test can time an
 * announcement exactly against the client's own requests, which a real Sentinel's failover cannot. The data nodes
 * are real redis-servers.
 *
 * RESP2 only: HELLO is refused with NOPROTO, as a Redis 5 would, and ioredis then goes on in RESP2.
 */
import net from 'node:net';

export interface Address {
  host: string;
  port: number;
}

export interface FakeSentinel {
  readonly port: number;
  /** What SENTINEL GET-MASTER-ADDR-BY-NAME answers for the monitored name. */
  master: Address;
  /**
   * Called on each GET-MASTER-ADDR-BY-NAME for the monitored name, before it is answered: with the address the hook
   * resolves to, or else `master` as it is then. Null: answered at once, with `master`.
   */
  onResolve: (() => Promise<Address | void>) | null;
  /** How many GET-MASTER-ADDR-BY-NAME were answered. */
  readonly resolves: number;
  /** Open client connections subscribed to +switch-master; all open client connections. */
  readonly subscribers: number;
  readonly connections: number;
  /** Resolves once no connection is subscribed to +switch-master. */
  noSubscriber(): Promise<void>;
  /** Publishes "+switch-master NAME OLD-IP OLD-PORT NEW-IP NEW-PORT" and makes `to` the master. */
  switchMaster(to: Address): void;
  close(): Promise<void>;
}

const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
const array = (items: string[]): string => `*${items.length}\r\n${items.map(bulk).join('')}`;

/** Parses the complete RESP arrays at the start of buf; returns them and the bytes left over. */
function parseCommands(buf: Buffer): { commands: string[][]; rest: Buffer } {
  const commands: string[][] = [];
  let pos = 0;
  const line = (from: number): { text: string; next: number } | null => {
    const end = buf.indexOf('\r\n', from);
    return end < 0 ? null : { text: buf.toString('latin1', from, end), next: end + 2 };
  };
  outer: for (;;) {
    const head = line(pos);
    if (head === null) break;
    if (!head.text.startsWith('*')) throw new Error(`fake Sentinel: not a RESP array: ${JSON.stringify(head.text)}`);
    const n = Number(head.text.slice(1));
    let at = head.next;
    const args: string[] = [];
    for (let i = 0; i < n; i++) {
      const len = line(at);
      if (len === null || !len.text.startsWith('$')) break outer;
      const size = Number(len.text.slice(1));
      if (buf.length < len.next + size + 2) break outer;
      args.push(buf.toString('utf8', len.next, len.next + size));
      at = len.next + size + 2;
    }
    commands.push(args);
    pos = at;
  }
  return { commands, rest: buf.subarray(pos) };
}

export async function startFakeSentinel(masterName: string, master: Address): Promise<FakeSentinel> {
  const sockets = new Set<net.Socket>();
  const subscribed = new Set<net.Socket>();
  let idle: Array<() => void> = [];
  const unsubscribe = (s: net.Socket): void => {
    if (!subscribed.delete(s) || subscribed.size > 0) return;
    for (const f of idle) f();
    idle = [];
  };
  let resolves = 0;

  const fake = {
    master,
    onResolve: null as (() => Promise<Address | void>) | null,
    get resolves() { return resolves; },
    get subscribers() { return subscribed.size; },
    get connections() { return sockets.size; },
    port: 0,
    noSubscriber: () => new Promise<void>((resolve) => (subscribed.size === 0 ? resolve() : idle.push(resolve))),
    switchMaster(to: Address) {
      const from = fake.master;
      fake.master = to;
      const msg = array(['message', '+switch-master', `${masterName} ${from.host} ${from.port} ${to.host} ${to.port}`]);
      for (const s of subscribed) s.write(msg);
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };

  // One connection's commands are answered in order, each after the previous (a held resolve holds what follows).
  const answer = async (s: net.Socket, args: string[]): Promise<void> => {
    const [cmd = '', sub = '', name = ''] = args.map((a, i) => (i < 2 ? a.toLowerCase() : a));
    if (cmd === 'hello') return void s.write('-NOPROTO unsupported protocol version\r\n');
    if (cmd === 'client' || cmd === 'select') return void s.write('+OK\r\n');
    if (cmd === 'ping') return void s.write('+PONG\r\n');
    if (cmd === 'subscribe') {
      subscribed.add(s);
      args.slice(1).forEach((ch, i) => s.write(`*3\r\n${bulk('subscribe')}${bulk(ch)}:${i + 1}\r\n`));
      return;
    }
    if (cmd === 'sentinel' && sub === 'get-master-addr-by-name') {
      if (name !== masterName) return void s.write('*-1\r\n');
      const to = (fake.onResolve === null ? undefined : await fake.onResolve()) ?? fake.master;
      resolves++;
      return void s.write(array([to.host, String(to.port)]));
    }
    if (cmd === 'sentinel' && (sub === 'sentinels' || sub === 'replicas' || sub === 'slaves')) return void s.write('*0\r\n');
    s.write(`-ERR fake Sentinel: unknown command '${args.join(' ')}'\r\n`);
  };

  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      unsubscribe(s);
    });
    s.on('error', () => {});
    let buf: Buffer = Buffer.alloc(0);
    let queue = Promise.resolve();
    s.on('data', (d: Buffer) => {
      const { commands, rest } = parseCommands(Buffer.concat([buf, d]));
      buf = rest;
      for (const c of commands) queue = queue.then(() => (s.destroyed ? undefined : answer(s, c)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}
