// Rebuilds the ring's index from the filesystem at start. Nothing in storage can crash it:
// zero-length files are removed, foreign files reported and left alone, partial segments left
// by a crash handed back for adoption (they play: segments are MPEG-TS, flushed as written).
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../platform/logger.js';
import { isInProgressFileName, parseSegmentFileName, type Segment } from './segment.js';

export const CAMERA_DIR = /^[a-z0-9-]{1,32}$/;
/** Files of the ring's own in the segments folder (besides `.camnode-*` probes and temp files). */
export const RING_FILES = new Set(['clock.json', 'agent.pid']);

export interface ScanProblem {
  path: string;
  kind: 'zero-length' | 'foreign' | 'unreadable';
  action: 'deleted' | 'left alone';
}

export interface ScanResult {
  /** Finished segments, ascending seq. */
  segments: Segment[];
  /** Segments a crash left unfinished, oldest write first: the ring adopts them. */
  partials: { camera: string; path: string }[];
  problems: ScanProblem[];
  nextSeq: number;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function scanRing(root: string, log: Logger): Promise<ScanResult> {
  const segments: Segment[] = [];
  const partials: { camera: string; path: string }[] = [];
  const problems: ScanProblem[] = [];
  const report = (p: ScanProblem): void => {
    problems.push(p);
    log.warn({ path: p.path, kind: p.kind, action: p.action }, 'unexpected file in storage');
  };

  const top = await readdir(root, { withFileTypes: true });
  for (const entry of top) {
    if (entry.isDirectory() && CAMERA_DIR.test(entry.name)) {
      const camera = entry.name;
      const dir = join(root, camera);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        report({ path: dir, kind: 'unreadable', action: 'left alone' });
        log.warn({ err }, 'camera folder unreadable');
        continue;
      }
      const finished: { name: string; parsed: NonNullable<ReturnType<typeof parseSegmentFileName>> }[] = [];
      for (const name of names) {
        const parsed = parseSegmentFileName(name);
        if (parsed) finished.push({ name, parsed });
        else if (isInProgressFileName(name)) partials.push({ camera, path: join(dir, name) });
        else report({ path: join(dir, name), kind: 'foreign', action: 'left alone' });
      }
      const sizes = await mapLimit(finished, 64, async (f) => {
        try {
          return (await stat(join(dir, f.name))).size;
        } catch {
          return -1;
        }
      });
      finished.forEach((f, i) => {
        const bytes = sizes[i]!;
        if (bytes > 0) segments.push({ camera, bytes, ...f.parsed });
        else if (bytes === 0) problems.push({ path: join(dir, f.name), kind: 'zero-length', action: 'deleted' });
      });
    } else if (!(entry.isFile() && (RING_FILES.has(entry.name) || entry.name.startsWith('.camnode-')))) {
      report({ path: join(root, entry.name), kind: 'foreign', action: 'left alone' });
    }
  }
  for (const p of problems.filter((p) => p.kind === 'zero-length')) {
    log.warn({ path: p.path }, 'zero-length segment removed');
    await unlink(p.path).catch(() => {});
  }

  segments.sort((a, b) => a.seq - b.seq);
  const nextSeq = segments.length > 0 ? segments[segments.length - 1]!.seq + 1 : 1;
  const withStats = await mapLimit(partials, 8, async (p) => ({ ...p, st: await stat(p.path).catch(() => null) }));
  const adoptable: typeof withStats = [];
  for (const p of withStats) {
    if (p.st?.size === 0) {
      report({ path: p.path, kind: 'zero-length', action: 'deleted' });
      await unlink(p.path).catch(() => {});
    } else if (p.st) {
      adoptable.push(p);
    }
  }
  adoptable.sort((a, b) => a.st!.mtimeMs - b.st!.mtimeMs);
  return { segments, partials: adoptable.map(({ camera, path }) => ({ camera, path })), problems, nextSeq };
}
