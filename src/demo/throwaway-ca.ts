// The demo's fleet: a throwaway CA and one admin principal (`ops:demo`), made with @peculiar/x509
// on WebCrypto — no openssl needed — so that the demo's node takes only signed commands, as a
// real one does, and the `ctl` lines it prints sign with this certificate. Valid for a day;
// made again at every demo run. Nothing here is fit for a real fleet: use fleet-ca.sh.
import { webcrypto } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { x509 } from '../platform/x509.js';

export interface DemoFleet {
  caFile: string;
  certFile: string;
  keyFile: string;
  cn: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^./, '7');
}

export async function makeDemoFleet(dir: string, now = Date.now()): Promise<DemoFleet> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + DAY);
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: 'O=camnode demo, CN=camnode demo fleet CA', notBefore, notAfter, signingAlgorithm: ALG, keys: caKeys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const opsKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const cn = 'ops:demo';
  const ops = await x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: `O=camnode demo, OU=admin, CN=${cn}`, issuer: ca.subject, notBefore, notAfter,
    signingAlgorithm: ALG, publicKey: opsKeys.publicKey, signingKey: caKeys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', opsKeys.privateKey);
  const fleet: DemoFleet = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'ops-demo.crt'), keyFile: join(dir, 'ops-demo.key'), cn };
  await writeFile(fleet.caFile, ca.toString('pem'));
  await writeFile(fleet.certFile, ops.toString('pem'));
  await writeFile(fleet.keyFile, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
  return fleet;
}
