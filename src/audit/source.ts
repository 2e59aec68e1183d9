// Where an audit log is read from (CONTRACT §7): the node's file — whole since seq 1, or
// rotated, starting after the entries its newest `checkpoint` says were dropped — or a folder of
// the chunks it shipped upstream, `<first-seq>-<last-seq>.jsonl`, each continuing the previous.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS_PREV, readRawLines, type AuditHead, type RawLine } from './chain.js';

export const CHUNK_NAME = /^(\d{1,15})-(\d{1,15})\.jsonl$/;

/** `<first-seq>-<last-seq>.jsonl` */
export function chunkName(first: number, last: number): string {
  return `${first}-${last}.jsonl`;
}

export interface AuditSource {
  kind: 'file' | 'chunks';
  path: string;
  /** The entry before the first line (a rotated file, or chunks of a series shipped from later on); absent from seq 1. */
  start?: AuditHead;
  /** What a reader should know about where the lines begin. */
  notes: string[];
  /** Problems with the source itself (a chunk whose name does not say what it holds). */
  problems: string[];
  lines(): AsyncGenerator<RawLine>;
}

interface Peek { seq: number; prev: string }

function peekEntry(bytes: Buffer): (Peek & { type?: unknown; dropped?: unknown }) | null {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as { seq?: unknown; prev?: unknown; type?: unknown; dropped?: unknown };
    return Number.isSafeInteger(v.seq) && typeof v.prev === 'string' ? { seq: v.seq as number, prev: v.prev, type: v.type, dropped: v.dropped } : null;
  } catch {
    return null;
  }
}

async function firstLine(path: string): Promise<Peek | null> {
  for await (const { bytes } of readRawLines(path)) return peekEntry(bytes);
  return null;
}

/** The `checkpoint` entry that says the lines before this file's first were dropped: its `dropped`. */
async function checkpointFor(path: string, first: Peek): Promise<{ dropped: AuditHead; at: number } | null> {
  const needle = Buffer.from('"checkpoint"');
  let found: { dropped: AuditHead; at: number } | null = null;
  for await (const { bytes } of readRawLines(path)) {
    if (!bytes.includes(needle)) continue;
    const e = peekEntry(bytes);
    const d = e?.dropped as { seq?: unknown; hash?: unknown } | undefined;
    if (e?.type === 'checkpoint' && d && d.seq === first.seq - 1 && d.hash === first.prev) found = { dropped: { seq: d.seq, head: d.hash }, at: e.seq };
  }
  return found;
}

const isGenesis = (p: Peek): boolean => (p.seq === 0 || p.seq === 1) && p.prev === GENESIS_PREV;

export async function openAuditSource(path: string): Promise<AuditSource> {
  const st = await stat(path);
  if (!st.isDirectory()) {
    const notes: string[] = [];
    const first = await firstLine(path);
    let start: AuditHead | undefined;
    if (first && !isGenesis(first)) {
      const cp = await checkpointFor(path, first);
      if (cp) {
        start = cp.dropped;
        notes.push(`entries up to seq ${cp.dropped.seq} were rotated off the node after they went upstream (checkpoint at seq ${cp.at}); the chain is checked from seq ${cp.dropped.seq + 1}`);
      }
    }
    return { kind: 'file', path, ...(start ? { start } : {}), notes, problems: [], lines: () => readRawLines(path) };
  }
  const chunks = (await readdir(path)).flatMap((name) => {
    const m = CHUNK_NAME.exec(name);
    return m ? [{ name, first: Number(m[1]), last: Number(m[2]) }] : [];
  }).sort((a, b) => a.first - b.first);
  const notes: string[] = [];
  const problems: string[] = [];
  let start: AuditHead | undefined;
  if (chunks.length === 0) problems.push(`${path} holds no audit chunks (<first-seq>-<last-seq>.jsonl)`);
  else {
    const first = await firstLine(join(path, chunks[0]!.name));
    if (first && !isGenesis(first)) {
      // A series shipped from the middle of a log (a node upgraded with its log already long).
      start = { seq: first.seq - 1, head: first.prev };
      notes.push(`the chunks begin at seq ${first.seq}: the entries before it were never shipped in this series`);
    }
  }
  async function* lines(): AsyncGenerator<RawLine> {
    for (const c of chunks) {
      let firstSeq: number | null = null;
      let lastSeq: number | null = null;
      for await (const line of readRawLines(join(path, c.name))) {
        const e = peekEntry(line.bytes);
        firstSeq ??= e?.seq ?? null;
        lastSeq = e?.seq ?? lastSeq;
        yield line;
      }
      if (firstSeq !== c.first || lastSeq !== c.last) problems.push(`chunk ${c.name} holds seq ${firstSeq ?? '?'} to ${lastSeq ?? '?'}, not what its name says`);
    }
  }
  return { kind: 'chunks', path, ...(start ? { start } : {}), notes, problems, lines };
}
