// Segments as a recorder makes them, without ffmpeg: time passes on a ManualClock by the
// segment's length, a file appears in the camera's folder, and the ring is told it finished.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ManualClock } from '../../src/platform/clock.js';
import type { Ring } from '../../src/store/ring.js';

let fileNo = 0;

/** Records `n` segments of `durationMs` and `bytes` each; returns their seqs. `prune`: a pass after each. */
export async function recordFake(ring: Ring, clock: ManualClock, camera: string, n: number,
  opts: { durationMs?: number; bytes?: number; prune?: boolean } = {}): Promise<number[]> {
  const durationMs = opts.durationMs ?? 1_000;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    clock.advance(durationMs);
    const file = join(await ring.cameraDir(camera), `rec-fake-${String(++fileNo).padStart(6, '0')}.ts`);
    writeFileSync(file, Buffer.alloc(opts.bytes ?? 100, i));
    out.push((await ring.finish(camera, file, durationMs)).seq);
    if (opts.prune) await ring.requestPrune();
  }
  return out;
}
