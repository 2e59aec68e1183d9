// The RTSP test camera itself: it must serve real H.264 that ffprobe understands, and its failure
// knobs (kill/restart, pause/resume) must behave like a real camera failing, since recorder tests
// build on them.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { startRtspServer, stopAllRtspServers } from '../helpers/rtsp-server.js';

const run = promisify(execFile);

async function probe(url: string, timeoutUs = 5_000_000) {
  const { stdout } = await run(
    'ffprobe',
    ['-v', 'error', '-rtsp_transport', 'tcp', '-timeout', String(timeoutUs), '-show_entries', 'stream=codec_name,width,height', '-of', 'json', url],
    // Backstop only: the RTSP -timeout should end a hung probe well before this.
    { timeout: 20_000 },
  );
  const parsed = JSON.parse(stdout) as { streams: { codec_name: string; width: number; height: number }[] };
  return parsed.streams;
}

describe('RTSP test server', () => {
  afterAll(stopAllRtspServers);

  it('serves H.264, survives kill/restart, and hangs on pause', { timeout: 90_000 }, async () => {
    const cam = await startRtspServer({ width: 320, height: 240, fps: 10 });
    expect(cam.url).toBe(`rtsp://127.0.0.1:${cam.port}/cam`);
    expect(await probe(cam.url)).toEqual([{ codec_name: 'h264', width: 320, height: 240 }]);

    // Crash and come back on the same address.
    const oldPid = cam.pid;
    await cam.kill();
    await cam.restart();
    expect(cam.pid).not.toBe(oldPid);
    expect(await probe(cam.url)).toEqual([{ codec_name: 'h264', width: 320, height: 240 }]);

    // A hung camera: the kernel still accepts the TCP connection but nothing answers, so the
    // client's RTSP timeout has to fire.
    // The condition, not a stopwatch: ffprobe gave up by itself (its RTSP timeout), not killed
    // by the 20 s backstop, and said which URL failed.
    cam.pause();
    const err = await probe(cam.url, 2_000_000).then(
      () => null,
      (e: { code?: number; killed?: boolean; signal?: string | null; stderr?: string }) => e,
    );
    expect(err).not.toBeNull();
    expect(err?.killed).toBe(false);
    expect(err?.signal ?? null).toBeNull();
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toContain(cam.url);

    cam.resume();
    expect(await probe(cam.url)).toEqual([{ codec_name: 'h264', width: 320, height: 240 }]);

    await cam.stop();
  });
});
