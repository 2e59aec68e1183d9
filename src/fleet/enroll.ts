// `camnode enroll` (CONTRACT §9 Enrolment): the node's TLS key is made on the node and never
// leaves it. `enroll` writes the key at `mqtt.key` (0600, the camnode user's: the owner of
// node.stateDir) and a certificate request (CN = node.id) beside it, and prints the request's
// path and the key's fingerprint for ops to compare when they sign it with
// `provisioning/fleet-ca.sh node DIR NODE_ID --csr FILE`. `enroll --install-cert FILE` takes
// the signed certificate back only if it is for this key, for this node, current, and signed
// by the fleet CA — then writes it at `mqtt.cert`.
import { createHash, generateKeyPairSync, createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { chmod, chown, readFile, stat } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { writeFileDurable } from '../platform/durable.js';
import { x509 } from '../platform/x509.js';

export class EnrollError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 1) {
    super(message);
    this.name = 'EnrollError';
  }
}

interface Paths { key: string; cert: string; ca: string; csr: string }

function paths(config: Config): Paths {
  const m = config.mqtt;
  if (!m) throw new EnrollError('the config has no mqtt section: a node joins the fleet through mqtt.url, mqtt.ca, mqtt.cert and mqtt.key', 2);
  const missing = (['key', 'cert'] as const).filter((f) => !m[f]);
  if (missing.length > 0) throw new EnrollError(`mqtt.${missing[0]}: required to enroll (where the node's ${missing[0]} is kept)`, 2);
  const ca = config.fleet?.ca ?? m.ca;
  if (!ca) throw new EnrollError('mqtt.ca: required to enroll (the fleet CA the certificate must come from)', 2);
  return { key: m.key!, cert: m.cert!, ca, csr: `${m.key!.replace(/\.key$/, '')}.csr` };
}

/** SHA-256 of the public key (SubjectPublicKeyInfo DER), as `openssl pkey -pubout -outform DER | sha256sum` prints it. */
export function keyFingerprint(key: KeyObject): string {
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex').replace(/(..)(?!$)/g, '$1:');
}

/** The camnode user and group: the owner of node.stateDir (install.sh creates it so). */
async function camnodeOwner(config: Config): Promise<{ uid: number; gid: number } | null> {
  return stat(config.node.stateDir).then((s) => ({ uid: s.uid, gid: s.gid }), () => null);
}

export interface Enrolled { key: string; csr: string; fingerprint: string; created: boolean }

/** Makes the key (or keeps the one there) and writes a request for it. */
export async function enroll(config: Config): Promise<Enrolled> {
  const p = paths(config);
  let pem = await readFile(p.key, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new EnrollError(`mqtt.key: ${p.key} cannot be read (${err.code ?? err.message})`);
  });
  const created = pem === null;
  if (pem === null) {
    // EC P-256, as fleet-ca.sh makes keys: small, and what Mosquitto and MQTT.js take.
    pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    // Written 0600 (as every durable write here), never anything wider.
    await writeFileDurable(p.key, pem);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new EnrollError(`mqtt.key: ${p.key} is not a private key (${(err as Error).message}); move it away to make a new one`);
  }
  const owner = await camnodeOwner(config);
  if (owner && process.getuid?.() === 0) await chown(p.key, owner.uid, owner.gid);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${config.node.id}`,
    keys: await webKeys(key),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  await writeFileDurable(p.csr, csr.toString('pem'));
  await chmod(p.csr, 0o644);
  return { key: p.key, csr: p.csr, fingerprint: keyFingerprint(key), created };
}

async function webKeys(key: KeyObject): Promise<never> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const subtle = webcrypto.subtle;
  const privateKey = await subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), algorithm, true, ['sign']);
  const publicKey = await subtle.importKey('spki', createPublicKey(key).export({ type: 'spki', format: 'der' }), algorithm, true, ['verify']);
  // The library's type is the DOM's CryptoKeyPair, which Node's webcrypto keys are.
  return { privateKey, publicKey } as never;
}

/** Checks a signed certificate against the node's key, its id and the fleet CA, then puts it at mqtt.cert. */
export async function installCert(config: Config, file: string, nowMs = Date.now()): Promise<{ cert: string; notAfter: string }> {
  const p = paths(config);
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new EnrollError(`--install-cert: ${file} cannot be read (${err.code ?? err.message})`, 2);
  });
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(text);
  } catch (err) {
    throw new EnrollError(`--install-cert: ${file} is not a PEM certificate (${(err as Error).message})`);
  }
  const keyPem = await readFile(p.key, 'utf8').catch(() => {
    throw new EnrollError(`mqtt.key: no key at ${p.key}; run camnode enroll first`);
  });
  const ours = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  const theirs = Buffer.from(cert.publicKey.rawData);
  if (!ours.equals(theirs)) throw new EnrollError(`${file} is for another key, not this node's (${keyFingerprint(createPrivateKey(keyPem))}): sign this node's request (${p.csr})`);
  const cn = /(?:^|,\s*)CN=([^,]+)/.exec(cert.subject)?.[1];
  if (cn !== config.node.id) throw new EnrollError(`${file} is for ${JSON.stringify(cn ?? cert.subject)}, not this node (${config.node.id})`);
  if (nowMs < cert.notBefore.getTime() || nowMs > cert.notAfter.getTime()) {
    throw new EnrollError(`${file} is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, not now (check the clock)`);
  }
  const caText = await readFile(p.ca, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new EnrollError(`the fleet CA ${p.ca} cannot be read (${err.code ?? err.message})`);
  });
  const anchors = [...caText.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new x509.X509Certificate(m[0]));
  let signed = false;
  for (const ca of anchors) {
    if (cert.issuer === ca.subject && await cert.verify({ publicKey: ca, signatureOnly: true }).catch(() => false)) signed = true;
  }
  if (!signed) throw new EnrollError(`${file} is not signed by the fleet CA (${p.ca}): it was issued by "${cert.issuer}"`);
  await writeFileDurable(p.cert, text.endsWith('\n') ? text : `${text}\n`);
  await chmod(p.cert, 0o644);
  const owner = await camnodeOwner(config);
  if (owner && process.getuid?.() === 0) await chown(p.cert, owner.uid, owner.gid);
  return { cert: p.cert, notAfter: cert.notAfter.toISOString() };
}
