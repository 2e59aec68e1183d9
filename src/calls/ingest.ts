// Taking one finished spool file into the ring (CONTRACT §8): probed as audio, then copied
// durably — a dot-named temp file in the ring's folder, fsynced, renamed into place, the folder
// fsynced — and hashed on the way. The source is checked before and after the copy: a file
// that vanished or changed meanwhile leaves nothing behind in the ring and is reported, so a
// call is never half ingested.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fsyncDir, writeAll } from '../platform/durable.js';
import type { SpoolStat } from './spool.js';

const run = promisify(execFile);

export interface AudioProbe { codec: string; format: string; durationMs: number }

/** What ffprobe makes of a file: audio (one or more audio streams, nothing else) or why not. */
export async function probeAudio(path: string, ffprobePath = 'ffprobe'): Promise<AudioProbe | { notAudio: string }> {
  let out: string;
  try {
    ({ stdout: out } = await run(ffprobePath, ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name:format=format_name,duration', '-of', 'json', path], { timeout: 30_000 }));
  } catch (err) {
    const text = String((err as { stderr?: unknown }).stderr ?? (err as Error).message).trim().split('\n').pop() ?? '';
    return { notAudio: `ffprobe cannot read it${text ? `: ${text.replace(`${path}: `, '')}` : ''}` };
  }
  const info = JSON.parse(out) as { streams?: { codec_type?: string; codec_name?: string }[]; format?: { format_name?: string; duration?: string } };
  const streams = info.streams ?? [];
  const audio = streams.filter((s) => s.codec_type === 'audio');
  if (audio.length === 0) return { notAudio: 'no audio stream' };
  if (audio.length !== streams.length) return { notAudio: `not only audio (${streams.map((s) => s.codec_type ?? '?').join(', ')})` };
  const seconds = Number.parseFloat(info.format?.duration ?? '');
  if (!Number.isFinite(seconds) || seconds <= 0) return { notAudio: 'no duration' };
  return { codec: audio[0]!.codec_name ?? 'unknown', format: info.format?.format_name ?? 'unknown', durationMs: Math.round(seconds * 1000) };
}

/** The source changed or went away while it was being taken: nothing was kept. */
export class SourceMovedError extends Error {
  constructor(readonly source: string, readonly how: 'vanished' | 'changed') {
    super(`${source} ${how === 'vanished' ? 'vanished' : 'changed'} while it was being copied; nothing was kept`);
    this.name = 'SourceMovedError';
  }
}

const sameStat = (a: SpoolStat, b: { size: number; mtimeMs: number }): boolean => a.size === b.size && Math.round(a.mtimeMs) === Math.round(b.mtimeMs);

/**
 * Copies `source` (as it was seen: `seen`) to `dest` durably, returning its size and SHA-256.
 * Throws SourceMovedError if the source is gone or differs from `seen` before or after.
 * `hooks.afterChunk` lets tests act mid-copy.
 */
export async function copyDurable(source: string, dest: string, seen: SpoolStat, hooks: { afterChunk?: () => Promise<void> } = {}): Promise<{ bytes: number; sha256: string }> {
  const moved = (err: unknown): never => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SourceMovedError(source, 'vanished');
    throw err;
  };
  const input = await open(source, 'r').catch(moved);
  const tmp = join(dirname(dest), `.${basename(dest)}.${process.pid}.partial`);
  let output: Awaited<ReturnType<typeof open>> | undefined;
  try {
    if (!sameStat(seen, await input.stat())) throw new SourceMovedError(source, 'changed');
    output = await open(tmp, 'w');
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    let bytes = 0;
    // The size that was seen, no more: a file still being written is not read to no end.
    while (bytes < seen.size) {
      const { bytesRead } = await input.read(buf, 0, Math.min(buf.length, seen.size - bytes), bytes);
      if (bytesRead === 0) throw new SourceMovedError(source, 'changed');
      const chunk = buf.subarray(0, bytesRead);
      hash.update(chunk);
      await writeAll(output, [chunk]);
      bytes += bytesRead;
      await hooks.afterChunk?.();
    }
    await output.sync();
    await output.close();
    output = undefined;
    // By its path again: a file deleted or rewritten meanwhile is not the call that was seen.
    const after = await stat(source).catch(moved);
    if (!sameStat(seen, after)) throw new SourceMovedError(source, 'changed');
    await rename(tmp, dest);
    await fsyncDir(dirname(dest));
    return { bytes, sha256: hash.digest('hex') };
  } catch (err) {
    await output?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  } finally {
    await input.close().catch(() => {});
  }
}
