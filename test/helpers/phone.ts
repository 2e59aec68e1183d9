// A fake phone system for the call-recording tests (CONTRACT §8): real audio made by ffmpeg,
// written the way Asterisk writes a call — into dated sub-folders, a little at a time while the
// call lasts — so a file is only finished once it stops growing.
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** `seconds` of a tone as audio in the format ffmpeg's arguments say. */
export function audio(format: 'wav' | 'mp3', seconds = 2, frequency = 300): Buffer {
  const codec = format === 'wav' ? ['-ar', '8000', '-ac', '1', '-c:a', 'pcm_s16le', '-f', 'wav'] : ['-c:a', 'libmp3lame', '-b:a', '32k', '-f', 'mp3'];
  return execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `sine=frequency=${frequency}:duration=${seconds}`, ...codec, 'pipe:1'], { maxBuffer: 64 << 20 });
}

/** Asterisk's layout: `YYYY/MM/DD/<name>` in local time. */
export function datedPath(at: Date, name: string): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return join(String(at.getFullYear()), p(at.getMonth() + 1), p(at.getDate()), name);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Writes `bytes` to `spool/rel` in `chunks` pieces spread over `overMs`, as a call is recorded. */
export async function writeSlowly(spool: string, rel: string, bytes: Buffer, chunks = 5, overMs = 2_000): Promise<string> {
  const path = join(spool, rel);
  await mkdir(dirname(path), { recursive: true });
  const size = Math.ceil(bytes.length / chunks);
  await writeFile(path, bytes.subarray(0, size));
  for (let at = size; at < bytes.length; at += size) {
    await sleep(overMs / chunks);
    await appendFile(path, bytes.subarray(at, at + size));
  }
  return path;
}
