/**
 * sipsak 0.9.8 (Debian package sipsak): a one-shot OPTIONS "ping" from an independent SIP implementation.
 *
 * Exit codes (man sipsak): 0 a 200 was received; 1 something other than 1xx/2xx was received; 2 local error
 * (bad option, unresolvable name, ...); 3 remote error (socket/ICMP error, no answer / timeout).
 *
 * Known sipsak 0.9.8.1 limitation (checked on this machine): with a five-digit port in the URI it drops the
 * last digit in the Request-URI and To header (sip:h:35088 is sent as sip:h:3508), so a proxy does not see
 * the request as addressed to itself. Ports >= 10000 are rejected here; use freePortInRange(host, 5060, 9999).
 */
import { spawnProcess } from './proc.ts';

export interface SipsakOptions {
  /** -E: transport (default udp). */
  transport?: 'udp' | 'tcp';
  /** -k: local IP to send from. */
  localIp?: string;
  /** -l: local port. */
  localPort?: number;
  /** -p: outbound proxy "host:port" (request goes there, Request-URI stays the target). */
  outboundProxy?: string;
  /** Number of -v (1..3, default 2: prints the reply). */
  verbosity?: 1 | 2 | 3;
  /** Hard bound on the run (default 15 s; sipsak's own UDP retransmissions end after ~5 s). */
  timeoutMs?: number;
  /** Extra raw arguments. */
  extraArgs?: readonly string[];
}

export interface SipsakResult {
  exitCode: number | null;
  /** Status code of the final reply sipsak printed, if any. */
  status: number | undefined;
  stdout: string;
  stderr: string;
  args: string[];
}

/** Builds the argument vector (exported for inspection in tests). */
export function sipsakArgs(targetUri: string, o: SipsakOptions = {}): string[] {
  const port = targetUri.match(/^sips?:(?:[^@]*@)?(?:\[[^\]]+\]|[^:;>]+):(\d+)/)?.[1];
  if (port !== undefined && port.length > 4) {
    throw new Error(`sipsak 0.9.8 truncates five-digit ports in the Request-URI (${targetUri}); use a port below 10000`);
  }
  const a: string[] = [];
  a.push('-' + 'v'.repeat(o.verbosity ?? 2));
  a.push('-s', targetUri);
  a.push('-E', o.transport ?? 'udp');
  if (o.localIp) a.push('-k', o.localIp);
  if (o.localPort !== undefined) a.push('-l', String(o.localPort));
  if (o.outboundProxy) a.push('-p', o.outboundProxy);
  if (o.extraArgs) a.push(...o.extraArgs);
  return a;
}

/** Sends one OPTIONS with sipsak (`sipsak -s <uri>`) and returns its exit code, reply status and output. */
export async function sipsakOptions(targetUri: string, o: SipsakOptions = {}): Promise<SipsakResult> {
  const args = sipsakArgs(targetUri, o);
  const proc = spawnProcess('sipsak', args, { name: 'sipsak' });
  const timer = setTimeout(() => void proc.stop(500, 'SIGTERM'), o.timeoutMs ?? 15_000);
  const info = await proc.exited;
  clearTimeout(timer);
  // With -vv sipsak prints the reply; the last status line is the final one (earlier ones are 1xx).
  const statuses = [...proc.stdout.matchAll(/SIP\/2\.0 (\d{3}) /g)].map((m) => Number(m[1]));
  return {
    exitCode: info.code,
    status: statuses.length ? statuses[statuses.length - 1] : undefined,
    stdout: proc.stdout,
    stderr: proc.stderr,
    args,
  };
}
