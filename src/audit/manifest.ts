// manifest.json of a sealed incident (CONTRACT §4) and its signature: Ed25519 over the UTF-8
// bytes of the manifest without its `signature` member, serialised by RFC 8785 (JCS). The file
// itself is pretty-printed for people; verifiers re-canonicalise what they parse, and JCS makes
// that byte-identical to what was signed.
import canonicalize from 'canonicalize';
import type { AuditHead } from './chain.js';
import { sha256Hex } from './chain.js';
import { isPublicKeyBase64, verifyEd25519, type NodeKey } from './keys.js';
import type { AuditIncident } from './log.js';

/** Why a clip has a hole (CONTRACT §5). */
export type GapReason = 'no footage' | 'unreadable segment' | 'camera down';

export interface ManifestGap { start: string; end: string; reason?: GapReason }

export interface ManifestFile {
  /** A plain file name in the incident folder, e.g. `entrance.mp4` (`entrance.mp4.age` encrypted). */
  name: string;
  camera: string;
  /** A call recording (CONTRACT §8), named `calls/<name>`; absent for a camera's clip. */
  kind?: 'call';
  bytes: number;
  /** SHA-256 hex of the file. */
  sha256: string;
  /** An encrypted clip (CONTRACT §7): what decrypting it gives. */
  plaintext?: PlaintextOf;
  start: string;
  end: string;
  gaps: ManifestGap[];
  /**
   * How its times were stamped (CONTRACT §5): `synced` with the OS clock synchronised,
   * `unsynced` some before it was (or while the OS could not say), `stepped` some corrected
   * for a clock step taken after they were recorded. Absent in manifests of earlier releases.
   */
  clock?: 'synced' | 'unsynced' | 'stepped';
}

/** The clip inside an age-encrypted file: its name, size and SHA-256 once decrypted. */
export interface PlaintextOf { name: string; bytes: number; sha256: string }

export interface UnsignedManifest<I extends AuditIncident = AuditIncident> {
  incident: I;
  files: ManifestFile[];
  clock: { synced: boolean };
  /** The audit log's last entry before the seal entry. */
  audit: AuditHead;
  agent: { version: string };
}

export interface ManifestSignature { alg: 'ed25519'; publicKey: string; value: string }

export interface Manifest<I extends AuditIncident = AuditIncident> extends UnsignedManifest<I> {
  signature: ManifestSignature;
}

/** The exact bytes that are signed: JCS of the manifest without `signature`. */
export function manifestSigningBytes(manifest: object): Buffer {
  const { signature: _signature, ...unsigned } = manifest as { signature?: unknown };
  // A JSON round trip first, so what is signed is what a verifier will parse from the file
  // (undefined members and toJSON() resolved the way JSON.stringify does).
  const text = canonicalize(JSON.parse(JSON.stringify(unsigned)) as unknown);
  if (text === undefined) throw new Error('manifest cannot be canonicalised');
  return Buffer.from(text, 'utf8');
}

export function signManifest<I extends AuditIncident>(unsigned: UnsignedManifest<I>, key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>): Manifest<I> {
  const value = key.sign(manifestSigningBytes(unsigned)).toString('base64');
  return { ...unsigned, signature: { alg: 'ed25519', publicKey: key.publicKeyBase64, value } };
}

/**
 * Any other record the node signs beside a sealed incident's clips (a note's `notes/<n>.json`):
 * the same JCS + Ed25519 signature as the manifest, checked by verifyManifestSignature.
 */
export function signRecord<T extends object>(unsigned: T, key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>): T & { signature: ManifestSignature } {
  const value = key.sign(manifestSigningBytes(unsigned)).toString('base64');
  return { ...unsigned, signature: { alg: 'ed25519', publicKey: key.publicKeyBase64, value } };
}

/** manifest.json's text: what the sealer writes (durably) and hashes for the seal entry. */
export function serializeManifest(manifest: Manifest<AuditIncident>): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** SHA-256 hex of manifest.json's exact bytes (the seal entry's `manifestSha256`). */
export function manifestSha256(bytes: Uint8Array | string): string {
  return sha256Hex(bytes);
}

/** Checks the signature of a parsed manifest under a trusted public key (base64 raw 32 bytes). */
export function verifyManifestSignature(manifest: unknown, trustedKey: string): { ok: true } | { ok: false; reason: string } {
  const sig = (manifest as { signature?: Partial<ManifestSignature> } | null)?.signature;
  if (!sig || typeof sig !== 'object') return { ok: false, reason: 'the manifest has no signature' };
  if (sig.alg !== 'ed25519') return { ok: false, reason: `signature alg is ${JSON.stringify(sig.alg)}, not "ed25519"` };
  if (typeof sig.value !== 'string') return { ok: false, reason: 'signature has no value' };
  if (!isPublicKeyBase64(trustedKey)) return { ok: false, reason: 'the trusted key is not a base64 Ed25519 public key' };
  let bytes: Buffer;
  try {
    bytes = manifestSigningBytes(manifest as object);
  } catch (err) {
    return { ok: false, reason: `manifest cannot be canonicalised: ${(err as Error).message}` };
  }
  return verifyEd25519(bytes, sig.value, trustedKey)
    ? { ok: true }
    : { ok: false, reason: 'the signature does not verify under the trusted key: the manifest was altered or signed by another key' };
}
