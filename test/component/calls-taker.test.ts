// Taking recordings from a real spool (CONTRACT §8) as a phone system writes them: real WAV and
// MP3 audio from ffmpeg, written slowly in chunks into dated folders. Each file is taken once,
// only when finished, byte-identical; what is not audio is set aside; a restart takes nothing twice.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallIndex } from '../../src/calls/index.js';
import { parseStartFrom, tombstoneKey } from '../../src/calls/spool.js';
import { CallTaker, FORGET_AFTER_MS, REJECTED_DIR } from '../../src/calls/taker.js';
import { probeAudio } from '../../src/calls/ingest.js';
import { ManualClock, systemClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let root: string;
let spool: string;
let ring: string;
const rejected: { source: string; name: string; reason: string }[] = [];

const audioBytes = (args: string[], seconds = 2): Buffer =>
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `sine=frequency=300:duration=${seconds}`, ...args, 'pipe:1'], { maxBuffer: 64 << 20 });
const WAV = (): Buffer => audioBytes(['-ar', '8000', '-ac', '1', '-c:a', 'pcm_s16le', '-f', 'wav']);
const MP3 = (): Buffer => audioBytes(['-c:a', 'libmp3lame', '-b:a', '32k', '-f', 'mp3']);

async function taker(settleMs: number): Promise<{ taker: CallTaker; index: CallIndex }> {
  const index = new CallIndex(ring);
  await index.open();
  return { index, taker: new CallTaker({ spool, dir: ring, pattern: '*.{wav,mp3}', settleMs, startFrom: parseStartFrom('mtime'), clock: systemClock, log: silentLogger(), index, rejected: (r) => rejected.push(r) }) };
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const put = (rel: string, bytes: Buffer | string): string => {
  const path = join(spool, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, bytes);
  return path;
};

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-taker-'));
  spool = join(root, 'monitor');
  ring = join(root, 'storage', 'calls');
  mkdirSync(spool, { recursive: true });
  mkdirSync(ring, { recursive: true });
  rejected.length = 0;
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('taking calls from the spool', () => {
  it('takes a file written slowly only once it is finished, byte-identical, once', async () => {
    // Settle well above the writer's 300 ms between chunks, so a slow pass on a busy machine cannot make a pause look finished.
    const { taker: t, index } = await taker(1_500);
    const wav = WAV();
    const path = put('2026/11/28/out-1001-2002.wav', wav.subarray(0, 4000));
    const taken: string[] = [];
    // The phone system writes the rest in chunks, 300 ms apart; passes run every 100 ms meanwhile.
    for (let at = 4000; at < wav.length; at += 8000) {
      for (let i = 0; i < 3; i++) {
        taken.push(...(await t.pass()).taken);
        await sleep(100);
      }
      appendFileSync(path, wav.subarray(at, Math.min(wav.length, at + 8000)));
    }
    expect(taken).toEqual([]);
    expect(t.waiting()).toBe(1);
    for (let i = 0; i < 100 && taken.length === 0; i++) {
      await sleep(100);
      taken.push(...(await t.pass()).taken);
    }
    expect(taken).toHaveLength(1);
    expect(readFileSync(join(ring, taken[0]!)).equals(wav)).toBe(true);
    const [call] = index.list();
    expect(call).toMatchObject({ name: taken[0], bytes: wav.length, codec: 'pcm_s16le', source: '2026/11/28/out-1001-2002.wav' });
    expect(call!.durationMs).toBeGreaterThanOrEqual(1_900);
    // More passes, a full one too: never again.
    expect((await t.pass()).taken).toEqual([]);
    expect((await t.pass(true)).taken).toEqual([]);
    expect(t.waiting()).toBe(0);
    await index.close();
  });

  it('sets aside a text file named .wav and a zero-byte file, once each; two same names in two folders stay apart', async () => {
    put('2026/11/28/fake.wav', 'RIFF? no, just text\n');
    put('2026/11/28/empty.wav', '');
    put('2026/11/28/out-100.mp3', MP3());
    put('2026/11/29/out-100.mp3', MP3());
    put('2026/11/29/$(reboot) Müller.wav', WAV());
    const { taker: t, index } = await taker(300);
    await t.pass();
    await sleep(400);
    const pass = await t.pass();
    expect(pass.rejected).toHaveLength(2);
    expect(pass.taken).toHaveLength(3);
    expect(rejected.map((r) => [r.source, r.reason]).sort()).toEqual([
      ['2026/11/28/empty.wav', 'empty file'],
      ['2026/11/28/fake.wav', expect.stringMatching(/^ffprobe cannot read it/)],
    ]);
    expect(readdirSync(join(ring, REJECTED_DIR)).sort()).toEqual(rejected.map((r) => r.name).sort());
    const names = index.list().map((c) => c.name);
    expect(names.filter((n) => /-out-100(-2)?\.mp3$/.test(n))).toHaveLength(2);
    expect(names.some((n) => /-reboot_Muller\.wav$/.test(n))).toBe(true);
    expect(names.every((n) => /^[A-Za-z0-9._-]+$/.test(n))).toBe(true);
    await index.close();
    // After a restart nothing is taken or set aside again.
    const again = await taker(300);
    await again.taker.pass();
    await sleep(400);
    expect(await again.taker.pass()).toMatchObject({ taken: [], rejected: [] });
    expect(again.index.list().map((c) => c.name)).toEqual(names);
    await again.index.close();
  });

  it('keeps a taken source taken after the ring pruned its call; a new recording under the same name is a new call', async () => {
    const path = put('a.wav', WAV());
    const { taker: t, index } = await taker(200);
    await t.pass();
    await sleep(300);
    const [name] = (await t.pass()).taken;
    await index.gone(name!);
    await index.close();
    const again = await taker(200);
    await again.taker.pass();
    await sleep(300);
    expect((await again.taker.pass()).taken).toEqual([]);
    // The phone system deletes its copy; a new recording under the same name later is a new call.
    execFileSync('rm', [path]);
    await again.taker.pass();
    put('a.wav', MP3());
    await again.taker.pass();
    await sleep(300);
    expect((await again.taker.pass()).taken).toHaveLength(1);
    await again.index.close();
  });

  it('a source that leaves the spool stays taken for a week: a share unmounted for a while is not taken again', async () => {
    const clock = new ManualClock(Date.now());
    const index = new CallIndex(ring);
    await index.open();
    const t = new CallTaker({ spool, dir: ring, pattern: '*.wav', settleMs: 200, startFrom: parseStartFrom('mtime'), clock, log: silentLogger(), index, rejected: () => {} });
    const bytes = WAV();
    const path = put('2026/12/03/b.wav', bytes);
    const { mtime } = statSync(path);
    await t.pass();
    clock.advance(1_000);
    expect((await t.pass()).taken).toHaveLength(1);
    // The share goes away and comes back with the same files: nothing is taken again.
    execFileSync('mv', [join(spool, '2026'), join(root, 'away')]);
    await t.pass(true);
    clock.advance(3 * 86_400_000);
    await t.pass(true);
    execFileSync('mv', [join(root, 'away'), join(spool, '2026')]);
    utimesSync(path, mtime, mtime);
    await t.pass(true);
    clock.advance(1_000);
    expect(await t.pass(true)).toMatchObject({ taken: [], rejected: [] });
    // Gone for good: after a week its tombstone goes.
    execFileSync('rm', [path]);
    await t.pass(true);
    expect(index.isTaken(tombstoneKey('2026/12/03/b.wav', { size: bytes.length, mtimeMs: mtime.getTime() }))).toBe(true);
    clock.advance(FORGET_AFTER_MS);
    await t.pass(true);
    expect(index.isTaken(tombstoneKey('2026/12/03/b.wav', { size: bytes.length, mtimeMs: mtime.getTime() }))).toBe(false);
    await index.close();
  });

  it('a file that cannot be taken is tried again later while the others are taken', async () => {
    const clock = new ManualClock(Date.now());
    const index = new CallIndex(ring);
    await index.open();
    let badTries = 0;
    const t = new CallTaker({
      spool, dir: ring, pattern: '*.wav', settleMs: 200, startFrom: parseStartFrom('mtime'), clock, log: silentLogger(), index, rejected: () => {},
      probe: async (p) => {
        if (p.endsWith('bad.wav')) {
          badTries++;
          throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
        }
        return probeAudio(p);
      },
    });
    put('bad.wav', WAV());
    put('good.wav', WAV());
    await t.pass();
    clock.advance(1_000);
    const first = await t.pass();
    expect(first.failed).toEqual(['bad.wav']);
    expect(first.taken).toHaveLength(1);
    // Not again at once; again after its back-off.
    await t.pass();
    expect(badTries).toBe(1);
    clock.advance(6_000);
    expect((await t.pass()).failed).toEqual(['bad.wav']);
    expect(badTries).toBe(2);
    await index.close();
  });

  it('waits for a file that was there by the end of a window, not for one begun after it', async () => {
    const clock = new ManualClock(Date.now());
    const index = new CallIndex(ring);
    await index.open();
    const t = new CallTaker({ spool, dir: ring, pattern: '*.wav', settleMs: 10_000, startFrom: parseStartFrom('mtime'), clock, log: silentLogger(), index, rejected: () => {} });
    const path = put('growing.wav', WAV());
    const first = statSync(path).mtimeMs;
    await t.pass();
    // The call goes on being written: its mtime moves past the window's end.
    const later = new Date(first + 60_000);
    utimesSync(path, later, later);
    await t.pass();
    expect(t.waitingFor(first - 30_000, first - 5_000)).toBe(true);
    expect(t.waitingFor(first - 30_000, first - 20_000)).toBe(false);
    expect(t.waitingFor(first + 70_000, first + 90_000)).toBe(false);
    await index.close();
  });
});

