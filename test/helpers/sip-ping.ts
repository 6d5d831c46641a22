/**
 * A minimal SIP OPTIONS ping over UDP or TCP, independent of src/ (so it can probe any peer, including sipfleet,
 * without relying on the code under test). Used to wait until a proxy is ready to answer.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export interface SipPingResult {
  status: number;
  reason: string;
  /** The whole response as received. */
  raw: string;
  rttMs: number;
}

export interface SipPingOptions {
  transport?: 'udp' | 'tcp';
  timeoutMs?: number;
  /** Local address to send from (default 127.0.0.1). */
  localIp?: string;
  /** Request-URI; default sip:host:port (no user part, i.e. addressed to the peer itself). */
  uri?: string;
  /** Default OPTIONS. */
  method?: string;
  /** Default a random one. */
  callId?: string;
}

function buildOptions(host: string, port: number, o: SipPingOptions, localPort: number): { text: string; callId: string } {
  const transport = (o.transport ?? 'udp').toUpperCase();
  const localIp = o.localIp ?? '127.0.0.1';
  const callId = o.callId ?? `ping-${randomBytes(8).toString('hex')}`;
  const method = o.method ?? 'OPTIONS';
  const uri = o.uri ?? `sip:${host}:${port}`;
  const text =
    `${method} ${uri} SIP/2.0\r\n` +
    `Via: SIP/2.0/${transport} ${localIp}:${localPort};branch=z9hG4bK${randomBytes(6).toString('hex')};rport\r\n` +
    `Max-Forwards: 70\r\n` +
    `From: <sip:ping@${localIp}>;tag=${randomBytes(4).toString('hex')}\r\n` +
    `To: <${uri}>\r\n` +
    `Call-ID: ${callId}\r\n` +
    `CSeq: 1 ${method}\r\n` +
    `Contact: <sip:ping@${localIp}:${localPort}>\r\n` +
    `Accept: application/sdp\r\n` +
    `Content-Length: 0\r\n\r\n`;
  return { text, callId };
}

function parseStatus(raw: string): { status: number; reason: string } | null {
  const m = raw.match(/^SIP\/2\.0 (\d{3}) ([^\r\n]*)/);
  return m ? { status: Number(m[1]), reason: m[2] ?? '' } : null;
}

/** Sends one OPTIONS and resolves with the first final response (1xx are skipped). Rejects on timeout. */
export function sipPing(host: string, port: number, o: SipPingOptions = {}): Promise<SipPingResult> {
  const timeoutMs = o.timeoutMs ?? 1000;
  const localIp = o.localIp ?? '127.0.0.1';
  const t0 = performance.now();
  return new Promise<SipPingResult>((resolve, reject) => {
    let finished = false;
    let cleanup: () => void = () => {};
    const finish = (err: Error | null, res?: SipPingResult): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      cleanup();
      if (err) reject(err);
      else if (res) resolve(res);
    };
    const timer = setTimeout(
      () => finish(new Error(`sipPing: no final response from ${o.transport ?? 'udp'} ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onText = (raw: string, callId: string): void => {
      if (!raw.includes(callId)) return;
      const st = parseStatus(raw);
      if (st && st.status >= 200) finish(null, { ...st, raw, rttMs: performance.now() - t0 });
    };

    if ((o.transport ?? 'udp') === 'udp') {
      const sock = dgram.createSocket('udp4');
      cleanup = () => sock.close();
      sock.on('error', (e) => finish(e));
      sock.bind(0, localIp, () => {
        const { text, callId } = buildOptions(host, port, o, sock.address().port);
        sock.on('message', (buf) => onText(buf.toString('latin1'), callId));
        sock.send(text, port, host);
      });
    } else {
      const sock = net.connect({ host, port, localAddress: localIp });
      cleanup = () => sock.destroy();
      let buf = '';
      let callId = '';
      sock.on('error', (e) => finish(e));
      sock.on('connect', () => {
        const msg = buildOptions(host, port, o, sock.localPort ?? 0);
        callId = msg.callId;
        sock.write(msg.text);
      });
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        // Good enough for a probe: responses to OPTIONS carry no body we care about.
        for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
          onText(buf.slice(0, end + 4), callId);
          buf = buf.slice(end + 4);
        }
      });
    }
  });
}

/**
 * Retries sipPing until a final response arrives; rejects after timeoutMs. `alive` stops early when the peer
 * process has died, so a failed start is reported at once rather than after the whole timeout.
 */
export async function waitForSip(
  host: string,
  port: number,
  o: SipPingOptions & { alive?: () => boolean } = {},
  timeoutMs = 10_000,
): Promise<SipPingResult> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (o.alive && !o.alive()) throw new Error(`waitForSip: process exited before ${host}:${port} answered`);
    try {
      return await sipPing(host, port, { ...o, timeoutMs: Math.min(o.timeoutMs ?? 300, Math.max(50, deadline - Date.now())) });
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`waitForSip: ${host}:${port} did not answer OPTIONS within ${timeoutMs} ms (${(last as Error)?.message ?? last})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
