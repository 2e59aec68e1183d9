// Call recordings pruned with the video (CONTRACT §8), on real files: the ring counts them in its
// quota, deletes oldest start first across video and calls, audits them as camera `calls`, keeps
// a locked call, and the calls journal agrees with the files after a restart.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallIndex, partialName, type CallRecord } from '../../src/calls/index.js';
import { EventBus } from '../../src/events.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import type { DeletedRun, DeleteReason, LockedRange } from '../../src/store/eviction.js';
import { Ring } from '../../src/store/ring.js';
import { segmentFileName } from '../../src/store/segment.js';

const BYTES = 1_000;
let dir: string;

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-ring-calls-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

interface Setup {
  ring: Ring;
  index: CallIndex;
  entries: { reason: DeleteReason; cameras: Record<string, DeletedRun[]> }[];
  locks: LockedRange[];
  setSize(bytes: number): void;
  segPath(seq: number): string;
  callPath(n: number): string;
  calls: CallRecord[];
  t0: number;
}

/**
 * Video segments of 10 s every 10 s from t0 (seq 1..n) and calls starting 5 s into segments 1,
 * 3 and 5: in start order v1 c1 v2 v3 c2 v4 v5 c3 v6 …
 */
async function setup(segments: number): Promise<Setup> {
  const clock = new ManualClock();
  const t0 = clock.now() - 3_600_000;
  const camDir = join(dir, 'segments', 'cam');
  mkdirSync(camDir, { recursive: true });
  const segs = Array.from({ length: segments }, (_, i) => ({ seq: i + 1, startMs: t0 + i * 10_000, durationMs: 10_000 }));
  for (const s of segs) writeFileSync(join(camDir, segmentFileName(s)), Buffer.alloc(BYTES));
  const callsDir = join(dir, 'calls');
  mkdirSync(callsDir);
  const index = new CallIndex(callsDir);
  await index.open();
  const calls: CallRecord[] = [];
  for (const k of [0, 2, 4]) {
    const startMs = t0 + k * 10_000 + 5_000;
    const c: CallRecord = {
      name: `${k}-call.wav`, startMs, durationMs: 3_000, bytes: BYTES, sha256: 'a'.repeat(64), codec: 'pcm_s16le',
      source: `spool/${k}.wav`, tombstone: `spool/${k}.wav\0${BYTES}\0${k}`,
    };
    writeFileSync(join(callsDir, partialName(c.name)), Buffer.alloc(BYTES));
    await index.took(c);
    calls.push(c);
  }
  let size = 1e9;
  const entries: Setup['entries'] = [];
  const locks: LockedRange[] = [];
  const log = silentLogger();
  const ring = new Ring({
    auditDeletion: async (e) => { entries.push(e); },
    options: { storagePath: dir, maxUsePercent: 100, reserveBytes: 0, segmentSeconds: 10 },
    clock, log, events: new EventBus(log),
    disk: async () => ({ sizeBytes: size, usedBytes: (segments + 3) * BYTES, freeBytes: size - (segments + 3) * BYTES, type: 'ext4' }),
    locks: { lockedRanges: () => locks },
    inProgressFiles: () => [],
    probeDurationMs: async () => 10_000,
    pruneIntervalMs: 3_600_000,
    calls: index.shelf(),
  });
  await ring.start();
  return {
    ring, index, entries, locks, calls, t0,
    setSize: (b) => { size = b; },
    segPath: (seq) => join(camDir, segmentFileName(segs[seq - 1]!)),
    callPath: (n) => join(callsDir, calls[n]!.name),
  };
}

describe('calls in the ring', () => {
  it('counts calls in the quota and deletes oldest start first across video and calls, audited as camera calls', async () => {
    const s = await setup(6);
    // 9 files held; room for 4: the 5 oldest by start go (v1 c1 v2 v3 c2), v4 v5 c3 v6 stay.
    s.setSize(4 * BYTES);
    await s.ring.requestPrune();
    expect([1, 2, 3].map((q) => existsSync(s.segPath(q)))).toEqual([false, false, false]);
    expect([4, 5, 6].map((q) => existsSync(s.segPath(q)))).toEqual([true, true, true]);
    expect([0, 1, 2].map((n) => existsSync(s.callPath(n)))).toEqual([false, false, true]);
    expect(s.index.list().map((c) => c.name)).toEqual([s.calls[2]!.name]);
    // One entry for the pass; the calls are their own camera, two calls in one run.
    expect(s.entries.map((e) => e.reason)).toEqual(['quota']);
    const runs = s.entries[0]!.cameras;
    expect(Object.keys(runs).sort()).toEqual(['calls', 'cam']);
    expect(runs['calls']).toEqual([{ from: new Date(s.calls[0]!.startMs).toISOString(), to: new Date(s.calls[1]!.startMs + 3_000).toISOString(), segments: 2, bytes: 2 * BYTES }]);
    expect(runs['cam']!.reduce((n, r) => n + r.segments, 0)).toBe(3);
    // The pruned calls' sources stay taken; the journal agrees with the files after a restart.
    await s.ring.stop();
    await s.index.close();
    const again = new CallIndex(join(dir, 'calls'));
    expect(await again.open()).toEqual({ recovered: [], dropped: [], lost: [] });
    expect(again.list().map((c) => c.name)).toEqual([s.calls[2]!.name]);
    expect(s.calls.every((c) => again.isTaken(c.tombstone))).toBe(true);
    await again.close();
  });

  it('keeps a call under a lock that names calls, and not one under a lock on a camera only', async () => {
    const s = await setup(6);
    s.locks.push({ camera: 'calls', startMs: s.calls[0]!.startMs, endMs: s.calls[0]!.startMs + 3_000 });
    s.locks.push({ camera: 'cam', startMs: s.calls[1]!.startMs, endMs: s.calls[1]!.startMs + 3_000 });
    s.setSize(4 * BYTES);
    await s.ring.requestPrune();
    expect(existsSync(s.callPath(0))).toBe(true);
    expect(existsSync(s.callPath(1))).toBe(false);
    // The lock on cam over call 1's time keeps segment 3 (20–30 s), not the call.
    expect(existsSync(s.segPath(3))).toBe(true);
    await s.ring.stop();
    await s.index.close();
  });

  it('ages calls out by maxAge on their own start and end', async () => {
    const s = await setup(6);
    await s.ring.stop();
    const log = silentLogger();
    const clock = new ManualClock();
    // The third call ended 3,600 − 45 − 3 s ago; a maxAge just above that keeps it and ages out the others.
    const maxAgeMs = clock.now() - (s.calls[2]!.startMs + 3_000) + 1_000;
    const ring = new Ring({
      auditDeletion: async (e) => { s.entries.push(e); },
      options: { storagePath: dir, maxUsePercent: 100, reserveBytes: 0, segmentSeconds: 10, maxAgeMs },
      clock, log, events: new EventBus(log),
      disk: async () => ({ sizeBytes: 1e9, usedBytes: 0, freeBytes: 1e9, type: 'ext4' }),
      locks: { lockedRanges: () => [] },
      inProgressFiles: () => [],
      probeDurationMs: async () => 10_000,
      pruneIntervalMs: 3_600_000,
      calls: s.index.shelf(),
    });
    await ring.start();
    await ring.requestPrune();
    expect([0, 1, 2].map((n) => existsSync(s.callPath(n)))).toEqual([false, false, true]);
    expect(s.entries.filter((e) => e.reason === 'age').flatMap((e) => e.cameras['calls'] ?? []).reduce((n, r) => n + r.segments, 0)).toBe(2);
    await ring.stop();
    await s.index.close();
  });

  it('a crash between a pruned call\'s journal line and its unlink: the next start deletes the file', async () => {
    const s = await setup(1);
    await s.ring.stop();
    await s.index.gone(s.calls[0]!.name);
    await s.index.close();
    expect(existsSync(s.callPath(0))).toBe(true);
    // A file the journal never knew is left alone.
    writeFileSync(join(dir, 'calls', 'stranger.wav'), 'x');
    const again = new CallIndex(join(dir, 'calls'));
    expect(await again.open()).toEqual({ recovered: [], dropped: [s.calls[0]!.name], lost: [] });
    expect(existsSync(s.callPath(0))).toBe(false);
    expect(existsSync(join(dir, 'calls', 'stranger.wav'))).toBe(true);
    await again.close();
  });
});
