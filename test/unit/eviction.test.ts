import { describe, expect, it } from 'vitest';
import { deletionRuns, isLocked, passHeadroomBytes, planEviction, quotaBytes, type EvictionInput, type LockedRange } from '../../src/store/eviction.js';
import type { Segment } from '../../src/store/segment.js';

const T0 = Date.UTC(2026, 10, 28, 12);
const seg = (seq: number, camera = 'a', bytes = 100, startMs = T0 + seq * 1000, durationMs = 1000): Segment => ({ seq, camera, startMs, durationMs, bytes });
const ring = (n: number, cameras = ['a']): Segment[] => Array.from({ length: n }, (_, i) => seg(i + 1, cameras[i % cameras.length]));
const input = (over: Partial<EvictionInput>): EvictionInput => ({
  segments: [], locks: [], quotaBytes: 1_000, otherOwnBytes: 0, now: T0 + 1e6, uncertainBeforeSeq: 0, ...over,
});
const seqs = (s: Segment[]): number[] => s.map((x) => x.seq);

describe('planEviction', () => {
  it('evicts nothing when within quota', () => {
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 1_000 }));
    expect(plan.evict).toEqual([]);
    expect(plan.bytesAfter).toBe(1_000);
    expect(plan.shortfallBytes).toBe(0);
  });

  it('evicts the oldest first until within quota', () => {
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 750 }));
    expect(seqs(plan.evict)).toEqual([1, 2, 3]);
    expect(plan.reasons).toEqual(['quota', 'quota', 'quota']);
    expect(plan.bytesAfter).toBe(700);
  });

  it('counts bytes being written and sealed clips against the quota', () => {
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 1_000, otherOwnBytes: 250 }));
    expect(seqs(plan.evict)).toEqual([1, 2, 3]);
    expect(plan.bytesAfter).toBe(950);
  });

  it('orders by sequence across cameras, not by camera or stamp', () => {
    // Stamps deliberately out of order (a clock that went back): sequence decides.
    const segments = [seg(1, 'b', 100, T0 + 50_000), seg(2, 'a', 100, T0), seg(3, 'b', 100, T0 + 10), seg(4, 'a')];
    expect(seqs(planEviction(input({ segments, quotaBytes: 200 })).evict)).toEqual([1, 2]);
  });

  it('never evicts a locked segment and skips past it', () => {
    const locks: LockedRange[] = [{ camera: 'a', startMs: T0 + 1_500, endMs: T0 + 3_500 }];
    const plan = planEviction(input({ segments: ring(10), locks, quotaBytes: 700 }));
    // seg 1 covers 1000–2000 (locked), 2 and 3 locked; 4,5,6 go instead.
    expect(seqs(plan.evict)).toEqual([4, 5, 6]);
  });

  it('a lock on one camera does not protect another camera at the same time', () => {
    const segments = [seg(1, 'a', 100, T0), seg(2, 'b', 100, T0), seg(3, 'a', 100, T0 + 1000), seg(4, 'b', 100, T0 + 1000)];
    const locks = [{ camera: 'a', startMs: T0, endMs: T0 + 2000 }];
    expect(seqs(planEviction(input({ segments, locks, quotaBytes: 200 })).evict)).toEqual([2, 4]);
  });

  it('reports a shortfall instead of deleting locked footage', () => {
    const locks = [{ camera: 'a', startMs: 0, endMs: Number.MAX_SAFE_INTEGER }];
    const plan = planEviction(input({ segments: ring(10), locks, quotaBytes: 500 }));
    expect(plan.evict).toEqual([]);
    expect(plan.shortfallBytes).toBe(500);
  });

  it('partly locked: frees what it can, reports the rest', () => {
    const locks = [{ camera: 'a', startMs: T0 + 5_000, endMs: T0 + 11_000 }];
    const plan = planEviction(input({ segments: ring(10), locks, quotaBytes: 300 }));
    expect(seqs(plan.evict)).toEqual([1, 2, 3, 4]);
    expect(plan.shortfallBytes).toBe(300);
  });

  it('lock boundaries are half-open: touching is not overlapping', () => {
    const s = seg(1); // [T0+1000, T0+2000)
    expect(isLocked(s, [{ camera: 'a', startMs: T0 + 2000, endMs: T0 + 3000 }])).toBe(false);
    expect(isLocked(s, [{ camera: 'a', startMs: T0, endMs: T0 + 1000 }])).toBe(false);
    expect(isLocked(s, [{ camera: 'a', startMs: T0 + 1999, endMs: T0 + 3000 }])).toBe(true);
    expect(isLocked(s, [{ camera: 'a', startMs: T0 + 1200, endMs: T0 + 1300 }])).toBe(true);
  });

  it('maxAge evicts old trusted footage even with room left', () => {
    const now = T0 + 10_000;
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 1e9, now, maxAgeMs: 5_000 }));
    // seg n ends at T0 + (n+1)*1000; older than 5 s: ends before T0+5000 → n <= 3.
    expect(seqs(plan.evict)).toEqual([1, 2, 3]);
    expect(plan.reasons).toEqual(['age', 'age', 'age']);
  });

  it('maxAge keeps footage whose time is uncertain', () => {
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 1e9, now: T0 + 10_000, maxAgeMs: 5_000, uncertainBeforeSeq: 3 }));
    expect(seqs(plan.evict)).toEqual([3]);
  });

  it('uncertain footage still goes when space requires', () => {
    const plan = planEviction(input({ segments: ring(10), quotaBytes: 800, uncertainBeforeSeq: 100, maxAgeMs: 1 }));
    expect(seqs(plan.evict)).toEqual([1, 2]);
  });

  it('maxAge never evicts locked footage', () => {
    const locks = [{ camera: 'a', startMs: T0, endMs: T0 + 2500 }];
    const plan = planEviction(input({ segments: ring(10), locks, quotaBytes: 1e9, now: T0 + 10_000, maxAgeMs: 5_000 }));
    expect(seqs(plan.evict)).toEqual([3]);
  });

  it('future-stamped footage is never aged out', () => {
    const plan = planEviction(input({ segments: ring(5), quotaBytes: 1e9, now: T0 - 1e9, maxAgeMs: 1 }));
    expect(plan.evict).toEqual([]);
  });

  it('prunes calls with the video, the older start first across both (CONTRACT §8)', () => {
    // Video every second from T0+1 s; calls started at T0+1.5 s and T0+2.5 s (seq is the call's own).
    const calls = [seg(1, 'calls', 100, T0 + 1_500, 300_000), seg(2, 'calls', 100, T0 + 2_500, 10_000)];
    const plan = planEviction(input({ segments: ring(6), calls, quotaBytes: 500 }));
    expect(plan.evict.map((s) => `${s.camera}${s.seq}`)).toEqual(['a1', 'calls1', 'a2']);
    expect(plan.bytesAfter).toBe(500);
    // A hold naming calls keeps them; the video goes instead.
    const held = planEviction(input({ segments: ring(6), calls, quotaBytes: 500, locks: [{ camera: 'calls', startMs: T0, endMs: T0 + 3_000 }] }));
    expect(held.evict.map((s) => `${s.camera}${s.seq}`)).toEqual(['a1', 'a2', 'a3']);
  });

  it('ages calls out by maxAge whatever the video\'s uncertain stamps', () => {
    const calls = [seg(7, 'calls', 100, T0, 1_000), seg(8, 'calls', 100, T0 + 900_000, 1_000)];
    const plan = planEviction(input({ segments: ring(2), calls, quotaBytes: 10_000, maxAgeMs: 500_000, uncertainBeforeSeq: 100 }));
    expect(plan.evict.map((s) => `${s.camera}${s.seq}`)).toEqual(['calls7']);
    expect(plan.reasons).toEqual(['age']);
  });

  it('is exhaustive over small rings: invariants hold for every quota and lock placement', () => {
    const segments = ring(8, ['a', 'b']);
    const total = 800;
    for (let quota = 0; quota <= total + 100; quota += 50) {
      for (let lockStart = 0; lockStart < 8; lockStart++) {
        for (let lockLen = 0; lockLen <= 3; lockLen++) {
          const locks = lockLen === 0 ? [] : [{ camera: 'a', startMs: T0 + (lockStart + 1) * 1000, endMs: T0 + (lockStart + 1 + lockLen) * 1000 }];
          const plan = planEviction(input({ segments, locks, quotaBytes: quota }));
          const evicted = new Set(seqs(plan.evict));
          const kept = segments.filter((s) => !evicted.has(s.seq));
          // Never a locked one.
          for (const s of plan.evict) expect(isLocked(s, locks)).toBe(false);
          // Within quota unless only locked footage is left to delete.
          const keptBytes = kept.reduce((a, s) => a + s.bytes, 0);
          expect(plan.bytesAfter).toBe(keptBytes);
          expect(plan.shortfallBytes).toBe(Math.max(0, keptBytes - quota));
          if (plan.shortfallBytes > 0) {
            // Every unlocked segment is gone before a shortfall is declared.
            expect(kept.filter((s) => !isLocked(s, locks))).toEqual([]);
          }
          // Oldest first: no unlocked kept segment is older than an evicted one.
          const newestEvicted = Math.max(0, ...evicted);
          for (const s of kept) if (!isLocked(s, locks)) expect(s.seq).toBeGreaterThan(newestEvicted);
          // Minimal: nothing more than needed.
          if (plan.evict.length > 0) {
            const last = plan.evict[plan.evict.length - 1]!;
            expect(plan.bytesAfter + last.bytes).toBeGreaterThan(quota);
          }
        }
      }
    }
  });
});

describe('quotaBytes (CONTRACT §2)', () => {
  const GB = 1e9;
  it('percent bound', () => {
    expect(quotaBytes({ sizeBytes: 100 * GB, usedBytes: 0, ownBytes: 0, maxUsePercent: 90, reserveBytes: 1 * GB })).toBe(90 * GB);
  });
  it('reserve bound when tighter', () => {
    expect(quotaBytes({ sizeBytes: 10 * GB, usedBytes: 0, ownBytes: 0, maxUsePercent: 99, reserveBytes: 2 * GB })).toBe(8 * GB);
  });
  it('other files reduce the quota; own files do not', () => {
    expect(quotaBytes({ sizeBytes: 100 * GB, usedBytes: 50 * GB, ownBytes: 30 * GB, maxUsePercent: 90, reserveBytes: 0 })).toBe(70 * GB);
  });
  it('capped by maxBytes', () => {
    expect(quotaBytes({ sizeBytes: 100 * GB, usedBytes: 0, ownBytes: 0, maxUsePercent: 90, reserveBytes: 0, maxBytes: 5 * GB })).toBe(5 * GB);
  });
  it('never negative when others fill the disk', () => {
    expect(quotaBytes({ sizeBytes: 10 * GB, usedBytes: 10 * GB, ownBytes: 0, maxUsePercent: 90, reserveBytes: 0 })).toBe(0);
  });
});

describe('deletionRuns (the delete entry of a pass)', () => {
  const at = (ms: number): string => new Date(ms).toISOString();
  it('one run per camera for what is adjacent in the ring, split by a segment the pass keeps', () => {
    const segs = ring(10, ['a', 'b']); // a: 1,3,5,7,9  b: 2,4,6,8,10
    const evict = segs.filter((s) => s.seq !== 5 && s.seq <= 8); // a's seq 5 is locked
    const runs = deletionRuns(segs, evict, evict.map(() => 'quota'));
    expect([...runs.keys()]).toEqual(['quota']);
    expect(runs.get('quota')).toEqual({
      a: [
        { from: at(T0 + 1000), to: at(T0 + 4000), segments: 2, bytes: 200 },
        { from: at(T0 + 7000), to: at(T0 + 8000), segments: 1, bytes: 100 },
      ],
      b: [{ from: at(T0 + 2000), to: at(T0 + 9000), segments: 4, bytes: 400 }],
    });
  });
  it('a change of reason starts a run under the other reason', () => {
    const segs = ring(4);
    const runs = deletionRuns(segs, segs, ['age', 'age', 'quota', 'quota']);
    expect(runs.get('age')!['a']!.map((r) => r.segments)).toEqual([2]);
    expect(runs.get('quota')!['a']!.map((r) => r.segments)).toEqual([2]);
  });
  it('a segment stamped before the run\'s end (the clock went back) starts a new run', () => {
    const segs = [seg(1, 'a', 100, T0 + 5000), seg(2, 'a', 100, T0), seg(3, 'a', 100, T0 + 1000)];
    expect(deletionRuns(segs, segs, ['quota', 'quota', 'quota']).get('quota')).toEqual({ a: [
      { from: at(T0 + 5000), to: at(T0 + 6000), segments: 1, bytes: 100 },
      { from: at(T0), to: at(T0 + 2000), segments: 2, bytes: 200 },
    ] });
  });
  it('nothing to delete, no entry', () => {
    expect(deletionRuns(ring(3), [], []).size).toBe(0);
  });
});

describe('passHeadroomBytes', () => {
  it('what the cameras write in one interval, from each one\'s last segment', () => {
    expect(passHeadroomBytes([{ bytes: 1_000, durationMs: 2_000 }, { bytes: 500, durationMs: 1_000 }], 30_000)).toBe(15_000 + 15_000);
    expect(passHeadroomBytes([{ bytes: 1_000, durationMs: 0 }], 30_000)).toBe(0);
  });
});
