// The audit chain of CONTRACT §4, as pure logic shared by the writer, `audit verify` and
// `evidence verify`. Each line is one JSON entry carrying `seq` (rising by one) and `prev`: the
// SHA-256 hex of the previous line's exact bytes, without its newline. The first entry's `prev`
// is 64 zeros (GENESIS_PREV) and camnode numbers it 1; a verifier also accepts 0 there, since
// nothing about the chain depends on where numbering starts.
// Hashes are taken over the raw bytes as stored, never over re-serialised JSON, so any edit —
// even whitespace or key order — breaks the link after it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export const GENESIS_PREV = '0'.repeat(64);
export const FIRST_SEQ = 1;

/** The last entry of a log: its seq and the SHA-256 hex of its line (the manifest's `audit` member). */
export interface AuditHead { seq: number; head: string }

/** An empty log's head: no entry yet. */
export const EMPTY_HEAD: AuditHead = { seq: 0, head: GENESIS_PREV };

export interface AuditEntry {
  seq: number;
  prev: string;
  ts: string;
  type: string;
  [key: string]: unknown;
}

export interface ChainedEntry { ok: true; line: number; seq: number; hash: string; entry: AuditEntry }
export interface ChainBreak { ok: false; line: number; seq: number | null; reason: string }

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const HEX64 = /^[0-9a-f]{64}$/;

function parseEntry(bytes: Buffer): AuditEntry | string {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return 'not valid JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const e = value as Record<string, unknown>;
  if (!Number.isSafeInteger(e['seq']) || (e['seq'] as number) < 0) return 'no valid "seq"';
  if (typeof e['prev'] !== 'string' || !HEX64.test(e['prev'])) return 'no valid "prev" (64 lowercase hex digits)';
  if (typeof e['ts'] !== 'string') return 'no "ts"';
  if (typeof e['type'] !== 'string' || e['type'] === '') return 'no "type"';
  return e as AuditEntry;
}

/**
 * Checks a log one line at a time, in order. After the first break it keeps reporting that
 * break: a chain is only as good as its first broken link.
 */
export class ChainWalker {
  private last: { seq: number; hash: string } | undefined;
  private lines = 0;
  private broken: ChainBreak | undefined;

  /** `start`: the entry before the first line, for a log that does not begin at seq 1 (rotated, or shipped from later on). */
  constructor(start?: AuditHead) {
    if (start) this.last = { seq: start.seq, hash: start.head };
  }

  /** Entries checked and whole so far. */
  get entries(): number { return this.broken ? this.lines - 1 : this.lines; }

  get head(): AuditHead { return this.last ? { seq: this.last.seq, head: this.last.hash } : EMPTY_HEAD; }

  /** `terminated`: the line ended with a newline (only the file's last line may not). */
  next(bytes: Buffer, terminated = true): ChainedEntry | ChainBreak {
    if (this.broken) return this.broken;
    const line = ++this.lines;
    const fail = (seq: number | null, reason: string): ChainBreak => (this.broken = { ok: false, line, seq, reason });
    if (!terminated) return fail(null, 'last line is incomplete (no newline): a torn write, which the agent truncates at its next start');
    if (bytes.length === 0) return fail(null, 'empty line');
    const entry = parseEntry(bytes);
    if (typeof entry === 'string') return fail(null, entry);
    const before = this.last;
    if (!before) {
      if (entry.seq !== 0 && entry.seq !== FIRST_SEQ) return fail(entry.seq, `the first entry has seq ${entry.seq}, not ${FIRST_SEQ}: entries before it are missing`);
      if (entry.prev !== GENESIS_PREV) return fail(entry.seq, 'the first entry\'s prev is not 64 zeros: entries before it are missing');
    } else {
      if (entry.seq !== before.seq + 1) {
        return fail(entry.seq, `seq ${entry.seq} follows seq ${before.seq} (expected ${before.seq + 1}): entries were removed, added or renumbered`);
      }
      if (entry.prev !== before.hash) {
        return fail(entry.seq, `prev does not match the SHA-256 of the line before (seq ${before.seq}): seq ${before.seq} was altered, or this entry was`);
      }
    }
    const hash = sha256Hex(bytes);
    this.last = { seq: entry.seq, hash };
    return { ok: true, line, seq: entry.seq, hash, entry };
  }
}

export interface RawLine { bytes: Buffer; terminated: boolean }

/**
 * A file's lines as exact bytes (no decoding, no CR handling: hashes need the stored bytes), from
 * byte `start`, and up to byte `end` (exclusive) when given: a writer's acknowledged length.
 */
export async function* readRawLines(path: string, start = 0, end?: number): AsyncGenerator<RawLine> {
  let pending: Buffer[] = [];
  if (end !== undefined && end <= start) return;
  for await (const chunk of createReadStream(path, { start, ...(end !== undefined ? { end: end - 1 } : {}) }) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a, from); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      pending.push(chunk.subarray(from, nl));
      yield { bytes: pending.length === 1 ? pending[0]! : Buffer.concat(pending), terminated: true };
      pending = [];
      from = nl + 1;
    }
    if (from < chunk.length) pending.push(chunk.subarray(from));
  }
  if (pending.length > 0) yield { bytes: Buffer.concat(pending), terminated: false };
}

/**
 * An incident's seal entry (its manifest's SHA-256), the last one in the log: what names the
 * manifest of an incident whose folder is gone. Only lines naming the incident are parsed.
 */
export async function findSealEntry(path: string, incident: string): Promise<{ seq: number; manifestSha256: string } | null> {
  let found: { seq: number; manifestSha256: string } | null = null;
  const needle = Buffer.from(`"${incident}"`);
  try {
    for await (const { bytes } of readRawLines(path)) {
      if (!bytes.includes(needle)) continue;
      const e = parseEntry(bytes);
      if (typeof e !== 'string' && e.type === 'seal' && e['incident'] === incident && typeof e['manifestSha256'] === 'string') {
        found = { seq: e.seq, manifestSha256: e['manifestSha256'] };
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return found;
}
