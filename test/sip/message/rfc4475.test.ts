/**
 * RFC 4475 (SIP torture test messages) against the message layer. The corpus lives outside the repository
 * (../shared/rfc4475/ next to the repo root) and is never copied in: without it these tests skip, saying so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SipParseError } from '../../../src/sip/errors.ts';
import {
  formatUri,
  isSipUri,
  parseMessage,
  parseUri,
  SipRequest,
  SipResponse,
  uriEquals,
  type SipMessage,
} from '../../../src/sip/message/index.ts';

// test/sip/message/ → four levels up is the folder holding the repo (/work/main → /work), then shared/rfc4475/
const CORPUS_URL = new URL('../../../../shared/rfc4475/', import.meta.url);
const CORPUS = fileURLToPath(CORPUS_URL);
const present = existsSync(new URL('INDEX.tsv', CORPUS_URL));

interface Entry {
  section: string;
  file: string;
  kind: string;
  expect: string;
}

function readIndex(): Entry[] {
  const out: Entry[] = [];
  for (const raw of readFileSync(new URL('INDEX.tsv', CORPUS_URL), 'utf8').split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const [section, file, kind, expect] = line.split('\t');
    assert.ok(section && file && kind, `malformed INDEX.tsv line: ${JSON.stringify(line)}`);
    out.push({ section, file, kind, expect: expect ?? '' });
  }
  return out;
}

/** Invalid messages the parser must refuse, with the status it must give. */
const STRICT: Record<string, number> = {
  'badinv01.dat': 400,
  'clerr.dat': 400,
  'ncl.dat': 400,
  'scalar02.dat': 400,
  'scalarlg.dat': 400,
  'quotbal.dat': 400,
  'ltgtruri.dat': 400,
  'lwsruri.dat': 400,
  'lwsstart.dat': 400,
  'trws.dat': 400,
  'badvers.dat': 505,
  'mismatch01.dat': 400,
  'mismatch02.dat': 400,
  'bigcode.dat': 400,
};
/** Invalid messages where the RFC allows either outcome; only a SipParseError may come out. */
const LENIENT = new Set(['escruri.dat', 'baddate.dat', 'regbadct.dat', 'badaspec.dat', 'baddn.dat']);
/** Application-level messages the message layer itself already refuses (missing / repeated single headers). */
const APP_REJECT = new Set(['insuf.dat', 'multi01.dat', 'mcl01.dat']);

function load(file: string): Buffer {
  return readFileSync(new URL(file, CORPUS_URL));
}

function parseAndValidate(buf: Buffer): SipMessage {
  const m = parseMessage(buf);
  m.validate();
  return m;
}

/** What the parse + validate of a message threw, or undefined. */
function failure(buf: Buffer): unknown {
  try {
    parseAndValidate(buf);
    return undefined;
  } catch (e) {
    return e;
  }
}

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Every accessor works or throws a SipParseError; returns how many accessors were exercised. */
function touchAccessors(m: SipMessage, file: string): number {
  const accessors: Array<[string, () => unknown]> = [
    ['vias', () => m.vias],
    ['topVia', () => m.topVia],
    ['callId', () => m.callId],
    ['from', () => m.from],
    ['to', () => m.to],
    ['fromTag', () => m.fromTag],
    ['toTag', () => m.toTag],
    ['cseq', () => m.cseq],
    ['contacts', () => m.contacts()],
    ['routes', () => m.routes()],
    ['recordRoutes', () => m.recordRoutes()],
    ['toBuffer', () => m.toBuffer()],
    ['clone', () => m.clone().toBuffer()],
  ];
  if (m instanceof SipRequest) {
    accessors.push(['uri', () => m.uri], ['uriText', () => m.uriText], ['maxForwards', () => m.maxForwards]);
  }
  for (const [name, fn] of accessors) {
    try {
      fn();
    } catch (e) {
      assert.ok(e instanceof SipParseError, `${file}: ${name} threw ${describeError(e)}`);
    }
  }
  return accessors.length;
}

/** The serialised form parses back to the same serialised form (a proxy forwarding it twice changes nothing). */
function assertStableSerialisation(m: SipMessage, file: string): void {
  const once = m.toBuffer();
  const again = parseMessage(once);
  again.validate();
  assert.ok(again.toBuffer().equals(once), `${file}: toBuffer is not stable`);
  assert.ok(again.body.equals(m.body), `${file}: body changed`);
  assert.equal(again.headers.length, m.headers.length + (m.get('content-length') === undefined ? 1 : 0), `${file}: header count`);
}

if (!present) {
  test('RFC 4475 torture messages', (t) => {
    t.skip(`RFC 4475 corpus not found at ${CORPUS}`);
  });
} else {
  const entries = readIndex();

  test('RFC 4475 index lists every message this test has an expectation for', () => {
    const files = new Set(entries.map((e) => e.file));
    for (const f of [...Object.keys(STRICT), ...LENIENT, ...APP_REJECT]) assert.ok(files.has(f), `${f} missing from INDEX.tsv`);
    assert.ok(entries.length >= 49, `only ${entries.length} entries`);
    for (const e of entries) {
      assert.ok(['valid', 'invalid', 'application', 'transaction', 'compat'].includes(e.kind), `${e.file}: unknown kind ${e.kind}`);
      if (e.kind === 'invalid') assert.ok(e.file in STRICT || LENIENT.has(e.file), `${e.file}: invalid but neither strict nor lenient`);
      assert.ok(existsSync(new URL(e.file, CORPUS_URL)), `${e.file} missing from the corpus`);
    }
  });

  for (const e of entries) {
    const name = `RFC 4475 §${e.section} ${e.file} (${e.kind})`;
    test(name, () => {
      const buf = load(e.file);
      if (e.kind === 'valid' || (e.kind !== 'invalid' && !APP_REJECT.has(e.file))) {
        const err = failure(buf);
        assert.equal(err, undefined, `${e.file} should parse and validate: ${describeError(err)}`);
        const m = parseAndValidate(buf);
        assert.ok(touchAccessors(m, e.file) > 10);
        assertStableSerialisation(m, e.file);
        return;
      }
      const err = failure(buf);
      if (e.file in STRICT || APP_REJECT.has(e.file)) {
        const status = STRICT[e.file] ?? 400;
        assert.ok(err instanceof SipParseError, `${e.file} should throw SipParseError ${status}, got ${err === undefined ? 'success' : describeError(err)}`);
        assert.equal(err.status, status, `${e.file}: ${err.message}`);
      } else {
        assert.ok(LENIENT.has(e.file));
        if (err !== undefined) {
          assert.ok(err instanceof SipParseError, `${e.file} threw ${describeError(err)}`);
          assert.equal(err.status, 400, `${e.file}: ${err.message}`);
        }
      }
      // whatever validate said, a message that splits into start line + headers must not crash its accessors
      let m: SipMessage | undefined;
      try {
        m = parseMessage(buf);
      } catch (pe) {
        assert.ok(pe instanceof SipParseError, `${e.file}: parseMessage threw ${describeError(pe)}`);
      }
      if (m !== undefined) assert.ok(touchAccessors(m, e.file) > 10);
    });
  }

  // Content checks on some of the valid messages: parsing succeeded for the right reasons.
  const get = (file: string): SipMessage => parseAndValidate(load(file));
  const req = (file: string): SipRequest => {
    const m = get(file);
    assert.ok(m instanceof SipRequest);
    return m;
  };
  const res = (file: string): SipResponse => {
    const m = get(file);
    assert.ok(m instanceof SipResponse);
    return m;
  };

  test('RFC 4475 §3.1.1.1 wsinv: whitespace, folding and escapes read right', () => {
    const m = req('wsinv.dat');
    assert.equal(m.method, 'INVITE');
    assert.equal(m.toTag, '1918181833n');
    assert.equal(m.fromTag, '98asjd8');
    assert.equal(m.from.displayName, 'J Rosenberg \\"');
    assert.equal(m.maxForwards, 68);
    assert.deepEqual(m.cseq, { seq: 9, method: 'INVITE' });
    assert.deepEqual(m.vias.map((v) => [v.transport, v.host, v.branch]), [
      ['UDP', '192.0.2.2', '390skdjuw'],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    const [contact] = m.contacts();
    assert.equal(contact!.displayName, 'Quoted string ""');
    assert.equal(contact!.params.get('newparam'), 'newvalue');
    assert.equal(contact!.params.get('secondparam'), null);
    assert.equal(contact!.params.get('q'), '0.33');
    assert.equal(m.get('NewFangledHeader'), 'newfangled value continued newfangled value');
    assert.equal(m.get('UnknownHeaderWithUnusualValue'), ';;,,;;,;');
    assert.equal(m.get('subject'), '');
    assert.equal(m.routes().length, 1);
    assert.equal(m.body.length, 150);
  });

  test('RFC 4475 §3.1.1.2 intmeth: unusual method token and URI', () => {
    const m = req('intmeth.dat');
    assert.equal(m.method, "!interesting-Method0123456789_*+`.%indeed'~");
    assert.equal(m.cseq.method, m.method);
    assert.ok(isSipUri(m.uri));
    assert.equal(m.uri.host, 'example.com');
    assert.equal(m.to.displayName, 'BEL:\x07 NUL:\x00 DEL:\x7f');
    assert.equal(m.topVia.branch, "z9hG4bK-.!%66*_+`'~");
    assert.equal(m.from.displayName, "token1~` token2'+_ token3*%!.-");
  });

  test('RFC 4475 §3.1.1.3 esc01: escaped URIs compare equal to their unescaped forms', () => {
    const m = req('esc01.dat');
    assert.ok(isSipUri(m.uri));
    assert.equal(m.uri.user, 'sips%3Auser%40example.com');
    assert.equal(m.uri.host, 'example.net');
    assert.ok(uriEquals(m.to.uri, parseUri('sip:user@example.com')));
    assert.ok(uriEquals(m.contacts()[0]!.uri, parseUri('sip:caller@host5.example.net;lr;name=value%2541')));
    assert.equal(m.body.length, 150);
  });

  test('RFC 4475 §3.1.1.4 escnull and §3.1.1.5 esc02', () => {
    const n = req('escnull.dat');
    assert.ok(isSipUri(n.to.uri));
    assert.equal(n.to.uri.user, 'null-%00-null');
    assert.equal(n.contacts().length, 2);
    const e = req('esc02.dat');
    assert.equal(e.method, 'RE%47IST%45R');
    assert.equal(e.cseq.method, 'RE%47IST%45R');
    // C%6Fntact is an unknown header, not Contact
    assert.equal(e.contacts().length, 2);
    assert.equal(e.get('C%6Fntact'), '<sip:alias2@host2.example.com>');
    assert.equal(e.to.displayName, '%Z%45');
    assert.equal(e.topVia.branch, 'z9hG4bK209%fzsnel234');
  });

  test('RFC 4475 §3.1.1.6 lwsdisp, §3.1.1.8 dblreq, §3.1.1.9 semiuri, §3.1.1.10 transports', () => {
    assert.equal(req('lwsdisp.dat').from.displayName, 'caller');
    const d = req('dblreq.dat');
    assert.equal(d.method, 'REGISTER');
    assert.equal(d.body.length, 0);
    const s = req('semiuri.dat');
    assert.ok(isSipUri(s.uri));
    assert.equal(s.uri.user, 'user;par=u%40example.net');
    assert.equal(s.uri.host, 'example.com');
    assert.equal(s.uri.params.size, 0);
    assert.equal(s.getAll('accept').length, 6);
    assert.deepEqual(req('transports.dat').vias.map((v) => v.transport), ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
  });

  test('RFC 4475 §3.1.1.12 unreason, §3.1.1.13 noreason', () => {
    const u = res('unreason.dat');
    assert.equal(u.status, 200);
    assert.ok(u.reason.startsWith('= 2**3 * 5**2 '));
    assert.equal(Buffer.from(u.reason, 'latin1').toString('utf8').includes('но'), true);
    const n = res('noreason.dat');
    assert.equal(n.status, 100);
    assert.equal(n.reason, '');
  });

  test('RFC 4475 §3.3: unknown schemes, 2543 syntax, Max-Forwards 0 parse as such', () => {
    const u = req('unkscm.dat');
    assert.equal(u.uri.scheme, 'nobodyknowsthisscheme');
    assert.equal(formatUri(u.uri), 'nobodyKnowsThisScheme:totallyopaquecontent');
    assert.equal(req('novelsc.dat').uri.scheme, 'soap.beep');
    const s2 = req('unksm2.dat');
    assert.equal(s2.to.uri.scheme, 'isbn');
    assert.equal(s2.from.uri.scheme, 'http');
    assert.equal(s2.contacts()[0]!.uri.scheme, 'name');
    assert.equal(req('zeromf.dat').maxForwards, 0);
    const old = req('inv2543.dat');
    assert.equal(old.topVia.branch, null);
    assert.equal(old.maxForwards, null);
    assert.ok(old.body.length > 0);
    const r = req('regescrt.dat');
    const c = r.contacts()[0]!.uri;
    assert.ok(isSipUri(c));
    assert.deepEqual(c.headers, [['Route', '%3Csip:sip.example.com%3E']]);
    assert.equal(req('badbranch.dat').topVia.branch, 'z9hG4bK');
  });
}
