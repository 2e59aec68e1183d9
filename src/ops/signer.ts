// Signing commands for nodes that ask for it (CONTRACT §7): `ctl` signs with its own --cert and
// --key as a compact JWS (header alg + x5c, payload {node, cmd, args, iat, nonce, replyTo}).
// P-256 keys sign ES256, Ed25519 keys EdDSA. The reply goes under reply/<own CN>/, the only
// reply topic a node answers a signed command on and the only one the broker lets us read.
import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { pemCertificates } from '../platform/pem.js';

export interface Credentials {
  /** Leaf first, then any intermediates (PEM, as a file holds them). */
  certPem: string;
  keyPem: string;
}

export interface Signing {
  cn: string;
  /** `replyTo` undefined: the JWS names none, and the node answers on the MQTT reply address. */
  sign(node: string, cmd: string, args: object, replyTo: string | undefined, nowMs?: number): Promise<string>;
}


function algFor(key: KeyObject): 'ES256' | 'EdDSA' {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new Error(`the key is ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}; commands are signed with P-256 or Ed25519 keys`);
}

/** The CN of a certificate (the principal's name, `ops:NAME`). */
export function certificateCn(pem: string): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(pem).subject)?.[1];
  if (!cn) throw new Error('the certificate has no CN');
  return cn;
}

export function signingWith(creds: Credentials): Signing {
  const certs = pemCertificates(creds.certPem);
  if (certs.length === 0) throw new Error('no certificate in the --cert file');
  if (certs.length > 3) throw new Error('the --cert file holds more than 3 certificates (leaf first, then intermediates)');
  const x5c = certs.map((pem) => Buffer.from(new X509Certificate(pem).raw).toString('base64'));
  const key = createPrivateKey(creds.keyPem);
  const alg = algFor(key);
  const cn = certificateCn(certs[0]!);
  return {
    cn,
    async sign(node, cmd, args, replyTo, nowMs = Date.now()) {
      const payload = { node, cmd, args, iat: Math.floor(nowMs / 1000), nonce: randomBytes(18).toString('base64url'), ...(replyTo !== undefined ? { replyTo } : {}) };
      return new CompactSign(Buffer.from(JSON.stringify(payload), 'utf8')).setProtectedHeader({ alg, x5c }).sign(key);
    },
  };
}

/** A reply topic only this principal may read: `<prefix>/<node>/reply/<CN>/<random>`. */
export function signedReplyTopic(prefix: string, node: string, cn: string): string {
  return `${prefix}/${node}/reply/${cn}/${randomBytes(9).toString('base64url')}`;
}
