// Releases as the node sees them (CONTRACT §9 Update), shared by the agent (which fetches and
// checks them) and `npm run release` (which signs and publishes them): the names, where they live
// upstream, and the Ed25519 signature under `fleet.releaseKey`. Pure but for the crypto.
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export const RELEASE_ARCHES = ['arm64', 'armhf', 'amd64'] as const;
export type ReleaseArch = (typeof RELEASE_ARCHES)[number];
export interface ReleaseName { version: string; arch: ReleaseArch; file: string }

export class ReleaseError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 2) {
    super(message);
    this.name = 'ReleaseError';
  }
}

/** A release's version: X.Y.Z with an optional pre-release (the helper and launcher match the same). */
const VERSION = String.raw`\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?`;
export const VERSION_RE = new RegExp(`^${VERSION}$`);
const RELEASE_NAME = new RegExp(`^camnode-(${VERSION})-(arm64|armhf|amd64)\\.tgz$`);

/** `camnode-1.2.0-arm64.tgz` → its version and Debian arch; null for any other name. Pure. */
export function parseReleaseName(file: string): ReleaseName | null {
  const m = RELEASE_NAME.exec(file);
  return m ? { version: m[1]!, arch: m[2] as ReleaseArch, file } : null;
}

/** Where a release and its signature live in the upstream store. Pure. */
export function releaseKeys(prefix: string, file: string): { bundle: string; signature: string } {
  return { bundle: `${prefix}/releases/${file}`, signature: `${prefix}/releases/${file}.sig` };
}

/** An Ed25519 public key as `fleet.releaseKey` holds it: base64 of its 32 raw bytes. */
export function releaseKeyBase64(key: KeyObject): string {
  const spki = (key.type === 'public' ? key : createPublicKey(key)).export({ type: 'spki', format: 'der' });
  return spki.subarray(spki.length - 32).toString('base64');
}

/** The public key of `fleet.releaseKey` as a KeyObject. */
export function releasePublicKey(base64: string): KeyObject {
  const raw = Buffer.from(base64, 'base64');
  if (raw.length !== 32) throw new ReleaseError('fleet.releaseKey: not a base64 Ed25519 public key (32 bytes)');
  // SubjectPublicKeyInfo for Ed25519: a fixed 12-byte header, then the key.
  return createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]), format: 'der', type: 'spki' });
}

export function signRelease(bytes: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(null, bytes, privateKey);
}

/** Whether `signature` (raw, 64 bytes) is the release key's over exactly these bytes. */
export function releaseSignatureValid(bytes: Uint8Array, signature: Uint8Array, releaseKey: string): boolean {
  if (signature.length !== 64) return false;
  return verify(null, bytes, releasePublicKey(releaseKey), signature);
}
