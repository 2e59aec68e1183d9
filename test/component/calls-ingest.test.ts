// One spool file into the ring (CONTRACT §8), on real files with real ffmpeg-made audio: audio is
// told from what only looks like it, the copy is byte-identical and durable, and a source that
// vanishes or changes mid-copy leaves nothing in the ring.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyDurable, probeAudio, SourceMovedError } from '../../src/calls/ingest.js';

let dir: string;
const audio = (name: string, args: string[]): string => {
  const path = join(dir, name);
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3', ...args, '-y', path]);
  return path;
};
const seen = (path: string): { size: number; mtimeMs: number } => {
  const s = statSync(path);
  return { size: s.size, mtimeMs: s.mtimeMs };
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-calls-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('probing a spool file', () => {
  it('takes WAV, GSM, MP3 and Opus as audio with their duration', async () => {
    const wav = await probeAudio(audio('a.wav', ['-ar', '8000', '-ac', '1', '-c:a', 'pcm_s16le']));
    expect(wav).toMatchObject({ codec: 'pcm_s16le', format: 'wav' });
    expect((wav as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(2_900);
    expect(await probeAudio(audio('a.gsm', ['-ar', '8000', '-ac', '1', '-c:a', 'gsm', '-f', 'gsm']))).toMatchObject({ codec: 'gsm' });
    expect(await probeAudio(audio('a.mp3', ['-c:a', 'libmp3lame', '-b:a', '32k']))).toMatchObject({ codec: 'mp3' });
    expect(await probeAudio(audio('a.ogg', ['-c:a', 'libopus', '-b:a', '16k']))).toMatchObject({ codec: 'opus' });
  });

  it('rejects a text file named .wav, a zero-byte file and a video, saying why', async () => {
    writeFileSync(join(dir, 'text.wav'), 'this is not audio\n');
    writeFileSync(join(dir, 'empty.wav'), '');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=duration=1:size=64x64', '-f', 'lavfi', '-i', 'sine=duration=1', '-c:v', 'mpeg4', '-y', join(dir, 'video.mkv')]);
    expect(await probeAudio(join(dir, 'text.wav'))).toEqual({ notAudio: expect.stringMatching(/^ffprobe cannot read it: Invalid data/) });
    expect(await probeAudio(join(dir, 'empty.wav'))).toEqual({ notAudio: expect.stringMatching(/^ffprobe cannot read it/) });
    expect(await probeAudio(join(dir, 'video.mkv'))).toEqual({ notAudio: 'not only audio (video, audio)' });
  });
});

describe('copying a call into the ring', () => {
  it('is byte-identical, hashed, and leaves no temp file', async () => {
    const src = audio('call.wav', ['-ar', '8000', '-ac', '1']);
    const dest = join(dir, 'ring-call.wav');
    const r = await copyDurable(src, dest, seen(src));
    const bytes = readFileSync(src);
    expect(readFileSync(dest).equals(bytes)).toBe(true);
    expect(r).toEqual({ bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    expect(readdirSync(dir).filter((n) => n.endsWith('.partial'))).toEqual([]);
  });

  it('a source that vanishes or grows mid-copy leaves nothing behind', async () => {
    // More than one 1 MiB chunk, so the hook runs while the copy is under way.
    const src = join(dir, 'long.wav');
    writeFileSync(src, Buffer.alloc(3 << 20, 7));
    const vanish = copyDurable(src, join(dir, 'ring-long.wav'), seen(src), { afterChunk: async () => { try { unlinkSync(src); } catch { /* once */ } } });
    await expect(vanish).rejects.toThrow(SourceMovedError);
    await expect(vanish).rejects.toMatchObject({ how: 'vanished' });
    writeFileSync(src, Buffer.alloc(3 << 20, 7));
    const grow = copyDurable(src, join(dir, 'ring-long.wav'), seen(src), { afterChunk: async () => { appendFileSync(src, 'more'); } });
    await expect(grow).rejects.toMatchObject({ how: 'changed' });
    // Seen differently than it is now: refused before a byte is copied.
    await expect(copyDurable(src, join(dir, 'ring-long.wav'), { size: 1, mtimeMs: 0 })).rejects.toMatchObject({ how: 'changed' });
    expect(readdirSync(dir).filter((n) => n.startsWith('ring-long') || n.includes('.partial'))).toEqual([]);
  });
});
