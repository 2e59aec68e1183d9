import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/lifecycle/backoff.js';
import { orphanRecorders } from '../../src/platform/processes.js';
import { inProgressFileName, inProgressPattern, isInProgressFileName, parseSegmentFileName, segmentFileName } from '../../src/store/segment.js';
import { versionAtLeast } from '../../src/platform/ffmpeg.js';

describe('segment names', () => {
  it('round-trip and sort in ring order', () => {
    const a = segmentFileName({ seq: 9, startMs: 1795886801805, durationMs: 2000 });
    const b = segmentFileName({ seq: 10, startMs: 1000, durationMs: 1999 });
    expect(a).toBe('000000000009_1795886801805_2000.ts');
    expect(parseSegmentFileName(a)).toEqual({ seq: 9, startMs: 1795886801805, durationMs: 2000 });
    // A later segment stamped by a clock at 1970 still sorts after.
    expect([b, a].sort()).toEqual([a, b]);
  });
  it('tells finished, in-progress and foreign names apart', () => {
    expect(inProgressPattern('k3x1')).toBe('rec-k3x1-%06d.ts');
    expect(isInProgressFileName(inProgressFileName('k3x1', 12))).toBe(true);
    expect(parseSegmentFileName('rec-k3x1-000012.ts')).toBeNull();
    for (const foreign of ['notes.txt', '12_3_4.ts', '000000000001_x_1.ts', '000000000001_5_5.mp4']) {
      expect(parseSegmentFileName(foreign)).toBeNull();
      expect(isInProgressFileName(foreign)).toBe(false);
    }
  });
});

describe('backoff', () => {
  it('doubles from 1 s to a 60 s cap', () => {
    const mid = () => 0.5;
    const noJitter = { baseMs: 1000, maxMs: 60_000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, noJitter, mid))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  });
  it('jitter spreads a fleet but stays within bounds', () => {
    const policy = { baseMs: 1000, maxMs: 60_000, jitter: 0.5 };
    expect(backoffDelay(3, policy, () => 0)).toBe(2000);
    expect(backoffDelay(3, policy, () => 0.999999)).toBe(4000);
    expect(backoffDelay(20, policy, () => 0.999999)).toBe(60000);
  });
});

describe('orphan recorders', () => {
  const root = '/srv/camnode/segments';
  const procs = [
    { pid: 10, args: ['ffmpeg', '-i', 'rtsp://x', `${root}/entrance/rec-ab1-%06d.ts`] },
    { pid: 11, args: ['/usr/bin/ffmpeg', '-i', 'x', `${root}/desk/rec-cd0-%06d.ts`] },
    { pid: 12, args: ['ffmpeg', '-i', 'x', '/other/segments/entrance/rec-ab1-%06d.ts'] },
    { pid: 13, args: ['vim', `${root}/entrance/rec-ab1-%06d.ts`] },
    { pid: 14, args: ['ffmpeg', '-i', 'x', `${root}-old/entrance/rec-ab1-%06d.ts`] },
  ];
  it('finds ffmpeg writing into this ring only, not our own', () => {
    expect(orphanRecorders(procs, root, new Set()).map((p) => p.pid)).toEqual([10, 11]);
    expect(orphanRecorders(procs, `${root}/`, new Set([11])).map((p) => p.pid)).toEqual([10]);
  });
});

describe('ffmpeg version', () => {
  it('compares', () => {
    expect(versionAtLeast('5.1.9', [5, 0])).toBe(true);
    expect(versionAtLeast('5', [5, 0])).toBe(true);
    expect(versionAtLeast('4.4.2', [5, 0])).toBe(false);
    expect(versionAtLeast('7.0', [5, 0])).toBe(true);
  });
});
