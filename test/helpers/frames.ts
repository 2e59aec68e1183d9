// Which frame a JPEG shows, proved without trusting the code under test: every frame of a file
// decoded by ffmpeg on its own, shrunk to 80x60 grey, matched to the JPEG by mean absolute
// difference (a burnt-in frame number makes neighbouring frames differ).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';

const run = promisify(execFile);
const W = 80;
const H = 60;

/** A decoded frame: its PTS, its offset from the file's first PTS, its grey pixels. */
export interface Frame { ptsUs: number; offsetMs: number; pixels: Buffer }

/** Every frame of a file in presentation order. */
export async function decodeFrames(path: string): Promise<Frame[]> {
  const { stdout: times } = await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'frame=pts_time', '-of', 'csv=p=0', path], { timeout: 60_000 });
  const pts = times.split('\n').map((l) => l.trim().replace(/,$/, '')).filter(Boolean).map((t) => Math.round(Number(t) * 1e6));
  const raw = await grey(path);
  expect(raw.length, 'one decoded picture per frame ffprobe lists').toBe(pts.length * W * H);
  for (let i = 1; i < pts.length; i++) expect(pts[i]!).toBeGreaterThan(pts[i - 1]!);
  return pts.map((ptsUs, i) => ({ ptsUs, offsetMs: (ptsUs - pts[0]!) / 1000, pixels: raw.subarray(i * W * H, (i + 1) * W * H) }));
}

async function grey(path: string): Promise<Buffer> {
  const { stdout } = await run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${W}x${H}`, 'pipe:1'],
    { timeout: 60_000, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

/** Mean absolute difference of two grey pictures. */
function mad(a: Buffer, b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** Which frame a JPEG shows (written into `dir` to decode it): the best match, and the runner-up's distance. */
export async function identifyFrame(dir: string, frames: readonly Frame[], jpeg: Buffer): Promise<{ best: number; bestMad: number; secondMad: number }> {
  const file = join(dir, `still-${randomUUID()}.jpg`);
  await writeFile(file, jpeg);
  const pic = await grey(file);
  expect(pic.length).toBe(W * H);
  const scored = frames.map((f, i) => ({ i, d: mad(f.pixels, pic) })).sort((x, y) => x.d - y.d);
  return { best: scored[0]!.i, bestMad: scored[0]!.d, secondMad: scored[1]!.d };
}

/** The frame the contract asks for: the last whose offset is at or before `offsetMs` (-1: none). */
export function lastFrameAtOrBefore(frames: readonly Frame[], offsetMs: number): number {
  let idx = -1;
  frames.forEach((f, i) => { if (f.offsetMs <= offsetMs) idx = i; });
  return idx;
}
