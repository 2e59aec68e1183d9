// Releases for the fleet (CONTRACT §9 Update): central ops sign each bundle from `npm run bundle`
// with the district's Ed25519 release key and put it, with its raw 64-byte signature, in the
// district's own upstream store at `<prefix>/releases/camnode-<version>-<arch>.tgz` (+ `.sig`),
// where nodes fetch it; a node runs nothing the key did not sign (`fleet.releaseKey`: the public
// half, base64 of its 32 bytes).
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { execFile } from 'node:child_process';
import { open, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../config/schema.js';
import { fsyncDir } from '../platform/durable.js';
import type { ObjectStore } from '../sync/store.js';
import { parseReleaseName, ReleaseError, releaseKeyBase64, releaseKeys, releaseSignatureValid, signRelease, type ReleaseArch } from '../deploy/release-keys.js';

export { ReleaseError };

const exec = promisify(execFile);

/** Reads the district's release key (PKCS#8 PEM, as `release keygen` or `openssl genpkey -algorithm ed25519` writes it). */
export async function readReleaseKey(path: string): Promise<KeyObject> {
  const pem = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ReleaseError(`--key: ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new ReleaseError(`--key: ${path} is not a private key in PEM`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ReleaseError(`--key: ${path} is an ${key.asymmetricKeyType ?? 'unknown'} key; releases are signed with Ed25519`);
  return key;
}

/** A new release key: the private half created 0600 (never over an existing file), the public half returned. */
export async function generateReleaseKey(path: string): Promise<{ publicKey: string }> {
  const { privateKey } = generateKeyPairSync('ed25519');
  // 'wx': made here or refused, in one step; never a file someone else opened first.
  const handle = await open(path, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new ReleaseError(err.code === 'EEXIST' ? `--out: ${path} exists; a release key is made once (nodes trust it by fleet.releaseKey)` : `--out: ${path}: ${err.message}`);
  });
  try {
    await handle.writeFile(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDir(dirname(path));
  return { publicKey: releaseKeyBase64(privateKey) };
}

/** The version in the bundle's own package.json (the name could say anything). */
async function bundledVersion(bundle: string): Promise<string> {
  const out = await exec('tar', ['-xzOf', bundle, 'camnode/package.json'], { maxBuffer: 1 << 20 }).catch(() => {
    throw new ReleaseError(`${basename(bundle)}: not a bundle from npm run bundle (no camnode/package.json in it)`);
  });
  const version = (JSON.parse(out.stdout) as { version?: unknown }).version;
  if (typeof version !== 'string') throw new ReleaseError(`${basename(bundle)}: its package.json names no version`);
  return version;
}

export interface Published { version: string; arch: ReleaseArch; sha256: string; bytes: number; keys: { bundle: string; signature: string }; publicKey: string; where: string }

/**
 * Signs a bundle (checked first against the `.sha256` beside it, as `npm run bundle` writes it),
 * writes `<bundle>.sig` beside it, uploads both and reads them back: what a node will fetch
 * verifies under the key's public half.
 */
export async function publishRelease(opts: {
  bundle: string; key: KeyObject; store: ObjectStore; prefix: string;
  /** Take a bundle without its `.sha256` beside it. */
  noVerify?: boolean;
  /** Replace a different bundle published under the same name (else refused). */
  force?: boolean;
  /** The nodes' fleet.releaseKey, when known: the key must be its private half. */
  releaseKey?: string | undefined;
  progress?: (line: string) => void;
}): Promise<Published> {
  const say = opts.progress ?? (() => {});
  const file = basename(opts.bundle);
  const name = parseReleaseName(file);
  if (!name) throw new ReleaseError(`${file}: not a bundle name (camnode-<version>-<arch>.tgz, as npm run bundle makes it)`);
  const bytes = await readFile(opts.bundle).catch((err: NodeJS.ErrnoException) => {
    throw new ReleaseError(`${opts.bundle}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const listed = await readFile(`${opts.bundle}.sha256`, 'utf8').catch(() => null);
  if (listed !== null) {
    const want = listed.trim().split(/\s+/)[0];
    if (want !== sha256) throw new ReleaseError(`${file}: SHA-256 ${sha256} does not match ${file}.sha256 (${want}): a damaged or different file`);
    say(`${file}: SHA-256 verified against ${file}.sha256`);
  } else if (!opts.noVerify) {
    throw new ReleaseError(`${file}: no ${file}.sha256 beside it (npm run bundle writes one); give --no-verify to sign it anyway (SHA-256 ${sha256})`);
  }
  const inside = await bundledVersion(opts.bundle);
  if (inside !== name.version) throw new ReleaseError(`${file}: the bundle holds camnode ${inside}, not ${name.version}: published under its own name only`);
  const publicKey = releaseKeyBase64(opts.key);
  if (opts.releaseKey !== undefined && opts.releaseKey !== publicKey) {
    throw new ReleaseError(`--key: its public key ${publicKey} is not fleet.releaseKey (${opts.releaseKey}): nodes would refuse this release`);
  }
  const signature = signRelease(bytes, opts.key);
  await writeFile(`${opts.bundle}.sig`, signature);
  const keys = releaseKeys(opts.prefix, file);
  const io = {
    pace: async () => {}, sent: () => {}, save: async () => {}, fault: () => {}, note: () => {}, signal: new AbortController().signal,
  };
  const there = await opts.store.get(keys.bundle);
  if (there && !there.equals(bytes) && !opts.force) {
    throw new ReleaseError(`${keys.bundle} is already published with other bytes: a version is published once (give --force to replace it)`);
  }
  say(`uploading ${keys.bundle} (${bytes.length} bytes) to ${opts.store.describe()}`);
  await opts.store.upload(keys.bundle, opts.bundle, { bytes: bytes.length, sha256 }, { kind: 'none' }, io);
  await opts.store.upload(keys.signature, `${opts.bundle}.sig`, { bytes: 64, sha256: createHash('sha256').update(signature).digest('hex') }, { kind: 'none' }, io);
  // Read back: a node gets exactly what was signed.
  const [back, backSig] = await Promise.all([opts.store.get(keys.bundle), opts.store.get(keys.signature)]);
  if (!back || !backSig || !back.equals(bytes) || !releaseSignatureValid(back, backSig, publicKey)) {
    throw new ReleaseError(`${keys.bundle}: what the store returns does not verify under the release key`, 1);
  }
  return { version: name.version, arch: name.arch, sha256, bytes: bytes.length, keys, publicKey, where: opts.store.describe() };
}

export type UpstreamConfig = Config['upstream'];
