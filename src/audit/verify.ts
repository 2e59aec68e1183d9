// `camnode audit verify`: walks the whole log and reports the first broken link.
import { ChainWalker, readRawLines, type AuditHead, type RawLine } from './chain.js';

export type AuditVerifyResult =
  | { ok: true; entries: number; head: AuditHead }
  /** `line` is 1-based; `seq` is that line's seq when it has one; `entries` counts the whole ones before it. */
  | { ok: false; entries: number; line: number; seq: number | null; reason: string };

/** Verifies a log file, or lines given in memory (each without its newline). */
export async function verifyAuditLog(source: string | Iterable<string | Uint8Array>): Promise<AuditVerifyResult> {
  const walker = new ChainWalker();
  const lines: AsyncIterable<RawLine> | Iterable<RawLine> = typeof source === 'string'
    ? readRawLines(source)
    : [...source].map((l) => ({ bytes: Buffer.from(l), terminated: true }));
  for await (const { bytes, terminated } of lines) {
    const r = walker.next(bytes, terminated);
    if (!r.ok) return { ok: false, entries: walker.entries, line: r.line, seq: r.seq, reason: r.reason };
  }
  return { ok: true, entries: walker.entries, head: walker.head };
}

/** One line for people: what `audit verify` prints. */
export function describeAuditResult(path: string, r: AuditVerifyResult): string {
  if (r.ok) {
    return r.entries === 0
      ? `audit log ${path}: whole (empty)`
      : `audit log ${path}: whole, ${r.entries} entries, head seq ${r.head.seq} ${r.head.head}\n`
        // What "whole" proves, and what it cannot yet (CONTRACT §7 brings signed heads upstream).
        + 'proves: no entry up to the head was changed, removed or inserted. does not prove: that no entries were cut off after the head — compare the head with one recorded earlier (a manifest\'s audit anchor, a copy of the log).';
  }
  const where = r.seq === null ? `line ${r.line}` : `line ${r.line} (seq ${r.seq})`;
  return `audit log ${path}: BROKEN at ${where}: ${r.reason}; ${r.entries} entries before it are whole`;
}
