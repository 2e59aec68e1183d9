// The node's Ed25519 signing key (CONTRACT §3, §4). Generated once, on first start, under
// node.stateDir; it is the node's evidence identity, so it is never silently replaced: a key
// file that cannot be read is an error the operator must look at, not a reason to make a new one.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';

export const NODE_KEY_FILE = 'node-key.pem';

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Standard padded base64 of 32 bytes: 43 characters and one '='. */
const RAW_KEY_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export interface NodeKey {
  /** Standard padded base64 of the raw 32-byte public key: the string of `status`, `check`, the manifest and `--key`. */
  readonly publicKeyBase64: string;
  /** Where the private key lives (PKCS#8 PEM, mode 0600). */
  readonly path: string;
  /** Ed25519 signature (64 bytes) over data. */
  sign(data: Uint8Array): Buffer;
}

/** A key file that exists but is not a usable Ed25519 private key. */
export class NodeKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NodeKeyError';
  }
}

/** Raw public key of an Ed25519 KeyObject (public or private) as standard padded base64. */
export function publicKeyBase64(key: KeyObject): string {
  // createPublicKey takes a private KeyObject, not a public one.
  const spki = (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'der', type: 'spki' });
  if (spki.length !== ED25519_SPKI_PREFIX.length + 32 || !spki.subarray(0, ED25519_SPKI_PREFIX.length).equals(ED25519_SPKI_PREFIX)) {
    throw new NodeKeyError('not an Ed25519 key');
  }
  return spki.subarray(ED25519_SPKI_PREFIX.length).toString('base64');
}

export function isPublicKeyBase64(b64: string): boolean {
  return RAW_KEY_BASE64.test(b64);
}

/** The verifying key for a public key string as published (standard padded base64 of 32 raw bytes). */
export function publicKeyFromBase64(b64: string): KeyObject {
  if (!isPublicKeyBase64(b64)) throw new NodeKeyError('an Ed25519 public key is 44 characters of standard padded base64 (32 raw bytes)');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(b64, 'base64')]), format: 'der', type: 'spki' });
}

/** True if signatureBase64 is a valid Ed25519 signature of data under the given public key. */
export function verifyEd25519(data: Uint8Array, signatureBase64: string, publicKey: string | KeyObject): boolean {
  const key = typeof publicKey === 'string' ? publicKeyFromBase64(publicKey) : publicKey;
  const sig = Buffer.from(signatureBase64, 'base64');
  if (sig.length !== 64 || sig.toString('base64') !== signatureBase64) return false;
  return verify(null, data, key, sig);
}

function nodeKey(path: string, privateKey: KeyObject): NodeKey {
  return {
    publicKeyBase64: publicKeyBase64(privateKey),
    path,
    sign: (data) => sign(null, data, privateKey),
  };
}

async function readKey(path: string, log?: Logger): Promise<NodeKey> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    // A private key others can read may already be copied; we cannot undo that, but we stop it going on.
    log?.warn({ path, mode: (st.mode & 0o777).toString(8) }, 'node key was readable by others; setting mode 0600');
    await chmod(path, 0o600);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(path));
  } catch (err) {
    throw new NodeKeyError(`node key ${path} cannot be read (${(err as Error).message}); restore it from backup, or move it away to make a new identity`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new NodeKeyError(`node key ${path} is ${key.asymmetricKeyType ?? 'unknown'}, not Ed25519`);
  return nodeKey(path, key);
}

/**
 * The node's key from `<stateDir>/node-key.pem`, made on first start. Created without ever
 * replacing an existing file: written and fsynced under a temporary name, then hard-linked
 * into place (link fails if the key appeared meanwhile, e.g. `check` and `run` at once), then
 * the directory is fsynced.
 */
export async function loadOrCreateNodeKey(stateDir: string, log?: Logger): Promise<NodeKey> {
  const path = join(stateDir, NODE_KEY_FILE);
  try {
    return await readKey(path, log);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // The directory keeps its default mode: it also holds the audit log operators verify; the key file itself is 0600.
  await mkdir(stateDir, { recursive: true });
  await removeStaleTemps(stateDir);
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
  const tmp = join(stateDir, `.${NODE_KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readKey(path, log);
    throw err;
  }
  await unlink(tmp);
  await fsyncDir(stateDir);
  const key = nodeKey(path, privateKey);
  log?.info({ path, publicKey: key.publicKeyBase64 }, 'node key created');
  return key;
}

/** The public key of an existing node key, or null if none was made yet (for `check`: it never creates one). */
export async function readNodePublicKey(stateDir: string): Promise<string | null> {
  try {
    return publicKeyBase64(createPrivateKey(await readFile(join(stateDir, NODE_KEY_FILE))));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new NodeKeyError(`node key ${join(stateDir, NODE_KEY_FILE)} cannot be read (${(err as Error).message})`);
  }
}

/**
 * A crash between writing and linking leaves a private key under a temporary name: remove
 * those of processes that are gone (a live one may be about to link its own).
 */
async function removeStaleTemps(stateDir: string): Promise<void> {
  const prefix = `.${NODE_KEY_FILE}.`;
  for (const name of await readdir(stateDir)) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) continue;
    await unlink(join(stateDir, name)).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
