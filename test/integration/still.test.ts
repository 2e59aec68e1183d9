// The `still` command's decoding (CONTRACT §6): the last recorded frame at or before a time,
// taken from real segments — ones the recorder's own ffmpeg command line writes, and
// camera-like ones with B-frames and several keyframes per segment — and proved to be exactly
// that frame by matching the JPEG against every frame of the segment decoded independently.
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listProcesses } from '../../src/platform/processes.js';
import { buildRecorderArgs, parseSegmentListLine } from '../../src/recorder/args.js';
import { decodeFrames, identifyFrame, lastFrameAtOrBefore, type Frame } from '../helpers/frames.js';
import { buildProbeArgs, buildStillArgs, extractStill, parsePacketList, planStill, StillError, type SegmentPacket } from '../../src/recorder/still.js';

const run = promisify(execFile);
interface Decoded { path: string; firstUs: number; frames: Frame[] }

/** Every frame of a segment, decoded by ffmpeg on its own. */
async function decodeAll(path: string): Promise<Decoded> {
  const frames = await decodeFrames(path);
  return { path, firstUs: frames[0]!.ptsUs, frames };
}

/** Which frame of the segment the JPEG shows: best and second-best match by MAD. */
const identify = (dir: string, seg: Decoded, jpeg: Buffer) => identifyFrame(dir, seg.frames, jpeg);

/** The frame the contract asks for: the last whose PTS is at or before first + offset. */
const expectedIndex = (seg: Decoded, offsetMs: number): number => lastFrameAtOrBefore(seg.frames, offsetMs);

const offsetMsOf = (seg: Decoded, i: number): number => seg.frames[i]!.offsetMs;

/** extractStill at `offsetMs` must give exactly the expected frame, and say which it is. */
async function expectFrame(dir: string, seg: Decoded, offsetMs: number): Promise<number> {
  const want = expectedIndex(seg, offsetMs);
  expect(want).toBeGreaterThanOrEqual(0);
  const still = await extractStill({ path: seg.path, offsetMs, timeoutMs: 30_000 });
  expect(still.jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
  const got = await identify(dir, seg, still.jpeg);
  expect({ offsetMs, frame: got.best }).toEqual({ offsetMs, frame: want });
  // Neighbouring frames differ (the burnt-in frame number, the moving pattern): no near tie.
  expect(got.secondMad).toBeGreaterThan(got.bestMad * 3 + 1);
  expect(Math.abs(still.frameOffsetMs - offsetMsOf(seg, want))).toBeLessThanOrEqual(1);
  expect(still.frameOffsetMs).toBeLessThanOrEqual(offsetMs);
  return want;
}

async function failure(p: Promise<unknown>): Promise<StillError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(StillError);
  const e = err as StillError;
  expect(e.message).not.toMatch(/\n|\sat\s.*\(|node:internal/);
  return e;
}

/**
 * Segments written by the recorder's own command line (testsrc, libx264, a keyframe forced at
 * each boundary, timestamps running on across segments), stopped with `q` after `count`.
 */
async function recordSegments(dir: string, count: number): Promise<string[]> {
  const args = buildRecorderArgs({
    source: { kind: 'testsrc' }, testsrc: { width: 320, height: 240, fps: 10 }, segmentSeconds: 2,
    outputPattern: join(dir, 'rec-%06d.ts'), rtspTimeoutMs: 5_000, encoder: 'libx264',
  });
  const child = spawn('ffmpeg', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (t: string) => { stderr = (stderr + t).slice(-4_096); });
  const finished: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`recorder wrote ${finished.length} segments in 60 s: ${stderr}`)), 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = parseSegmentListLine(line);
      if (entry) finished.push(join(dir, entry.file));
      if (finished.length === count) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => { clearTimeout(timer); reject(new Error(`recorder exited early: ${stderr}`)); });
  });
  child.stdin.end('q');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
  return finished;
}

describe('extractStill', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-still-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('from segments the recorder writes', () => {
    let seg: Decoded;

    beforeAll(async () => {
      const rec = join(dir, 'recorder');
      await mkdir(rec);
      const files = await recordSegments(rec, 3);
      // The second segment: its timestamps do not start at 0.
      seg = await decodeAll(files[1]!);
    });

    it('the segment is what the recorder makes: one keyframe at the start, PTS far from 0, 10 fps', async () => {
      const { stdout } = await run('ffprobe', buildProbeArgs(seg.path));
      const packets = parsePacketList(stdout);
      expect(packets.filter((p) => p.key)).toHaveLength(1);
      expect(packets[0]!.key).toBe(true);
      expect(packets).toHaveLength(seg.frames.length);
      expect(seg.firstUs).toBeGreaterThan(2_000_000);
      expect(seg.frames.length).toBeGreaterThanOrEqual(19);
      expect(offsetMsOf(seg, 1)).toBe(100);
    });

    it('gives exactly the frame at or before the offset: at the start, between frames, on a frame, the last one', async () => {
      const last = seg.frames.length - 1;
      expect(await expectFrame(dir, seg, 0)).toBe(0);
      expect(await expectFrame(dir, seg, 550)).toBe(5); // mid-way between frames 5 and 6
      expect(await expectFrame(dir, seg, 700)).toBe(7); // exactly on frame 7
      expect(await expectFrame(dir, seg, 699)).toBe(6); // a ms before it
      expect(await expectFrame(dir, seg, offsetMsOf(seg, last))).toBe(last);
      // While the last frame is on screen (its one frame interval), it is still the answer.
      expect(await expectFrame(dir, seg, offsetMsOf(seg, last) + 50)).toBe(last);
    });

    it('ffmpeg counts from the file\'s first PTS, not from 0: the plan\'s cut is the frame\'s offset', async () => {
      const { stdout } = await run('ffprobe', buildProbeArgs(seg.path));
      const plan = planStill(parsePacketList(stdout), 700);
      expect(plan).toEqual({ frameOffsetUs: 700_000, seekUs: null, trimUs: 699_000 });
      const args = buildStillArgs(seg.path, plan);
      expect(args.slice(args.indexOf('-i'), args.indexOf('-i') + 2)).toEqual(['-i', seg.path]);
      expect(args[args.indexOf('-i') - 2]).not.toBe('-ss'); // the first keyframe: no input seek
      expect(args[args.indexOf('-vf') + 1]).toBe('trim=start=0.699000');
      // Were that cut counted from PTS 0, it would lie before the segment's first frame (its PTS
      // is over 2 s) and keep every frame: the still would be frame 0. It is frame 7.
      expect(seg.firstUs).toBeGreaterThan(2_000_000);
      expect(await expectFrame(dir, seg, 700)).toBe(7);
    });

    it('before the first frame or after the last: no_frame, naming the nearest frame', async () => {
      const before = await failure(extractStill({ path: seg.path, offsetMs: -100, timeoutMs: 30_000 }));
      expect(before).toMatchObject({ code: 'no_frame', nearestOffsetMs: 0 });
      expect(before.message).toBe('no frame that early in the segment; its first frame is at 0 ms');

      const lastMs = offsetMsOf(seg, seg.frames.length - 1);
      const after = await failure(extractStill({ path: seg.path, offsetMs: lastMs + 100, timeoutMs: 30_000 }));
      expect(after).toMatchObject({ code: 'no_frame', nearestOffsetMs: lastMs });
      const wayAfter = await failure(extractStill({ path: seg.path, offsetMs: 2_500, timeoutMs: 30_000 }));
      expect(wayAfter).toMatchObject({ code: 'no_frame', nearestOffsetMs: lastMs });
      expect(wayAfter.message).toBe(`no frame that late in the segment; its last frame is at ${lastMs} ms`);
    });

    it('refuses a JPEG over the limit, times out, and is cancelled, leaving no ffmpeg behind', async () => {
      expect(await failure(extractStill({ path: seg.path, offsetMs: 1_000, timeoutMs: 30_000, maxBytes: 500 }))).toMatchObject({ code: 'too_large' });
      expect(await failure(extractStill({ path: seg.path, offsetMs: 1_000, timeoutMs: 1 }))).toMatchObject({ code: 'timeout', message: 'still not ready within 1 ms' });
      const ac = new AbortController();
      ac.abort();
      expect(await failure(extractStill({ path: seg.path, offsetMs: 1_000, timeoutMs: 30_000, signal: ac.signal }))).toMatchObject({ code: 'aborted' });
      // Cancelled while ffmpeg runs: a "ffmpeg" that only sleeps stands for a slow decode.
      const slow = join(dir, 'slow-ffmpeg');
      await writeFile(slow, `#!/bin/sh\nexec sleep ${SLEEP}\n`, { mode: 0o755 });
      const ac2 = new AbortController();
      const pending = extractStill({ path: seg.path, offsetMs: 1_000, timeoutMs: 30_000, signal: ac2.signal, ffmpegPath: slow });
      for (let i = 0; i < 100 && !(await sleepers()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(await sleepers()).toBe(true);
      ac2.abort();
      expect(await failure(pending)).toMatchObject({ code: 'aborted', message: 'still cancelled' });
      expect(await sleepers()).toBe(false);
      expect((await listProcesses()).filter((p) => /(^|\/)ff(mpeg|probe)$/.test(p.args[0] ?? '') && p.args.includes(seg.path))).toEqual([]);
    });

    it('a file that is not video is unreadable; a missing one too; a missing ffmpeg is named', async () => {
      const junk = join(dir, 'junk.ts');
      const bytes = Buffer.alloc(200_000);
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
      await writeFile(junk, bytes);
      expect(await failure(extractStill({ path: junk, offsetMs: 0, timeoutMs: 30_000 }))).toMatchObject({ code: 'unreadable' });
      const missing = await failure(extractStill({ path: join(dir, 'gone.ts'), offsetMs: 0, timeoutMs: 30_000 }));
      expect(missing).toMatchObject({ code: 'unreadable', message: 'the segment file is missing' });
      const tool = await failure(extractStill({ path: seg.path, offsetMs: 0, timeoutMs: 30_000, ffmpegPath: join(dir, 'no-ffmpeg') }));
      expect(tool).toMatchObject({ code: 'failed' });
      expect(tool.message).toMatch(/^ffmpeg not found/);
    });
  });

  describe('from camera-like segments: B-frames, a keyframe every half second', () => {
    let seg: Decoded;
    let packets: SegmentPacket[];

    beforeAll(async () => {
      const cam = join(dir, 'camera');
      await mkdir(cam);
      // What a camera's stream copied by the recorder looks like: H.264 with B-frames and short
      // GOPs, cut by the segment muxer on keyframes, timestamps running on.
      await run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error',
        '-f', 'lavfi', '-i', "testsrc2=size=320x240:rate=10,drawtext=text='#%{n}':fontcolor=white:fontsize=24:box=1:boxcolor=black@0.6:x=8:y=8", '-t', '6',
        '-c:v', 'libx264', '-preset', 'veryfast', '-bf', '2', '-g', '5', '-keyint_min', '5', '-sc_threshold', '0', '-pix_fmt', 'yuv420p',
        '-f', 'segment', '-segment_time', '2', '-segment_format', 'mpegts', join(cam, 'seg-%03d.ts')], { timeout: 60_000 });
      expect((await readdir(cam)).length).toBeGreaterThanOrEqual(3);
      seg = await decodeAll(join(cam, 'seg-001.ts'));
      packets = parsePacketList((await run('ffprobe', buildProbeArgs(seg.path))).stdout);
    });

    it('the segment has what makes it hard: B-frames (decode order is not display order) and several keyframes', () => {
      expect(packets.some((p, i) => i > 0 && p.ptsUs < packets[i - 1]!.ptsUs)).toBe(true);
      expect(packets.filter((p) => p.key).length).toBeGreaterThanOrEqual(3);
      expect(packets).toHaveLength(seg.frames.length);
    });

    it('every frame of the segment, asked for exactly and between frames, comes out right', async () => {
      for (let i = 0; i < seg.frames.length; i++) {
        const at = offsetMsOf(seg, i);
        expect(await expectFrame(dir, seg, at)).toBe(i);
        if (i % 3 === 1) expect(await expectFrame(dir, seg, at + 50)).toBe(i);
      }
    });

    it('decodes from the keyframe before the frame, with `-ss` before `-i` counted from the file\'s first PTS', async () => {
      const late = offsetMsOf(seg, seg.frames.length - 2);
      const plan = planStill(packets, late);
      const keys = packets.filter((p) => p.key && p.ptsUs - seg.firstUs <= late * 1000);
      const key = keys[keys.length - 1]!;
      expect(keys.length).toBeGreaterThan(1);
      // Aimed just before the keyframe's DTS (input seeking in MPEG-TS goes by DTS).
      expect(plan.seekUs).toBe((key.dtsUs ?? key.ptsUs) - seg.firstUs - 1_000);
      expect(plan.seekUs! + plan.trimUs).toBe(late * 1000 - 1_000);
      const args = buildStillArgs(seg.path, plan);
      expect(args.slice(args.indexOf('-i') - 2, args.indexOf('-i') + 2)).toEqual(['-ss', (plan.seekUs! / 1e6).toFixed(6), '-i', seg.path]);
      // Were `-ss` counted from PTS 0, the seek would aim before the file's first frame (its PTS
      // is over 2 s), decoding would start there and the cut keep the segment's first frame.
      expect(seg.firstUs).toBeGreaterThan(plan.seekUs! + plan.trimUs);
      expect(await expectFrame(dir, seg, late)).toBe(seg.frames.length - 2);
    });
  });
});

/** A sleep no other process on the machine runs, so it can be found. */
const SLEEP = `30.${process.pid}`;

/** Whether the stand-in "ffmpeg" (that sleep) is running. */
async function sleepers(): Promise<boolean> {
  return (await listProcesses()).some((p) => p.args[0] === 'sleep' && p.args[1] === SLEEP);
}
