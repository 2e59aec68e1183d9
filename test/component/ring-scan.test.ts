// The ring's start-up scan on a real directory: whatever is in storage, it rebuilds the index
// and never crashes.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/agent.js';
import { EventBus } from '../../src/events.js';
import { ManualClock } from '../../src/platform/clock.js';
import { probeDurationMs } from '../../src/platform/ffmpeg.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring, type RingDeps } from '../../src/store/ring.js';
import { segmentFileName } from '../../src/store/segment.js';
import type { LockedRange } from '../../src/store/eviction.js';
import { recordFake } from '../helpers/fake-recorder.js';

const GB = 1e9;
let dir: string;
let clock: ManualClock;

function makeRing(over: Partial<RingDeps['options']> = {}, locks: LockedRange[] = [], disk = { sizeBytes: 100 * GB, usedBytes: 0, freeBytes: 100 * GB, type: 'ext4' }, more: Partial<RingDeps> = {}): Ring {
  const log = silentLogger();
  return new Ring({
    auditDeletion: async () => {},
    ...more,
    options: { storagePath: dir, maxUsePercent: 90, reserveBytes: 0, segmentSeconds: 2, ...over },
    clock, log, events: new EventBus(log),
    disk: async () => disk,
    locks: { lockedRanges: () => locks },
    inProgressFiles: () => [],
    probeDurationMs: (p) => probeDurationMs(p),
    pruneIntervalMs: 60_000,
    ...more,
  });
}

/** A real 1.5 s MPEG-TS file, as a partial segment would be. */
function realTs(path: string): void {
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '1.5',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', '-y', path]);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-ring-'));
  clock = new ManualClock();
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ring scan', () => {
  it('rebuilds the index in ring order and handles everything else found in storage', async () => {
    const seg = join(dir, 'segments');
    mkdirSync(join(seg, 'a'), { recursive: true });
    mkdirSync(join(seg, 'b'), { recursive: true });
    mkdirSync(join(seg, 'Photos'), { recursive: true });
    const t = clock.now() - 60_000;
    writeFileSync(join(seg, 'a', segmentFileName({ seq: 3, startMs: t + 2000, durationMs: 2000 })), Buffer.alloc(300));
    writeFileSync(join(seg, 'b', segmentFileName({ seq: 1, startMs: t, durationMs: 2000 })), Buffer.alloc(100));
    writeFileSync(join(seg, 'a', segmentFileName({ seq: 2, startMs: t, durationMs: 2000 })), Buffer.alloc(200));
    writeFileSync(join(seg, 'a', segmentFileName({ seq: 4, startMs: t + 4000, durationMs: 2000 })), Buffer.alloc(0));
    writeFileSync(join(seg, 'a', 'notes.txt'), 'someone else\'s');
    writeFileSync(join(seg, 'Photos', 'x.jpg'), 'jpeg');
    writeFileSync(join(seg, 'stray.bin'), 'stray');
    realTs(join(seg, 'b', 'rec-zz1-000007.ts'));
    writeFileSync(join(seg, 'a', 'rec-zz1-000003.ts'), Buffer.from('not video at all, just bytes'.repeat(20)));
    writeFileSync(join(seg, 'a', 'rec-zz1-000004.ts'), Buffer.alloc(0));

    const ring = makeRing();
    await ring.start();
    await ring.stop();

    const index = ring.allSegments();
    expect(index.slice(0, 3).map((s) => [s.seq, s.camera, s.bytes])).toEqual([[1, 'b', 100], [2, 'a', 200], [3, 'a', 300]]);
    // Both non-empty partials adopted after what was there, real video with its probed duration.
    expect(index).toHaveLength(5);
    const adopted = index.slice(3);
    // The removed zero-length segment's number is free again.
    expect(adopted.map((s) => s.seq)).toEqual([4, 5]);
    const video = adopted.find((s) => s.camera === 'b')!;
    expect(video.durationMs).toBeGreaterThan(1200);
    expect(video.durationMs).toBeLessThan(1800);
    const junk = adopted.find((s) => s.camera === 'a')!;
    expect(junk.durationMs).toBe(2000); // nominal: it does not parse
    expect(existsSync(join(seg, 'b', segmentFileName(video)))).toBe(true);
    // Zero-length files removed; foreign files left alone and reported.
    expect(readdirSync(join(seg, 'a')).sort()).toEqual([index[1]!, index[2]!, junk].map(segmentFileName).concat('notes.txt').sort());
    expect(readFileSync(join(seg, 'Photos', 'x.jpg'), 'utf8')).toBe('jpeg');
    expect(readFileSync(join(seg, 'stray.bin'), 'utf8')).toBe('stray');
    const problems = ring.scanProblems().map((p) => `${p.kind}:${p.path.slice(seg.length + 1)}`).sort();
    expect(problems).toEqual(['foreign:Photos', 'foreign:a/notes.txt', 'foreign:stray.bin', 'zero-length:a/000000000004_' + String(t + 4000) + '_2000.ts', 'zero-length:a/rec-zz1-000004.ts'].sort());
    // A restart finds the same index; new segments continue the sequence.
    const again = makeRing();
    await again.start();
    expect(again.allSegments()).toEqual(index);
    const next = join(seg, 'a', 'rec-new-000000.ts');
    writeFileSync(next, Buffer.alloc(50));
    expect((await again.finish('a', next, 2000)).seq).toBe(6);
    await again.stop();
  });

  it('prunes the oldest unlocked footage to the quota at start', async () => {
    const seg = join(dir, 'segments', 'a');
    mkdirSync(seg, { recursive: true });
    const t = clock.now() - 100_000;
    for (let i = 1; i <= 10; i++) writeFileSync(join(seg, segmentFileName({ seq: i, startMs: t + i * 1000, durationMs: 1000 })), Buffer.alloc(1000));
    const ring = makeRing({ maxBytes: 5_500 }, [{ camera: 'a', startMs: t + 2000, endMs: t + 3000 }]);
    await ring.start();
    await ring.stop();
    expect(ring.allSegments().map((s) => s.seq)).toEqual([2, 7, 8, 9, 10]);
    expect(readdirSync(seg)).toHaveLength(5);
    expect(ring.stats()).toMatchObject({ quotaBytes: 5_500, usedBytes: 5_000, lockedBytes: 1_000, shortfallBytes: 0, segments: 5 });
  });

  it('an empty or new storage folder is fine', async () => {
    const ring = makeRing();
    await ring.start();
    await ring.stop();
    expect(ring.allSegments()).toEqual([]);
    expect(ring.stats()).toMatchObject({ usedBytes: 0, oldestAt: null, retainedSeconds: 0 });
  });

  it('between 30 s passes, prunes at once only when the room left is under one interval of recording', async () => {
    // 100 bytes per 2 s segment: one 30 s interval is 1,500 bytes; the quota is 10,000.
    const entries: unknown[] = [];
    let passes = 0; // each pass reads the disk's figures once
    const disk = { sizeBytes: 100 * GB, usedBytes: 0, freeBytes: 100 * GB, type: 'ext4' };
    const ring = makeRing({ maxBytes: 10_000 }, [], undefined, {
      pruneIntervalMs: 30_000, auditDeletion: async (e) => void entries.push(e), disk: async () => { passes++; return disk; },
    });
    await ring.start();
    const record = async (n: number): Promise<void> => void await recordFake(ring, clock, 'a', n, { durationMs: 2_000 });
    await record(80); // 8,000 bytes: room enough, no pass since the one at start
    expect(passes).toBe(1);
    // The state shows the footage as it is recorded all the same.
    expect(ring.stats()).toMatchObject({ segments: 80, usedBytes: 8_000, retainedSeconds: 160 });
    await record(10); // 9,000: under 1,500 left, a pass runs at once
    // Waited for, not slept on: a loaded machine may take longer than any fixed sleep.
    await waitFor(() => passes > 1, 'a pass at once', 10_000, 5);
    expect(entries).toEqual([]);
    await record(40); // past the quota: each add prunes, the ring stays within it, deletions audited
    await waitFor(() => ring.allSegments().reduce((n, s) => n + s.bytes, 0) <= 10_000 && entries.length > 0, 'the ring back within its quota', 10_000, 5);
    await ring.requestPrune();
    expect(ring.allSegments().reduce((n, s) => n + s.bytes, 0)).toBeLessThanOrEqual(10_000);
    expect(readdirSync(await ring.cameraDir('a')).length).toBe(ring.allSegments().length);
    expect(entries.length).toBeGreaterThan(0);
    await ring.stop();
  });

  it('while the audit log cannot be written: aged footage waits; footage over the quota goes, its entry written first thing once the log can be', async () => {
    const entries: { reason: string }[] = [];
    let writable = false;
    const ring = makeRing({ maxBytes: 1_000, maxAgeMs: 60_000 }, [], undefined, {
      pruneIntervalMs: 3_600_000,
      auditDeletion: async (e) => {
        if (!writable) throw Object.assign(new Error('read-only file system'), { code: 'EROFS' });
        entries.push(e);
      },
    });
    await ring.start();
    await recordFake(ring, clock, 'a', 5); // 500 bytes
    clock.advance(120_000); // all of it past maxAge
    await ring.requestPrune();
    expect(ring.allSegments()).toHaveLength(5); // aged, but not deleted unaudited
    await recordFake(ring, clock, 'a', 10); // 1,500 bytes: over the quota
    await ring.requestPrune();
    const left = ring.allSegments().reduce((n, s) => n + s.bytes, 0);
    expect(left).toBeLessThanOrEqual(1_000); // the cameras got their room
    expect(entries).toEqual([]);
    writable = true;
    clock.advance(1_000);
    await recordFake(ring, clock, 'a', 1);
    await ring.requestPrune();
    // The owed quota entry first, then this pass's own.
    expect(entries[0]!.reason).toBe('quota');
    await ring.stop();
  });
});
