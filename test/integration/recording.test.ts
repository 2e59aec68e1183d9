// Recording end to end: the real CLI records a real RTSP camera (GStreamer) with real ffmpeg,
// and survives the camera crashing, hanging and never answering. What is checked is what an
// operator would see: playable segment files covering the time, log lines naming the camera,
// a clean exit with no recorder left behind.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { freePort, startRtspServer, stopAllRtspServers } from '../helpers/rtsp-server.js';
import { listSegments, probeDuration, recorderPids, type SegmentFile } from '../helpers/segments.js';

const SEGMENT_SECONDS = 1;
// A segment is named when ffmpeg reports it closed, stamped back from that moment: scheduling
// jitter on a busy 2-core machine can open a small hole between neighbours, never a whole segment.
const GAP_TOLERANCE_MS = 500;

const DOWN = 'recorder down; restarting';
const down = (camera: string) => (l: LogLine) => l.msg === DOWN && l['camera'] === camera;
const recording = (camera: string) => (l: LogLine) => l.msg === 'recording' && l['camera'] === camera;

let agents: RunningAgent[] = [];
let dirs: string[] = [];

afterEach(async () => {
  // Even after a failed assertion: no agent, ffmpeg, RTSP server or temp dir outlives its test.
  for (const a of agents) a.killGroup();
  await Promise.all(agents.map((a) => a.exited));
  agents = [];
  await stopAllRtspServers();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

async function startAgent(cameras: Record<string, unknown>[]): Promise<{ agent: RunningAgent; storage: string }> {
  const dir = await tempDir('camnode-recording-');
  dirs.push(dir);
  const config = baseConfig(dir, cameras, { recording: { segmentSeconds: SEGMENT_SECONDS } });
  const agent = RunningAgent.start(await writeConfig(dir, config));
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return { agent, storage: join(dir, 'storage') };
}

/** Waits until the camera has `n` finished segments with seq above `afterSeq`; returns them. */
function segmentsAfter(storage: string, camera: string, afterSeq: number, n: number, timeoutMs = 30_000): Promise<SegmentFile[]> {
  return waitFor(async () => {
    const fresh = (await listSegments(storage, camera)).filter((s) => s.seq > afterSeq);
    return fresh.length >= n && fresh;
  }, `${n} segments of ${camera} after seq ${afterSeq}`, timeoutMs);
}

async function lastSeq(storage: string, camera: string): Promise<number> {
  return (await listSegments(storage, camera)).at(-1)?.seq ?? 0;
}

/** Log lines from index `from` on (so a test can ask "after the restart"). */
function logAfter(agent: RunningAgent, from: number, pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000): Promise<LogLine> {
  return waitFor(() => agent.logs.slice(from).find(pred), `log after #${from}: ${what}\n--- stderr ---\n${agent.stderrText}`, timeoutMs);
}

async function expectPlayable(segments: SegmentFile[]): Promise<void> {
  for (const s of segments) {
    expect(s.bytes, s.path).toBeGreaterThan(0);
    const seconds = await probeDuration(s.path);
    expect(seconds, `ffprobe ${s.path}`).not.toBeNull();
    expect(seconds!, s.path).toBeGreaterThan(0);
  }
}

/** SIGTERM: exit 0 and not one ffmpeg left writing into this storage. */
async function stopCleanly(agent: RunningAgent, storage: string): Promise<void> {
  expect(await agent.stop('SIGTERM')).toBe(0);
  expect(await recorderPids(storage)).toEqual([]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('recording a real RTSP camera through the CLI', () => {
  it('writes playable, gap-free, rising segments', async () => {
    const cam = await startRtspServer();
    const { agent, storage } = await startAgent([{ id: 'front', source: cam.url, zone: 'entrance' }]);

    const segs = await segmentsAfter(storage, 'front', 0, 8);
    // One camera, one recorder: never recorded twice.
    expect(await recorderPids(storage)).toHaveLength(1);

    await expectPlayable(segs);
    // One ring-wide counter, one camera, nothing pruned: 1, 2, 3… with none skipped or reused.
    expect(segs.map((s) => s.seq)).toEqual(segs.map((_, i) => i + 1));
    for (let i = 1; i < segs.length; i++) {
      const prev = segs[i - 1]!;
      const next = segs[i]!;
      const gap = next.startMs - (prev.startMs + prev.durationMs);
      expect(gap, `hole between seq ${prev.seq} and ${next.seq}`).toBeLessThanOrEqual(SEGMENT_SECONDS * 1000 + GAP_TOLERANCE_MS);
    }
    expect(agent.count((l) => l.msg === DOWN)).toBe(0);

    await stopCleanly(agent, storage);
  });

  it('resumes recording after the camera crashes and comes back', async () => {
    const cam = await startRtspServer();
    const { agent, storage } = await startAgent([{ id: 'front', source: cam.url, zone: 'entrance' }]);
    await segmentsAfter(storage, 'front', 0, 2);

    const beforeKill = agent.logs.length;
    await cam.kill();
    await logAfter(agent, beforeKill, down('front'), 'recorder down after the camera died', 20_000);
    await sleep(3_000); // the camera stays away through a few refused reconnects

    // The dead run's partial segment is adopted before the down line, so anything above this
    // seq was recorded after the camera came back.
    const baseline = await lastSeq(storage, 'front');
    const beforeRestart = agent.logs.length;
    await cam.restart();
    // Backoff 1 s, 2 s, 4 s… (jittered): the next attempt may be several seconds away.
    await logAfter(agent, beforeRestart, recording('front'), 'recording again after restart', 30_000);
    const fresh = await segmentsAfter(storage, 'front', baseline, 2, 30_000);
    await expectPlayable(fresh);
    expect(await recorderPids(storage)).toHaveLength(1);

    await stopCleanly(agent, storage);
  });

  it('detects a hung camera and recovers once it answers again', async () => {
    const cam = await startRtspServer();
    const { agent, storage } = await startAgent([{ id: 'front', source: cam.url, zone: 'entrance' }]);
    await segmentsAfter(storage, 'front', 0, 2);

    const beforePause = agent.logs.length;
    cam.pause();
    // The agent's stall watchdog or ffmpeg's own 5 s socket timeout: either ends the hung run.
    const downLine = await logAfter(agent, beforePause, down('front'), 'recorder down after the camera hung', 20_000);
    const hung = agent.logs.slice(beforePause, agent.logs.indexOf(downLine));
    if (hung.some((l) => l.msg === 'recorder stalled; restarting ffmpeg')) {
      // The watchdog stopped it: that is the reason reported, even though ffmpeg, told to
      // quit, closes its last segment on the way out and exits 0.
      expect(downLine['reason']).toBe('stalled');
    } else {
      expect(String(downLine['reason'])).toMatch(/^ffmpeg exited/);
    }
    // That last segment is footage, not a recovery: the camera is not reported recording.
    expect(hung.filter(recording('front'))).toEqual([]);
    await sleep(2_000);

    const baseline = await lastSeq(storage, 'front');
    const beforeResume = agent.logs.length;
    cam.resume();
    await logAfter(agent, beforeResume, recording('front'), 'recording again after resume', 30_000);
    const fresh = await segmentsAfter(storage, 'front', baseline, 2, 30_000);
    await expectPlayable(fresh);
    expect(await recorderPids(storage)).toHaveLength(1);

    await stopCleanly(agent, storage);
  });

  it('keeps recording a good camera next to one that refuses connections', async () => {
    const cam = await startRtspServer();
    const deadPort = await freePort(); // nothing listens here: every connect is refused
    const { agent, storage } = await startAgent([
      { id: 'good', source: cam.url, zone: 'entrance' },
      { id: 'bad', source: `rtsp://127.0.0.1:${deadPort}/x`, zone: 'parking' },
    ]);

    // Five failed runs in a row is where the recorder reports the camera in 'error'; with the
    // 1, 2, 4, 8 s backoff that is at most ~15 s away.
    const fifth = await agent.waitForLog((l) => down('bad')(l) && Number(l['failures']) >= 5, 'fifth failure of the bad camera', 40_000);
    const reports = agent.logs.filter(down('bad'));
    expect(reports.map((l) => l['failures'])).toEqual([1, 2, 3, 4, 5]);
    // The report says why, naming the refusal ffmpeg saw.
    expect(String(fifth['reason'])).toMatch(/Connection refused/i);
    // The restarts back off (1 s doubling, up to half of it jittered away) instead of spinning.
    reports.forEach((l, i) => {
      const full = 1_000 * 2 ** i;
      expect(Number(l['restartInMs'])).toBeGreaterThanOrEqual(full / 2);
      expect(Number(l['restartInMs'])).toBeLessThanOrEqual(full);
    });

    // Meanwhile the agent is alive and the good camera unaffected, and keeps producing.
    expect(agent.proc.exitCode).toBeNull();
    expect(agent.count(down('good'))).toBe(0);
    const fresh = await segmentsAfter(storage, 'good', await lastSeq(storage, 'good'), 2);
    await expectPlayable(fresh);
    expect(await listSegments(storage, 'bad')).toEqual([]);
    expect(await recorderPids(storage)).not.toHaveLength(0);

    await stopCleanly(agent, storage);
  });
});
