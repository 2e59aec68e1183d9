// What the ring holds, as `footage` and `hold` tell it (CONTRACT §6): ranges merged across
// seams, holes, the bounds, truncation; a hold's refusals; the pinned share.
import { describe, expect, it } from 'vitest';
import { holdRangeProblem, isExtendable, openHold, type Incident } from '../../src/incidents/incident.js';
import { pinnedShare } from '../../src/modules/incidents.js';
import { isLocked } from '../../src/store/eviction.js';
import { coveredSpans, footageOf, holesIn, mergeSpans } from '../../src/store/footage.js';
import type { Segment } from '../../src/store/segment.js';

const T = Date.parse('2026-12-01T15:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

let seq = 1;
/** One camera's segments of `ms` each from `startMs`, `n` of them, with seams of `seamMs`. */
function run(camera: string, startMs: number, n: number, ms = 2_000, seamMs = 30): Segment[] {
  return Array.from({ length: n }, (_, i) => ({ seq: seq++, camera, startMs: startMs + i * (ms + seamMs), durationMs: ms, bytes: 1_000 }));
}

describe('coveredSpans and holesIn', () => {
  it('merges seams up to the join distance and splits on longer holes', () => {
    const segs = [...run('a', T, 3), ...run('a', T + 60_000, 2)];
    expect(coveredSpans(segs, 3_000)).toEqual([
      { startMs: T, endMs: T + 2 * 2_030 + 2_000 },
      { startMs: T + 60_000, endMs: T + 60_000 + 2_030 + 2_000 },
    ]);
    // A hole of exactly the join distance still joins; one ms more splits.
    const two = [{ startMs: T, durationMs: 1_000 }, { startMs: T + 4_000, durationMs: 1_000 }];
    expect(coveredSpans(two, 3_000)).toHaveLength(1);
    expect(coveredSpans(two, 2_999)).toHaveLength(2);
  });

  it('finds the holes of a range, seams below the tolerance ignored, the edges included', () => {
    const segs = [...run('a', T + 5_000, 3), ...run('a', T + 30_000, 2)];
    expect(holesIn(segs, T, T + 40_000, 500)).toEqual([
      { startMs: T, endMs: T + 5_000 },
      { startMs: T + 5_000 + 2 * 2_030 + 2_000, endMs: T + 30_000 },
      { startMs: T + 30_000 + 2_030 + 2_000, endMs: T + 40_000 },
    ]);
    expect(holesIn(run('a', T - 1_000, 10), T, T + 10_000, 500)).toEqual([]);
    expect(holesIn([], T, T + 1_000, 500)).toEqual([{ startMs: T, endMs: T + 1_000 }]);
  });

  it('merges overlapping spans in any order', () => {
    expect(mergeSpans([{ startMs: 5, endMs: 9 }, { startMs: 1, endMs: 3 }, { startMs: 2, endMs: 6 }, { startMs: 20, endMs: 21 }]))
      .toEqual([{ startMs: 1, endMs: 9 }, { startMs: 20, endMs: 21 }]);
  });
});

describe('footageOf', () => {
  const segs = [...run('door', T, 5), ...run('desk', T, 2), ...run('door', T + 100_000, 5), ...run('gone', T, 1)];

  it('lists configured cameras first (even without footage), then removed ones with footage', () => {
    const r = footageOf({ segments: segs, cameras: ['door', 'desk', 'spare'], joinWithinMs: 3_000, locked: [], kept: [] });
    expect(r.cameras.map((c) => c.id)).toEqual(['door', 'desk', 'spare', 'gone']);
    const door = r.cameras[0]!;
    expect(door.ranges).toEqual([
      { start: iso(T), end: iso(T + 4 * 2_030 + 2_000) },
      { start: iso(T + 100_000), end: iso(T + 100_000 + 4 * 2_030 + 2_000) },
    ]);
    expect(door).toMatchObject({ oldest: iso(T), newest: iso(T + 100_000 + 4 * 2_030 + 2_000), bytes: 10_000, truncated: false });
    expect(r.cameras[2]).toEqual({ id: 'spare', oldest: null, newest: null, bytes: 0, ranges: [], locked: [], kept: [], truncated: false });
  });

  it('counts only what overlaps the bounds, and one camera when asked', () => {
    const r = footageOf({ segments: segs, cameras: ['door'], camera: 'door', fromMs: T + 99_000, toMs: T + 103_000, joinWithinMs: 3_000, locked: [], kept: [] });
    expect(r.cameras).toHaveLength(1);
    expect(r.cameras[0]).toMatchObject({ id: 'door', bytes: 2_000, oldest: iso(T + 100_000), ranges: [{ start: iso(T + 100_000), end: iso(T + 100_000 + 2_030 + 2_000) }] });
  });

  it('names locked and kept spans per camera, within the bounds', () => {
    const r = footageOf({
      segments: segs, cameras: ['door', 'desk'], joinWithinMs: 3_000,
      locked: [{ incident: 'L', cameras: ['door'], startMs: T + 1_000, endMs: T + 3_000 }],
      kept: [{ incident: 'K', cameras: ['door', 'desk'], startMs: T + 50_000, endMs: T + 60_000 }],
      fromMs: T, toMs: T + 55_000,
    });
    expect(r.cameras[0]!.locked).toEqual([{ start: iso(T + 1_000), end: iso(T + 3_000), incident: 'L' }]);
    expect(r.cameras[0]!.kept).toEqual([{ start: iso(T + 50_000), end: iso(T + 60_000), incident: 'K' }]);
    expect(r.cameras[1]!.locked).toEqual([]);
    expect(r.cameras[1]!.kept).toHaveLength(1);
  });

  it('stops at the most ranges a reply may carry and says truncated', () => {
    const many = Array.from({ length: 12 }, (_, i) => run('a', T + i * 10_000, 1)).flat();
    const r = footageOf({ segments: many, cameras: ['a'], joinWithinMs: 3_000, locked: [], kept: [], maxRanges: 10 });
    expect(r.cameras[0]!.ranges).toHaveLength(10);
    expect(r.cameras[0]!.truncated).toBe(true);
    // The newest are kept: footage is mostly asked for soon after.
    expect(r.cameras[0]!.ranges[9]!.start).toBe(iso(T + 110_000));
    expect(r.cameras[0]!.ranges[0]!.start).toBe(iso(T + 20_000));
    expect(footageOf({ segments: many, cameras: ['a'], joinWithinMs: 3_000, locked: [], kept: [] }).cameras[0]!.truncated).toBe(false);
  });

  it('orders a camera\'s segments by time even when a clock step broke the seq order', () => {
    const a = { seq: 1, camera: 'a', startMs: T + 10_000, durationMs: 2_000, bytes: 1 };
    const b = { seq: 2, camera: 'a', startMs: T, durationMs: 2_000, bytes: 1 };
    expect(footageOf({ segments: [a, b], cameras: ['a'], joinWithinMs: 3_000, locked: [], kept: [] }).cameras[0]!.ranges)
      .toEqual([{ start: iso(T), end: iso(T + 2_000) }, { start: iso(T + 10_000), end: iso(T + 12_000) }]);
  });
});

describe('a hold', () => {
  const H = 3_600_000;
  it('is refused when from ≥ to, from is in the future, or the range is longer than maxHold', () => {
    expect(holdRangeProblem(T, T, T + 1, 24 * H)).toMatch(/^from: must be before to/);
    expect(holdRangeProblem(T + 1, T, T + 1, 24 * H)).toMatch(/^from: must be before to/);
    expect(holdRangeProblem(T + 10, T + 20, T, 24 * H)).toMatch(/^from: .* is in the future/);
    expect(holdRangeProblem(T - 25 * H, T, T, 24 * H)).toMatch(/^to: the range is 25h, longer than incident.maxHold \(24h\)/);
    expect(holdRangeProblem(T - 25 * H - 90_500, T, T, 24 * H)).toMatch(/the range is 25h1m31s/);
    expect(holdRangeProblem(T - 24 * H, T, T, 24 * H)).toBeNull();
    // `to` may lie in the future: it keeps locking until then.
    expect(holdRangeProblem(T - 60_000, T + 60_000, T, 24 * H)).toBeNull();
  });

  it('is an incident of its own kind over exactly its range, never extendable', () => {
    const hold = openHold('n', { fromMs: T - 60_000, toMs: T + 60_000, atMs: T, via: 'local', by: 'desk', reason: 'laptop', cameras: ['a', 'a', 'b'] }, { random: () => 0 });
    expect(hold).toMatchObject({
      kind: 'hold', state: 'active', notes: [], cameras: ['a', 'b'], window: { start: iso(T - 60_000), end: iso(T + 60_000) },
      triggers: [{ at: iso(T), via: 'local', by: 'desk', reason: 'laptop' }],
    });
    expect(isExtendable(hold, T)).toBe(false);
    expect(isExtendable({ ...hold, kind: 'lock' }, T)).toBe(true);
  });
});

describe('the pinned share', () => {
  const quota = 1_000_000;
  const segments: Segment[] = run('a', T - 100_000, 40, 2_000, 0).map((s) => ({ ...s, bytes: 20_000 }));
  const share = (sealed = 0, locks: { camera: string; startMs: number; endMs: number }[] = [], kbps = 0) => pinnedShare({
    maxLockedPercent: 50,
    quotaBytes: () => quota,
    lockedRanges: () => locks,
    bytesLockedBy: (ranges) => segments.filter((s) => isLocked(s, ranges)).reduce((n, s) => n + s.bytes, 0),
    sealedBytes: () => sealed,
    kbps: () => kbps,
    now: () => T,
  });
  const hold = (fromMs: number, toMs: number): Incident => openHold('n', { fromMs, toMs, atMs: T, via: 'local', by: 'x', reason: 'r', cameras: ['a'] });

  it('admits what stays within maxLockedPercent of the quota and refuses beyond, with the figures', () => {
    // 20 segments of 20 kB = 400 kB, under the 500 kB limit.
    expect(() => share().admit(hold(T - 100_000, T - 60_000))).not.toThrow();
    // Kept clips count: 400 kB + 200 kB sealed is over.
    expect(() => share(200_000).admit(hold(T - 100_000, T - 60_000))).toThrow(/pin 600\.0 kB \(60%\) of the 1\.0 MB quota, over incident\.maxLockedPercent \(50%/);
  });

  it('counts footage locked twice once, and what a window still to come will record', () => {
    const locks = [{ camera: 'a', startMs: T - 100_000, endMs: T - 60_000 }];
    // The same range again adds nothing.
    expect(share(0, locks).figures(hold(T - 100_000, T - 60_000))!.pinnedBytes).toBe(400_000);
    // 8 kbit/s = 1 kB/s for the 60 s to come.
    expect(share(0, [], 8).figures(hold(T - 30_000, T + 60_000))!.pinnedBytes).toBe(5 * 20_000 + 60_000);
  });

  it('does not judge before the ring has measured its quota', () => {
    const unknown = pinnedShare({ maxLockedPercent: 50, quotaBytes: () => undefined, lockedRanges: () => [], bytesLockedBy: () => 1e12, sealedBytes: () => 0, kbps: () => 0, now: () => T });
    expect(unknown.figures()).toBeUndefined();
    expect(() => unknown.admit(hold(T - 1_000, T))).not.toThrow();
  });
});
