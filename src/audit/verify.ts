// `camnode audit verify`: walks a log — the node's file (rotated or not) or a folder of the
// chunks it shipped — and reports the first broken link; with the node's signed heads
// (CONTRACT §7) it also checks that each head names an entry of this log with its hash, and
// that a node's own log is not shorter than a head it signed (its tail cut off).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChainWalker, type AuditHead, type RawLine } from './chain.js';
import { verifyManifestSignature } from './manifest.js';
import { openAuditSource, type AuditSource } from './source.js';
import { parseJsonStrict } from '../platform/json.js';

export type AuditVerifyResult =
  | { ok: true; entries: number; head: AuditHead; notes?: string[] }
  /** `line` is 1-based; `seq` is that line's seq when it has one; `entries` counts the whole ones before it. */
  | { ok: false; entries: number; line: number; seq: number | null; reason: string; notes?: string[] };

/** A signed head (CONTRACT §7): `{node, logId, seq, head, at, signature}`. */
export interface SignedHead { node: string; logId: string; seq: number; head: string; at: string }

export interface HeadsCheck {
  /** Heads found and signed by the key. */
  heads: number;
  matched: number;
  failures: string[];
  notes: string[];
}

/** Reads `heads/<seq>.json` (or a folder of them), checking each signature under the key. */
export async function readHeads(dir: string, key: string): Promise<{ heads: Map<number, SignedHead>; failures: string[] }> {
  const heads = new Map<number, SignedHead>();
  const failures: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    return { heads, failures: [`cannot read the heads folder ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`] };
  }
  for (const name of names.sort()) {
    const m = /^(\d{1,15})\.json$/.exec(name);
    if (!m) continue;
    let doc: unknown;
    try {
      doc = parseJsonStrict(await readFile(join(dir, name), 'utf8'));
    } catch (err) {
      failures.push(`head ${name}: not valid JSON (${(err as Error).message})`);
      continue;
    }
    const sig = verifyManifestSignature(doc, key);
    const h = doc as Partial<SignedHead>;
    if (!sig.ok) failures.push(`head ${name}: ${sig.reason.replace('the manifest', 'the head')}`);
    else if (h.seq !== Number(m[1]) || typeof h.head !== 'string' || typeof h.at !== 'string') failures.push(`head ${name}: it says seq ${JSON.stringify(h.seq)}, not what its name says`);
    else heads.set(h.seq, h as SignedHead);
  }
  return { heads, failures };
}

/** Verifies a log file or chunk folder, or lines given in memory (each without its newline). */
export async function verifyAuditLog(source: string | Iterable<string | Uint8Array>, heads?: Map<number, SignedHead>): Promise<AuditVerifyResult & { heads?: HeadsCheck; source?: AuditSource }> {
  let src: AuditSource | undefined;
  let lines: AsyncIterable<RawLine> | Iterable<RawLine>;
  if (typeof source === 'string') {
    src = await openAuditSource(source);
    lines = src.lines();
  } else {
    lines = [...source].map((l) => ({ bytes: Buffer.from(l), terminated: true }));
  }
  const walker = new ChainWalker(src?.start);
  const check: HeadsCheck = { heads: heads?.size ?? 0, matched: 0, failures: [], notes: [] };
  for await (const { bytes, terminated } of lines) {
    const r = walker.next(bytes, terminated);
    if (!r.ok) return { ok: false, entries: walker.entries, line: r.line, seq: r.seq, reason: r.reason, ...(src?.notes.length ? { notes: src.notes } : {}) };
    const h = heads?.get(r.seq);
    if (h) {
      if (h.head === r.hash) check.matched++;
      else check.failures.push(`the head the node signed at ${h.at} names seq ${r.seq} with hash ${h.head}; this log's seq ${r.seq} hashes to ${r.hash}: the log was rewritten`);
    }
  }
  const notes = [...(src?.notes ?? []), ...(src?.problems ?? [])];
  if (src && src.problems.length > 0) {
    return { ok: false, entries: walker.entries, line: 0, seq: null, reason: src.problems.join('; '), notes };
  }
  const end = walker.head.seq;
  const first = (src?.start?.seq ?? 0) + 1;
  if (heads) {
    const beyond = [...heads.values()].filter((h) => h.seq > end).sort((a, b) => b.seq - a.seq);
    const before = [...heads.values()].filter((h) => h.seq < first);
    if (beyond.length > 0) {
      const newest = beyond[0]!;
      if (src?.kind === 'chunks') check.notes.push(`${beyond.length} head(s) up to seq ${newest.seq} (${newest.at}) are past the last chunk: not shipped yet (chunks close hourly)`);
      else check.failures.push(`the log ends at seq ${end}, but the node signed a head at seq ${newest.seq} at ${newest.at}: entries after seq ${end} were cut off`);
    }
    // Where a copy says it begins (a checkpoint's `dropped`) is its own claim: a head there must agree.
    const atStart = src?.start ? heads.get(src.start.seq) : undefined;
    if (atStart) {
      if (atStart.head === src!.start!.head) check.matched++;
      else check.failures.push(`the head the node signed at ${atStart.at} names seq ${atStart.seq} with hash ${atStart.head}; this copy says it begins after seq ${atStart.seq} with hash ${src!.start!.head}: its start was forged`);
    }
    const outside = before.filter((h) => h !== atStart).length;
    if (outside > 0) check.notes.push(`${outside} head(s) name entries before seq ${first}, which this copy does not hold`);
    // Heads that all miss the copy tie nothing: a log made up after the newest head would pass.
    if (heads.size > 0 && check.matched === 0 && check.failures.length === 0) {
      check.failures.push(`none of the ${heads.size} signed head(s) falls inside this copy (seq ${first} to ${end}): it cannot be tied to what the node signed`);
    }
  }
  return {
    ok: true, entries: walker.entries, head: walker.head,
    ...(notes.length ? { notes } : {}),
    ...(heads ? { heads: check } : {}),
  };
}

/** What `audit verify` prints. */
export function describeAuditResult(path: string, r: AuditVerifyResult & { heads?: HeadsCheck }): string {
  const notes = (r.notes ?? []).map((n) => `note: ${n}`);
  if (!r.ok) {
    const where = r.line === 0 ? 'its chunks' : r.seq === null ? `line ${r.line}` : `line ${r.line} (seq ${r.seq})`;
    return [`audit log ${path}: BROKEN at ${where}: ${r.reason}; ${r.entries} entries before it are whole`, ...notes].join('\n');
  }
  const lines: string[] = [];
  if (r.entries === 0) lines.push(`audit log ${path}: whole (empty)`);
  else lines.push(`audit log ${path}: whole, ${r.entries} entries, head seq ${r.head.seq} ${r.head.head}`);
  lines.push(...notes);
  if (r.heads) {
    lines.push(...r.heads.notes.map((n) => `note: ${n}`));
    for (const f of r.heads.failures) lines.push(`FAILED: ${f}`);
    lines.push(r.heads.failures.length === 0
      ? `signed heads: ${r.heads.matched} of ${r.heads.heads} checked against the log, all match`
      : `signed heads: FAILED (${r.heads.failures.length})`);
  } else if (r.entries > 0) {
    lines.push('proves: no entry up to the head was changed, removed or inserted. does not prove: that no entries were cut off after the head — check it against the node\'s signed heads upstream (--heads).');
  }
  return lines.join('\n');
}

