/**
 * A throwaway CA and a server certificate for TLS/WSS tests, made with the openssl CLI (Debian's), so tests
 * run real handshakes with real certificates: peers that verify can be given the CA.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir } from './tmp.ts';

export interface TestCertificate {
  dir: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** A CA and a certificate it signed for these IP addresses (subjectAltName) and "localhost". */
export function makeCertificate(ips: readonly string[]): TestCertificate {
  const dir = makeTempDir('tls');
  const p = (f: string): string => path.join(dir, f);
  const run = (args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }); };
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=sipfleet test CA', '-keyout', p('ca.key'), '-out', p('ca.pem')]);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=sipfleet',
    '-keyout', p('key.pem'), '-out', p('req.csr')]);
  writeFileSync(p('ext.cnf'), `subjectAltName=${[...ips.map((ip) => `IP:${ip}`), 'DNS:localhost'].join(',')}\n`);
  run(['x509', '-req', '-in', p('req.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2',
    '-extfile', p('ext.cnf'), '-out', p('cert.pem')]);
  return {
    dir, caPath: p('ca.pem'), certPath: p('cert.pem'), keyPath: p('key.pem'),
    ca: readFileSync(p('ca.pem')), cert: readFileSync(p('cert.pem')), key: readFileSync(p('key.pem')),
  };
}
