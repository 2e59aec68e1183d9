// Crash recovery through the real CLI (CONTRACT §5): after the whole process group is killed
// (as systemd does) or the agent alone, the next start rebuilds the ring from disk, keeps the
// partial last segment playable, and stops orphaned recorders so no camera is recorded twice.
// A second agent on the same storage is refused while the first keeps recording.
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { listSegments, probeDuration, recorderPids, type SegmentFile } from '../helpers/segments.js';

// 2 s segments so a kill can land clearly inside one.
const SEGMENT_SECONDS = 2;
const IN_PROGRESS = /^rec-[a-z0-9]+-\d{6,}\.ts$/;

let agents: RunningAgent[] = [];
let dirs: string[] = [];

afterEach(async () => {
  // Even after a failed assertion: no agent, ffmpeg (orphaned ones keep the dead agent's process
  // group, so killGroup reaches them too) or temp dir outlives its test.
  for (const a of agents) a.killGroup();
  await Promise.all(agents.map((a) => a.exited));
  agents = [];
  for (const d of dirs) {
    for (const pid of await recorderPids(join(d, 'storage'))) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Setup { configPath: string; storage: string; socket: string }

async function setup(cameraIds: string[]): Promise<Setup> {
  const dir = await tempDir('camnode-crash-');
  dirs.push(dir);
  // testsrc: synthetic and encoded by the recorder's own ffmpeg, so an orphaned recorder keeps
  // producing footage without any server.
  const cameras = cameraIds.map((id) => ({ id, source: 'testsrc', zone: 'entrance' }));
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, cameras, { recording: { segmentSeconds: SEGMENT_SECONDS }, control: { socket } });
  return { configPath: await writeConfig(dir, config), storage: join(dir, 'storage'), socket };
}

function start(configPath: string): RunningAgent {
  const agent = RunningAgent.start(configPath);
  agents.push(agent);
  return agent;
}

async function started(agent: RunningAgent): Promise<void> {
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
}

function segmentsAfter(storage: string, camera: string, afterSeq: number, n: number, timeoutMs = 30_000): Promise<SegmentFile[]> {
  return waitFor(async () => {
    const fresh = (await listSegments(storage, camera)).filter((s) => s.seq > afterSeq);
    return fresh.length >= n && fresh;
  }, `${n} segments of ${camera} after seq ${afterSeq}`, timeoutMs);
}

async function lastSeq(storage: string, camera: string): Promise<number> {
  return (await listSegments(storage, camera)).at(-1)?.seq ?? 0;
}

/** Waits for the camera's next segment boundary (a new finished segment), then `intoMs` more. */
async function midSegment(storage: string, camera: string, intoMs: number): Promise<void> {
  const seq = await lastSeq(storage, camera);
  await waitFor(async () => (await lastSeq(storage, camera)) > seq, `next segment boundary of ${camera}`, 15_000, 50);
  await sleep(intoMs);
}

/** In-progress `rec-*` files of a camera (what ffmpeg is writing, or a crash left behind). */
async function inProgressFiles(storage: string, camera: string): Promise<string[]> {
  const dir = join(storage, 'segments', camera);
  return (await readdir(dir)).filter((n) => IN_PROGRESS.test(n)).map((n) => join(dir, n));
}

/** Recorder PIDs per camera: the camera is the folder its output argument points into. */
async function recordersByCamera(storage: string): Promise<Record<string, number[]>> {
  const prefix = `${join(storage, 'segments')}/`;
  const out: Record<string, number[]> = {};
  for (const pid of await recorderPids(storage)) {
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const camera = args.find((a) => a.startsWith(prefix))?.slice(prefix.length).split('/')[0];
    if (camera) (out[camera] ??= []).push(pid);
  }
  return out;
}

/** Alive and not a zombie waiting to be reaped. */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return false;
  // The state letter follows the ")" that closes the command name.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function expectPlays(path: string): Promise<number> {
  const seconds = await probeDuration(path);
  expect(seconds, `ffprobe ${path}`).not.toBeNull();
  expect(seconds!, path).toBeGreaterThan(0);
  return seconds!;
}

const adoptedLines = (agent: RunningAgent) => agent.logs.filter((l) => l.msg === 'partial segment adopted');
const rebuilt = (l: LogLine) => l.msg === 'ring index rebuilt';

describe('crash recovery through the CLI', () => {
  it('after the whole process group is killed mid-segment, adopts the partial and loses nothing', async () => {
    const { configPath, storage } = await setup(['front']);
    const first = start(configPath);
    await started(first);
    await segmentsAfter(storage, 'front', 0, 2);
    await midSegment(storage, 'front', 1_000);
    first.killGroup();
    await first.exited;
    await waitFor(async () => (await recorderPids(storage)).length === 0, 'the killed group\'s ffmpeg to be gone', 10_000);

    // What the crash left: the finished segments and the one ffmpeg was writing, which plays.
    const before = await listSegments(storage, 'front');
    expect(before.length).toBeGreaterThanOrEqual(3);
    const partials = await inProgressFiles(storage, 'front');
    expect(partials, 'exactly the segment in progress is left unfinished').toHaveLength(1);
    const partial = partials[0]!;
    const partialBytes = (await readFile(partial)).length;
    expect(partialBytes).toBeGreaterThan(0);
    const partialSeconds = await expectPlays(partial);
    expect(partialSeconds).toBeLessThanOrEqual(SEGMENT_SECONDS + 0.5);
    const partialHash = await sha256(partial);
    const beforeHashes = new Map(await Promise.all(before.map(async (s) => [s.path, await sha256(s.path)] as const)));
    const lastBefore = before.at(-1)!;

    const second = start(configPath);
    await started(second);

    const index = second.find(rebuilt)!;
    expect(index, 'ring index rebuilt').toBeDefined();
    expect(index['adopted']).toBe(1);
    expect(index['segments']).toBe(before.length + 1);
    expect(index['nextSeq']).toBe(lastBefore.seq + 2);
    const adoptedLog = adoptedLines(second);
    expect(adoptedLog).toHaveLength(1);
    expect(adoptedLog[0]!['camera']).toBe('front');
    expect(adoptedLog[0]!['seq']).toBe(lastBefore.seq + 1);
    expect(adoptedLog[0]!['bytes']).toBe(partialBytes);

    // Renamed, not copied or re-recorded: the same bytes under the finished name, right after
    // the last segment before the kill.
    const after = await listSegments(storage, 'front');
    const adopted = after.find((s) => s.seq === lastBefore.seq + 1);
    expect(adopted, `segment seq ${lastBefore.seq + 1}`).toBeDefined();
    expect(adopted!.path.endsWith(`${String(adopted!.seq).padStart(12, '0')}_${adopted!.startMs}_${adopted!.durationMs}.ts`)).toBe(true);
    expect(await sha256(adopted!.path)).toBe(partialHash);
    await expect(readFile(partial)).rejects.toMatchObject({ code: 'ENOENT' });
    const adoptedSeconds = await expectPlays(adopted!.path);
    // The name's duration is what the file plays, not a nominal segment length.
    expect(Math.abs(adopted!.durationMs - adoptedSeconds * 1000)).toBeLessThanOrEqual(100);
    expect(adopted!.startMs).toBeGreaterThan(lastBefore.startMs);

    // Every segment from before the kill is still there, byte for byte.
    for (const s of before) {
      const still = after.find((a) => a.seq === s.seq);
      expect(still?.path, `segment seq ${s.seq} after restart`).toBe(s.path);
      expect(await sha256(s.path)).toBe(beforeHashes.get(s.path));
    }

    // Recording goes on above the adopted segment, with one recorder.
    const fresh = await segmentsAfter(storage, 'front', adopted!.seq, 2);
    for (const s of fresh) await expectPlays(s.path);
    expect(await recorderPids(storage)).toHaveLength(1);

    expect(await second.stop('SIGTERM')).toBe(0);
    expect(await recorderPids(storage)).toEqual([]);
  });

  it('after the agent alone is killed, stops its orphaned recorders: never two per camera', async () => {
    const cameras = ['front', 'side'];
    const { configPath, storage } = await setup(cameras);
    const first = start(configPath);
    await started(first);
    for (const c of cameras) await segmentsAfter(storage, c, 0, 2);
    const orphans = await recorderPids(storage);
    expect(orphans).toHaveLength(2);

    await midSegment(storage, 'front', 1_000);
    first.killAgentOnly();
    await first.exited;
    // The premise: the recorders outlive their agent (ffmpeg ignores SIGPIPE, so the dead
    // segment-list pipe does not stop it) and keep writing into the ring.
    // Asserted, so the test cannot pass without the restart having orphans to stop.
    const aliveAtRestart: number[] = [];
    for (const pid of orphans) if (await isAlive(pid)) aliveAtRestart.push(pid);
    expect(aliveAtRestart, 'both orphaned recorders alive at restart').toEqual(orphans);

    const second = start(configPath);
    await started(second);

    const stopping = second.find((l) => l.msg === 'stopping recorders left by a previous agent');
    expect(stopping, 'the restart stopped the orphans').toBeDefined();
    expect([...(stopping!['pids'] as number[])].sort((a, b) => a - b)).toEqual([...orphans].sort((a, b) => a - b));
    for (const pid of orphans) expect(await isAlive(pid), `orphan ${pid} after restart`).toBe(false);

    // Exactly one recorder per camera, and it is the new agent's, sampled over ~6 s.
    for (let i = 0; i < 7; i++) {
      const byCamera = await recordersByCamera(storage);
      expect(Object.keys(byCamera).sort(), `sample ${i}`).toEqual(cameras);
      for (const c of cameras) {
        expect(byCamera[c], `recorders of ${c}, sample ${i}`).toHaveLength(1);
        expect(orphans).not.toContain(byCamera[c]![0]);
      }
      if (i < 6) await sleep(1_000);
    }

    // What the orphans were writing is adopted and plays; nothing unfinished is left behind
    // beyond the one file each new recorder is writing.
    const adopted = adoptedLines(second);
    expect(second.find(rebuilt)?.['adopted']).toBe(adopted.length);
    for (const c of cameras) expect(adopted.filter((l) => l['camera'] === c).length, `partials of ${c}`).toBeGreaterThanOrEqual(1);
    for (const line of adopted) {
      const seg = (await listSegments(storage, String(line['camera']))).find((s) => s.seq === line['seq']);
      expect(seg, `adopted seq ${String(line['seq'])}`).toBeDefined();
      await expectPlays(seg!.path);
    }
    for (const c of cameras) expect((await inProgressFiles(storage, c)).length, `rec-* files of ${c}`).toBeLessThanOrEqual(1);

    // Recording goes on for both cameras above everything adopted.
    const topAdopted = Math.max(...adopted.map((l) => Number(l['seq'])));
    for (const c of cameras) {
      for (const s of await segmentsAfter(storage, c, topAdopted, 1)) await expectPlays(s.path);
    }

    expect(await second.stop('SIGTERM')).toBe(0);
    expect(await recorderPids(storage)).toEqual([]);
  });

  it('refuses a second agent on the same storage while the first keeps recording', async () => {
    const { configPath, storage } = await setup(['front']);
    const first = start(configPath);
    await started(first);
    await segmentsAfter(storage, 'front', 0, 1);
    const recorder = await recorderPids(storage);
    expect(recorder).toHaveLength(1);

    const second = start(configPath);
    // A second agent that wrongly starts never exits: give it a deadline instead of hanging.
    const code = await Promise.race([second.exited, sleep(20_000).then(() => 'still running after 20 s')]);
    expect(code, second.stderrText).toBe(1);
    expect(second.stderrText).toContain(`another camnode agent (pid ${first.pid})`);
    expect(second.find((l) => l.msg === 'agent started')).toBeUndefined();
    expect(second.find((l) => l.msg === 'stopping recorders left by a previous agent')).toBeUndefined();

    // The first is untouched: same recorder, its lock kept, new segments still coming.
    expect(first.proc.exitCode).toBeNull();
    expect(await recorderPids(storage)).toEqual(recorder);
    // The lock holds "PID STARTTIME".
    expect((await readFile(join(storage, 'segments', 'agent.pid'), 'utf8')).trim().split(' ')[0]).toBe(String(first.pid));
    const fresh = await segmentsAfter(storage, 'front', await lastSeq(storage, 'front'), 2);
    for (const s of fresh) await expectPlays(s.path);
    expect(first.count((l) => l.msg === 'recorder down; restarting')).toBe(0);

    expect(await first.stop('SIGTERM')).toBe(0);
    expect(await recorderPids(storage)).toEqual([]);
  });

  it('an uncaught exception: the recorders stop gracefully, the agent exits 70, and the next start adopts their last segments', async () => {
    const { configPath, storage } = await setup(['front']);
    const agent = RunningAgent.start(configPath, { env: { CAMNODE_FAULT: 'uncaught' } });
    agents.push(agent);
    expect(await agent.exited).toBe(70);
    expect(agent.find((l) => l.msg.startsWith('internal error the agent cannot contain'))).toBeDefined();
    // Stopped, not orphaned: no recorder outlives the agent.
    expect(await recorderPids(storage)).toEqual([]);
    const again = start(configPath);
    await started(again);
    for (const s of await segmentsAfter(storage, 'front', 0, 2)) await expectPlays(s.path);
    expect(await again.stop('SIGTERM')).toBe(0);
  });

  it('an unhandled rejection: recorded as a fault in the state, the agent goes on recording', async () => {
    const { configPath, storage, socket } = await setup(['front']);
    const agent = RunningAgent.start(configPath, { env: { CAMNODE_FAULT: 'unhandled' } });
    agents.push(agent);
    await started(agent);
    await agent.waitForLog((l) => l.msg.startsWith('unhandled rejection'), 'the rejection logged');
    const state = await requestLocal(socket, 'state', {}, 5_000);
    expect((state.data as { health: { faults: unknown[] } }).health.faults).toEqual([
      { component: 'agent', since: expect.any(String), message: 'injected unhandled rejection (CAMNODE_FAULT)' },
    ]);
    const seq = await lastSeq(storage, 'front');
    await segmentsAfter(storage, 'front', seq, 2);
    expect(agent.proc.exitCode).toBeNull();
    expect(await agent.stop('SIGTERM')).toBe(0);
  });
});
