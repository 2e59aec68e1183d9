// The `snapshot` command's capture: one JPEG from a real camera's live stream (GStreamer RTSP
// server), from the synthetic and file sources, and clear errors — never a hang, never a stack,
// never a password, never an ffmpeg left behind — when the camera refuses, hangs or is missing.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseSource, type Source } from '../../src/config/schema.js';
import { listProcesses } from '../../src/platform/processes.js';
import { SnapshotError, takeSnapshot } from '../../src/recorder/snapshot.js';
import { freePort, startRtspServer, stopAllRtspServers, type RtspServer } from '../helpers/rtsp-server.js';

const run = promisify(execFile);

function source(text: string): Source {
  const s = parseSource(text);
  if (typeof s === 'string') throw new Error(s);
  return s;
}

/** What ffprobe makes of the bytes: codec and size of the one stream. */
async function probe(dir: string, jpeg: Buffer) {
  const file = join(dir, `probe-${Date.now()}-${Math.random().toString(36).slice(2)}.jpg`);
  await writeFile(file, jpeg);
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', file], { timeout: 15_000 });
  return (JSON.parse(stdout) as { streams: { codec_name: string; width: number; height: number }[] }).streams;
}

function expectJpeg(jpeg: Buffer): void {
  expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
  expect(jpeg.subarray(-2).toString('hex')).toBe('ffd9');
}

/** ffmpeg processes still reading from this address. */
async function ffmpegsFor(needle: string): Promise<number[]> {
  return (await listProcesses()).filter((p) => /(^|\/)ffmpeg$/.test(p.args[0] ?? '') && p.args.some((a) => a.includes(needle))).map((p) => p.pid);
}

/** The rejection of a snapshot that must fail, checked to be a plain one-sentence SnapshotError. */
async function failure(p: Promise<unknown>): Promise<SnapshotError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(SnapshotError);
  const e = err as SnapshotError;
  expect(e.message).not.toMatch(/\n|\sat\s.*\(|node:internal/); // one line, no stack frames
  return e;
}

describe('takeSnapshot', () => {
  let dir: string;
  let cam: RtspServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-snapshot-'));
    cam = await startRtspServer({ width: 320, height: 240, fps: 10, pattern: 'ball' });
  });
  afterEach(() => cam?.resume()); // a failed pause test must not leave the camera hung for the next
  afterAll(async () => {
    await stopAllRtspServers();
    await rm(dir, { recursive: true, force: true });
  });

  it('takes one JPEG from an RTSP camera at the camera\'s own size', async () => {
    const before = Date.now();
    const snap = await takeSnapshot({ source: source(cam.url), timeoutMs: 15_000 });
    const after = Date.now();
    expectJpeg(snap.jpeg);
    expect(await probe(dir, snap.jpeg)).toEqual([{ codec_name: 'mjpeg', width: 320, height: 240 }]);
    expect(snap.capturedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const at = Date.parse(snap.capturedAt);
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(after);
    expect(await ffmpegsFor(cam.url)).toEqual([]);
  });

  it('takes one from the synthetic source at its configured size, and from a file', async () => {
    const synthetic = await takeSnapshot({ source: source('testsrc'), timeoutMs: 15_000, testsrc: { width: 160, height: 120, fps: 5 } });
    expectJpeg(synthetic.jpeg);
    expect(await probe(dir, synthetic.jpeg)).toEqual([{ codec_name: 'mjpeg', width: 160, height: 120 }]);

    const clip = join(dir, 'loop.mp4');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=176x144:rate=5', '-t', '1',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-y', clip]);
    const fromFile = await takeSnapshot({ source: source(`file:${clip}`), timeoutMs: 15_000 });
    expectJpeg(fromFile.jpeg);
    expect(await probe(dir, fromFile.jpeg)).toEqual([{ codec_name: 'mjpeg', width: 176, height: 144 }]);
  });

  it('a refused port fails at once as refused (not as a timeout), without the password', async () => {
    const port = await freePort();
    const e = await failure(takeSnapshot({ source: source(`rtsp://admin:s3cret@127.0.0.1:${port}/cam`), timeoutMs: 20_000 }));
    expect(e.code).toBe('refused');
    expect(e.message).toMatch(/refused the connection/);
    expect(e.message).toContain(`rtsp://admin:***@127.0.0.1:${port}/cam`);
    expect(e.message).not.toContain('s3cret');
  });

  it('a hung camera (SIGSTOP) fails after the timeout, leaves no ffmpeg behind, and works again once it is back', async () => {
    cam.pause();
    const e = await failure(takeSnapshot({ source: source(cam.url), timeoutMs: 3_000 }));
    expect(e.code).toBe('timeout');
    expect(e.message).toBe('camera did not answer within 3 s');
    expect(await ffmpegsFor(cam.url)).toEqual([]);

    cam.resume();
    expectJpeg((await takeSnapshot({ source: source(cam.url), timeoutMs: 15_000 })).jpeg);
  });

  it('stopping the agent (abort) ends a pending snapshot and its ffmpeg', async () => {
    cam.pause();
    const ac = new AbortController();
    const pending = takeSnapshot({ source: source(cam.url), timeoutMs: 60_000, signal: ac.signal });
    // Wait until ffmpeg is really connected and waiting, so the abort has something to kill.
    for (let i = 0; i < 100 && (await ffmpegsFor(cam.url)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await ffmpegsFor(cam.url)).toHaveLength(1);
    ac.abort();
    const e = await failure(pending);
    expect(e.code).toBe('aborted');
    expect(await ffmpegsFor(cam.url)).toEqual([]);
  });

  it('names what is wrong: unknown stream path, missing device, missing file, missing ffmpeg', async () => {
    const e404 = await failure(takeSnapshot({ source: source(`rtsp://127.0.0.1:${cam.port}/nope`), timeoutMs: 15_000 }));
    expect(e404).toMatchObject({ code: 'not_found', message: expect.stringMatching(/no such stream \(404/) });

    const dev = await failure(takeSnapshot({ source: source('v4l2:/dev/video97'), timeoutMs: 15_000 }));
    expect(dev).toMatchObject({ code: 'not_found', message: '/dev/video97 does not exist' });

    const file = await failure(takeSnapshot({ source: source(`file:${join(dir, 'missing.mp4')}`), timeoutMs: 15_000 }));
    expect(file.message).toMatch(/missing\.mp4 does not exist/);

    const tool = await failure(takeSnapshot({ source: source('testsrc'), timeoutMs: 15_000, ffmpegPath: join(dir, 'no-ffmpeg') }));
    expect(tool.message).toMatch(/ffmpeg not found/);
  });

  it('refuses a picture larger than the limit instead of buffering it', async () => {
    const e = await failure(takeSnapshot({ source: source('testsrc'), timeoutMs: 15_000, testsrc: { width: 320, height: 240, fps: 5 }, maxBytes: 1_000 }));
    expect(e.code).toBe('too_large');
  });
});
