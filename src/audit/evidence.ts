// `camnode evidence verify DIR --key PUBKEY [--audit FILE]` (CONTRACT §1): checks an incident
// folder offline. Trust comes only from the key the verifier is given, never from the key the
// manifest names; the manifest's key is only compared with it to give a clearer message.
// Folder rules: every listed file must exist with its size and SHA-256; any file the manifest
// does not list fails too (it would look like evidence without being covered by the
// signature). A manifest with a member name twice is refused (ambiguous under its signature).
import { createHash, createPublicKey } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ChainWalker, GENESIS_PREV, type AuditHead } from './chain.js';
import { openAuditSource } from './source.js';
import { isPublicKeyBase64, publicKeyBase64 } from './keys.js';
import { manifestSha256, verifyManifestSignature, type PlaintextOf } from './manifest.js';
import { decryptFile, parseIdentityFile, type AgeIdentity } from '../platform/age.js';
import { parseJsonStrict } from '../platform/json.js';
import { printable } from '../ops/printable.js';
import { CALLS_DIR, DISCLOSURES_DIR, NOTES_DIR, RECORD_DIRS, type RecordDir } from '../incidents/records.js';

export const MANIFEST_FILE = 'manifest.json';

export interface EvidenceCheck { ok: boolean; check: string; detail: string }
export interface EvidenceReport { ok: boolean; checks: EvidenceCheck[]; notes: string[] }

/** Bad usage (exit 2): a --key that is neither a key nor a file holding one. */
export class EvidenceUsageError extends Error {}

/** `--key`: the base64 key itself, or a file holding it (or a PEM public key). */
export async function resolveTrustedKey(arg: string): Promise<string> {
  const value = arg.trim();
  if (isPublicKeyBase64(value)) return value;
  let text: string;
  try {
    text = (await readFile(value, 'utf8')).trim();
  } catch (err) {
    throw new EvidenceUsageError(`--key ${JSON.stringify(arg)}: not a base64 Ed25519 public key (44 characters), nor a readable file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (isPublicKeyBase64(text)) return text;
  if (text.startsWith('-----BEGIN')) {
    try {
      return publicKeyBase64(createPublicKey(text));
    } catch { /* fall through to the message below */ }
  }
  throw new EvidenceUsageError(`--key ${value}: the file holds no base64 Ed25519 public key (44 characters) or Ed25519 PEM key`);
}

async function hashFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

const HEX64 = /^[0-9a-f]{64}$/;
const isPlainName = (n: unknown): n is string => typeof n === 'string' && n !== '' && n !== '.' && n !== '..' && !/[/\\\0]/.test(n);
/** A file of the evidence: a plain name, or a call recording's `calls/<plain name>` (CONTRACT §8). */
const isEvidenceName = (n: unknown): n is string => isPlainName(n) || (typeof n === 'string' && n.startsWith(`${CALLS_DIR}/`) && isPlainName(n.slice(CALLS_DIR.length + 1)));

interface ParsedFile { name: string; bytes: number; sha256: string; plaintext?: PlaintextOf }

/** `--identity FILE`: the age identities that decrypt encrypted clips (CONTRACT §7). */
export async function readIdentities(path: string): Promise<AgeIdentity[]> {
  let text: string;
  try {
    // An identity file is a few lines: anything big is not one (and is not read whole).
    if ((await stat(path)).size > 64 * 1024) throw new EvidenceUsageError(`--identity ${path}: over 64 KiB, not an age identity file`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof EvidenceUsageError) throw err;
    throw new EvidenceUsageError(`--identity ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return parseIdentityFile(text, `--identity ${path}`);
  } catch (err) {
    throw new EvidenceUsageError((err as Error).message);
  }
}

export async function verifyEvidence(opts: { dir: string; trustedKey: string; auditPath?: string; identities?: readonly AgeIdentity[] }): Promise<EvidenceReport> {
  const checks: EvidenceCheck[] = [];
  const notes: string[] = [];
  const add = (ok: boolean, check: string, detail: string): void => { checks.push({ ok, check, detail }); };
  const done = (): EvidenceReport => ({ ok: checks.every((c) => c.ok), checks, notes });

  let manifestBytes: Buffer;
  let manifest: Record<string, unknown>;
  try {
    manifestBytes = await readFile(join(opts.dir, MANIFEST_FILE));
  } catch (err) {
    add(false, 'manifest', `cannot read ${join(opts.dir, MANIFEST_FILE)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return done();
  }
  try {
    const parsed = parseJsonStrict(manifestBytes.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    manifest = parsed as Record<string, unknown>;
  } catch (err) {
    add(false, 'manifest', `${MANIFEST_FILE} is not valid JSON, or is ambiguous (${(err as Error).message})`);
    return done();
  }
  const incidentId = (manifest['incident'] as { id?: unknown } | undefined)?.id;
  const files = parseFiles(manifest['files']);
  if (typeof files === 'string' || typeof incidentId !== 'string') {
    add(false, 'manifest', typeof files === 'string' ? files : 'no incident id');
  } else {
    add(true, 'manifest', `incident ${incidentId}, ${files.length} file(s)`);
  }

  const named = (manifest['signature'] as { publicKey?: unknown } | undefined)?.publicKey;
  if (named === opts.trustedKey) add(true, 'key', `signed by the trusted key ${opts.trustedKey}`);
  else add(false, 'key', `the manifest names public key ${JSON.stringify(named ?? null)}, not the trusted key ${opts.trustedKey}`);
  const sig = verifyManifestSignature(manifest, opts.trustedKey);
  add(sig.ok, 'signature', sig.ok ? 'Ed25519 signature over the canonical manifest verifies under the trusted key' : sig.reason);

  if (typeof files !== 'string') {
    for (const f of files) {
      const row = await checkFile(opts.dir, f);
      add(...row);
      if (!f.plaintext) continue;
      if (!opts.identities) notes.push(`${f.name} is encrypted: its ciphertext is as signed; give --identity to decrypt it and check the clip ${f.plaintext.name} inside`);
      else if (row[0]) add(...(await checkPlaintext(opts.dir, f, f.plaintext, opts.identities)));
    }
    await checkUnlisted(opts.dir, new Set([...files.map((f) => f.name), ...RECORD_DIRS]), add);
  }
  for (const folder of RECORD_DIRS) {
    await checkRecords(opts.dir, folder, opts.trustedKey, typeof incidentId === 'string' ? incidentId : undefined, manifestSha256(manifestBytes), add);
  }

  if (opts.auditPath !== undefined) {
    await checkAudit(opts.auditPath, manifest['audit'], typeof incidentId === 'string' ? incidentId : undefined, manifestSha256(manifestBytes), add);
  }
  return done();
}

function parseFiles(value: unknown): ParsedFile[] | string {
  if (!Array.isArray(value)) return 'no "files" list';
  const seen = new Set<string>();
  for (const [i, f] of value.entries()) {
    const e = f as Partial<ParsedFile> | null;
    if (!e || !isEvidenceName(e.name)) return `files[${i}].name is not a plain file name`;
    if (e.name === MANIFEST_FILE || seen.has(e.name)) return `files[${i}].name ${e.name} is listed twice or names the manifest`;
    if (!Number.isSafeInteger(e.bytes) || (e.bytes as number) < 0) return `files[${i}].bytes is not a byte count`;
    if (typeof e.sha256 !== 'string' || !HEX64.test(e.sha256)) return `files[${i}].sha256 is not 64 lowercase hex digits`;
    if (e.plaintext !== undefined) {
      const p = e.plaintext as Partial<PlaintextOf> | null;
      if (!e.name.endsWith('.age')) return `files[${i}] has a plaintext but its name ${e.name} does not end in .age`;
      if (!p || !isEvidenceName(p.name) || p.name === MANIFEST_FILE || p.name === e.name) return `files[${i}].plaintext.name is not a plain file name`;
      if (!Number.isSafeInteger(p.bytes) || (p.bytes as number) < 0) return `files[${i}].plaintext.bytes is not a byte count`;
      if (typeof p.sha256 !== 'string' || !HEX64.test(p.sha256)) return `files[${i}].plaintext.sha256 is not 64 lowercase hex digits`;
    }
    seen.add(e.name);
  }
  return value as ParsedFile[];
}

/** Decrypts an encrypted clip (nothing written) and checks what it gives against the manifest. */
async function checkPlaintext(dir: string, f: ParsedFile, p: PlaintextOf, identities: readonly AgeIdentity[]): Promise<[boolean, string, string]> {
  const check = `clip ${p.name} (in ${f.name})`;
  try {
    const { plaintext } = await decryptFile(join(dir, f.name), identities);
    if (plaintext.bytes !== p.bytes) return [false, check, `decrypts to ${plaintext.bytes} bytes, the manifest says ${p.bytes}`];
    if (plaintext.sha256 !== p.sha256) return [false, check, `decrypts to SHA-256 ${plaintext.sha256}, the manifest says ${p.sha256}`];
    return [true, check, `decrypts to ${plaintext.bytes} bytes, SHA-256 ${plaintext.sha256}`];
  } catch (err) {
    return [false, check, `does not decrypt: ${(err as Error).message}`];
  }
}

async function checkFile(dir: string, f: ParsedFile): Promise<[boolean, string, string]> {
  const check = `file ${f.name}`;
  const path = join(dir, f.name);
  try {
    const st = await stat(path);
    if (!st.isFile()) return [false, check, 'not a regular file'];
    if (st.size !== f.bytes) return [false, check, `size ${st.size} bytes, the manifest says ${f.bytes}`];
    const { bytes, sha256 } = await hashFile(path);
    if (bytes !== f.bytes) return [false, check, `size ${bytes} bytes, the manifest says ${f.bytes}`];
    if (sha256 !== f.sha256) return [false, check, `SHA-256 ${sha256}, the manifest says ${f.sha256}`];
    return [true, check, `${bytes} bytes, SHA-256 ${sha256}`];
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return [false, check, code === 'ENOENT' ? 'missing' : `cannot be read (${code ?? (err as Error).message})`];
  }
}

async function checkUnlisted(dir: string, listed: Set<string>, add: (ok: boolean, check: string, detail: string) => void): Promise<void> {
  // Anything in the folder the signature does not cover could be taken for part of the evidence.
  const hasCalls = [...listed].some((n) => n.startsWith(`${CALLS_DIR}/`));
  const extra = [
    ...(await readdir(dir)).filter((n) => n !== MANIFEST_FILE && !listed.has(n) && !(hasCalls && n === CALLS_DIR)),
    ...(hasCalls ? (await readdir(join(dir, CALLS_DIR)).catch(() => [] as string[])).map((n) => `${CALLS_DIR}/${n}`).filter((n) => !listed.has(n)) : []),
  ].sort();
  for (const name of extra) add(false, `file ${name}`, 'not listed in the manifest: not covered by the signature');
}

/**
 * Records signed after the seal (CONTRACT §6, §7): each `notes/<n>.json` and
 * `disclosures/<n>.json` is a record the node signed like the manifest, for this incident,
 * numbered as its file is; a disclosure names this manifest's SHA-256. Anything else there fails.
 */
async function checkRecords(dir: string, folder: RecordDir, trustedKey: string, incidentId: string | undefined, manifestSha: string,
  add: (ok: boolean, check: string, detail: string) => void): Promise<void> {
  const recordsDir = join(dir, folder);
  const st = await stat(recordsDir).catch(() => null);
  if (!st) return;
  const kind = folder === NOTES_DIR ? 'note' : 'disclosure';
  if (!st.isDirectory()) {
    add(false, `file ${folder}`, 'not listed in the manifest: not covered by the signature');
    return;
  }
  for (const name of (await readdir(recordsDir)).sort()) {
    const check = `${kind} ${folder}/${name}`;
    const m = /^([1-9]\d{0,5})\.json$/.exec(name);
    if (!m) {
      add(false, check, `not a ${kind} record (${folder}/<n>.json): not covered by any signature`);
      continue;
    }
    let record: Record<string, unknown>;
    try {
      const parsed = parseJsonStrict(await readFile(join(recordsDir, name), 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      record = parsed as Record<string, unknown>;
    } catch (err) {
      add(false, check, `not valid JSON, or ambiguous (${(err as Error).message})`);
      continue;
    }
    const sig = verifyManifestSignature(record, trustedKey);
    const problems: string[] = [];
    if (!sig.ok) problems.push(sig.reason.replace('the manifest', 'the record'));
    if (incidentId !== undefined && record['incident'] !== incidentId) problems.push(`it is for incident ${JSON.stringify(record['incident'])}, not ${incidentId}`);
    if (record['n'] !== Number(m[1])) problems.push(`it is numbered ${JSON.stringify(record['n'])}, its file ${name}`);
    if (folder === DISCLOSURES_DIR && record['manifestSha256'] !== manifestSha) {
      problems.push(`it names manifest SHA-256 ${JSON.stringify(record['manifestSha256'])}, this manifest.json is ${manifestSha}`);
    }
    add(problems.length === 0, check, problems.length === 0 ? `signed ${describeRecord(folder, record)} verifies under the trusted key` : problems.join('; '));
  }
}

function describeRecord(folder: RecordDir, record: Record<string, unknown>): string {
  if (folder === NOTES_DIR) {
    const note = record['note'] as { at?: unknown; by?: unknown } | undefined;
    return `note by ${String(note?.by)} at ${String(note?.at)}`;
  }
  const custodian = record['custodian'] as { cn?: unknown; by?: unknown } | undefined;
  return `disclosure at ${String(record['at'])} to ${String(record['agency'])} on ${String(record['legalBasis'])} ${String(record['reference'])}, recorded by ${String(custodian?.cn ?? custodian?.by)}`;
}

/**
 * The manifest's anchor must be an entry of this log whose line hash is the anchor's head, the
 * chain must be whole from the first entry to it, and the very next entry must be this
 * incident's seal recording the SHA-256 of this manifest.json. A log rewritten after the seal
 * changes the anchor line's hash (its own bytes or, through `prev`, those of every later line).
 */
async function checkAudit(path: string, anchorValue: unknown, incidentId: string | undefined, sha: string,
  add: (ok: boolean, check: string, detail: string) => void): Promise<void> {
  const claimed = anchorValue as Partial<AuditHead> | undefined;
  if (!claimed || !Number.isSafeInteger(claimed.seq) || typeof claimed.head !== 'string' || !HEX64.test(claimed.head)) {
    add(false, 'audit anchor', 'the manifest has no valid "audit" member ({seq, head})');
    return;
  }
  const anchor = claimed as AuditHead;
  try {
    await stat(path);
  } catch (err) {
    add(false, 'audit chain', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return;
  }
  // A file (rotated or whole) or a folder of the chunks shipped upstream (CONTRACT §7).
  const source = await openAuditSource(path);
  const walker = new ChainWalker(source.start);
  // Anchored before the first entry (an empty log): the seal must be the first entry; in a
  // rotated log, anchored on the last entry dropped: the seal is the file's first.
  let anchorFound = (anchor.seq === 0 && anchor.head === GENESIS_PREV) || (source.start !== undefined && anchor.seq === source.start.seq && anchor.head === source.start.head);
  if (anchorFound) add(true, 'audit anchor', anchor.seq === 0 ? 'before the first entry' : `seq ${anchor.seq}, the last entry rotated off before this copy begins`);
  for await (const { bytes, terminated } of source.lines()) {
    const r = walker.next(bytes, terminated);
    if (!r.ok) {
      add(false, 'audit chain', `broken at line ${r.line}${r.seq === null ? '' : ` (seq ${r.seq})`}, before the seal entry: ${r.reason}`);
      return;
    }
    if (!anchorFound) {
      if (r.seq !== anchor.seq) continue;
      anchorFound = true;
      add(r.hash === anchor.head, 'audit anchor', r.hash === anchor.head
        ? `seq ${r.seq} is in the log with the manifest's hash ${r.hash}`
        : `seq ${r.seq}'s line hashes to ${r.hash}, the manifest says ${anchor.head}: the log was rewritten`);
      continue;
    }
    add(true, 'audit chain', `whole from ${source.start ? `seq ${source.start.seq + 1}` : 'the first entry'} to the seal entry (seq ${r.seq})`);
    const e = r.entry;
    const problems: string[] = [];
    if (e.type !== 'seal') problems.push(`seq ${r.seq} after the anchor is a "${e.type}" entry, not "seal"`);
    else {
      if (e['incident'] !== incidentId) problems.push(`the seal entry is for incident ${JSON.stringify(e['incident'])}, not ${incidentId}`);
      if (e['manifestSha256'] !== sha) problems.push(`the seal entry records manifest SHA-256 ${JSON.stringify(e['manifestSha256'])}, this manifest.json is ${sha}`);
    }
    add(problems.length === 0, 'audit seal', problems.length === 0 ? `seq ${r.seq} seals incident ${incidentId} with this manifest's SHA-256` : problems.join('; '));
    return;
  }
  if (!anchorFound) {
    const begins = (source.start?.seq ?? 0) + 1;
    add(false, 'audit anchor', anchor.seq < begins
      ? `seq ${anchor.seq} is not in this copy: it begins at seq ${begins} (rotated off the node; check against the chunks upstream, audit/<log-id>/)`
      : `seq ${anchor.seq} is not in the log (it ends at seq ${walker.head.seq})`);
  }
  else {
    add(true, 'audit chain', `whole from ${source.start ? `seq ${source.start.seq + 1}` : 'the first entry'} to the anchor (seq ${anchor.seq})`);
    add(false, 'audit seal', 'no entry follows the anchor: the seal entry is missing');
  }
}

/** One line per check, then notes, then the verdict. */
export function renderEvidenceReport(dir: string, report: EvidenceReport): string {
  // Details quote what a folder says (an agency, a note's author): shown, never interpreted by the terminal.
  const lines = report.checks.map((c) => `${c.ok ? 'ok    ' : 'FAILED'}  ${printable(c.check)}: ${printable(c.detail)}`);
  for (const n of report.notes) lines.push(`note    ${printable(n)}`);
  const failed = report.checks.filter((c) => !c.ok).length;
  lines.push(report.ok ? `evidence ${dir}: verified` : `evidence ${dir}: FAILED (${failed} check${failed === 1 ? '' : 's'})`);
  return `${lines.join('\n')}\n`;
}
