// Clock jumps end to end: the real CLI and its real ffmpeg run under libfaketime, whose offset
// is read from a file the test rewrites, as NTP or an operator would step the clock of a Pi.
// The monotonic clock is left alone (a real step does not move it): the agent detects the jump
// by comparing the two. With maxAge 1h, a +40 d step makes everything recorded before it look
// 40 days old; the ring must keep it (its stamps are uncertain) and never delete new footage.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { requestLocal } from '../../src/control/socket.js';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { listSegments, recorderPids, type SegmentFile } from '../helpers/segments.js';

const DAY = 86_400_000;
const CAMERA = 'cam';
// Stamps are "now minus the segment's duration" on the agent's (faked) clock; the test's own
// clock is real. Minutes of slack cover any scheduling delay and stay far below a day.
const SLACK_MS = 10 * 60_000;
const JUMPED = 'clock: wall clock jumped';

let libfaketime = '';
let agents: RunningAgent[] = [];
let dirs: string[] = [];

beforeAll(() => {
  // Debian's `faketime` package (installed by provisioning/dev-setup.sh --test).
  let listed = '';
  try {
    listed = execFileSync('dpkg', ['-L', 'libfaketime'], { encoding: 'utf8' });
  } catch { /* not installed: reported below */ }
  libfaketime = listed.split('\n').find((p) => /\/libfaketime\.so\.1$/.test(p)) ?? '';
  if (!libfaketime || !existsSync(libfaketime)) {
    throw new Error('libfaketime not found: apt-get install faketime (provisioning/dev-setup.sh --test does)');
  }
});

afterEach(async () => {
  for (const a of agents) a.killGroup();
  await Promise.all(agents.map((a) => a.exited));
  agents = [];
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

/** Sets the faked clock's offset from real time ("+40d", "-2d"); atomically, as libfaketime re-reads the file. */
async function setOffset(file: string, offset: string): Promise<void> {
  await writeFile(`${file}.tmp`, `${offset}\n`);
  await rename(`${file}.tmp`, file);
}

function segmentsFrom(storage: string, fromSeq: number, n: number): Promise<SegmentFile[]> {
  return waitFor(async () => {
    const fresh = (await listSegments(storage, CAMERA)).filter((s) => s.seq >= fromSeq);
    return fresh.length >= n && fresh;
  }, `${n} segments from seq ${fromSeq}`, 30_000);
}

/** The jump line logged after log index `from`: its size in seconds and the first trusted seq. */
async function jumpAfter(agent: RunningAgent, from: number): Promise<{ jumpS: number; uncertainBeforeSeq: number }> {
  const line = await waitFor(() => agent.logs.slice(from).find((l: LogLine) => l.msg.startsWith(JUMPED)),
    `"${JUMPED}" after log #${from}\n--- stderr ---\n${agent.stderrText}`, 20_000);
  return { jumpS: Number(/jumped by (-?\d+) s/.exec(line.msg)?.[1]), uncertainBeforeSeq: Number(line['uncertainBeforeSeq']) };
}

function expectStampedAround(segments: SegmentFile[], expectedMs: number, what: string): void {
  for (const s of segments) {
    expect(Math.abs(s.startMs - expectedMs), `${what}: seq ${s.seq} stamped ${new Date(s.startMs).toISOString()}`).toBeLessThan(SLACK_MS);
  }
}

describe('clock jumps under libfaketime', () => {
  it('keeps all footage through a +40 d and a −42 d clock step, with maxAge 1h', async () => {
    const dir = await tempDir('camnode-clock-');
    dirs.push(dir);
    const offsetFile = join(dir, 'faketime');
    await setOffset(offsetFile, '+0');
    const storage = join(dir, 'storage');
    // maxAge 1h with the disk's quota (tens of GB): age is the only reason anything could go.
    const config = baseConfig(dir, [{ id: CAMERA, source: 'testsrc', zone: 'entrance' }], { storage: { maxAge: '1h' } });
    const agent = RunningAgent.start(await writeConfig(dir, config), {
      env: {
        LD_PRELOAD: libfaketime,
        FAKETIME_TIMESTAMP_FILE: offsetFile,
        FAKETIME_NO_CACHE: '1', // re-read the offset on every call: the step takes effect at once
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
        FAKETIME: undefined, // would take precedence over the file
      },
    });
    agents.push(agent);
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');

    // Real time, recorded before any step.
    const before = await segmentsFrom(storage, 1, 4);
    expectStampedAround(before, Date.now(), 'before the steps');
    // The preload really is in the agent and in its ffmpeg (else this test proves nothing).
    expect(await readFile(`/proc/${agent.pid}/maps`, 'utf8')).toContain('libfaketime');
    const ffmpegs = await recorderPids(storage);
    expect(ffmpegs).toHaveLength(1);
    expect(await readFile(`/proc/${ffmpegs[0]}/maps`, 'utf8')).toContain('libfaketime');

    // NTP steps the clock 40 days ahead: everything recorded so far now looks 40 days old.
    let mark = agent.logs.length;
    await setOffset(offsetFile, '+40d');
    const forward = await jumpAfter(agent, mark);
    expect(Math.abs(forward.jumpS - 40 * 86_400)).toBeLessThan(60);
    expect(forward.uncertainBeforeSeq).toBeGreaterThan(before.at(-1)!.seq);
    const ahead = await segmentsFrom(storage, forward.uncertainBeforeSeq, 4);
    // Node's Date.now() really moved: the new footage is stamped 40 days on.
    expectStampedAround(ahead, Date.now() + 40 * DAY, 'after +40d');
    // Several prunes (one per segment) ran on the new time; the old footage is all still there.
    const afterForward = (await listSegments(storage, CAMERA)).map((s) => s.seq);
    for (const s of before) expect(afterForward, `pre-jump seq ${s.seq}`).toContain(s.seq);

    // And back, to 2 days before real time: 42 days back in one step.
    mark = agent.logs.length;
    await setOffset(offsetFile, '-2d');
    const backward = await jumpAfter(agent, mark);
    expect(Math.abs(backward.jumpS + 42 * 86_400)).toBeLessThan(60);
    expect(backward.uncertainBeforeSeq).toBeGreaterThan(ahead.at(-1)!.seq);
    const behind = await segmentsFrom(storage, backward.uncertainBeforeSeq, 4);
    expectStampedAround(behind, Date.now() - 2 * DAY, 'after -2d');

    expect(await agent.stop('SIGTERM')).toBe(0);

    // Nothing was deleted: every seq the ring ever gave out is still on disk, in one run.
    const final = await listSegments(storage, CAMERA);
    const seqs = final.map((s) => s.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    for (const s of [...before, ...ahead, ...behind]) expect(seqs, `seq ${s.seq}`).toContain(s.seq);
    expect(agent.count((l) => l.msg === 'footage deleted by the ring')).toBe(0);
    expect(agent.count((l) => l.msg.startsWith(JUMPED))).toBe(2);
    // The mark is durable: a restart still knows which stamps cannot be trusted.
    const clockJson = JSON.parse(await readFile(join(storage, 'segments', 'clock.json'), 'utf8')) as { uncertainBeforeSeq: number; steps: unknown[] };
    expect(clockJson.uncertainBeforeSeq).toBe(backward.uncertainBeforeSeq);
    expect(clockJson.steps).toHaveLength(2);
  });
});

// Window membership across steps (CONTRACT §4, §5). Which footage a clip holds is judged on the
// real time each frame was recorded: the kernel stamps a file's mtime with its own clock, which
// libfaketime does not touch, so each ring segment's mtime is the real time its last frame was
// written. The clip's frames are matched to the ring's by the MD5 of each decoded picture (the
// synthetic picture and its burnt-in clock change every frame).
const run = promisify(execFile);

/** MD5 of every decoded video frame of a file, in order. */
async function frameHashes(path: string): Promise<string[]> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:v', '-f', 'framemd5', '-'], { maxBuffer: 64 << 20 });
  return stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(',').at(-1)!.trim());
}

interface Recorded { seq: number; realEndMs: number; frames: string[] }

/** The ring's segments with the real time they ended (mtime) and their frames. */
async function recordedFootage(storage: string): Promise<Recorded[]> {
  const out: Recorded[] = [];
  for (const s of await listSegments(storage, CAMERA)) {
    out.push({ seq: s.seq, realEndMs: (await stat(s.path)).mtimeMs, frames: await frameHashes(s.path) });
  }
  return out;
}

async function startFaked(dir: string, offsetFile: string, incident: Record<string, unknown>): Promise<{ agent: RunningAgent; storage: string; socket: string }> {
  const storage = join(dir, 'storage');
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, [{ id: CAMERA, source: 'testsrc', zone: 'entrance' }], { incident, control: { socket } });
  const agent = RunningAgent.start(await writeConfig(dir, config), {
    env: { LD_PRELOAD: libfaketime, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME: undefined },
  });
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return { agent, storage, socket };
}

async function lockNow(socket: string, reason: string): Promise<{ incident: string; extended: boolean; realMs: number }> {
  const realMs = Date.now();
  const reply = await requestLocal(socket, 'lock', { reason, by: 'test' }, 10_000);
  expect(reply.ok, JSON.stringify(reply)).toBe(true);
  return { ...(reply.data as { incident: string; extended: boolean }), realMs };
}

async function sealedClip(dir: string, socket: string, id: string): Promise<{ frames: string[]; manifest: { files: { clock?: string; start: string; end: string }[]; incident: { window: { start: string; end: string } } } }> {
  await waitFor(async () => {
    const reply = await requestLocal(socket, 'incident', { incident: id }, 5_000);
    return reply.ok && (reply.data as { state: string }).state === 'sealed';
  }, `incident ${id} sealed`, 60_000, 250);
  const folder = join(dir, 'storage', 'incidents', id);
  const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as Awaited<ReturnType<typeof sealedClip>>['manifest'];
  return { frames: await frameHashes(join(folder, `${CAMERA}.mp4`)), manifest };
}

/** Every frame of each segment that ended (real time) inside [fromMs, toMs] is in the clip. */
function expectCovers(clip: string[], footage: Recorded[], fromMs: number, toMs: number, what: string): void {
  const inClip = new Set(clip);
  const due = footage.filter((s) => s.realEndMs >= fromMs && s.realEndMs <= toMs);
  expect(due.length, `${what}: segments that ended between ${new Date(fromMs).toISOString()} and ${new Date(toMs).toISOString()}`).toBeGreaterThan(2);
  for (const s of due) {
    const missing = s.frames.filter((f) => !inClip.has(f)).length;
    expect(missing, `${what}: seq ${s.seq} (ended ${new Date(s.realEndMs).toISOString()}) has ${missing} of ${s.frames.length} frames missing from the clip`).toBe(0);
  }
}

describe('windows across clock steps (real recording under libfaketime)', () => {
  it('forward: a lock just after NTP sets the clock an hour on seals the footage really recorded in its pre-roll', async () => {
    const dir = await tempDir('camnode-step-fwd-');
    dirs.push(dir);
    const offsetFile = join(dir, 'faketime');
    await setOffset(offsetFile, '-1h'); // booted with the clock an hour behind
    const { agent, storage, socket } = await startFaked(dir, offsetFile, { preRoll: '8s', postRoll: '3s', maxLength: '1h' });
    await segmentsFrom(storage, 1, 12);

    const mark = agent.logs.length;
    await setOffset(offsetFile, '+0'); // NTP's first sync: an hour forward
    const locked = await lockNow(socket, 'forward step');
    const jump = await jumpAfter(agent, mark);
    expect(Math.abs(jump.jumpS - 3600)).toBeLessThan(60);

    const clip = await sealedClip(dir, socket, locked.incident);
    const footage = await recordedFootage(storage);
    // The pre-roll ran back across the step: the 8 s before the press, really recorded then.
    // (One segment of slack at each end: a segment straddling the edge is taken whole.)
    expectCovers(clip.frames, footage, locked.realMs - 7_000, locked.realMs + 2_000, 'forward step');
    expect(clip.manifest.files[0]!.clock).toBe('stepped');
    expect(await agent.stop('SIGTERM')).toBe(0);
  });

  it('backward: after the clock is set an hour back, a second lock extends the open incident, and the clip runs from the first pre-roll to the second post-roll', async () => {
    const dir = await tempDir('camnode-step-back-');
    dirs.push(dir);
    const offsetFile = join(dir, 'faketime');
    await setOffset(offsetFile, '+0');
    const { agent, storage, socket } = await startFaked(dir, offsetFile, { preRoll: '4s', postRoll: '6s', maxLength: '1h' });
    await segmentsFrom(storage, 1, 6);

    const first = await lockNow(socket, 'before the step');
    await new Promise((r) => setTimeout(r, 2_000));
    const mark = agent.logs.length;
    await setOffset(offsetFile, '-1h');
    await jumpAfter(agent, mark);
    const second = await lockNow(socket, 'after the step');
    expect(second).toMatchObject({ incident: first.incident, extended: true });

    const clip = await sealedClip(dir, socket, first.incident);
    const footage = await recordedFootage(storage);
    expectCovers(clip.frames, footage, first.realMs - 3_000, second.realMs + 5_000, 'backward step');
    // The window is in the new time base: it ends the second post-roll after the second press.
    const endMs = Date.parse(clip.manifest.incident.window.end);
    expect(Math.abs(endMs - (second.realMs - 3_600_000 + 6_000))).toBeLessThan(3_000);
    expect(clip.manifest.files[0]!.clock).toBe('stepped');
    expect(await agent.stop('SIGTERM')).toBe(0);
  });
});
