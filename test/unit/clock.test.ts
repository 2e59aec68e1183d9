// Clock-jump safety. A Pi's wall clock jumps when NTP first syncs (or an operator sets it):
// the ring must never age out footage because of such a jump. Order is by seq, so quota
// eviction cannot be fooled; maxAge reads the wall-clock stamps, so footage recorded before a
// detected jump (or found at start with impossible stamps) is marked uncertain and never aged.
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/events.js';
import { ManualClock } from '../../src/platform/clock.js';
import { clockJump, ClockSteps, CLOCK_JUMP_THRESHOLD_MS } from '../../src/platform/clock-steps.js';
import { silentLogger } from '../../src/platform/logger.js';
import { planEviction, type LockedRange } from '../../src/store/eviction.js';
import { Ring, type RingOptions } from '../../src/store/ring.js';
import type { Segment } from '../../src/store/segment.js';
import { clipClock, correctionMs, EMPTY_STAMPS, parseStamps, stampClock, withoutBelow, withStep, withUnsynced, type StampState } from '../../src/store/stamps.js';
import { recordFake } from '../helpers/fake-recorder.js';
import { listSegments } from '../helpers/segments.js';

const SECOND = 1_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** ClockSteps before start(): no boot id, nothing saved — the in-process watcher. */
const watcher = (clock: ManualClock): ClockSteps => new ClockSteps({ clock, stateDir: '/nonexistent', log: silentLogger() });

describe('clockJump', () => {
  it('reports a step of the wall clock against the monotonic clock, with its sign', () => {
    expect(clockJump(0, 40 * DAY)).toBe(40 * DAY);
    expect(clockJump(500, 500 - 2 * DAY)).toBe(-2 * DAY);
    expect(clockJump(0, CLOCK_JUMP_THRESHOLD_MS + 1)).toBe(CLOCK_JUMP_THRESHOLD_MS + 1);
    expect(clockJump(0, -(CLOCK_JUMP_THRESHOLD_MS + 1))).toBe(-(CLOCK_JUMP_THRESHOLD_MS + 1));
  });

  it('ignores drift up to the threshold', () => {
    expect(clockJump(1_000, 1_000)).toBe(0);
    expect(clockJump(0, CLOCK_JUMP_THRESHOLD_MS)).toBe(0);
    expect(clockJump(0, -CLOCK_JUMP_THRESHOLD_MS)).toBe(0);
    expect(clockJump(0, 250)).toBe(0);
  });
});

describe('ClockSteps (as a watcher)', () => {
  it('sees nothing while both clocks run together', () => {
    const clock = new ManualClock();
    const watch = watcher(clock);
    for (let i = 0; i < 5; i++) {
      clock.advance(10 * DAY);
      expect(watch.check()).toBe(0);
    }
  });

  it('detects a forward and a backward jump once each', () => {
    const clock = new ManualClock();
    const watch = watcher(clock);
    clock.advance(30 * SECOND);
    clock.jump(40 * DAY);
    expect(watch.check()).toBe(40 * DAY);
    // Re-based: the new offset is the norm from now on.
    clock.advance(SECOND);
    expect(watch.check()).toBe(0);
    clock.jump(-2 * DAY);
    expect(watch.check()).toBe(-2 * DAY);
    expect(watch.check()).toBe(0);
  });

  it('detects a jump just over the threshold, not one at it', () => {
    const clock = new ManualClock();
    const watch = watcher(clock);
    clock.jump(CLOCK_JUMP_THRESHOLD_MS);
    expect(watch.check()).toBe(0);
    clock.jump(-(CLOCK_JUMP_THRESHOLD_MS + 1));
    expect(watch.check()).toBe(-(CLOCK_JUMP_THRESHOLD_MS + 1));
  });

  it('follows slow drift (NTP slewing) so that it never adds up to a false jump', () => {
    const clock = new ManualClock();
    const watch = watcher(clock);
    // 60 s of drift in total, never more than 1 s between two checks.
    for (let i = 0; i < 60; i++) {
      clock.advance(10 * SECOND);
      clock.jump(SECOND);
      expect(watch.check()).toBe(0);
    }
  });
});

describe('planEviction with maxAge after a clock jump', () => {
  const T0 = Date.UTC(2026, 10, 28, 12);
  // Segments 1–5 recorded before a +40 d jump (uncertain), 6–10 after it (trusted).
  const segments: Segment[] = Array.from({ length: 10 }, (_, i) => {
    const seq = i + 1;
    return { seq, camera: 'a', startMs: T0 + seq * SECOND + (seq > 5 ? 40 * DAY : 0), durationMs: SECOND, bytes: 100 };
  });
  const base = { segments, locks: [] as LockedRange[], quotaBytes: 1e9, otherOwnBytes: 0, maxAgeMs: HOUR, uncertainBeforeSeq: 6 };
  const seqs = (s: readonly Segment[]): number[] => s.map((x) => x.seq);

  it('never ages out footage below uncertainBeforeSeq, however old it looks', () => {
    // Right after the jump: the uncertain ones look 40 days old, the new ones fresh.
    expect(planEviction({ ...base, now: T0 + 40 * DAY + 20 * SECOND }).evict).toEqual([]);
    // Years later: still no age eviction of the uncertain ones.
    expect(seqs(planEviction({ ...base, now: T0 + 3000 * DAY }).evict)).toEqual([6, 7, 8, 9, 10]);
  });

  it('ages out trusted footage older than maxAge, and only that', () => {
    // 6 ends at T0+40d+7 s, 10 at T0+40d+11 s: at T0+40d+1 h+9 s, 6 and 7 are past maxAge.
    const plan = planEviction({ ...base, now: T0 + 40 * DAY + HOUR + 9 * SECOND });
    expect(seqs(plan.evict)).toEqual([6, 7]);
    expect(plan.reasons).toEqual(['age', 'age']);
  });

  it('never ages out a locked segment', () => {
    const locks: LockedRange[] = [{ camera: 'a', startMs: T0 + 40 * DAY + 7 * SECOND, endMs: T0 + 40 * DAY + 9 * SECOND }];
    const plan = planEviction({ ...base, locks, now: T0 + 41 * DAY });
    expect(seqs(plan.evict)).toEqual([6, 9, 10]);
  });

  it('lets uncertain footage go when space requires, oldest seq first, never locked', () => {
    const locks: LockedRange[] = [{ camera: 'a', startMs: T0 + 1 * SECOND, endMs: T0 + 2 * SECOND }];
    const plan = planEviction({ ...base, locks, quotaBytes: 700, now: T0 + 40 * DAY + 20 * SECOND });
    expect(seqs(plan.evict)).toEqual([2, 3, 4]);
    expect(plan.reasons).toEqual(['quota', 'quota', 'quota']);
  });
});

// The Ring itself on a real directory, driven by a ManualClock: what survives on disk.
describe('Ring under clock jumps', () => {
  const CAMERA = 'a';
  let dir: string;
  let clock: ManualClock;
  let rings: Ring[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-clock-'));
    clock = new ManualClock();
    rings = [];
    duringDiskRead = undefined;
  });
  afterEach(async () => {
    for (const r of rings) await r.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs inside the pruner's statfs call, i.e. in the middle of a prune. */
  let duringDiskRead: (() => Promise<void> | void) | undefined;

  async function startRing(options: Partial<RingOptions> = {}): Promise<Ring> {
    const log = silentLogger();
    const ring = new Ring({
      auditDeletion: async () => {},
      options: { storagePath: dir, maxUsePercent: 90, reserveBytes: 0, segmentSeconds: 1, maxAgeMs: HOUR, ...options },
      clock, log, events: new EventBus(log),
      disk: async () => {
        await duringDiskRead?.();
        return { sizeBytes: 1e12, usedBytes: 1e9, freeBytes: 1e12 - 1e9, type: 'ext4' };
      },
      locks: { lockedRanges: () => [] },
      inProgressFiles: () => [],
      probeDurationMs: async () => 1000,
      pruneIntervalMs: HOUR, // only the prunes this test asks for (and the one after each segment)
    });
    rings.push(ring);
    await ring.start();
    return ring;
  }

  /** Records n 1 s segments as a recorder would, a prune pass after each; returns their seqs. */
  const record = (ring: Ring, n: number): Promise<number[]> => recordFake(ring, clock, CAMERA, n, { prune: true });

  const onDisk = async (): Promise<number[]> => (await listSegments(dir, CAMERA)).map((s) => s.seq);
  const clockFile = (): string => join(dir, 'segments', 'clock.json');
  const stampsFile = (): StampState => JSON.parse(readFileSync(clockFile(), 'utf8')) as StampState;

  it('ages out footage recorded without a jump (the control)', async () => {
    const ring = await startRing();
    const old = await record(ring, 3);
    clock.advance(2 * HOUR);
    const fresh = await record(ring, 2);
    await ring.requestPrune();
    expect(await onDisk()).toEqual(fresh);
    expect(ring.allSegments().map((s) => s.seq)).toEqual(fresh);
    expect(old).toEqual([1, 2, 3]);
    expect(stampsFile().uncertainBeforeSeq).toBe(0);
  });

  it('keeps footage from before and after a +40 day jump', async () => {
    const ring = await startRing();
    const before = await record(ring, 3);
    clock.jump(40 * DAY);
    const after = await record(ring, 3);
    await ring.requestPrune();
    expect(await onDisk()).toEqual([...before, ...after]);
    // The new footage is stamped in the new time, the old stays where it was.
    const stamps = (await listSegments(dir, CAMERA)).map((s) => s.startMs);
    expect(stamps[3]! - stamps[2]!).toBeGreaterThan(40 * DAY);
    // Everything recorded before the jump is marked, durably.
    expect(stampsFile().uncertainBeforeSeq).toBe(after[0]);

    // And later on the trusted post-jump footage ages out normally, the uncertain stays.
    clock.advance(2 * HOUR);
    const latest = await record(ring, 1);
    await ring.requestPrune();
    expect(await onDisk()).toEqual([...before, ...latest]);
  });

  // NTP steps the clock at any moment, also while the pruner is between two awaits: footage
  // must never be judged on a time the ring has not checked for a jump.
  it('keeps footage when a forward jump lands while a prune is under way', async () => {
    const ring = await startRing();
    const before = await record(ring, 3);
    duringDiskRead = () => {
      duringDiskRead = undefined;
      clock.jump(40 * DAY);
    };
    await ring.requestPrune();
    expect(await onDisk()).toEqual(before);
    const after = await record(ring, 2);
    expect(await onDisk()).toEqual([...before, ...after]);
  });

  it('keeps new footage when a backward jump and a finished segment land while a prune is under way', async () => {
    const ring = await startRing();
    const before = await record(ring, 3);
    let during: number | undefined;
    duringDiskRead = async () => {
      duringDiskRead = undefined;
      clock.jump(-2 * DAY);
      clock.advance(SECOND);
      const file = join(await ring.cameraDir(CAMERA), 'rec-t-999999.ts');
      writeFileSync(file, Buffer.alloc(100));
      during = (await ring.finish(CAMERA, file, SECOND)).seq;
    };
    await ring.requestPrune();
    expect(during).toBe(4);
    expect(await onDisk()).toEqual([...before, 4]);
  });

  it('keeps footage from before and after a backward jump, and orders it by seq under quota', async () => {
    // Room for six 100-byte segments.
    const ring = await startRing({ maxBytes: 600 });
    const before = await record(ring, 3);
    clock.jump(-2 * DAY);
    const after = await record(ring, 3);
    clock.advance(30 * 60 * SECOND);
    await ring.requestPrune();
    expect(await onDisk()).toEqual([...before, ...after]);
    expect(stampsFile().uncertainBeforeSeq).toBe(after[0]);

    // Over quota: the first recorded go first, although the newer footage has earlier stamps.
    const more = await record(ring, 2);
    expect(await onDisk()).toEqual([...before.slice(2), ...after, ...more]);
  });

  it('at restart, marks footage stamped in the future uncertain and does not age it out', async () => {
    const first = await startRing();
    const recorded = await record(first, 4);
    await first.stop();
    expect(stampsFile().uncertainBeforeSeq).toBe(0);

    // The machine reboots with its clock 2 days behind the newest stamp (a new monotonic origin).
    clock = new ManualClock(clock.now() - 2 * DAY, 5_000);
    const second = await startRing();
    expect(stampsFile().uncertainBeforeSeq).toBe(recorded.length + 1);
    // Three days on, trusted footage from that time would long be past maxAge; these stay.
    clock.advance(3 * DAY);
    await second.requestPrune();
    expect(await onDisk()).toEqual(recorded);

    // Footage recorded after the restart is trusted, and ages out.
    const fresh = await record(second, 2);
    clock.advance(2 * HOUR);
    await second.requestPrune();
    expect(await onDisk()).toEqual(recorded);
    expect(fresh).toEqual([5, 6]);
  });

  it('at restart, marks footage stamped before 2024 uncertain (a Pi booted without a clock)', async () => {
    clock = new ManualClock(Date.UTC(1970, 0, 1, 0, 1), 5_000);
    const first = await startRing();
    const recorded = await record(first, 3);
    await first.stop();

    // NTP synced while the agent was down: the stamps now look 56 years old.
    clock = new ManualClock(Date.UTC(2026, 10, 28, 12), 5_000);
    const second = await startRing();
    await second.requestPrune();
    expect(await onDisk()).toEqual(recorded);
    expect(stampsFile().uncertainBeforeSeq).toBe(4);

    // The mark survives another restart with a good clock.
    await second.stop();
    const third = await startRing();
    await third.requestPrune();
    expect(await onDisk()).toEqual(recorded);
  });
});

describe('stamps (clock.json)', () => {
  const base: StampState = { uncertainBeforeSeq: 0, boot: { id: 'b', firstSeq: 5 }, steps: [], unsynced: [] };
  it('a step corrects this boot\'s segments so far, and only those', () => {
    const s = withStep(base, HOUR, 9);
    expect(s.steps).toEqual([{ fromSeq: 5, toSeq: 9, deltaMs: HOUR }]);
    expect([4, 5, 8, 9].map((q) => correctionMs(q, s.steps))).toEqual([0, HOUR, HOUR, 0]);
    // Two steps add up on what both cover.
    const t = withStep(s, -2 * HOUR, 12);
    expect([5, 9, 12].map((q) => correctionMs(q, t.steps))).toEqual([-HOUR, -2 * HOUR, 0]);
    expect(withStep(base, HOUR, 5)).toBe(base); // nothing recorded this boot yet
  });
  it('labels: stepped over unsynced over synced; runs of unsynced seqs merge', () => {
    let s = withUnsynced(withUnsynced(withUnsynced(base, 5), 6), 8);
    expect(s.unsynced).toEqual([{ fromSeq: 5, toSeq: 7 }, { fromSeq: 8, toSeq: 9 }]);
    s = withStep(s, HOUR, 6);
    expect([5, 6, 7, 8].map((q) => stampClock(q, s))).toEqual(['stepped', 'unsynced', 'synced', 'unsynced']);
    expect(clipClock(['synced', 'unsynced'])).toBe('unsynced');
    expect(clipClock(['unsynced', 'stepped', 'synced'])).toBe('stepped');
    expect(clipClock([])).toBe('synced');
  });
  it('forgets what lies wholly below the oldest segment', () => {
    const s = withStep(withUnsynced(base, 5), HOUR, 7);
    expect(withoutBelow(s, 5)).toBe(s);
    expect(withoutBelow(s, 7)).toEqual({ ...s, steps: [], unsynced: [] });
  });
  it('reads an old or damaged clock.json leniently', () => {
    expect(parseStamps({ uncertainBeforeSeq: 12 })).toEqual({ uncertainBeforeSeq: 12, steps: [], unsynced: [] });
    expect(parseStamps(null)).toEqual(EMPTY_STAMPS);
    expect(parseStamps({ steps: [{ fromSeq: 1, toSeq: 'x', deltaMs: 1 }, { fromSeq: 1, toSeq: 2, deltaMs: 3 }], boot: { id: 7 } }))
      .toEqual({ uncertainBeforeSeq: 0, steps: [{ fromSeq: 1, toSeq: 2, deltaMs: 3 }], unsynced: [] });
  });
});
