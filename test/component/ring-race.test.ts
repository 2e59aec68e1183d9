// The pruner against locks taken while it deletes (a press as the disk fills): the plan reads
// the locks once, then the pass awaits one unlink after another. A lock acknowledged in between
// must still win. Real files on a real filesystem; the lock lands at a random point of a pass,
// hundreds of times, and no segment inside it may go.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/events.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring } from '../../src/store/ring.js';
import type { DeletedRun, LockedRange } from '../../src/store/eviction.js';
import { segmentFileName, segmentEndMs } from '../../src/store/segment.js';

const SEGMENTS = 40;
const BYTES = 1_000;
const ROUNDS = 300;
let root: string;

beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-race-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** Waits `n` turns of the event loop (each unlink of the pass takes at least one). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe('the pruner and a lock taken during its pass', () => {
  it(`${ROUNDS} rounds: a segment locked mid-pass is never deleted`, async () => {
    let spared = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const dir = join(root, String(round));
      const camDir = join(dir, 'segments', 'cam');
      mkdirSync(camDir, { recursive: true });
      const clock = new ManualClock();
      const t0 = clock.now() - SEGMENTS * 1_000;
      const segs = Array.from({ length: SEGMENTS }, (_, i) => ({ seq: i + 1, startMs: t0 + i * 1_000, durationMs: 1_000 }));
      for (const s of segs) writeFileSync(join(camDir, segmentFileName(s)), Buffer.alloc(BYTES));
      const locks: LockedRange[] = [];
      // Room for everything at start; then the disk "fills": room for a quarter.
      let size = 1e9;
      const log = silentLogger();
      // The pass's entries, with the files present when each was written.
      const entries: { reason: string; cameras: Record<string, DeletedRun[]>; presentThen: number }[] = [];
      const ring = new Ring({
        auditDeletion: async (e) => { entries.push({ ...e, presentThen: segs.filter((x) => existsSync(join(camDir, segmentFileName(x)))).length }); },
        options: { storagePath: dir, maxUsePercent: 99, reserveBytes: 0, segmentSeconds: 1 },
        clock, log, events: new EventBus(log),
        disk: async () => ({ sizeBytes: size, usedBytes: SEGMENTS * BYTES, freeBytes: size - SEGMENTS * BYTES, type: 'ext4' }),
        locks: { lockedRanges: () => locks },
        inProgressFiles: () => [],
        probeDurationMs: async () => 1_000,
        pruneIntervalMs: 3_600_000,
      });
      await ring.start();
      expect(ring.allSegments()).toHaveLength(SEGMENTS);
      size = (SEGMENTS / 4) * BYTES / 0.99;
      // The pass would delete the oldest three quarters; lock one of them a few turns in.
      const target = segs[Math.floor(Math.random() * (SEGMENTS * 3) / 4)]!;
      const pass = ring.requestPrune();
      await turns(Math.floor(Math.random() * 40));
      locks.push({ camera: 'cam', startMs: target.startMs + 100, endMs: segmentEndMs(target) - 100 });
      // Acknowledged: an unlink already in flight when the lock came cannot be called back.
      await ring.unlinkSettled();
      const present = existsSync(join(camDir, segmentFileName(target)));
      await pass;
      if (present) {
        spared++;
        expect(existsSync(join(camDir, segmentFileName(target))), `round ${round}: seq ${target.seq}`).toBe(true);
        expect(ring.allSegments().some((s) => s.seq === target.seq)).toBe(true);
      }
      // One entry for the pass, written before any unlink; every file gone is inside one of its runs.
      expect(entries.map((e) => [e.reason, e.presentThen])).toEqual([['quota', SEGMENTS]]);
      const runs = entries[0]!.cameras['cam']!;
      for (const s of segs.filter((x) => !existsSync(join(camDir, segmentFileName(x))))) {
        expect(runs.some((r) => Date.parse(r.from) <= s.startMs && segmentEndMs(s) <= Date.parse(r.to)), `round ${round}: seq ${s.seq} deleted outside every audited run`).toBe(true);
      }
      // A lock in force before the entry splits the runs around it; one after it cannot.
      if (present) expect(runs.reduce((n, r) => n + r.segments, 0)).toBeGreaterThanOrEqual(segs.length - ring.allSegments().length);
      await ring.stop();
      await rm(dir, { recursive: true, force: true });
    }
    // Most rounds locked a segment the pass had not reached yet: the race really was run.
    expect(spared).toBeGreaterThan(ROUNDS / 4);
  });
});
