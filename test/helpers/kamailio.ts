/**
 * Kamailio 5.6 (Debian package) as a reference SIP proxy for interop tests and as the baseline of the bench.
 *
 * startKamailio() writes a kamailio.cfg into a temp dir and runs `kamailio -DD -E -f cfg`: the creator process
 * stays in the foreground (so we hold its pid) and forks the SIP workers; it logs to stderr. It is started in its
 * own process group, so stop() signals the group and no forked worker survives. Runtime dir and pid file live
 * in the temp dir, so nothing in /run or /var/run is touched.
 *
 * The generated proxy is transaction-stateful (tm, t_relay) and record-routing: initial requests go to a fixed
 * next hop (or, in the dispatcher variant, to one of several destinations chosen by a Call-ID hash);
 * in-dialog requests follow their Route set (loose_route). OPTIONS addressed to the proxy itself are answered
 * 200 locally, which is what the readiness probe (and sipsak) use.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.ts';
import { spawnProcess, type ExitInfo, type ProcessHandle } from './proc.ts';
import { waitForSip } from './sip-ping.ts';
import { makeTempDir } from './tmp.ts';

export type KamailioTransport = 'udp' | 'tcp' | 'tls';

export interface KamailioOptions {
  /** Listen address (default 127.0.0.2). */
  host?: string;
  /** Listen port, same number for every transport (default: a free one). */
  port?: number;
  /** Transports to listen on (default ['udp']). */
  transports?: readonly KamailioTransport[];
  /** Fixed next hop for initial requests, "host:port". Required unless `dispatch` is given. */
  nextHop?: string;
  /** Transport used towards the next hop / dispatcher destinations (default udp). */
  nextHopTransport?: KamailioTransport;
  /** Dispatcher variant: destinations ("host:port"), one chosen per call by a hash over the Call-ID. */
  dispatch?: readonly string[];
  /** Worker processes per UDP socket and for TCP (default 2). */
  children?: number;
  /** Shared memory in MB (default 256: ~8 s of transactions at a few thousand calls/s fits). */
  shmMB?: number;
  /** Kamailio `debug` level: -1 alert .. 3 debug (default 1 = errors and warnings only, keeps benches honest). */
  logLevel?: number;
  /** Log one line per request received (xlog), for debugging tests. */
  logRequests?: boolean;
  /** Wait this long for the proxy to answer OPTIONS (default 10 s). */
  startTimeoutMs?: number;
  /** Echo Kamailio's stderr to ours. */
  echo?: boolean;
  /**
   * Shared/private memory manager (-x). Default 'tlsf': Debian's build defaults to 'qm', the debugging
   * allocator, whose malloc was ~46% of a worker's CPU in a perf profile here (first-fit search); 'tlsf' is
   * Kamailio's constant-time production allocator and cut the worker CPU per call by about 40%.
   */
  memoryManager?: 'qm' | 'fm' | 'tlsf';
  /**
   * TLS (package kamailio-tls-modules): Kamailio's certificate and key, for its TLS listening point (the port
   * after `port`) and the connections it opens (next hop over TLS). Peers' certificates are not verified.
   */
  tls?: { certPath: string; keyPath: string };
  /** Extra raw command-line arguments. */
  extraArgs?: readonly string[];
}

export interface KamailioHandle {
  readonly host: string;
  readonly port: number;
  readonly transports: readonly KamailioTransport[];
  /** Pid of the foreground creator process; also the process group id. */
  readonly pid: number;
  readonly pgid: number;
  readonly process: ProcessHandle;
  readonly workDir: string;
  readonly cfgPath: string;
  /** "sip:host:port" of the proxy. */
  readonly uri: string;
  /** Pids of all Kamailio processes (creator and forked workers), read from /proc. */
  pids(): number[];
  /** SIGTERM to the whole process group, SIGKILL after graceMs; resolves when the creator has exited. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

/** Debian's module directory; found at runtime so another multiarch triplet still works. */
export function kamailioModulePath(): string {
  const candidates = [
    '/usr/lib/x86_64-linux-gnu/kamailio/modules',
    '/usr/lib/aarch64-linux-gnu/kamailio/modules',
    '/usr/lib/kamailio/modules',
    '/usr/local/lib64/kamailio/modules',
    '/usr/local/lib/kamailio/modules',
  ];
  for (const c of candidates) if (existsSync(path.join(c, 'tm.so'))) return c;
  // Any other multiarch directory.
  try {
    for (const d of readdirSync('/usr/lib')) {
      const p = path.join('/usr/lib', d, 'kamailio/modules');
      if (existsSync(path.join(p, 'tm.so'))) return p;
    }
  } catch {
    // fall through
  }
  throw new Error('kamailio: module directory with tm.so not found (is the kamailio package installed?)');
}

/** /usr/sbin is not on every PATH (non-root shells). */
export function kamailioBinary(): string {
  for (const p of ['/usr/sbin/kamailio', '/usr/local/sbin/kamailio', '/usr/bin/kamailio']) if (existsSync(p)) return p;
  return 'kamailio';
}

function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  if (i < 0) throw new Error(`expected host:port, got ${hp}`);
  return { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
}

/** The kamailio.cfg text for these options (exported so tests can inspect or reuse it). */
export function kamailioConfig(
  o: Required<Pick<KamailioOptions, 'host' | 'port' | 'transports' | 'children' | 'logLevel'>> &
    Pick<KamailioOptions, 'nextHop' | 'nextHopTransport' | 'dispatch' | 'logRequests'> & {
      modulePath: string;
      dispatcherList?: string;
      /** The tls module's own config file (written by startKamailio when TLS is used). */
      tlsConfigPath?: string;
    },
): string {
  const nhTransport = o.nextHopTransport ?? 'udp';
  const useTls = o.tlsConfigPath !== undefined;
  // TLS listens on the next port: Kamailio cannot share one port between TCP and TLS.
  const listen = [
    ...o.transports.filter((t) => t !== 'tls').map((t) => `listen=${t}:${o.host}:${o.port}`),
    ...(useTls ? [`listen=tls:${o.host}:${o.port + 1}`] : []),
  ].join('\n');
  const useTcp = o.transports.includes('tcp') || nhTransport !== 'udp' || useTls;
  const dispatcher = o.dispatch !== undefined;
  let target: string;
  if (dispatcher) {
    // alg 0 = hash over Call-ID: every request of a dialog that is not loose-routed lands on the same box.
    target = `    if (!ds_select_dst("1", "0")) {
        sl_send_reply("503", "No destination");
        exit;
    }`;
  } else {
    if (!o.nextHop) throw new Error('kamailio: nextHop or dispatch is required');
    target = `    $du = "sip:${o.nextHop};transport=${nhTransport}";`;
  }
  return `#!KAMAILIO
# Generated by test/helpers/kamailio.ts: stateful record-routing proxy, no database.

debug=${o.logLevel}
log_stderror=yes
fork=yes
children=${o.children}
${useTcp ? `tcp_children=${o.children}` : 'disable_tcp=yes'}
${useTls ? 'enable_tls=yes' : ''}
disable_sctp=yes
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
server_header="Server: kamailio-sipfleet-test"
user_agent_header="User-Agent: kamailio-sipfleet-test"
${listen}

mpath="${o.modulePath}/"
${useTls ? `loadmodule "tls.so"
modparam("tls", "config", "${o.tlsConfigPath}")` : ''}
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
${dispatcher ? 'loadmodule "dispatcher.so"' : ''}

# Fail fast instead of retrying for 30 s when the next hop is down.
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 30000)
modparam("rr", "enable_full_lr", 0)
modparam("rr", "append_fromtag", 0)
${
  dispatcher
    ? `modparam("dispatcher", "list_file", "${o.dispatcherList}")
modparam("dispatcher", "ds_ping_interval", 0)`
    : ''
}

request_route {
${o.logRequests ? '    xlog("L_NOTICE", "REQ $rm $ru from $si:$sp ci=$ci\\n");' : ''}
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }

    # Keepalive / readiness probe addressed to the proxy itself.
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }

    # CANCEL: relay statefully only if it matches an INVITE transaction.
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }

    # In-dialog requests follow the Route set we record-routed.
    if (has_totag()) {
        if (loose_route()) {
            route(RELAY);
            exit;
        }
        if (is_method("ACK")) {
            # ACK to a negative reply of ours: absorbed by tm; otherwise nothing to do.
            if (t_check_trans()) {
                t_relay();
            }
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }

    # Absorb retransmissions of initial requests already being handled.
    if (!is_method("ACK")) {
        t_check_trans();
    }

    if (is_method("INVITE|SUBSCRIBE|REFER")) {
        record_route();
    }

${target}
    route(RELAY);
    exit;
}

route[RELAY] {
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}
`;
}

/** The tls module's profiles: our certificate as server and client, peers not verified (test CAs). */
function writeTlsConfig(dir: string, tls: { certPath: string; keyPath: string }): string {
  const file = path.join(dir, 'tls.cfg');
  const profile = `method = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\nprivate_key = ${tls.keyPath}\ncertificate = ${tls.certPath}\n`;
  writeFileSync(file, `[server:default]\n${profile}\n[client:default]\n${profile}`);
  return file;
}

/** Pids whose process group is pgid (Kamailio's creator + workers). */
export function processGroupPids(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // Fields after the ")" of the command name: state ppid pgrp ...
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[2]) === pgid) out.push(Number(d));
    } catch {
      // process vanished between readdir and read
    }
  }
  return out;
}

export async function startKamailio(o: KamailioOptions): Promise<KamailioHandle> {
  const host = o.host ?? '127.0.0.2';
  const port = o.port ?? (await freePort(host));
  const transports = o.transports ?? ['udp'];
  if (transports.length === 0) throw new Error('kamailio: at least one transport');
  const dir = makeTempDir('kamailio');
  const cfgPath = path.join(dir, 'kamailio.cfg');
  let dispatcherList: string | undefined;
  if (o.dispatch) {
    if (o.dispatch.length === 0) throw new Error('kamailio: dispatch needs at least one destination');
    dispatcherList = path.join(dir, 'dispatcher.list');
    const nh = o.nextHopTransport ?? 'udp';
    writeFileSync(
      dispatcherList,
      o.dispatch.map((d) => {
        splitHostPort(d); // validate
        return `1 sip:${d};transport=${nh} 0 0\n`;
      }).join(''),
    );
  }
  const cfg = kamailioConfig({
    host,
    port,
    transports,
    children: o.children ?? 2,
    logLevel: o.logLevel ?? 1,
    nextHop: o.nextHop,
    nextHopTransport: o.nextHopTransport,
    dispatch: o.dispatch,
    logRequests: o.logRequests,
    modulePath: kamailioModulePath(),
    dispatcherList,
    tlsConfigPath: o.tls === undefined ? undefined : writeTlsConfig(dir, o.tls),
  });
  writeFileSync(cfgPath, cfg);

  const args = [
    '-DD', // creator stays in the foreground, workers are forked (fork=yes)
    '-E', // log to stderr
    '-f', cfgPath,
    '-Y', dir, // runtime dir (no /run/kamailio needed)
    '-P', path.join(dir, 'kamailio.pid'),
    '-w', dir, // working dir (core files)
    '-m', String(o.shmMB ?? 256),
    '-M', '16',
    '-x', o.memoryManager ?? 'tlsf', // -X (pkg) follows -x when omitted
    ...(o.extraArgs ?? []),
  ];
  const proc = spawnProcess(kamailioBinary(), args, { cwd: dir, detached: true, name: 'kamailio', echo: o.echo ?? false });

  const handle: KamailioHandle = {
    host,
    port,
    transports,
    pid: proc.pid,
    pgid: proc.pid,
    process: proc,
    workDir: dir,
    cfgPath,
    uri: `sip:${host}:${port}`,
    pids: () => processGroupPids(proc.pid),
    stop: (graceMs = 3000) => proc.stop(graceMs),
  };

  try {
    const probeTransport: KamailioTransport = transports.includes('udp') ? 'udp' : 'tcp';
    await waitForSip(host, port, { transport: probeTransport, alive: () => proc.running }, o.startTimeoutMs ?? 10_000);
  } catch (err) {
    await proc.stop(1000);
    throw new Error(`kamailio did not start: ${(err as Error).message}\nstderr:\n${proc.stderr.slice(-4000)}\ncfg: ${cfgPath}`);
  }
  return handle;
}
