// The ring's per-camera index answers a window exactly as a walk of every segment would:
// in order (binary search) and out of order (a clock step, a stamp read late).
import { describe, expect, it } from 'vitest';
import { CameraIndex } from '../../src/store/camera-index.js';
import { segmentEndMs, type Segment } from '../../src/store/segment.js';

function brute(all: readonly Segment[], camera: string, startMs: number, endMs: number): number[] {
  return all.filter((s) => s.camera === camera && s.startMs < endMs && segmentEndMs(s) > startMs).map((s) => s.seq);
}

/** Two cameras' segments interleaved in seq order, each 500–2,500 ms long with seams of ±20 ms. */
function ring(n: number, random: () => number): Segment[] {
  const at = new Map<string, number>([['a', 0], ['b', 300]]);
  return Array.from({ length: n }, (_, i) => {
    const camera = i % 2 === 0 ? 'a' : 'b';
    const durationMs = 500 + Math.floor(random() * 2_000);
    const startMs = at.get(camera)! + Math.floor(random() * 41) - 20;
    at.set(camera, startMs + durationMs);
    return { seq: i + 1, camera, startMs, durationMs, bytes: 1 };
  });
}

function seeded(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
}

describe('CameraIndex', () => {
  it('finds the same segments as a walk of the whole ring, in order and out of it', () => {
    const random = seeded(7);
    const all = ring(2_000, random);
    const index = new CameraIndex();
    index.reset(all);
    const check = (): void => {
      for (let i = 0; i < 300; i++) {
        const start = Math.floor(random() * 2_200_000) - 100_000;
        const end = start + Math.floor(random() * 30_000);
        for (const c of ['a', 'b', 'x']) expect(index.between(c, start, end).map((s) => s.seq), `${c} ${start}..${end}`).toEqual(brute(all, c, start, end));
      }
    };
    check();
    // A clock step corrects some stamps in place: back by a minute, out of order.
    for (const s of all.slice(500, 700)) s.startMs -= 60_000;
    index.restamped();
    check();
    // Removal, and a late stamp pushed out of order.
    for (const s of all.splice(0, 100)) index.remove(s);
    const late = { seq: 5_000, camera: 'a', startMs: 10_000, durationMs: 1_000, bytes: 1 };
    all.push(late);
    index.push(late);
    check();
  });

  it('lists the cameras with footage and the end of each one\'s newest segment', () => {
    const index = new CameraIndex();
    const s = { seq: 1, camera: 'a', startMs: 1_000, durationMs: 500, bytes: 1 };
    index.push(s);
    expect(index.cameraIds()).toEqual(['a']);
    expect(index.newestEndOf('a')).toBe(1_500);
    index.remove(s);
    expect(index.cameraIds()).toEqual([]);
    expect(index.newestEndOf('a')).toBeNull();
  });
});
