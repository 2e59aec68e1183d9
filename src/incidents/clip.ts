// Assembling one camera's locked segments into an MP4 without re-encoding, and finding the
// gaps in its footage (a camera down, a recorder restarting).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { iso } from '../platform/clock.js';
import { segmentEndMs, type Segment } from '../store/segment.js';

const run = promisify(execFile);

export interface Gap { start: string; end: string }

/**
 * Holes in the footage of a window: before the first segment, between segments, after the
 * last. Stamps jitter by the time ffmpeg takes to report a segment, so only holes longer than
 * `toleranceMs` count.
 */
export function findGaps(segments: readonly Pick<Segment, 'startMs' | 'durationMs'>[], windowStartMs: number, windowEndMs: number, toleranceMs: number): Gap[] {
  const gaps: Gap[] = [];
  let covered = windowStartMs;
  for (const s of segments) {
    if (s.startMs - covered > toleranceMs) gaps.push({ start: iso(covered), end: iso(s.startMs) });
    covered = Math.max(covered, segmentEndMs(s));
  }
  if (windowEndMs - covered > toleranceMs) gaps.push({ start: iso(covered), end: iso(windowEndMs) });
  return gaps;
}

/** The concat demuxer's list: each segment with its duration, so timestamps stay honest. */
export function concatList(files: readonly { path: string; durationMs: number }[]): string {
  return files.map((f) => `file '${f.path.replace(/'/g, "'\\''")}'\nduration ${(f.durationMs / 1000).toFixed(3)}\n`).join('');
}

export function concatArgs(listPath: string, outputPath: string): string[] {
  return ['-hide_banner', '-nostdin', '-loglevel', 'error', '-f', 'concat', '-safe', '0', '-i', listPath,
    '-map', '0:v', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', '-y', outputPath];
}

/** Writes the MP4 and fsyncs it. */
export async function assembleClip(files: readonly { path: string; durationMs: number }[], listPath: string, outputPath: string, ffmpegPath = 'ffmpeg'): Promise<void> {
  await writeFile(listPath, concatList(files));
  try {
    await run(ffmpegPath, concatArgs(listPath, outputPath), { timeout: 30 * 60_000, maxBuffer: 4 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim().split('\n').slice(-2).join(' | ');
    throw new Error(`ffmpeg could not assemble ${outputPath}: ${stderr || (err as Error).message}`);
  }
  const handle = await open(outputPath, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}
