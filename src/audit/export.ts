// `camnode evidence export DIR --out BUNDLE` (CONTRACT §7): the hand-over for an examiner who
// has no camnode. DIR is an incident folder — the node's own, or a copy from upstream (S3 or the
// folder target), so a disposed, offline or replaced node is no obstacle. The folder is verified
// first; only whole evidence is exported. The bundle holds the signed bytes themselves, so the
// examiner checks it with coreutils and OpenSSL 3 alone:
//   sha256sum -c SHA256SUMS
//   openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.signed -sigfile manifest.sig
import { createHash, createPublicKey } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseJsonStrict } from '../platform/json.js';
import { printable } from '../ops/printable.js';
import { CALLS_DIR, RECORD_DIRS } from '../incidents/records.js';
import { KEYS_PREFIX, parseKeyObject, type KnownKey } from './key-history.js';
import { publicKeyFromBase64 } from './keys.js';
import { manifestSigningBytes } from './manifest.js';
import { EvidenceUsageError, MANIFEST_FILE, readIdentities, renderEvidenceReport, resolveTrustedKey, verifyEvidence } from './evidence.js';
import { decryptFile, type AgeIdentity } from '../platform/age.js';
import { writeAll } from '../platform/durable.js';

interface Out { write(s: string): unknown }

/** What a clip, incident or node name may be in a bundle (camera ids and incident ids are narrower). */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A clip's name in the bundle: a safe name, or a call recording's `calls/<safe name>` (CONTRACT §8). */
const safeClipName = (n: unknown): boolean => typeof n === 'string' && (SAFE_NAME.test(n) || (n.startsWith(`${CALLS_DIR}/`) && SAFE_NAME.test(n.slice(CALLS_DIR.length + 1))));

/** Where the trusted key came from: said in the output and the bundle's README. */
type KeySource = { kind: 'given'; arg: string } | { kind: 'history'; key: KnownKey; dir: string } | { kind: 'manifest' };

/**
 * The key to trust: `--key`; else, for an upstream copy laid out as `<node>/<incident>/`, the
 * published key history beside it (`<node>/keys/`) when it holds the manifest's key; else the
 * key the manifest names — which proves only that the bundle is whole and consistent, so it is
 * said plainly.
 */
async function trustedKeyFor(dir: string, keyArg: string | undefined): Promise<{ key: string; source: KeySource }> {
  if (keyArg !== undefined) return { key: await resolveTrustedKey(keyArg), source: { kind: 'given', arg: keyArg } };
  let named: unknown;
  try {
    named = (parseJsonStrict(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { signature?: { publicKey?: unknown } }).signature?.publicKey;
  } catch {
    named = undefined;
  }
  if (typeof named !== 'string') throw new EvidenceUsageError(`${join(dir, MANIFEST_FILE)} names no public key; give the node's key with --key`);
  const keysDir = join(dirname(resolve(dir)), KEYS_PREFIX);
  for (const name of await readdir(keysDir).catch(() => [] as string[])) {
    const k = parseKeyObject(name, await readFile(join(keysDir, name)).catch(() => Buffer.alloc(0)));
    if (k?.publicKey === named) return { key: named, source: { kind: 'history', key: k, dir: keysDir } };
  }
  return { key: named, source: { kind: 'manifest' } };
}

interface BundleFile { path: string; sha256: string }
interface Clip { name: string; sha256: string; bytes: number }

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function evidenceExportCommand(dir: string, opts: { out: string; key?: string; identity?: string }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let trusted: { key: string; source: KeySource };
  let identities: AgeIdentity[] | undefined;
  try {
    if (opts.identity !== undefined) identities = await readIdentities(opts.identity);
    if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) throw new EvidenceUsageError(`${dir}: not an incident folder`);
    if (await stat(opts.out).then(() => true, () => false)) throw new EvidenceUsageError(`--out ${opts.out}: already exists; the bundle is written to a new folder`);
    trusted = await trustedKeyFor(dir, opts.key);
  } catch (e) {
    if (!(e instanceof EvidenceUsageError)) throw e;
    err.write(`camnode: ${printable(e.message)}\n`);
    return 2;
  }

  // Only whole evidence leaves: the same checks as `evidence verify`.
  const report = await verifyEvidence({ dir, trustedKey: trusted.key });
  if (!report.ok) {
    out.write(renderEvidenceReport(dir, report));
    err.write(`camnode: ${printable(dir)} does not verify; no bundle was written\n`);
    return 1;
  }
  const manifestBytes = await readFile(join(dir, MANIFEST_FILE));
  const manifest = parseJsonStrict(manifestBytes.toString('utf8')) as {
    incident: { id: string; node?: string }; files: (Clip & { plaintext?: Clip })[]; signature: { value: string };
  };
  // The bundle holds plaintext clips: an encrypted incident needs the identity that opens it.
  const encrypted = manifest.files.filter((f) => f.plaintext);
  if (encrypted.length > 0 && !identities) {
    err.write(`camnode: incident ${printable(manifest.incident.id)} is encrypted (${encrypted.map((f) => printable(f.name)).join(', ')}): give --identity FILE, the district's age identity, to export its clips decrypted; no bundle was written\n`);
    return 2;
  }
  // What the examiner gets: each clip as plaintext, under its plaintext name.
  const clips = manifest.files.map((f) => ({ from: f, ...(f.plaintext ?? f) }));
  // Names become paths, SHA256SUMS lines and shell commands in the README: only plain ones.
  const unsafe = [
    ...[manifest.incident.id, manifest.incident.node ?? 'node'].filter((n) => typeof n !== 'string' || !SAFE_NAME.test(n)),
    ...clips.map((f) => f.name).filter((n) => !safeClipName(n)),
  ];
  if (unsafe.length > 0) {
    err.write(`camnode: ${printable(dir)}: the manifest names ${unsafe.map((n) => JSON.stringify(printable(String(n)))).join(', ')}, not plain names (letters, digits, . _ -); no bundle was written\n`);
    return 1;
  }
  // Each clip a file of its own, never one of the bundle's own files or folders.
  const reserved = new Set(['public-key.pem', MANIFEST_FILE, 'manifest.signed', 'manifest.sig', 'README.txt', 'SHA256SUMS', ...RECORD_DIRS]);
  const clash = clips.map((c) => c.name).filter((n, i, all) => reserved.has(n) || all.indexOf(n) !== i);
  if (clash.length > 0) {
    err.write(`camnode: ${printable(dir)}: the manifest names ${clash.map((n) => JSON.stringify(n)).join(', ')} twice or as one of the bundle's own files; no bundle was written\n`);
    return 1;
  }

  const partial = join(dirname(resolve(opts.out)), `.${basename(opts.out)}.partial-${process.pid}`);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const files: BundleFile[] = [];
  const put = async (path: string, bytes: Uint8Array | string): Promise<void> => {
    await mkdir(dirname(join(partial, path)), { recursive: true });
    await writeFile(join(partial, path), bytes);
    files.push({ path, sha256: sha256(typeof bytes === 'string' ? Buffer.from(bytes) : bytes) });
  };
  try {
    const pem = publicKeyFromBase64(trusted.key).export({ format: 'pem', type: 'spki' }).toString();
    await put('public-key.pem', pem);
    // The signed bytes and the raw signature, for each signed document.
    const signed = async (name: string, bytes: Buffer): Promise<void> => {
      const doc = parseJsonStrict(bytes.toString('utf8')) as { signature: { value: string } };
      const stem = name.replace(/\.json$/, '');
      await put(name, bytes);
      await put(`${stem}.signed`, manifestSigningBytes(doc));
      await put(`${stem}.sig`, Buffer.from(doc.signature.value, 'base64'));
    };
    await signed(MANIFEST_FILE, manifestBytes);
    for (const [i, c] of clips.entries()) {
      await mkdir(dirname(join(partial, c.name)), { recursive: true });
      if (c.from.plaintext) {
        err.write(`decrypting ${c.from.name} to ${c.name} (${i + 1}/${clips.length}, ${c.bytes} bytes)\n`);
        await decryptClip(join(dir, c.from.name), join(partial, c.name), c, identities!);
      } else {
        err.write(`copying ${c.name} (${i + 1}/${clips.length}, ${c.bytes} bytes)\n`);
        await copyFile(join(dir, c.name), join(partial, c.name));
      }
      // Verified against the signed manifest (the ciphertext above, the plaintext as it was decrypted).
      files.push({ path: c.name, sha256: c.sha256 });
    }
    const records: string[] = [];
    for (const folder of RECORD_DIRS) {
      const names = (await readdir(join(dir, folder)).catch(() => [] as string[])).sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
      for (const n of names) {
        await signed(`${folder}/${n}`, await readFile(join(dir, folder, n)));
        records.push(`${folder}/${n.replace(/\.json$/, '')}`);
      }
    }
    await writeFile(join(partial, 'README.txt'), bundleReadme({
      incident: manifest.incident.id, node: manifest.incident.node, clips, encrypted: encrypted.length > 0, records, publicKey: trusted.key,
      fingerprint: sha256(createPublicKey(pem).export({ format: 'der', type: 'spki' })), source: trusted.source,
    }));
    files.push({ path: 'README.txt', sha256: sha256(await readFile(join(partial, 'README.txt'))) });
    files.sort((a, b) => a.path.localeCompare(b.path));
    // sha256sum's own format: two spaces, then the path relative to the bundle.
    await writeFile(join(partial, 'SHA256SUMS'), files.map((f) => `${f.sha256}  ${f.path}\n`).join(''));
    await rename(partial, opts.out);
  } catch (e) {
    await rm(partial, { recursive: true, force: true });
    throw e;
  }
  out.write(`bundle ${printable(opts.out)}: incident ${manifest.incident.id}, ${clips.length} clip(s)${encrypted.length > 0 ? ' (decrypted)' : ''}, ${files.length - clips.length - 1} signed file(s) and README.txt\n`);
  out.write(keyLine(trusted.source, trusted.key));
  out.write(`check it: cd ${opts.out} && sha256sum -c SHA256SUMS && openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.signed -sigfile manifest.sig\n`);
  return 0;
}

function keyLine(source: KeySource, key: string): string {
  switch (source.kind) {
    case 'given': return `trusted key: ${key} (given with --key)\n`;
    case 'history': return `trusted key: ${key} (the node's published key history, first used ${source.key.firstUsed})\n`;
    case 'manifest': return `key: ${key} is the one the manifest names; no --key and no published key history beside the folder: compare it with the node's published keys before relying on the bundle\n`;
  }
}

/** Decrypts one clip into the bundle, refusing (and leaving nothing) unless it is the plaintext the manifest names. */
async function decryptClip(src: string, dst: string, want: Clip, identities: readonly AgeIdentity[]): Promise<void> {
  const handle = await open(dst, 'w');
  try {
    const got = await decryptFile(src, identities, (b) => writeAll(handle, [b]));
    if (got.plaintext.bytes !== want.bytes || got.plaintext.sha256 !== want.sha256) {
      throw new Error(`${src} decrypts to ${got.plaintext.bytes} bytes, SHA-256 ${got.plaintext.sha256}; the manifest says ${want.bytes} bytes, ${want.sha256}`);
    }
  } finally {
    await handle.close();
  }
}

function bundleReadme(b: {
  incident: string; node: string | undefined; clips: Clip[]; encrypted: boolean; records: string[];
  publicKey: string; fingerprint: string; source: KeySource;
}): string {
  const node = b.node ?? 'the node';
  const lines = [
    `Evidence bundle: incident ${b.incident} recorded by camera node ${node}`,
    '',
    'What is here',
    '  manifest.json      what the node recorded: the incident, each clip (name, size, SHA-256, times, gaps), the audit anchor',
    '  manifest.signed    the exact bytes the node signed: manifest.json in canonical JSON (RFC 8785) without its signature',
    '  manifest.sig       the node\'s Ed25519 signature of manifest.signed (64 raw bytes)',
    ...b.clips.map((c) => `  ${c.name.padEnd(18)} a clip (${c.bytes} bytes), SHA-256 ${c.sha256}`),
    ...(b.encrypted ? [
      '                     (the node sealed the clips encrypted to the district (age format); the manifest lists',
      '                     each encrypted file and, under "plaintext", the clip inside it: these are those clips)',
    ] : []),
    ...b.records.map((r) => `  ${`${r}.json`.padEnd(18)} a record the node signed later (${r.startsWith('disclosures/') ? 'a disclosure: legal basis, reference, agency, requester, custodian' : 'a note'}), with ${r}.signed and ${r}.sig`),
    '  public-key.pem     the node\'s public key (Ed25519, SubjectPublicKeyInfo PEM)',
    '  SHA256SUMS         SHA-256 of every other file (not signed itself: it is a convenience)',
    '',
    'How to check it (coreutils and OpenSSL 3.0 or later; nothing from the camera system)',
    '  1. Every file is as listed:',
    '       sha256sum -c SHA256SUMS',
    '  2. The node signed the manifest:',
    '       openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.signed -sigfile manifest.sig',
    '     prints "Signature Verified Successfully".',
    '  3. The clips are the ones signed: manifest.signed names each clip with its SHA-256 side by side;',
    '     each of these prints 1:',
    ...b.clips.map((c) => `       grep -c "\\"name\\":\\"${c.name}\\",\\"sha256\\":\\"$(sha256sum ${c.name} | cut -c1-64)\\"" manifest.signed`),
    ...(b.records.length > 0 ? [
      '  4. Each later record is signed by the same key:',
      ...b.records.map((r) => `       openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in ${r}.signed -sigfile ${r}.sig`),
      '     and a disclosure names this manifest: its "manifestSha256" is the SHA-256 of manifest.json',
      '       sha256sum manifest.json',
    ] : []),
    '',
    'Whose key is it',
    `  public key (base64 of the raw 32 bytes): ${b.publicKey}`,
    `  SHA-256 of public-key.pem's key (DER):   ${b.fingerprint}`,
    '  openssl pkey -pubin -in public-key.pem -outform DER | sha256sum   prints the second line.',
    b.source.kind === 'history'
      ? `  It is in the node's published key history (first used ${b.source.key.firstUsed}); the district keeps every key each node used.`
      : b.source.kind === 'given'
        ? '  It was given by the person who made this bundle as the node\'s key; compare it with the district\'s published key history.'
        : '  It is the key the manifest names: compare it with the district\'s published key history for this node before relying on it.',
    '',
    'What this proves: the clips and records are byte for byte what the node signed, and the manifest says when,',
    'which cameras and what is missing (gaps). It does not prove what the cameras saw was real, nor that the node',
    'was not controlled by someone holding its key when it signed.',
    '',
  ];
  return lines.join('\n');
}
