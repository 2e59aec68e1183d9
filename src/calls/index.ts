// The calls in the ring and the spool files already taken (CONTRACT §8), kept in a journal on the
// media disk beside the calls (`calls/.index.jsonl`, one JSON line per event, fdatasynced), not
// in node.stateDir: an SD card should not take a write per call.
//
// Taking a call, in this order: the copy is written and fsynced as `.<name>.partial`; the `took`
// line is appended; the copy is renamed to `<name>`; the folder is fsynced. A crash before the
// line leaves a partial that the next start deletes (the source is taken again); after it, the
// partial is renamed into place at the next start. So the ring never holds a call the journal
// does not know, and a source is never taken twice. A pruned call's `gone` line keeps its
// source's tombstone; a tombstone is dropped (`forget`) once its source has left the spool.
// At start the journal is rewritten with only what still holds.
import { existsSync } from 'node:fs';
import { open, readFile, rename, stat, unlink, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileDurable } from '../platform/durable.js';
import { faultPoint } from '../platform/fault.js';
import { CALLS_CAMERA, type CallShelf } from '../store/ring.js';
import type { Segment } from '../store/segment.js';

export const CALLS_INDEX = '.index.jsonl';
/** Where files that are not audio are set aside, inside the calls folder. */
export const REJECTED = 'rejected';

/** One call in the ring. */
export interface CallRecord {
  /** Its file name in `storage.path/calls/`. */
  name: string;
  startMs: number;
  durationMs: number;
  bytes: number;
  sha256: string;
  codec: string;
  /** The spool file it came from (relative path) and the tombstone that marks it taken. */
  source: string;
  tombstone: string;
}

type Line =
  | ({ op: 'took' } & CallRecord)
  /** A source taken whose call has left the ring (written by compaction). */
  | { op: 'taken'; source: string; tombstone: string; rejected?: string }
  | { op: 'gone'; name: string }
  | { op: 'forget'; tombstone: string };

export const partialName = (name: string): string => `.${name}.partial`;

async function readJournal(dir: string): Promise<string> {
  return readFile(join(dir, CALLS_INDEX), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
}

/** The journal's lines played in order: the calls in the ring, the sources taken (tombstone → source), the calls pruned. Pure. */
function replay(text: string): { calls: Map<string, CallRecord>; taken: Map<string, string>; goneNames: Set<string>; rejected: Set<string> } {
  const calls = new Map<string, CallRecord>();
  const rejected = new Set<string>();
  const taken = new Map<string, string>();
  const goneNames = new Set<string>();
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    let line: Line;
    try {
      line = JSON.parse(raw) as Line;
    } catch {
      continue; // a torn last line: its rename never happened (the line comes first)
    }
    if (line.op === 'took') {
      const { op: _op, ...call } = line;
      calls.set(call.name, call);
      taken.set(call.tombstone, call.source);
    } else if (line.op === 'taken') {
      taken.set(line.tombstone, line.source);
      if (line.rejected !== undefined) rejected.add(line.rejected);
    } else if (line.op === 'gone') {
      calls.delete(line.name);
      goneNames.add(line.name);
    } else if (line.op === 'forget') {
      taken.delete(line.tombstone);
    }
  }
  return { calls, taken, goneNames, rejected };
}

/** The tombstones of sources taken, read without touching the journal (for `check`, beside a running agent). */
export async function readTakenTombstones(dir: string): Promise<Set<string>> {
  return new Set(replay(await readJournal(dir)).taken.keys());
}

export class CallIndex {
  private readonly calls = new Map<string, CallRecord>();
  /** Tombstone → the source it stands for. */
  private readonly taken = new Map<string, string>();
  private journal: FileHandle | undefined;

  constructor(private readonly dir: string) {}

  private get path(): string {
    return join(this.dir, CALLS_INDEX);
  }

  /** Reads the journal, finishes or drops what a crash left, and rewrites it compacted. */
  /** `lost`: calls the journal lists whose file is not there (pruned before a crash cut the `gone` line, or lost). */
  async open(): Promise<{ recovered: string[]; dropped: string[]; lost: string[] }> {
    const { calls, taken, goneNames, rejected } = replay(await readJournal(this.dir));
    for (const [name, call] of calls) this.calls.set(name, call);
    for (const [tombstone, source] of taken) this.taken.set(tombstone, source);
    const recovered: string[] = [];
    const dropped: string[] = [];
    const lost: string[] = [];
    // Only a folder that is not there yet means "no calls": any other error stops the open, so
    // that the journal is never compacted to nothing on a disk that failed to list.
    const names = new Set(await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    }));
    for (const call of [...this.calls.values()]) {
      if (names.has(call.name)) continue;
      const partial = partialName(call.name);
      const size = names.has(partial) ? (await stat(join(this.dir, partial))).size : -1;
      if (size === call.bytes) {
        await rename(join(this.dir, partial), join(this.dir, call.name));
        recovered.push(call.name);
      } else {
        // Journalled, but its file is not there whole: pruned before a crash cut its `gone`
        // line, or lost. It is no longer in the ring; its source stays taken.
        this.calls.delete(call.name);
        lost.push(call.name);
      }
    }
    for (const n of names) {
      // Partials the journal does not know: their line never made it; the source is taken again.
      const orphanPartial = n.startsWith('.') && n.endsWith('.partial') && !this.calls.has(n.slice(1, -'.partial'.length));
      // A call pruned (its `gone` line written, its deletion audited) whose unlink a crash cut.
      // Only what the journal says went: a file it never knew is left alone.
      const pruned = goneNames.has(n) && !this.calls.has(n);
      if (orphanPartial || pruned) {
        await unlink(join(this.dir, n)).catch(() => {});
        dropped.push(n);
      }
    }
    if (recovered.length > 0) await fsyncDir(this.dir);
    // Set-aside copies whose line was written before a crash cut their rename: finished.
    let setAsideRecovered = false;
    for (const name of rejected) {
      const at = join(this.dir, REJECTED, name);
      const partial = join(this.dir, REJECTED, partialName(name));
      if (!existsSync(at) && existsSync(partial)) {
        await rename(partial, at);
        recovered.push(`${REJECTED}/${name}`);
        setAsideRecovered = true;
      }
    }
    if (setAsideRecovered) await fsyncDir(join(this.dir, REJECTED));
    await this.compact();
    this.inOrder = undefined;
    this.journal = await open(this.path, 'a');
    return { recovered, dropped, lost };
  }

  async close(): Promise<void> {
    await this.journal?.close();
    this.journal = undefined;
  }

  private async compact(): Promise<void> {
    const inRing = new Set([...this.calls.values()].map((c) => c.tombstone));
    const lines: Line[] = [
      ...[...this.calls.values()].map((c): Line => ({ op: 'took', ...c })),
      // Sources of calls pruned from the ring that are still in the spool: taken, never again.
      ...[...this.taken].filter(([t]) => !inRing.has(t)).map(([tombstone, source]): Line => ({ op: 'taken', source, tombstone })),
    ];
    await writeFileDurable(this.path, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  }

  private async append(line: Line): Promise<void> {
    await this.appendAll([line]);
  }

  private async appendAll(lines: readonly Line[]): Promise<void> {
    if (!this.journal) throw new Error('the calls index is not open');
    await this.journal.write(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    await this.journal.datasync();
  }

  isTaken(tombstone: string): boolean {
    return this.taken.has(tombstone);
  }

  /** Whether a name is taken in the ring (or being taken now). */
  has(name: string): boolean {
    return this.calls.has(name) || this.reserved.has(name);
  }

  /** Names of takes between their journal line and their rename. */
  private readonly reserved = new Set<string>();

  /** The calls in the ring, oldest start first. */
  list(): CallRecord[] {
    return [...this.calls.values()].sort((a, b) => a.startMs - b.startMs || a.name.localeCompare(b.name));
  }

  /**
   * Records a call whose copy is on disk as `.<name>.partial` (fsynced), then moves it into place.
   * After this resolves the call is in the ring and its source taken, whatever happens next.
   */
  async took(call: CallRecord): Promise<void> {
    await this.append({ op: 'took', ...call });
    // Taken from here on (a crash now finishes the take at the next start).
    this.taken.set(call.tombstone, call.source);
    this.reserved.add(call.name);
    faultPoint('calls.took');
    try {
      await rename(join(this.dir, partialName(call.name)), join(this.dir, call.name));
      await fsyncDir(this.dir);
    } finally {
      this.reserved.delete(call.name);
    }
    // In the ring (seen by the pruner) only once its file is in place.
    this.calls.set(call.name, call);
    this.inOrder = undefined;
  }

  /**
   * A source that is not audio, copied (fsynced) to `rejected/.<name>.partial`: its line, then the
   * rename — so a crash never sets it aside twice, and one after the line finishes at the next start.
   */
  async setAside(source: string, tombstone: string, name: string): Promise<void> {
    await this.append({ op: 'taken', source, tombstone, rejected: name });
    this.taken.set(tombstone, source);
    faultPoint('calls.set-aside');
    await rename(join(this.dir, REJECTED, partialName(name)), join(this.dir, REJECTED, name));
    await fsyncDir(join(this.dir, REJECTED));
  }


  /**
   * The calls as the ring sees them (CallShelf): segments of camera `calls` in start order, one
   * object per call for as long as it is in the ring (the ring hands them back to `remove`).
   */
  shelf(): CallShelf {
    return {
      calls: () => this.ordered(),
      between: (startMs, endMs) => this.ordered().filter((s) => s.startMs < endMs && s.startMs + s.durationMs > startMs),
      pathOf: (s) => join(this.dir, this.nameOf.get(s) ?? ''),
      remove: async (s) => {
        const name = this.nameOf.get(s);
        // Only a call this very segment stands for (a name pruned and taken again is another call).
        if (name === undefined || this.segments.get(name) !== s || !this.calls.has(name)) return;
        await this.gone(name);
        await unlink(join(this.dir, name)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err; });
      },
    };
  }

  /** The call behind one of the shelf's segments. */
  recordOf(s: Segment): CallRecord | undefined {
    const name = this.nameOf.get(s);
    return name === undefined ? undefined : this.calls.get(name);
  }

  private readonly segments = new Map<string, Segment>();
  private readonly nameOf = new WeakMap<Segment, string>();
  private inOrder: Segment[] | undefined;
  private nextSeq = 0;

  private ordered(): Segment[] {
    if (this.inOrder) return this.inOrder;
    for (const name of this.segments.keys()) if (!this.calls.has(name)) this.segments.delete(name);
    this.inOrder = this.list().map((c) => {
      let seg = this.segments.get(c.name);
      if (!seg) {
        seg = { seq: this.nextSeq++, camera: CALLS_CAMERA, startMs: c.startMs, durationMs: c.durationMs, bytes: c.bytes };
        this.segments.set(c.name, seg);
        this.nameOf.set(seg, c.name);
      }
      return seg;
    });
    return this.inOrder;
  }

  /** A call the ring pruned: recorded before its file is unlinked. Its source stays taken. */
  async gone(name: string): Promise<void> {
    if (!this.calls.has(name)) return;
    await this.append({ op: 'gone', name });
    this.calls.delete(name);
    this.inOrder = undefined;
  }

  /** Sources that left the spool: their tombstones are no longer needed. */
  async forget(sources: ReadonlySet<string>): Promise<void> {
    const gone = [...this.taken].filter(([, source]) => sources.has(source)).map(([tombstone]) => tombstone);
    if (gone.length === 0) return;
    // One write and one sync for the lot (a phone system clearing a month of its spool at once).
    await this.appendAll(gone.map((tombstone): Line => ({ op: 'forget', tombstone })));
    for (const t of gone) this.taken.delete(t);
  }
}
