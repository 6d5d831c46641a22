import { parseAddress, type Address } from '../sip/message/address.ts';
import { formatUri, isSipUri, type Uri } from '../sip/message/uri.ts';
import type { Binding, LocationStore } from '../store/location.ts';
import type { IncomingRequest } from './app/messages.ts';
import type { DigestAuthenticator } from './auth/digest.ts';

export interface RegistrarOptions {
  location: LocationStore;
  /** Shorter registrations get 423 Interval Too Brief (RFC 3261 §10.3 step 7). */
  minExpires?: number;
  maxExpires?: number;
  defaultExpires?: number;
  nodeId?: string | null;
  /** Challenges REGISTERs without valid credentials when set. */
  authenticator?: DigestAuthenticator | null;
}

/** The address-of-record of a URI (§10.3 step 5): scheme, user and host, lower-cased host, no port or params. */
export function canonicalAor(uri: Uri): string {
  if (!isSipUri(uri)) return formatUri(uri);
  return `${uri.scheme}:${uri.user !== null ? uri.user + '@' : ''}${uri.host}`;
}

function contactUriText(raw: string): string {
  const lt = raw.indexOf('<');
  return lt === -1 ? raw.split(';')[0]!.trim() : raw.slice(lt + 1, raw.indexOf('>', lt));
}

/**
 * A registrar (RFC 3261 §10.3) over a location store shared by every node: expires and Min-Expires (423),
 * q-values, several bindings, `Contact: *` removal, Path (RFC 3327), +sip.instance/reg-id (RFC 5626), Call-ID/CSeq
 * ordering, and digest authentication when configured.
 */
export class Registrar {
  readonly #o: Required<Omit<RegistrarOptions, 'authenticator' | 'nodeId'>> & Pick<RegistrarOptions, 'authenticator' | 'nodeId'>;

  constructor(options: RegistrarOptions) {
    this.#o = { minExpires: 60, maxExpires: 7200, defaultExpires: 3600, ...options };
  }

  /** Contacts registered for an AOR, best first, each with the Path to reach it (RFC 3327) as its route. */
  async contacts(aor: string): Promise<Array<{ uri: string; route: string[] }>> {
    return (await this.#o.location.lookup(aor)).map((b) => ({ uri: b.contact, route: b.path }));
  }

  async handle(req: IncomingRequest): Promise<void> {
    const auth = this.#o.authenticator;
    if (auth != null) {
      const result = await auth.authenticate(req.raw);
      if (!result.ok) {
        const out = req.createResponse(result.challenge.status, result.challenge.reason);
        for (const name of ['www-authenticate', 'proxy-authenticate']) for (const v of result.challenge.getAll(name)) out.addHeader(name, v);
        out.send();
        return;
      }
    }
    const aor = canonicalAor(req.to.uri);
    const now = Date.now();
    const contacts = req.raw.getAll('contact');
    const expiresHeader = req.header('expires');
    if (expiresHeader !== undefined && !/^\d{1,10}$/.test(expiresHeader.trim())) {
      req.reply(400, 'Bad Expires header');
      return;
    }
    const location = this.#o.location;
    if (contacts.length === 1 && contacts[0]!.trim() === '*') {
      if (expiresHeader === undefined || Number(expiresHeader) !== 0) {
        req.reply(400, 'Contact: * needs Expires: 0');
        return;
      }
      await location.removeAll(aor);
      req.reply(200);
      return;
    }
    if (contacts.some((c) => c.trim() === '*')) {
      req.reply(400, 'Contact: * must be the only contact');
      return;
    }
    const existing = new Map((await location.lookup(aor)).map((b) => [b.contact, b]));
    const callId = req.callId;
    const cseq = req.raw.cseq.seq;
    const changes: Array<{ remove: boolean; binding: Binding }> = [];
    for (const value of contacts) {
      const addr: Address = parseAddress(value, 'Contact');
      const contact = contactUriText(value.trim());
      const e = addr.params.get('expires') ?? expiresHeader ?? String(this.#o.defaultExpires);
      if (!/^\d{1,10}$/.test(e)) {
        req.reply(400, 'Bad expires parameter');
        return;
      }
      let expires = Math.min(Number(e), this.#o.maxExpires);
      if (expires > 0 && expires < this.#o.minExpires) {
        req.reply(423, undefined, { 'Min-Expires': String(this.#o.minExpires) });
        return;
      }
      const old = existing.get(contact);
      // §10.3 step 7: the same Call-ID with a CSeq not higher than the stored one is an old or repeated request.
      if (old !== undefined && old.callId === callId && old.cseq >= cseq) {
        req.reply(500, 'Out of order REGISTER');
        return;
      }
      const qText = addr.params.get('q');
      const q = qText == null ? 1 : Number(qText);
      if (!(q >= 0 && q <= 1)) {
        req.reply(400, 'Bad q-value');
        return;
      }
      const instance = addr.params.get('+sip.instance') ?? null;
      const regIdText = addr.params.get('reg-id');
      const regId = regIdText != null && /^\d{1,9}$/.test(regIdText) && Number(regIdText) > 0 && instance !== null ? Number(regIdText) : null;
      changes.push({
        remove: expires === 0,
        binding: {
          aor, contact, callId, cseq, q, regId,
          expiresAt: now + expires * 1000,
          path: req.raw.getAll('path'),
          instanceId: instance === null ? null : instance.replace(/^"|"$/g, ''),
          received: `${req.source.protocol.toLowerCase()}:${req.source.host}:${req.source.port}`,
          updatedAt: now,
          nodeId: this.#o.nodeId ?? null,
        },
      });
    }
    for (const c of changes) {
      if (c.remove) await location.remove(aor, c.binding.contact);
      else await location.put(c.binding);
    }
    const current = await location.lookup(aor);
    const out = req.createResponse(200);
    for (const b of current) {
      out.addHeader('contact', `<${b.contact}>;expires=${Math.max(0, Math.round((b.expiresAt - now) / 1000))}${b.q !== 1 ? `;q=${b.q}` : ''}`);
    }
    for (const p of req.raw.getAll('path')) out.addHeader('path', p);
    out.setHeader('date', new Date(now).toUTCString());
    out.send();
  }
}
