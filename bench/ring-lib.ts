// A full ring on disk and its start-up scan, shared by bench/scan.ts and bench/scale.ts: finished
// segment files (one MPEG-TS packet each: the scan only stats them) and a real `Ring` over them.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EventBus } from '../src/events.js';
import { systemClock } from '../src/platform/clock.js';
import { silentLogger } from '../src/platform/logger.js';
import { Ring } from '../src/store/ring.js';
import { segmentFileName } from '../src/store/segment.js';
import { gc, sleep } from './lib.js';

const CONTENT = Buffer.alloc(188, 0x47);

/**
 * `count` segment files of `segmentMs` under `root/segments/<camera>`, cameras interleaved in ring
 * order and ending a minute ago (so no stamp looks implausible). Returns the first one's start.
 */
export async function createRingFiles(root: string, cameras: readonly string[], count: number, segmentMs: number, progress?: (done: number) => void): Promise<number> {
  for (const c of cameras) await mkdir(join(root, 'segments', c), { recursive: true });
  const start = Date.now() - 60_000 - Math.ceil(count / cameras.length) * segmentMs;
  let next = 0;
  let lastProgress = Date.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const name = segmentFileName({ seq: i + 1, startMs: start + Math.floor(i / cameras.length) * segmentMs, durationMs: segmentMs });
      await writeFile(join(root, 'segments', cameras[i % cameras.length]!, name), CONTENT);
      if (progress && Date.now() - lastProgress > 15_000) {
        lastProgress = Date.now();
        progress(i);
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return start;
}

export interface Scan { ring: Ring; ms: number; heapPeak: number; heapRetained: number }

/** A Ring over `root` as the benchmarks use it: no locks, no audit, a disk far from full. Not started. */
export function benchRing(root: string, segmentSeconds: number, log = silentLogger()): Ring {
  return new Ring({
    auditDeletion: async () => {},
    options: { storagePath: root, maxUsePercent: 90, reserveBytes: 0, segmentSeconds },
    clock: systemClock,
    log,
    events: new EventBus(log),
    disk: async () => ({ sizeBytes: 4e12, usedBytes: 1e12, freeBytes: 3e12, type: 'ext4' }),
    locks: { lockedRanges: () => [] },
    inProgressFiles: () => [],
    probeDurationMs: async () => 1000,
  });
}

/** `new Ring(...).start()` over `root`, timed, with the heap's peak and what it retains; the ring is left started. */
export async function scanRing(root: string, segmentMs: number): Promise<Scan> {
  const log = silentLogger();
  // A turn of the event loop first: until then a previous run's ring is still reachable.
  await sleep(50);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  let heapPeak = heapBefore;
  // The scan is async, so this sampler gets turns while it runs.
  const sampler = setInterval(() => { heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed); }, 5);
  const t0 = performance.now();
  const ring = benchRing(root, segmentMs / 1000, log);
  await ring.start();
  const ms = performance.now() - t0;
  clearInterval(sampler);
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
  gc();
  return { ring, ms, heapPeak: heapPeak - heapBefore, heapRetained: process.memoryUsage().heapUsed - heapBefore };
}
