// Footage on request (CONTRACT §6) end to end, through the real CLI, real ffmpeg recorders, a
// real Mosquitto with TLS and signed commands, and real RTSP cameras (GStreamer):
// - `still` on a synthetic camera is exactly the frame asked for, proved by matching the JPEG
//   against every frame of the segment decoded independently; it is audited, and refused
//   (not_found, conflict, bad_request) where the contract says so;
// - `footage` on a ring with a hole (an RTSP camera gone for a few seconds) lists exactly the
//   contiguous runs of the segment files on disk, their bytes and ends, within bounds too, and a
//   hold in `locked`; `ctl footage` draws the hole;
// - `footage`, `hold`, `still` and `note` over MQTT 5, MQTT 3.1.1 and the local socket, signed
//   by the ops principal (`by` its CN, a typed `--by` kept as onBehalfOf), refused to a viewer
//   and, on the socket, without `--by`;
// - a note on a sealed, synced incident becomes a signed `notes/1.json` beside the clips and
//   upstream, verified by `camnode evidence verify`, and a tampered one fails it.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { signingWith } from '../../src/ops/signer.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult, type LogLine } from '../helpers/agent.js';
import { LineClient, type Reply } from '../helpers/line-client.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { decodeFrames, identifyFrame, lastFrameAtOrBefore } from '../helpers/frames.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments, recorderPids, type SegmentFile } from '../helpers/segments.js';

const run = promisify(execFile);
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const INCIDENT_ID = /^\d{8}T\d{6}Z-[a-z2-7]{4}$/;
const SEGMENT_MS = 1_000;
/** CONTRACT §6: a hole of more than 1.5 segment lengths starts a new range. */
const JOIN_WITHIN_MS = 1.5 * SEGMENT_MS;

const iso = (ms: number): string => new Date(ms).toISOString();
const endOf = (s: SegmentFile): number => s.startMs + s.durationMs;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- agents of this file ---------------------------------------------------------------------

const agents: RunningAgent[] = [];
const dirs: string[] = [];

interface Node { dir: string; storage: string; stateDir: string; socket: string; configPath: string; agent: RunningAgent }

async function startNode(prefix: string, cameras: Record<string, unknown>[], over: Record<string, Record<string, unknown>> = {}, list = { agents, dirs }): Promise<Node> {
  const dir = await tempDir(prefix);
  list.dirs.push(dir);
  const socket = join(dir, 'control.sock');
  const configPath = await writeConfig(dir, baseConfig(dir, cameras, { recording: { segmentSeconds: SEGMENT_MS / 1000 }, control: { socket }, ...over }));
  const agent = RunningAgent.start(configPath);
  list.agents.push(agent);
  try {
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  } catch (err) {
    // Say what the agent said instead (its JSON log is otherwise lost with it).
    const said = agent.logs.filter((l) => l.level >= 40).slice(-10).map((l) => JSON.stringify(l).slice(0, 400)).join('\n');
    throw new Error(`${(err as Error).message}\nexit code: ${agent.proc.exitCode}\n--- last warnings ---\n${said}`);
  }
  return { dir, storage: join(dir, 'storage'), stateDir: join(dir, 'state'), socket, configPath, agent };
}

async function stopNodes(): Promise<void> {
  const running = agents.splice(0);
  for (const a of running) a.killGroup();
  await Promise.all(running.map((a) => a.exited));
  for (const d of dirs.splice(0)) {
    // A recorder orphaned by a failure must not outlive its test.
    for (const pid of await recorderPids(join(d, 'storage'))) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await rm(d, { recursive: true, force: true });
  }
}

/** The camera's finished segments once there are at least `n`. */
function segmentsAtLeast(storage: string, camera: string, n: number, timeoutMs = 30_000): Promise<SegmentFile[]> {
  return waitFor(async () => {
    const segs = await listSegments(storage, camera);
    return segs.length >= n && segs;
  }, `${n} segments of ${camera}`, timeoutMs);
}

async function local(node: Node, cmd: string, args: Record<string, unknown>, timeoutMs = 30_000): Promise<Reply> {
  return requestLocal(node.socket, cmd, args, timeoutMs) as Promise<Reply>;
}

async function auditEntries(stateDir: string): Promise<Record<string, unknown>[]> {
  return (await readFile(join(stateDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

function publicKeyOf(agent: RunningAgent): string {
  const key = agent.find((l: LogLine) => l.msg === 'agent started')?.['publicKey'];
  expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  return key as string;
}

// --- frames, decoded independently ------------------------------------------------------------

/** The finished segment holding `atMs`: starting at or before it and ending after (the latest such). */
function holdingSegment(segs: SegmentFile[], atMs: number): SegmentFile | undefined {
  return segs.filter((s) => s.startMs <= atMs && endOf(s) > atMs).sort((a, b) => b.startMs - a.startMs)[0];
}

// --- 1. still ---------------------------------------------------------------------------------

describe('still on a synthetic camera', () => {
  const CAM = 'desk';
  let node: Node;

  beforeAll(async () => {
    node = await startNode('camnode-footage-still-', [{ id: CAM, source: 'testsrc', zone: 'service-desk' }]);
    await segmentsAtLeast(node.storage, CAM, 4);
  });
  afterAll(stopNodes);

  const still = (atMs: number, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ camera: CAM, at: iso(atMs), purpose: 'incident-review', reason: 'laptop taken at the desk', by: 'desk staff', ...extra });

  it('is exactly the last frame at or before `at` in the segment holding it, with its time, and on the record', async () => {
    const segs = await listSegments(node.storage, CAM);
    const seg = segs[segs.length - 2]!;
    const frames = await decodeFrames(seg.path);
    expect(frames.length).toBeGreaterThanOrEqual(5);
    const mid = Math.floor(frames.length / 2);
    // Between two frames (37 ms after one), and exactly on a frame.
    const offsets = [frames[mid]!.offsetMs + 37, frames[mid + 1]!.offsetMs];
    const made: { at: string; frameAt: string }[] = [];
    for (const offsetMs of offsets) {
      const atMs = seg.startMs + offsetMs;
      expect(holdingSegment(segs, atMs)?.seq, 'the time lies inside this segment').toBe(seg.seq);
      const reply = await local(node, 'still', still(atMs));
      expect(reply.ok, JSON.stringify(reply.error)).toBe(true);
      const data = reply.data as { camera: string; at: string; frameAt: string; contentType: string; jpegBase64: string };
      expect(data).toEqual({ camera: CAM, at: iso(atMs), frameAt: expect.stringMatching(ISO), contentType: 'image/jpeg', jpegBase64: expect.any(String) });
      const jpeg = Buffer.from(data.jpegBase64, 'base64');
      expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');

      const want = lastFrameAtOrBefore(frames, offsetMs);
      expect(want).toBeGreaterThanOrEqual(0);
      const got = await identifyFrame(node.dir, frames, jpeg);
      expect({ offsetMs, frame: got.best }).toEqual({ offsetMs, frame: want });
      // Neighbouring frames differ (moving pattern, burnt-in clock and frame number): no near tie.
      expect(got.secondMad).toBeGreaterThan(got.bestMad * 3 + 1);
      const frameAtMs = Date.parse(data.frameAt);
      expect(frameAtMs).toBeLessThanOrEqual(atMs);
      expect(Math.abs(frameAtMs - (seg.startMs + frames[want]!.offsetMs))).toBeLessThanOrEqual(1);
      made.push({ at: data.at, frameAt: data.frameAt });
    }

    const entries = (await auditEntries(node.stateDir)).filter((e) => e['type'] === 'still');
    expect(entries.map(({ camera, at, frameAt, purpose, reason, by }) => ({ camera, at, frameAt, purpose, reason, by }))).toEqual(
      made.map((m) => ({ camera: CAM, at: m.at, frameAt: m.frameAt, purpose: 'incident-review', reason: 'laptop taken at the desk', by: 'desk staff' })));
    for (const e of entries) expect(e).not.toHaveProperty('signer'); // the socket: no signer
  });

  it('the future, the segment being written and before the oldest footage: not_found naming the nearest time', async () => {
    // The future: the nearest footage is the last frame recorded.
    const listed = await listSegments(node.storage, CAM);
    const futureMs = Date.now() + 3_600_000;
    const future = await local(node, 'still', still(futureMs));
    expect(future).toMatchObject({ ok: false, error: { code: 'not_found', message: expect.stringContaining(`${iso(futureMs)} is in the future`) } });
    const namedLast = Date.parse(/nearest footage: (\S+) \(the last frame before\)/.exec(future.error!.message)?.[1] ?? '');
    expect(namedLast).toBeGreaterThanOrEqual(endOf(listed.at(-1)!) - 1);
    expect(namedLast).toBeLessThanOrEqual(Date.now());

    // The segment being written: just after a segment closes, ask for a time after its end.
    const lastSeq = (await listSegments(node.storage, CAM)).at(-1)!.seq;
    const closed = await waitFor(async () => {
      const fresh = (await listSegments(node.storage, CAM)).filter((s) => s.seq > lastSeq);
      return fresh.length > 0 && fresh.at(-1)!;
    }, 'a segment to close', 10_000, 10);
    const writingMs = endOf(closed) + 5;
    while (Date.now() < writingMs) await sleep(1);
    const writing = await local(node, 'still', still(writingMs));
    expect(writing).toMatchObject({ ok: false, error: { code: 'not_found', message: expect.stringContaining('still being written') } });
    expect(writing.error!.message).toContain(`nearest footage: ${iso(endOf(closed) - 1)} (the last frame before)`);

    // Before the oldest footage: the nearest is the first frame there is.
    const oldest = (await listSegments(node.storage, CAM))[0]!;
    const early = await local(node, 'still', still(oldest.startMs - 60_000));
    expect(early).toMatchObject({ ok: false, error: { code: 'not_found', message: expect.stringContaining(`no footage of ${CAM} at ${iso(oldest.startMs - 60_000)}`) } });
    expect(early.error!.message).toContain(`nearest footage: ${iso(oldest.startMs)} (the first after)`);
  });

  it('two stills of the same camera at once: one is refused conflict', async () => {
    const a = await LineClient.open(node.socket);
    const b = await LineClient.open(node.socket);
    try {
      const segs = await listSegments(node.storage, CAM);
      const atMs = segs[1]!.startMs + 450;
      for (let round = 1; round <= 3; round++) {
        const line = (id: string): string => `${JSON.stringify({ id, cmd: 'still', args: still(atMs) })}\n`;
        // Both requests are written before either reply can be read: they overlap at the agent,
        // which takes requests of different connections side by side.
        const [ra, rb] = await Promise.all([a.ask(line(`a${round}`), 30_000), b.ask(line(`b${round}`), 30_000)]);
        const replies = [ra, rb];
        expect(replies.map((r) => r.id).sort()).toEqual([`a${round}`, `b${round}`]);
        const refused = replies.filter((r) => !r.ok);
        expect(refused, `round ${round}: ${JSON.stringify(replies.map((r) => r.error ?? 'ok'))}`).toHaveLength(1);
        expect(refused[0]!.error).toEqual({ code: 'conflict', message: expect.stringContaining(`a still of ${CAM} is being made`) });
        const made = replies.find((r) => r.ok)!.data as { frameAt: string; jpegBase64: string };
        expect(Date.parse(made.frameAt)).toBeLessThanOrEqual(atMs);
        expect(Buffer.from(made.jpegBase64, 'base64').subarray(0, 2).toString('hex')).toBe('ffd8');
      }
      // Once it is done, the next one is made.
      expect((await local(node, 'still', still(atMs))).ok).toBe(true);
    } finally {
      a.close();
      b.close();
    }
  });

  it('without `by` on the socket, or with an unknown purpose: bad_request naming the field; nothing audited', async () => {
    const segs = await listSegments(node.storage, CAM);
    const atMs = segs[1]!.startMs + 300;
    const before = (await auditEntries(node.stateDir)).filter((e) => e['type'] === 'still').length;
    const { by: _by, ...noBy } = still(atMs);
    expect(await local(node, 'still', noBy)).toMatchObject({ ok: false, error: { code: 'bad_request', message: 'by: required (who asks)' } });
    const purpose = await local(node, 'still', still(atMs, { purpose: 'curiosity' }));
    expect(purpose).toMatchObject({ ok: false, error: { code: 'bad_request', message: expect.stringMatching(/^still: purpose: /) } });
    expect((await auditEntries(node.stateDir)).filter((e) => e['type'] === 'still')).toHaveLength(before);
  });
});

// --- 2. footage on a ring with a hole ---------------------------------------------------------

interface CameraFootage {
  id: string; oldest: string | null; newest: string | null; bytes: number;
  ranges: { start: string; end: string }[];
  locked: { start: string; end: string; incident: string }[];
  kept: { start: string; end: string; incident: string }[];
  truncated: boolean;
}

/** Contiguous runs of segments (sorted by start): a hole of more than 1.5 segment lengths starts a new one. */
function runsOf(segs: SegmentFile[]): { startMs: number; endMs: number }[] {
  const runs: { startMs: number; endMs: number }[] = [];
  for (const s of [...segs].sort((a, b) => a.startMs - b.startMs)) {
    const last = runs[runs.length - 1];
    if (last && s.startMs - last.endMs <= JOIN_WITHIN_MS) last.endMs = Math.max(last.endMs, endOf(s));
    else runs.push({ startMs: s.startMs, endMs: endOf(s) });
  }
  return runs;
}

/**
 * What a `footage` reply must say of one camera, from its segment files listed just before
 * (`before`) and just after (`after`) the request: every file in both lists counts; one that
 * closed meanwhile counts if the reply reached it (`newest`), one pruned meanwhile if the reply
 * still had it (`oldest`). Optionally only the files overlapping [fromMs, toMs).
 */
function expectedFootage(reply: CameraFootage, before: SegmentFile[], after: SegmentFile[], bounds: { fromMs?: number; toMs?: number } = {}): Omit<CameraFootage, 'locked' | 'kept'> {
  const inBefore = new Set(before.map((s) => s.seq));
  const inAfter = new Set(after.map((s) => s.seq));
  const oldest = reply.oldest === null ? Infinity : Date.parse(reply.oldest);
  const newest = reply.newest === null ? -Infinity : Date.parse(reply.newest);
  const all = new Map([...before, ...after].map((s) => [s.seq, s]));
  const files = [...all.values()].filter((s) => {
    if (bounds.fromMs !== undefined && endOf(s) <= bounds.fromMs) return false;
    if (bounds.toMs !== undefined && s.startMs >= bounds.toMs) return false;
    if (inBefore.has(s.seq) && inAfter.has(s.seq)) return true;
    if (!inBefore.has(s.seq)) return endOf(s) <= newest;
    return s.startMs >= oldest;
  }).sort((a, b) => a.startMs - b.startMs);
  return {
    id: reply.id,
    oldest: files.length ? iso(files[0]!.startMs) : null,
    newest: files.length ? iso(Math.max(...files.map(endOf))) : null,
    bytes: files.reduce((n, s) => n + s.bytes, 0),
    ranges: runsOf(files).map((r) => ({ start: iso(r.startMs), end: iso(r.endMs) })),
    truncated: false,
  };
}

describe('footage on a ring with a hole (two RTSP cameras, one gone for a while)', () => {
  const CAMS = ['north', 'south'];
  const rig = useRtspRig(CAMS);

  it('ranges are the contiguous runs of the files on disk, bounds count overlapping segments, a hold shows locked, ctl draws the hole', async () => {
    const node = await startNode('camnode-footage-holes-', CAMS.map((id) => ({ id, source: rig.servers.get(id)!.url, zone: 'entrance' })), {}, rig);
    for (const id of CAMS) await segmentsAtLeast(node.storage, id, 3);

    // south's camera goes away for ~4 s and comes back.
    const south = rig.servers.get('south')!;
    await south.stop();
    const stoppedAt = Date.now();
    await sleep(4_000);
    const restartAt = Date.now();
    const mark = node.agent.logs.length;
    await south.restart();
    await waitFor(() => node.agent.logs.slice(mark).find((l) => l.msg === 'recording' && l['camera'] === 'south'), 'south recording again', 30_000);
    const resumed = (await listSegments(node.storage, 'south')).at(-1)?.seq ?? 0;
    await waitFor(async () => (await listSegments(node.storage, 'south')).filter((s) => s.seq > resumed).length >= 3, 'three segments of south after the hole', 30_000);

    const ask = async (args: Record<string, unknown> = {}): Promise<{ reply: CameraFootage[]; before: Map<string, SegmentFile[]>; after: Map<string, SegmentFile[]> }> => {
      const before = new Map(await Promise.all(CAMS.map(async (id) => [id, await listSegments(node.storage, id)] as const)));
      const r = await local(node, 'footage', args);
      const after = new Map(await Promise.all(CAMS.map(async (id) => [id, await listSegments(node.storage, id)] as const)));
      expect(r.ok, JSON.stringify(r.error)).toBe(true);
      return { reply: (r.data as { cameras: CameraFootage[] }).cameras, before, after };
    };

    const all = await ask();
    expect(all.reply.map((c) => c.id)).toEqual(CAMS);
    for (const cam of all.reply) {
      expect(cam).toEqual({ ...expectedFootage(cam, all.before.get(cam.id)!, all.after.get(cam.id)!), locked: [], kept: [] });
    }
    const [northF, southF] = all.reply as [CameraFootage, CameraFootage];
    expect(northF.ranges).toHaveLength(1);
    expect(southF.ranges.length).toBeGreaterThanOrEqual(2);
    // The hole lies between two of south's ranges and spans the time its camera was away.
    const holes = southF.ranges.slice(1).map((r, i) => ({ start: Date.parse(southF.ranges[i]!.end), end: Date.parse(r.start) }));
    const hole = holes.find((h) => h.start <= stoppedAt + 500 && h.end >= restartAt);
    expect(hole, `a hole over [${iso(stoppedAt)}, ${iso(restartAt)}] among ${JSON.stringify(southF.ranges)}`).toBeDefined();
    expect(hole!.end - hole!.start).toBeGreaterThanOrEqual(3_000);

    // A still inside the hole: not_found naming the footage either side.
    const inHole = await local(node, 'still', { camera: 'south', at: iso((hole!.start + hole!.end) / 2), purpose: 'incident-review', reason: 'r', by: 'desk staff' });
    expect(inHole).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(inHole.error!.message).toContain(`nearest footage: ${iso(hole!.start - 1)} (the last frame before) or ${iso(hole!.end)} (the first after)`);

    // Bounds: from inside the last segment before the hole to inside the first after it; only
    // segments overlapping them count (whole).
    const fromMs = Date.parse(southF.ranges[0]!.end) - 100;
    const toMs = Date.parse(southF.ranges[1]!.start) + 100;
    const bounded = await ask({ from: iso(fromMs), to: iso(toMs) });
    for (const cam of bounded.reply) {
      expect(cam).toEqual({ ...expectedFootage(cam, bounded.before.get(cam.id)!, bounded.after.get(cam.id)!, { fromMs, toMs }), locked: [], kept: [] });
    }
    const southBounded = bounded.reply[1]!;
    const southFiles = (await listSegments(node.storage, 'south')).map((s) => `${s.seq}:${iso(s.startMs)}+${s.durationMs}`).join(' ');
    expect(southBounded.ranges, southFiles).toHaveLength(2);
    expect(Date.parse(southBounded.oldest!)).toBeLessThan(fromMs);
    expect(Date.parse(southBounded.oldest!), southFiles).toBeGreaterThan(Date.parse(southF.oldest!));
    expect(southBounded.bytes).toBeLessThan(southF.bytes);
    // One camera only.
    const one = await local(node, 'footage', { camera: 'north', from: iso(fromMs), to: iso(toMs) });
    expect((one.data as { cameras: CameraFootage[] }).cameras).toEqual([bounded.reply[0]]);

    // The readable timeline: both cameras, and the hole drawn in south's bar.
    const text = await runCli(['ctl', 'footage', '--local', '--socket', node.socket]);
    expect(text.code, text.stderr).toBe(0);
    // Each bar between the camera's own first and last footage: the cameras started and last
    // closed a segment at slightly different times, so either end of a bar may be empty.
    const bar = (id: string): string => {
      const line = text.stdout.split('\n').find((l) => l.startsWith(`${id}  `));
      expect(line, `a bar for ${id} in\n${text.stdout}`).toBeDefined();
      return line!.slice(id.length + 2, id.length + 2 + 60).replace(/^·+|·+$/g, '');
    };
    expect(bar('south')).toMatch(/^█[█·]*·{3,}[█·]*█$/);
    expect(bar('north')).toMatch(/^█+$/);
    expect(text.stdout).toMatch(/^south:\n {2}hole /m);
    const json = await runCli(['ctl', 'footage', '--local', '--socket', node.socket, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as { cameras: CameraFootage[] };
    expect(Object.keys(parsed)).toEqual(['cameras']);
    expect(parsed.cameras.map((c) => c.id)).toEqual(CAMS);
    for (const [i, cam] of parsed.cameras.entries()) {
      expect(Object.keys(cam).sort()).toEqual(['bytes', 'id', 'kept', 'locked', 'newest', 'oldest', 'ranges', 'truncated']);
      // The same footage as before, grown at the newest end only.
      const earlier = all.reply[i]!;
      expect(cam.oldest).toBe(earlier.oldest);
      expect(cam.ranges.slice(0, -1)).toEqual(earlier.ranges.slice(0, -1));
      expect(cam.ranges.at(-1)!.start).toBe(earlier.ranges.at(-1)!.start);
      expect(cam.bytes).toBeGreaterThanOrEqual(earlier.bytes);
    }

    // A hold made now shows in `locked` on both cameras, with its incident id.
    const holdFrom = Date.now() - 2_000;
    const holdTo = Date.now() + 60_000;
    const held = await local(node, 'hold', { from: iso(holdFrom), to: iso(holdTo), reason: 'reported later', by: 'desk staff' });
    expect(held).toMatchObject({ ok: true, data: { incident: expect.stringMatching(INCIDENT_ID), extended: false } });
    const incident = (held.data as { incident: string }).incident;
    const withHold = await ask();
    for (const cam of withHold.reply) {
      expect(cam).toEqual({
        ...expectedFootage(cam, withHold.before.get(cam.id)!, withHold.after.get(cam.id)!),
        locked: [{ start: iso(holdFrom), end: iso(holdTo), incident }], kept: [],
      });
    }
  });
});

// --- 3. all four commands over each transport -------------------------------------------------

describe('footage, hold, still and note over MQTT 5, MQTT 3.1.1 and the local socket', () => {
  const NODE = 'node-1';
  const CAM = 'desk';
  const OPS = 'ops:otto';
  const VIEWER = 'ops:vera';
  let broker: Mosquitto;
  let node: Node;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ nodes: [NODE], ops: ['otto:ops', 'vera:viewer'] });
    const files = broker.certFor(NODE);
    node = await startNode('camnode-footage-fleet-', [{ id: CAM, source: 'testsrc', zone: 'service-desk' }], {
      node: { id: NODE },
      mqtt: { url: broker.url, ca: broker.caFile, cert: files.cert, key: files.key, keepalive: '2s', stateInterval: '60s' },
    });
    await node.agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
    await segmentsAtLeast(node.storage, CAM, 4);
  }, 90_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await stopNodes();
    await stopAllMosquittos();
  });

  type Transport = '5' | '3.1.1' | 'local';
  /** `camnode ctl CMD <where> ...rest` as `cn` (for MQTT), with the node's place taken by NODE or --local. */
  function ctl(transport: Transport, cn: string, cmd: string, rest: string[]): Promise<CliResult> {
    if (transport === 'local') return runCli(['ctl', cmd, '--local', '--socket', node.socket, ...rest]);
    const files = broker.certFor(cn);
    return runCli(['ctl', cmd, NODE, ...rest, '--broker', broker.url, '--ca', broker.caFile, '--cert', files.cert, '--key', files.key, '--mqtt-version', transport]);
  }
  async function ctlJson<T>(transport: Transport, cmd: string, rest: string[]): Promise<T> {
    const r = await ctl(transport, OPS, cmd, [...rest, '--json']);
    expect(r.code, `ctl ${cmd} over ${transport}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout) as T;
  }
  /** An open incident to add notes to: a hold made over the socket. */
  async function anIncident(): Promise<{ id: string }> {
    const r = await local(node, 'hold', { from: iso(Date.now() - 2_000), to: iso(Date.now() + 600_000), reason: 'to note on', by: 'desk staff' });
    expect(r.ok, JSON.stringify(r.error)).toBe(true);
    return { id: (r.data as { incident: string }).incident };
  }
  /** An `at` inside a finished segment. */
  async function pastAt(): Promise<string> {
    const segs = await listSegments(node.storage, CAM);
    return iso(segs[segs.length - 2]!.startMs + 400);
  }

  describe.each(['5', '3.1.1', 'local'] as Transport[])('over %s', (transport) => {
    const signed = transport !== 'local';
    const typedBy = 'J. Doe (desk)';
    const signer = { cn: OPS, role: 'ops', certSha256: expect.stringMatching(/^[0-9a-f]{64}$/) };

    it('footage, hold, still and note succeed; signed: `by` is the signer, a typed --by is onBehalfOf', async () => {
      const footage = await ctlJson<{ cameras: CameraFootage[] }>(transport, 'footage', []);
      expect(footage.cameras).toEqual([{
        id: CAM, oldest: expect.stringMatching(ISO), newest: expect.stringMatching(ISO), bytes: expect.any(Number),
        ranges: [{ start: expect.stringMatching(ISO), end: expect.stringMatching(ISO) }], locked: expect.any(Array), kept: [], truncated: false,
      }]);
      expect(footage.cameras[0]!.bytes).toBeGreaterThan(0);
      expect(footage.cameras[0]!.ranges[0]!.start).toBe(footage.cameras[0]!.oldest);

      const from = iso(Date.now() - 3_000);
      const to = iso(Date.now() + 600_000);
      const held = await ctlJson<{ incident: string; extended: boolean; missing: unknown[]; uncertain: unknown[] }>(transport, 'hold',
        ['--from', from, '--to', to, '--reason', `held over ${transport}`, '--by', typedBy]);
      expect(held).toEqual({ incident: expect.stringMatching(INCIDENT_ID), extended: false, missing: [], uncertain: [] });
      const incident = await ctlJson<{ id: string; kind: string; state: string; cameras: string[]; window: unknown; triggers: unknown[] }>(transport, 'incident', [held.incident]);
      expect(incident).toMatchObject({ id: held.incident, node: NODE, kind: 'hold', state: 'active', cameras: [CAM], window: { start: from, end: to }, notes: [] });
      expect(incident.triggers).toEqual([signed
        ? { at: expect.stringMatching(ISO), via: 'mqtt', by: OPS, onBehalfOf: typedBy, signer, reason: `held over ${transport}` }
        : { at: expect.stringMatching(ISO), via: 'local', by: typedBy, reason: `held over ${transport}` }]);
      const afterHold = await ctlJson<{ cameras: CameraFootage[] }>(transport, 'footage', ['--camera', CAM]);
      expect(afterHold.cameras[0]!.locked).toContainEqual({ start: from, end: to, incident: held.incident });

      const at = await pastAt();
      const out = join(node.dir, `still-${transport}.jpg`);
      const shot = await ctlJson<Record<string, unknown>>(transport, 'still', [CAM, '--at', at, '--purpose', 'suspension-notice', '--reason', `still over ${transport}`, '--by', typedBy, '-o', out]);
      const jpeg = await readFile(out);
      expect(shot).toEqual({ camera: CAM, at, frameAt: expect.stringMatching(ISO), contentType: 'image/jpeg', file: out, bytes: jpeg.length });
      expect(Date.parse(shot['frameAt'] as string)).toBeLessThanOrEqual(Date.parse(at));
      expect(Date.parse(at) - Date.parse(shot['frameAt'] as string)).toBeLessThan(1_000);
      expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
      expect(jpeg.subarray(-2).toString('hex')).toBe('ffd9');
      // One JPEG picture at the camera's own size.
      const size = async (file: string): Promise<{ codec_name: string; width: number; height: number }[]> =>
        (JSON.parse((await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', file])).stdout) as { streams: { codec_name: string; width: number; height: number }[] }).streams;
      const [recorded] = await size((await listSegments(node.storage, CAM))[0]!.path);
      expect(await size(out)).toEqual([{ codec_name: 'mjpeg', width: recorded!.width, height: recorded!.height }]);

      const noted = await ctlJson<{ id: string; notes: unknown[] }>(transport, 'note', [held.incident, '--text', `noted over ${transport}`, '--by', typedBy]);
      expect(noted).toMatchObject({ id: held.incident, state: 'active' });
      expect(noted.notes).toEqual([{ at: expect.stringMatching(ISO), by: signed ? OPS : typedBy, text: `noted over ${transport}` }]);
      expect(await ctlJson(transport, 'incident', [held.incident])).toEqual(noted);

      const audit = await auditEntries(node.stateDir);
      const stillEntry = audit.filter((e) => e['type'] === 'still').at(-1);
      const noteEntry = audit.filter((e) => e['type'] === 'note').at(-1);
      if (signed) {
        expect(stillEntry).toMatchObject({ camera: CAM, at, frameAt: shot['frameAt'], purpose: 'suspension-notice', reason: `still over ${transport}`, by: OPS, onBehalfOf: typedBy, signer });
        expect(noteEntry).toMatchObject({ incident: held.incident, note: { by: OPS, text: `noted over ${transport}` }, onBehalfOf: typedBy, signer });
      } else {
        expect(stillEntry).toMatchObject({ camera: CAM, at, frameAt: shot['frameAt'], purpose: 'suspension-notice', reason: `still over ${transport}`, by: typedBy });
        expect(stillEntry).not.toHaveProperty('signer');
        expect(noteEntry).toMatchObject({ incident: held.incident, note: { by: typedBy, text: `noted over ${transport}` } });
        expect(noteEntry).not.toHaveProperty('onBehalfOf');
      }
    });

    if (signed) it('signed without --by: the signer alone names who asks', async () => {
      const held = await ctlJson<{ incident: string }>(transport, 'hold', ['--from', iso(Date.now() - 2_000), '--to', iso(Date.now() + 600_000), '--reason', 'no typed by']);
      const noted = await ctlJson<{ triggers: unknown[]; notes: unknown[] }>(transport, 'note', [held.incident, '--text', 'plain']);
      expect(noted.triggers).toEqual([{ at: expect.stringMatching(ISO), via: 'mqtt', by: OPS, signer, reason: 'no typed by' }]);
      expect(noted.notes).toEqual([{ at: expect.stringMatching(ISO), by: OPS, text: 'plain' }]);
      const out = join(node.dir, `still-noby-${transport}.jpg`);
      await ctlJson(transport, 'still', [CAM, '--at', await pastAt(), '--purpose', 'incident-review', '--reason', 'no typed by', '-o', out]);
      const entry = (await auditEntries(node.stateDir)).filter((e) => e['type'] === 'still').at(-1)!;
      expect(entry).toMatchObject({ by: OPS, signer, reason: 'no typed by' });
      expect(entry).not.toHaveProperty('onBehalfOf');
    });
  });

  it('over the socket without --by, hold, still and note are refused bad_request (exit 2); a still of the future is not_found (exit 1)', async () => {
    const active = await anIncident();
    const before = await auditEntries(node.stateDir);
    const refusals = [
      await ctl('local', OPS, 'hold', ['--from', iso(Date.now() - 2_000), '--to', iso(Date.now() + 60_000), '--reason', 'r']),
      await ctl('local', OPS, 'still', [CAM, '--at', await pastAt(), '--purpose', 'incident-review', '--reason', 'r', '-o', join(node.dir, 'never.jpg')]),
      await ctl('local', OPS, 'note', [active.id, '--text', 't']),
    ];
    for (const [i, cmd] of ['hold', 'still', 'note'].entries()) {
      expect(refusals[i]!.code, `${cmd}: ${refusals[i]!.stderr}`).toBe(2);
      expect(refusals[i]!.stderr).toContain(`${cmd} refused (bad_request): by: required (who asks)`);
    }
    // A still of the future: not_found, exit 1, and no file written.
    const future = await ctl('local', OPS, 'still', [CAM, '--at', iso(Date.now() + 3_600_000), '--purpose', 'incident-review', '--reason', 'r', '--by', 'desk staff', '-o', join(node.dir, 'never.jpg')]);
    expect(future.code, future.stderr).toBe(1);
    expect(future.stderr).toMatch(/still refused \(not_found\): \S+ is in the future; nearest footage: /);
    await expect(readFile(join(node.dir, 'never.jpg'))).rejects.toThrow();
    expect((await auditEntries(node.stateDir)).length).toBe(before.length);
  });

  it('a viewer may run footage; hold, still and note are forbidden to it', async () => {
    const seen = await ctl('5', VIEWER, 'footage', ['--json']);
    expect(seen.code, seen.stderr).toBe(0);
    expect((JSON.parse(seen.stdout) as { cameras: { id: string }[] }).cameras.map((c) => c.id)).toEqual([CAM]);

    const active = await anIncident();
    const at = await pastAt();
    const holdArgs = { from: iso(Date.now() - 2_000), to: iso(Date.now() + 60_000), reason: 'r' };
    const stillArgs = { camera: CAM, at, purpose: 'incident-review', reason: 'r' };
    const noteArgs = { incident: active.id, text: 't' };
    const before = (await auditEntries(node.stateDir)).filter((e) => ['hold', 'still', 'note'].includes(e['type'] as string)).length;

    // Through ctl the broker's ACL already stops a viewer's cmd/hold, cmd/still, cmd/note (MQTT 5: not authorized).
    for (const [cmd, rest] of [
      ['hold', ['--from', holdArgs.from, '--to', holdArgs.to, '--reason', 'r']],
      ['still', [CAM, '--at', at, '--purpose', 'incident-review', '--reason', 'r', '-o', join(node.dir, 'viewer.jpg')]],
      ['note', [active.id, '--text', 't']],
    ] as [string, string[]][]) {
      const r = await ctl('5', VIEWER, cmd, rest);
      expect(r.code, `${cmd}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/Not authorized/);
    }

    // Signed by the viewer and carried by someone the ACL lets publish, the node itself refuses
    // them, answering on the viewer's own reply topic.
    const tls = (cn: string) => broker.tls(cn);
    const carrier = await mqtt.connectAsync(broker.url, { ...tls(OPS), protocolVersion: 5, clientId: `t-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
    const vera = await mqtt.connectAsync(broker.url, { ...tls(VIEWER), protocolVersion: 5, clientId: `t-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
    clients.push(carrier, vera);
    const got = new Map<string, unknown>();
    vera.on('message', (topic, payload) => got.set(topic, JSON.parse(payload.toString('utf8'))));
    await vera.subscribeAsync(`camnode/${NODE}/reply/${VIEWER}/#`, { qos: 1 });
    const files = broker.certFor(VIEWER);
    const veraSigning = signingWith({ certPem: await readFile(files.cert, 'utf8'), keyPem: await readFile(files.key, 'utf8') });
    for (const [cmd, args] of [['hold', holdArgs], ['still', stillArgs], ['note', noteArgs], ['footage', {}]] as [string, Record<string, unknown>][]) {
      const replyTo = `camnode/${NODE}/reply/${VIEWER}/t-${randomUUID()}`;
      await carrier.publishAsync(`camnode/${NODE}/cmd/${cmd}`, JSON.stringify({ jws: await veraSigning.sign(NODE, cmd, args, replyTo) }), { qos: 1 });
      const reply = await waitFor(() => got.get(replyTo), `the node's answer to the viewer's ${cmd}`, 10_000, 20);
      if (cmd === 'footage') expect(reply).toMatchObject({ ok: true, data: { cameras: [{ id: CAM }] } });
      else expect(reply).toEqual({ ok: false, error: { code: 'forbidden', message: `${VIEWER} (viewer) may not ${cmd}` } });
    }
    expect((await auditEntries(node.stateDir)).filter((e) => ['hold', 'still', 'note'].includes(e['type'] as string))).toHaveLength(before);
  });

  it('the agent logged no errors', () => {
    expect(node.agent.logs.filter((l) => l.level >= 50)).toEqual([]);
    expect(node.agent.proc.exitCode).toBeNull();
  });
});

// --- 4. a note on a sealed incident -----------------------------------------------------------

describe('a note on a sealed, synced incident', () => {
  const NODE = 'branch-7';
  const CAM = 'desk';
  let node: Node;
  let nas: string;

  beforeAll(async () => {
    const dir = await tempDir('camnode-footage-nas-');
    dirs.push(dir);
    nas = join(dir, 'nas');
    await mkdir(nas); // camnode never creates the share's folder
    node = await startNode('camnode-footage-note-', [{ id: CAM, source: 'testsrc', zone: 'service-desk' }], {
      node: { id: NODE },
      upstream: { type: 'dir', path: nas },
    });
    await segmentsAtLeast(node.storage, CAM, 4);
  });
  afterAll(stopNodes);

  const incidentOf = async (id: string): Promise<{ state: string; notes: unknown[] }> => {
    const r = await local(node, 'incident', { incident: id });
    expect(r.ok, JSON.stringify(r.error)).toBe(true);
    return r.data as { state: string; notes: unknown[] };
  };

  it('is signed as notes/1.json beside the clips, synced again, and verified; tampered, it fails', async () => {
    const segs = await listSegments(node.storage, CAM);
    const held = await local(node, 'hold', { from: iso(segs[1]!.startMs + 100), to: iso(segs[2]!.startMs + 500), reason: 'bag reported stolen', by: 'desk staff' });
    expect(held).toMatchObject({ ok: true, data: { incident: expect.stringMatching(INCIDENT_ID), missing: [] } });
    const id = (held.data as { incident: string }).incident;
    await waitFor(async () => (await incidentOf(id)).state === 'synced', 'the hold sealed and synced', 60_000, 300);
    // Sealed and synced, it is kept as clips: `footage` says so.
    const kept = await local(node, 'footage', { camera: CAM });
    const window = { start: iso(segs[1]!.startMs + 100), end: iso(segs[2]!.startMs + 500) };
    expect((kept.data as { cameras: CameraFootage[] }).cameras[0]).toMatchObject({ id: CAM, locked: [], kept: [{ ...window, incident: id }] });
    const upstream = join(nas, 'incidents', NODE, id);
    const syncedFiles = (await readdir(upstream)).sort();
    expect(syncedFiles).toEqual([`${CAM}.mp4`, 'manifest.json']);

    const text = 'Suspect left through the north door at 15:02; the bag was returned.';
    const noted = await local(node, 'note', { incident: id, text, by: 'branch manager' });
    expect(noted.ok, JSON.stringify(noted.error)).toBe(true);
    const incident = noted.data as { id: string; kind: string; state: string; notes: unknown[] };
    expect(incident).toMatchObject({ id, kind: 'hold', state: 'sealed' });
    expect(incident.notes).toEqual([{ at: expect.stringMatching(ISO), by: 'branch manager', text, record: 1 }]);

    const sealedDir = join(node.storage, 'incidents', id);
    const recordBytes = await readFile(join(sealedDir, 'notes', '1.json'));
    const record = JSON.parse(recordBytes.toString('utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({
      // The note as the incident has it, less `record` (the record's own number is `n`).
      incident: id, node: NODE, n: 1, note: { at: (incident.notes[0] as { at: string }).at, by: 'branch manager', text },
      signature: { alg: 'ed25519', publicKey: publicKeyOf(node.agent), value: expect.any(String) },
    });
    expect(record['note']).toEqual({ at: (incident.notes[0] as { at: string }).at, by: 'branch manager', text });

    // The synced incident is synced again: the record goes up, byte for byte.
    await waitFor(async () => (await incidentOf(id)).state === 'synced', 'the incident synced again', 60_000, 300);
    expect((await readFile(join(upstream, 'notes', '1.json'))).equals(recordBytes)).toBe(true);
    expect((await readdir(upstream)).sort()).toEqual([`${CAM}.mp4`, 'manifest.json', 'notes']);

    const key = publicKeyOf(node.agent);
    for (const dir of [sealedDir, upstream]) {
      const verified = await runCli(['evidence', 'verify', dir, '--key', key]);
      expect(verified.code, verified.stdout + verified.stderr).toBe(0);
      expect(verified.stdout).toMatch(/^ok +note notes\/1\.json: signed note by branch manager at \S+ verifies under the trusted key$/m);
    }

    // Its text changed in a copy: the record no longer verifies.
    const copy = join(node.dir, 'tampered');
    await cp(upstream, copy, { recursive: true });
    await writeFile(join(copy, 'notes', '1.json'), JSON.stringify({ ...record, note: { ...(record['note'] as object), text: 'The bag was never found.' } }, null, 2));
    const tampered = await runCli(['evidence', 'verify', copy, '--key', key]);
    expect(tampered.code, tampered.stdout + tampered.stderr).toBe(1);
    expect(tampered.stdout).toMatch(/^FAILED +note notes\/1\.json: /m);
    expect(tampered.stdout).not.toMatch(/^FAILED +(file|signature|manifest)/m);
  });
});
