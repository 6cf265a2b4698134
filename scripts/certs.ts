// `npm run certs`: a local development CA and a server certificate it signs, for TLS on
// this machine (the node's own TLS_CERT_FILE/TLS_KEY_FILE, or nginx in docker-compose.yml).
// Trust certs/ca.pem in the browser or client (curl --cacert certs/ca.pem); never use these
// in production, where the certificate comes from your CA or ACME. Existing files are kept.

import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';

x509.cryptoProvider.set(webcrypto as Crypto);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface DevCertificates {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Names the server certificate covers by default: this machine, and the compose services behind nginx. */
export const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1', 'nginx'];

export async function makeDevCertificates(dir: string, hosts: readonly string[] = DEFAULT_HOSTS, days = 365): Promise<DevCertificates> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') };
  if (Object.values(files).every((f) => existsSync(f))) return files;
  const notBefore = new Date(Date.now() - DAY_MS);
  const notAfter = new Date(Date.now() + days * DAY_MS);
  const caKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: 'CN=dispatch development CA', notBefore, notAfter, signingAlgorithm: ALGORITHM, keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const serverKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair;
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: `CN=${hosts[0] ?? 'localhost'}`, issuer: ca.subject, notBefore, notAfter,
    signingAlgorithm: ALGORITHM, publicKey: serverKeys.publicKey, signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIP(h) ? 'ip' as const : 'dns' as const, value: h }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  // Only the CA's certificate is written: its key is not kept, so nothing else can be signed with it.
  writeFileSync(files.caFile, ca.toString('pem') + '\n');
  writeFileSync(files.certFile, server.toString('pem') + '\n');
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  writeFileSync(files.keyFile, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n', { mode: 0o600 });
  return files;
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = resolve(process.argv[2] ?? 'certs');
  const files = await makeDevCertificates(dir);
  process.stdout.write([
    `development CA and server certificate in ${dir} (for ${DEFAULT_HOSTS.join(', ')})`,
    `  node alone:  TLS_CERT_FILE=${files.certFile} TLS_KEY_FILE=${files.keyFile} npm start`,
    `  check:       curl --cacert ${files.caFile} https://localhost:8000/health`,
    '',
  ].join('\n'));
}
