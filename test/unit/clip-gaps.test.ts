// findGaps: the holes in a clip's footage that the manifest lists, pure.
import { describe, expect, it } from 'vitest';
import { findGaps } from '../../src/incidents/clip.js';

const T = Date.UTC(2026, 11, 2, 12);
const iso = (ms: number) => new Date(ms).toISOString();
const seg = (startS: number, durS = 1) => ({ startMs: T + startS * 1000, durationMs: durS * 1000 });

describe('findGaps', () => {
  it('footage covering the window has no gap, even with stamping jitter under the tolerance', () => {
    expect(findGaps([seg(-0.5), seg(0.5), seg(1.6), seg(2.5)], T, T + 3_000, 1_500)).toEqual([]);
  });

  it('a camera that died inside the window leaves one hole from its last footage to its first again', () => {
    const segments = [seg(0), seg(1), seg(2), seg(8), seg(9)];
    expect(findGaps(segments, T, T + 10_000, 1_500)).toEqual([{ start: iso(T + 3_000), end: iso(T + 8_000) }]);
  });

  it('missing footage at either edge is a gap up to the window\'s edge', () => {
    expect(findGaps([seg(4), seg(5)], T, T + 10_000, 1_500)).toEqual([
      { start: iso(T), end: iso(T + 4_000) },
      { start: iso(T + 6_000), end: iso(T + 10_000) },
    ]);
  });

  it('holes within the tolerance are not gaps; overlapping segments do not make one', () => {
    expect(findGaps([seg(0, 2), seg(1, 2), seg(4.4, 2)], T, T + 6_000, 1_500)).toEqual([]);
    expect(findGaps([seg(0, 2), seg(3.6, 2)], T, T + 5_600, 1_500)).toEqual([{ start: iso(T + 2_000), end: iso(T + 3_600) }]);
  });
});

describe('explainGaps', () => {
  it('names each hole: left out as unreadable, the camera known down, else no footage', async () => {
    const { explainGaps } = await import('../../src/incidents/clip.js');
    const gaps = [
      { start: iso(T), end: iso(T + 2_000) },
      { start: iso(T + 5_000), end: iso(T + 6_000) },
      { start: iso(T + 8_000), end: iso(T + 9_000) },
    ];
    const unreadable = [{ startMs: T + 5_000, endMs: T + 6_000 }];
    const down = [{ startMs: T + 8_500, endMs: T + 12_000 }, { startMs: T + 5_200, endMs: T + 5_300 }];
    expect(explainGaps(gaps, unreadable, down).map((g) => g.reason)).toEqual(['no footage', 'unreadable segment', 'camera down']);
    // A segment left out is a gap however short (the tolerance for stamping jitter is not for it).
    expect(explainGaps([], [{ startMs: T + 3_000, endMs: T + 4_000 }], [])).toEqual([{ start: iso(T + 3_000), end: iso(T + 4_000), reason: 'unreadable segment' }]);
  });
});
