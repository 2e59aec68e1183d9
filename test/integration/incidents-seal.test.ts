// Incidents end to end through the real CLI (CONTRACT §1, §3, §4): a real RTSP camera recorded
// by real ffmpeg, locks made with `camnode ctl lock --local`, clips sealed by the agent and
// checked from the outside with ffprobe, `camnode evidence verify` and `camnode audit verify`.
// Also the extension rule (one incident, capped at maxLength) and the ring under pressure with
// an active incident (its range survives the wrap, older unlocked footage goes; sealed or
// released by force, its footage goes back to the ring).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { useRtspRig } from '../helpers/rig.js';
// Extra cameras of one test; the rig stops every RTSP server after the file.
import { startRtspServer, type RtspServer } from '../helpers/rtsp-server.js';
import { listSegments, probeDuration } from '../helpers/segments.js';

const SEGMENT_MS = 1_000;
// A segment is stamped when ffmpeg reports it closed: on a busy 2-core machine that lands a
// few hundred ms late, so "within one segment" is one segment plus this much jitter.
const JITTER_MS = 600;
const CAMERAS = ['front', 'back'];

interface Incident {
  id: string;
  node: string;
  triggers: { at: string; via: string; by?: string; reason?: string }[];
  cameras: string[];
  window: { start: string; end: string };
  state: string;
  urgent: boolean;
}
interface ManifestFile { name: string; camera: string; bytes: number; sha256: string; start: string; end: string; gaps: { start: string; end: string }[] }
interface Manifest {
  incident: Incident;
  files: ManifestFile[];
  clock: { synced: boolean };
  audit: { seq: number; head: string };
  agent: { version: string };
  signature: { alg: string; publicKey: string; value: string };
}
type AuditEntry = { seq: number; prev: string; ts: string; type: string; [k: string]: unknown };

interface Node {
  dir: string;
  configPath: string;
  storage: string;
  stateDir: string;
  socket: string;
  agent: RunningAgent;
  publicKey: string;
}

const { servers, agents, dirs } = useRtspRig(CAMERAS);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const ms = (isoTime: string) => Date.parse(isoTime);

async function startNode(over: Record<string, Record<string, unknown>> = {}, sources = servers): Promise<Node> {
  const dir = await tempDir('camnode-incidents-');
  dirs.push(dir);
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: sources.get(id)!.url, zone: 'entrance' })), {
    incident: { preRoll: '3s', postRoll: '3s', maxLength: '1h' },
    control: { socket },
    ...over,
  });
  const configPath = await writeConfig(dir, config);
  const agent = RunningAgent.start(configPath);
  agents.push(agent);
  const started = await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  const node: Node = {
    dir, configPath, socket, agent,
    storage: join(dir, 'storage'),
    stateDir: join(dir, 'state'),
    publicKey: String(started['publicKey']),
  };
  return node;
}

/** Enough finished footage on every camera for a pre-roll of `seconds` to find some. */
async function recordedFor(node: Node, seconds: number, cameras = CAMERAS): Promise<void> {
  for (const c of cameras) {
    await waitFor(async () => (await listSegments(node.storage, c)).length >= seconds + 1, `${seconds + 1} segments of ${c}`, 30_000);
  }
}

/** `camnode ctl <sub> --local --config <node's config> …` */
function ctl(node: Node, sub: string, ...args: string[]): Promise<CliResult> {
  return runCli(['ctl', sub, '--local', '--config', node.configPath, ...args]);
}

async function ctlJson<T>(node: Node, sub: string, ...args: string[]): Promise<T> {
  const r = await ctl(node, sub, '--json', ...args);
  expect(r.code, `ctl ${sub} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** A quick read over the socket (no CLI spawn) where the test's timing matters. */
async function readIncident(node: Node, id: string): Promise<Incident> {
  const reply = await requestLocal(node.socket, 'incident', { incident: id }, 5_000);
  expect(reply.ok, JSON.stringify(reply)).toBe(true);
  return reply.data as Incident;
}

async function listIncidents(node: Node): Promise<Incident[]> {
  return (await ctlJson<{ incidents: Incident[] }>(node, 'incidents')).incidents;
}

function waitForState(node: Node, id: string, state: string, timeoutMs = 30_000): Promise<Incident> {
  return waitFor(async () => {
    const i = await readIncident(node, id);
    return i.state === state && i;
  }, `incident ${id} ${state}`, timeoutMs, 250);
}

async function auditEntries(node: Node): Promise<AuditEntry[]> {
  const text = await readFile(join(node.stateDir, 'audit.log'), 'utf8');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry);
}

async function readManifest(node: Node, id: string): Promise<{ manifest: Manifest; bytes: Buffer }> {
  const bytes = await readFile(join(node.storage, 'incidents', id, 'manifest.json'));
  return { manifest: JSON.parse(bytes.toString('utf8')) as Manifest, bytes };
}

/**
 * Each camera's clip plays, and covers the window to within one segment at each end: its
 * footage starts no later than the window's start and no more than a segment before it, and
 * likewise at the end; ffprobe's duration agrees with the manifest's span.
 */
async function expectClipsCoverWindow(node: Node, incident: Incident, cameras: string[]): Promise<Manifest> {
  const { manifest } = await readManifest(node, incident.id);
  const ws = ms(incident.window.start);
  const we = ms(incident.window.end);
  expect(manifest.files.map((f) => f.camera).sort()).toEqual([...cameras].sort());
  for (const f of manifest.files) {
    const path = join(node.storage, 'incidents', incident.id, f.name);
    expect(f.name).toBe(`${f.camera}.mp4`);
    expect(existsSync(path), path).toBe(true);
    const seconds = await probeDuration(path);
    expect(seconds, `ffprobe ${path}`).not.toBeNull();
    const span = ms(f.end) - ms(f.start);
    const where = `${f.camera}: footage ${f.start}..${f.end}, window ${incident.window.start}..${incident.window.end}, ffprobe ${seconds} s`;
    expect(ms(f.start), where).toBeLessThanOrEqual(ws + JITTER_MS);
    expect(ms(f.start), where).toBeGreaterThanOrEqual(ws - SEGMENT_MS - JITTER_MS);
    expect(ms(f.end), where).toBeGreaterThanOrEqual(we - JITTER_MS);
    expect(ms(f.end), where).toBeLessThanOrEqual(we + SEGMENT_MS + JITTER_MS);
    expect(Math.abs(seconds! * 1000 - span), where).toBeLessThanOrEqual(JITTER_MS);
    expect(seconds! * 1000, where).toBeGreaterThanOrEqual(we - ws - 2 * JITTER_MS);
    expect(seconds! * 1000, where).toBeLessThanOrEqual(we - ws + 2 * (SEGMENT_MS + JITTER_MS));
    // The camera was up throughout: no hole in the footage.
    expect(f.gaps, where).toEqual([]);
  }
  return manifest;
}

describe('incidents through the real CLI', () => {
  it('locks a window, seals a playable, signed clip per camera that covers it, anchored in the audit log', async () => {
    const node = await startNode();
    await recordedFor(node, 4);
    const locked = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--reason', 'fight at the desk', '--by', 'desk-staff');
    expect(locked.extended).toBe(false);
    expect(locked.incident).toMatch(/^\d{8}T\d{6}Z-[a-z2-7]{4}$/);

    const active = await readIncident(node, locked.incident);
    expect(active).toMatchObject({ node: 'test-node', state: 'active', urgent: true, cameras: CAMERAS });
    expect(active.triggers).toEqual([{ at: expect.any(String), via: 'local', by: 'desk-staff', reason: 'fight at the desk' }]);
    const at = ms(active.triggers[0]!.at);
    // The id is the first trigger's UTC second.
    expect(locked.incident.slice(0, 16)).toBe(new Date(at).toISOString().replace(/[-:]/g, '').slice(0, 15) + 'Z');
    expect(ms(active.window.start)).toBe(at - 3_000);
    expect(ms(active.window.end)).toBe(at + 3_000);

    const sealed = await waitForState(node, locked.incident, 'sealed');
    expect(sealed.window).toEqual(active.window);
    const listed = (await listIncidents(node)).find((i) => i.id === locked.incident);
    expect(listed?.state).toBe('sealed');

    const dir = join(node.storage, 'incidents', locked.incident);
    expect((await readdir(dir)).sort()).toEqual(['back.mp4', 'front.mp4', 'manifest.json']);
    const manifest = await expectClipsCoverWindow(node, sealed, CAMERAS);
    expect(manifest.incident).toEqual({ ...active, state: 'sealed' });
    expect(manifest.signature.publicKey).toBe(node.publicKey);
    expect(manifest.agent.version).toMatch(/^\d+\.\d+\.\d+/);

    // The audit log: the lock carries the whole incident, the seal follows the manifest's anchor
    // and records the manifest's exact hash.
    const entries = await auditEntries(node);
    const lock = entries.find((e) => e.type === 'lock');
    expect(lock?.['incident']).toEqual(active);
    const seal = entries.find((e) => e.type === 'seal' && e['incident'] === locked.incident);
    expect(seal).toBeDefined();
    const { bytes } = await readManifest(node, locked.incident);
    expect(seal!['manifestSha256']).toBe(sha256(bytes));
    expect(manifest.audit.seq).toBe(seal!.seq - 1);
    expect(manifest.audit.head).toBe(seal!.prev);

    const evidence = await runCli(['evidence', 'verify', dir, '--key', node.publicKey, '--audit', join(node.stateDir, 'audit.log')]);
    expect(evidence.code, evidence.stdout + evidence.stderr).toBe(0);
    const audit = await runCli(['audit', 'verify', '--config', node.configPath]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    // A key the node does not hold is not trusted.
    const stranger = await runCli(['evidence', 'verify', dir, '--key', Buffer.alloc(32, 7).toString('base64')]);
    expect(stranger.code).toBe(1);

    expect(await node.agent.stop()).toBe(0);
  });

  it('repeated triggers extend one incident: end = last trigger + postRoll, capped at start + maxLength', async () => {
    // pre 2 s, post 4 s, max 8 s: the second trigger (≈0.5 s in) extends uncapped; the third (3 s
    // in, still inside the window) would reach 7 s past the first, so the cap (6 s) holds it.
    const PRE = 2_000;
    const POST = 4_000;
    const MAX = 8_000;
    const node = await startNode({ incident: { preRoll: '2s', postRoll: '4s', maxLength: '8s' } });
    await recordedFor(node, 3);

    const first = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--reason', 'first', '--by', 'a');
    expect(first.extended).toBe(false);
    const one = await readIncident(node, first.incident);
    const at1 = ms(one.triggers[0]!.at);
    const start = at1 - PRE;
    expect(one.window).toEqual({ start: new Date(start).toISOString(), end: new Date(at1 + POST).toISOString() });

    const second = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--reason', 'second', '--by', 'b', '--camera', 'front');
    expect(second).toEqual({ incident: first.incident, extended: true });
    const two = await readIncident(node, first.incident);
    expect(two.triggers).toHaveLength(2);
    const at2 = ms(two.triggers[1]!.at);
    expect(at2 + POST, 'the second trigger came too late for this test to see it uncapped').toBeLessThan(start + MAX);
    expect(two.window).toEqual({ start: one.window.start, end: new Date(at2 + POST).toISOString() });

    await sleep(Math.max(0, at1 + 3_000 - Date.now()));
    const third = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--reason', 'third');
    expect(third).toEqual({ incident: first.incident, extended: true });
    const three = await readIncident(node, first.incident);
    expect(three.triggers.map((t) => [t.via, t.by, t.reason])).toEqual([['local', 'a', 'first'], ['local', 'b', 'second'], ['local', undefined, 'third']]);
    const at3 = ms(three.triggers[2]!.at);
    expect(at3, 'the third trigger must land inside the window').toBeLessThan(at2 + POST);
    expect(at3 + POST).toBeGreaterThan(start + MAX);
    expect(three.window).toEqual({ start: one.window.start, end: new Date(start + MAX).toISOString() });
    expect(three.cameras).toEqual(CAMERAS);

    // One incident only; the audit log has its lock (the whole incident) and both extensions,
    // each only its change (CONTRACT §4): the trigger, the new end, the cameras added.
    expect((await listIncidents(node)).map((i) => i.id)).toEqual([first.incident]);
    const entries = (await auditEntries(node)).filter((e) => e.type === 'lock' || e.type === 'extend');
    expect(entries.map((e) => e.type)).toEqual(['lock', 'extend', 'extend']);
    expect(entries[0]!['incident']).toEqual(one);
    expect(entries.slice(1).map((e) => ({ incident: e['incident'], trigger: e['trigger'], end: e['end'], camerasAdded: e['camerasAdded'] }))).toEqual([
      { incident: first.incident, trigger: two.triggers[1], end: two.window.end, camerasAdded: [] },
      { incident: first.incident, trigger: three.triggers[2], end: three.window.end, camerasAdded: [] },
    ]);

    // Sealed over the whole capped window; a trigger after it opens a new incident.
    const sealed = await waitForState(node, first.incident, 'sealed');
    await expectClipsCoverWindow(node, sealed, CAMERAS);
    // A pre-roll asked for beyond maxLength is cut to it: the window still reaches the trigger.
    const after = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--pre-roll', '2h');
    expect(after.extended).toBe(false);
    expect(after.incident).not.toBe(first.incident);
    const late = await readIncident(node, after.incident);
    const atLate = ms(late.triggers[0]!.at);
    expect(late.window).toEqual({ start: new Date(atLate - MAX).toISOString(), end: new Date(atLate).toISOString() });
    expect(await node.agent.stop()).toBe(0);
  });

  it('under pressure the ring wraps past an active incident without touching it; a forced release hands footage back', async () => {
    // ~130 kB per 1 s segment per camera (snow at 1 Mbit/s): 2.5 MB holds ~9 s of both cameras,
    // so the ring is full before the lock and wraps during its window.
    const snow = new Map<string, RtspServer>();
    for (const id of CAMERAS) snow.set(id, await startRtspServer({ pattern: 'snow', width: 320, height: 240, fps: 10, bitrateKbps: 1000 }));
    const MAX_BYTES = 2_500_000;
    // A lock of most of the ring: admitted whatever share it pins (that rule has tests of its own).
    const node = await startNode({ storage: { maxBytes: MAX_BYTES }, incident: { preRoll: '3s', postRoll: '8s', maxLength: '1h', maxLockedPercent: 100 } }, snow);
    const ringBytes = async () => {
      let total = 0;
      for (const c of CAMERAS) for (const s of await listSegments(node.storage, c)) total += s.bytes;
      return total;
    };

    // Nearly full: the ring has started deleting to stay within its quota.
    await waitFor(() => node.agent.find((l) => l.msg === 'footage deleted by the ring'), 'the ring wrapping', 30_000).catch(async (err: unknown) => {
      const counts = await Promise.all(CAMERAS.map(async (c) => `${c}: ${(await listSegments(node.storage, c)).length} segments`));
      const recent = node.agent.logs.filter((l) => l.level >= 30 && l.msg !== 'segment finished').slice(-20).map((l) => JSON.stringify(l));
      throw new Error(`${(err as Error).message}; ring holds ${await ringBytes()} bytes (${counts.join(', ')})\n${recent.join('\n')}`);
    });
    expect(await ringBytes()).toBeGreaterThan(MAX_BYTES * 0.6);
    const before = await listSegments(node.storage, 'front');

    // A lock of one camera, made while the ring is full, still locks.
    const locked = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--camera', 'front', '--reason', 'pressure');
    expect(locked.extended).toBe(false);
    const incident = await readIncident(node, locked.incident);
    expect(incident.cameras).toEqual(['front']);
    const ws = ms(incident.window.start);
    const we = ms(incident.window.end);
    const olderThanWindow = before.filter((s) => s.startMs + s.durationMs <= ws - JITTER_MS);
    expect(olderThanWindow.length, 'unlocked footage older than the window at lock time').toBeGreaterThan(0);
    const inWindow = (await listSegments(node.storage, 'front')).filter((s) => s.startMs + s.durationMs > ws);
    expect(inWindow.length, 'pre-roll footage at lock time').toBeGreaterThanOrEqual(2);

    // Late in the window, still active: the ring has wrapped past the window's start (the other
    // camera's footage of that time is gone), front's older unlocked footage is gone, and every
    // front segment of the window is still there.
    await sleep(Math.max(0, we - 1_500 - Date.now()));
    expect((await readIncident(node, locked.incident)).state).toBe('active');
    const back = await listSegments(node.storage, 'back');
    expect(back[0]!.startMs, 'oldest footage of the unlocked camera').toBeGreaterThan(ws);
    const front = await listSegments(node.storage, 'front');
    const frontSeqs = new Set(front.map((s) => s.seq));
    expect(olderThanWindow.filter((s) => frontSeqs.has(s.seq)), 'older unlocked footage of front').toEqual([]);
    expect(inWindow.filter((s) => !frontSeqs.has(s.seq)), 'locked footage deleted').toEqual([]);
    expect(front.every((s) => s.startMs + s.durationMs > ws - JITTER_MS)).toBe(true);

    // Sealed whole: nothing of the window is missing from the clip.
    const sealed = await waitForState(node, locked.incident, 'sealed');
    await expectClipsCoverWindow(node, sealed, ['front']);
    // Sealed, its segments are ring footage again and the wrap takes them.
    await waitFor(async () => {
      const now = new Set((await listSegments(node.storage, 'front')).map((s) => s.seq));
      return inWindow.every((s) => !now.has(s.seq));
    }, 'the sealed window\'s segments to be pruned', 30_000);
    expect(await ctl(node, 'dispose', locked.incident, '--by', 'counsel', '--reason', 'closed')).toMatchObject({ code: 0 });

    // A second lock, still active, released by force: audited as such, never sealed, and its
    // footage goes back to the ring.
    const second = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', '--camera', 'back', '--post-roll', '10s');
    expect(second.extended).toBe(false);
    const b = await readIncident(node, second.incident);
    const bStart = ms(b.window.start);
    await waitFor(async () => (await listSegments(node.storage, 'back')).filter((s) => s.startMs > ms(b.triggers[0]!.at)).length >= 2, 'post-roll footage of back', 15_000);
    const held = (await listSegments(node.storage, 'back')).filter((s) => s.startMs + s.durationMs > bStart);
    const refused = await ctl(node, 'dispose', second.incident, '--by', 'ops', '--reason', 'false alarm');
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('conflict');
    const forced = await ctlJson<{ incident: string }>(node, 'dispose', second.incident, '--by', 'ops', '--reason', 'false alarm', '--force');
    expect(forced).toEqual({ incident: second.incident });
    expect((await readIncident(node, second.incident)).state).toBe('disposed');
    const audit = (await auditEntries(node)).filter((e) => e['incident'] === second.incident && e.type.startsWith('dispose'));
    expect(audit).toEqual([expect.objectContaining({ type: 'dispose.forced', by: 'ops', reason: 'false alarm', state: 'active' })]);
    await waitFor(async () => {
      const now = new Set((await listSegments(node.storage, 'back')).map((s) => s.seq));
      return held.every((s) => !now.has(s.seq));
    }, 'the force-released window\'s segments to be pruned', 30_000);
    expect(existsSync(join(node.storage, 'incidents', second.incident))).toBe(false);

    expect(node.agent.find((l) => l.msg.startsWith('storage full'))).toBeUndefined();
    expect(await node.agent.stop()).toBe(0);
    // The ring's deletions are in the audit log, a pass's entry written before its unlinks.
    const deleted = (await auditEntries(node)).filter((e) => e.type === 'delete');
    expect(new Set(deleted.flatMap((e) => Object.keys(e['cameras'] as object)))).toEqual(new Set(CAMERAS));
    for (const s of snow.values()) await s.stop();
  });
});

describe('a camera that dies inside a window', () => {
  it('leaves a hole in its clip that the manifest lists in gaps; the other camera\'s clip has none', async () => {
    const node = await startNode({ incident: { preRoll: '3s', postRoll: '14s', maxLength: '1h' } });
    await recordedFor(node, 4);
    const { incident: id } = await ctlJson<{ incident: string }>(node, 'lock', '--reason', 'camera pulled off the wall', '--by', 'desk-staff');
    await sleep(3_000);
    const back = servers.get('back')!;
    await back.kill();
    const killedAt = Date.now();
    await sleep(5_000);
    await back.restart();
    const backAt = Date.now();

    const sealed = await waitForState(node, id, 'sealed', 60_000);
    const { manifest } = await readManifest(node, id);
    const where = JSON.stringify(manifest.files.map((f) => ({ camera: f.camera, start: f.start, end: f.end, gaps: f.gaps })));
    const front = manifest.files.find((f) => f.camera === 'front')!;
    expect(front.gaps, where).toEqual([]);
    const gaps = manifest.files.find((f) => f.camera === 'back')!.gaps;
    // The hole spans the outage, give or take a segment and the stamping jitter at each edge;
    // the recorder may take its backoff to return, so the hole may reach later, up to the window's end.
    const hole = gaps.find((g) => ms(g.start) <= killedAt + SEGMENT_MS + JITTER_MS && ms(g.end) >= backAt - SEGMENT_MS - JITTER_MS);
    expect(hole, where).toBeDefined();
    // The recorder said the camera was down then (camera.down): that is the hole's reason.
    expect((hole as { reason?: string }).reason, where).toBe('camera down');
    expect(ms(hole!.start), where).toBeGreaterThanOrEqual(killedAt - 2 * (SEGMENT_MS + JITTER_MS));
    expect(ms(hole!.end), where).toBeLessThanOrEqual(ms(sealed.window.end));
    // Every gap lies inside the window.
    for (const g of gaps) {
      expect(ms(g.start), where).toBeGreaterThanOrEqual(ms(sealed.window.start));
      expect(ms(g.end), where).toBeLessThanOrEqual(ms(sealed.window.end));
    }
    const verified = await runCli(['evidence', 'verify', join(node.storage, 'incidents', id), '--key', node.publicKey]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });
});
