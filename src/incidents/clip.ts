// Assembling one camera's locked segments into an MP4 without re-encoding, and finding the
// gaps in its footage (a camera down, a recorder restarting).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { iso } from '../platform/clock.js';
import type { GapReason } from '../audit/manifest.js';
import { segmentEndMs, type Segment } from '../store/segment.js';

const run = promisify(execFile);

export interface Gap { start: string; end: string }

type Span = { startMs: number; endMs: number };
const overlaps = (a: Span, b: Span): boolean => a.startMs < b.endMs && b.startMs < a.endMs;

/**
 * Each gap with its reason (CONTRACT §5): footage left out because it would not decode (always
 * a gap, however short), a time the camera was known to be down, else simply no footage. Pure.
 */
export function explainGaps(gaps: readonly Gap[], unreadable: readonly Span[], down: readonly Span[]): (Gap & { reason: GapReason })[] {
  const out = gaps.map((g) => {
    const span = { startMs: Date.parse(g.start), endMs: Date.parse(g.end) };
    const reason: GapReason = unreadable.some((u) => overlaps(u, span)) ? 'unreadable segment' : down.some((d) => overlaps(d, span)) ? 'camera down' : 'no footage';
    return { ...g, reason };
  });
  for (const u of unreadable) {
    if (out.some((g) => overlaps(u, { startMs: Date.parse(g.start), endMs: Date.parse(g.end) }))) continue;
    out.push({ start: iso(u.startMs), end: iso(u.endMs), reason: 'unreadable segment' });
  }
  return out.sort((a, b) => a.start.localeCompare(b.start));
}

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

/**
 * Segments ffmpeg's concat demuxer could not open. It says "Impossible to open '<file>'" and
 * then ends the clip there — exiting 0 with everything after it missing — so its stderr is read
 * for these rather than trusting the exit status.
 */
export class UnreadableSegments extends Error {
  constructor(readonly paths: string[]) {
    super(`segments that do not decode: ${paths.join(', ')}`);
    this.name = 'UnreadableSegments';
  }
}

/** The files a concat run's stderr says it could not open. Pure. */
export function unopenedFiles(stderr: string): string[] {
  return [...stderr.matchAll(/Impossible to open '((?:[^'\\]|'\\'')+)'/g)].map((m) => m[1]!.replace(/'\\''/g, "'"));
}

/** Writes the MP4 and fsyncs it; throws UnreadableSegments naming any file it had to stop at. */
export async function assembleClip(files: readonly { path: string; durationMs: number }[], listPath: string, outputPath: string, ffmpegPath = 'ffmpeg'): Promise<void> {
  await writeFile(listPath, concatList(files));
  let stderr: string;
  try {
    stderr = (await run(ffmpegPath, concatArgs(listPath, outputPath), { timeout: 30 * 60_000, maxBuffer: 4 * 1024 * 1024 })).stderr;
  } catch (err) {
    const said = (err as { stderr?: string }).stderr ?? '';
    const unopened = unopenedFiles(said);
    if (unopened.length > 0) throw new UnreadableSegments(unopened);
    throw new Error(`ffmpeg could not assemble ${outputPath}: ${said.trim().split('\n').slice(-2).join(' | ') || (err as Error).message}`);
  }
  const unopened = unopenedFiles(stderr);
  if (unopened.length > 0) throw new UnreadableSegments(unopened);
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
