// Footage reported after the fact (CONTRACT §6): real RTSP cameras recorded by the real CLI,
// then a past range held. The sealed clips hold exactly the segments that overlap the range
// (straddling ones whole) and the manifest states their real span; on a small real disk whose
// ring has already deleted the start of the range, `missing` is exactly the part no file holds;
// nothing left is `not_found`; every refusal of §6; a hold is never extended by a press.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import type { Incident } from '../../src/incidents/incident.js';
import type { HoldReply } from '../../src/modules/incidents.js';
import { baseConfig, RunningAgent, runCli, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { umount, useCleanups } from '../helpers/mounts.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments, probeDuration, type SegmentFile } from '../helpers/segments.js';

const exec = promisify(execFile);
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

const CAMERAS = ['door', 'desk'];
const rig = useRtspRig(CAMERAS);
const cleanup = useCleanups();
const iso = (ms: number): string => new Date(ms).toISOString();
const ms = (t: string): number => Date.parse(t);

interface Node { dir: string; socket: string; storage: string; stateDir: string; configPath: string; agent: RunningAgent }

async function startNode(over: Record<string, Record<string, unknown>> = {}, storage?: string, opts: { stdin?: 'pipe' } = {}): Promise<Node> {
  const dir = await tempDir('camnode-hold-');
  rig.dirs.push(dir);
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: rig.servers.get(id)!.url, zone: 'entrance' })), {
    control: { socket },
    ...(storage ? { storage: { path: storage, reserve: '100KB' } } : {}),
    ...over,
  });
  const configPath = await writeConfig(dir, config);
  const agent = RunningAgent.start(configPath, opts.stdin ? { stdin: 'pipe' } : {});
  rig.agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  const node: Node = { dir, socket, storage: storage ?? join(dir, 'storage'), stateDir: join(dir, 'state'), configPath, agent };
  return node;
}

async function ask<T>(node: Node, cmd: string, args: Record<string, unknown>): Promise<{ ok: true; data: T } | { ok: false; error: { code: string; message: string } }> {
  return await requestLocal(node.socket, cmd, args, 15_000) as never;
}

async function askOk<T>(node: Node, cmd: string, args: Record<string, unknown>): Promise<T> {
  const r = await ask<T>(node, cmd, args);
  if (!r.ok) throw new Error(`${cmd} refused: ${JSON.stringify(r.error)}`);
  return r.data;
}

async function recorded(node: Node, segments: number): Promise<void> {
  for (const c of CAMERAS) await waitFor(async () => (await listSegments(node.storage, c)).length >= segments, `${segments} segments of ${c}`, 60_000);
}

function waitForState(node: Node, id: string, state: string): Promise<Incident> {
  return waitFor(async () => {
    const i = await askOk<Incident>(node, 'incident', { incident: id });
    return i.state === state && i;
  }, `incident ${id} ${state}`, 60_000, 250);
}

/** The files of a camera that overlap [from, to). */
function overlapping(files: SegmentFile[], from: number, to: number): SegmentFile[] {
  return files.filter((f) => f.startMs < to && f.startMs + f.durationMs > from);
}

interface ManifestFile { camera: string; name: string; start: string; end: string; gaps: unknown[] }

describe('hold: keeping footage from earlier', () => {
  it('seals exactly the segments overlapping a past range, straddling ones whole, and says nothing is missing', async () => {
    const node = await startNode();
    // Past the first segments (a stream's first cut is the least regular).
    await recorded(node, 12);
    const now = Date.now();
    const from = now - 6_500;
    const to = now - 3_500;
    const reply = await askOk<HoldReply>(node, 'hold', { from: iso(from), to: iso(to), reason: 'laptop reported stolen', by: 'desk staff' });
    expect(reply).toMatchObject({ extended: false, missing: [], uncertain: [] });
    // What the range needs is pinned from the reply on: read it from the disk now.
    const expected = new Map<string, SegmentFile[]>();
    for (const c of CAMERAS) expected.set(c, overlapping(await listSegments(node.storage, c), from, to));
    const incident = await waitForState(node, reply.incident, 'sealed');
    expect([...incident.cameras].sort()).toEqual([...CAMERAS].sort());
    expect(incident).toMatchObject({
      kind: 'hold', window: { start: iso(from), end: iso(to) }, notes: [],
      triggers: [{ via: 'local', by: 'desk staff', reason: 'laptop reported stolen' }],
    });
    const manifest = JSON.parse(await readFile(join(node.storage, 'incidents', reply.incident, 'manifest.json'), 'utf8')) as { incident: Incident; files: ManifestFile[] };
    expect(manifest.incident.kind).toBe('hold');
    expect(manifest.files.map((f) => f.camera).sort()).toEqual([...CAMERAS].sort());
    for (const f of manifest.files) {
      const files = expected.get(f.camera)!;
      const first = files[0]!;
      const last = files[files.length - 1]!;
      // The real span: the first and last overlapping segments, taken whole.
      expect(f.start, f.camera).toBe(iso(first.startMs));
      expect(f.end, f.camera).toBe(iso(last.startMs + last.durationMs));
      expect(ms(f.start)).toBeLessThanOrEqual(from);
      expect(ms(f.end)).toBeGreaterThanOrEqual(to);
      expect(f.gaps).toEqual([]);
      // The clip plays for that span: its first frame at the start, its last at the end.
      const seconds = await probeDuration(join(node.storage, 'incidents', reply.incident, f.name));
      expect(Math.abs(seconds! * 1000 - (ms(f.end) - ms(f.start))), `${f.camera}: ffprobe ${seconds} s`).toBeLessThanOrEqual(600);
    }
    // Durable before the reply: the book and the audit log both have it.
    const audit = (await readFile(join(node.stateDir, 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; incident?: { id?: string } });
    expect(audit.some((e) => e.type === 'hold' && e.incident?.id === reply.incident)).toBe(true);
  });

  it('refuses every bad range and names the field; nothing left is not_found', async () => {
    const node = await startNode({ incident: { maxHold: '1h' } });
    await recorded(node, 3);
    const now = Date.now();
    const refused = async (args: Record<string, unknown>, code: string, message: RegExp): Promise<void> => {
      const r = await ask(node, 'hold', { reason: 'r', by: 'b', ...args });
      expect(r.ok, JSON.stringify(args)).toBe(false);
      if (!r.ok) {
        expect(r.error.code, r.error.message).toBe(code);
        expect(r.error.message).toMatch(message);
      }
    };
    await refused({ from: iso(now - 1_000), to: iso(now - 1_000) }, 'bad_request', /from: must be before to/);
    await refused({ from: iso(now - 1_000), to: iso(now - 2_000) }, 'bad_request', /from: must be before to/);
    await refused({ from: iso(now + 60_000), to: iso(now + 120_000) }, 'bad_request', /from: .* is in the future/);
    await refused({ from: iso(now - 2 * 3_600_000), to: iso(now - 1_000) }, 'bad_request', /longer than incident\.maxHold \(1h\)/);
    await refused({ from: 'yesterday', to: iso(now) }, 'bad_request', /from: not an ISO-8601 time/);
    await refused({ from: iso(now - 3_000), to: iso(now - 1_000), reason: '' }, 'bad_request', /reason: required/);
    await refused({ from: iso(now - 3_000), to: iso(now - 1_000), cameras: ['attic'] }, 'bad_request', /cameras: no camera "attic"/);
    await refused({ from: iso(now - 3_000), to: iso(now - 1_000), by: undefined }, 'bad_request', /by: required/);
    // Before anything was recorded: nothing left.
    await refused({ from: iso(now - 50 * 60_000), to: iso(now - 40 * 60_000) }, 'not_found', /no footage left between/);
    // `lock` with a range is a hold; its refusals are the same, and a hold needs its reason.
    const lock = await ask(node, 'lock', { from: iso(now - 3_000), to: iso(now - 1_000), by: 'b' });
    expect(lock.ok ? null : lock.error).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/reason: required for a hold/) });
    const mixed = await ask(node, 'lock', { from: iso(now - 3_000), to: iso(now - 1_000), reason: 'r', by: 'b', postRoll: '5s' });
    expect(mixed.ok ? null : mixed.error).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/postRoll: not with from\/to/) });
    const viaLock = await askOk<HoldReply>(node, 'lock', { from: iso(now - 3_000), to: iso(now - 1_000), reason: 'r', by: 'b' });
    expect(viaLock).toMatchObject({ extended: false, missing: [] });
    expect((await askOk<Incident>(node, 'incident', { incident: viaLock.incident })).kind).toBe('hold');
    // ctl maps them: bad_request → 2, not_found → 1, with the local times shown.
    const bad = await runCli(['ctl', 'hold', '--local', '--socket', node.socket, '--from', '-1m', '--to', '-2m', '--reason', 'r', '--by', 'b']);
    expect(bad.code, bad.stderr).toBe(2);
    const gone = await runCli(['ctl', 'hold', '--local', '--socket', node.socket, '--from', '-50m', '--to', '-40m', '--reason', 'r', '--by', 'b']);
    expect(gone.code, gone.stderr).toBe(1);
    expect(gone.stderr).toMatch(/not_found/);
    const ok = await runCli(['ctl', 'hold', '--local', '--socket', node.socket, '--from', '-3s', '--to', '-1s', '--reason', 'r', '--by', 'b', '--tz', 'America/New_York']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/held incident \d{8}T\d{6}Z-[a-z2-7]{4}/);
    expect(ok.stdout).toMatch(/E[SD]T \(\d{4}-\d{2}-\d{2}T/);
  });

  it('a range reaching into the future keeps locking until its end, and a press never extends it', async () => {
    const node = await startNode({ button: { backend: 'fake' }, incident: { preRoll: '2s', postRoll: '2s', maxLength: '1h' } }, undefined, { stdin: 'pipe' });
    await recorded(node, 3);
    const now = Date.now();
    const reply = await askOk<HoldReply>(node, 'hold', { from: iso(now - 2_000), to: iso(now + 6_000), reason: 'ongoing', by: 'b' });
    node.agent.press();
    const pressed = await waitFor(async () => (await askOk<{ incidents: Incident[] }>(node, 'incidents', {})).incidents.find((i) => i.kind === 'lock'), 'the press\'s lock');
    expect(pressed.id).not.toBe(reply.incident);
    const hold = await askOk<Incident>(node, 'incident', { incident: reply.incident });
    expect(hold.triggers).toHaveLength(1);
    expect(hold.window).toEqual({ start: iso(now - 2_000), end: iso(now + 6_000) });
    expect(hold.state).toBe('active');
    const sealed = await waitForState(node, reply.incident, 'sealed');
    const manifest = JSON.parse(await readFile(join(node.storage, 'incidents', sealed.id, 'manifest.json'), 'utf8')) as { files: ManifestFile[] };
    for (const f of manifest.files) expect(ms(f.end), f.camera).toBeGreaterThanOrEqual(now + 6_000);
  });
});

describeRoot('hold on a small real disk', () => {
  it('missing is exactly the part of the range the ring has deleted; what is left is kept; past the pinned share is conflict', async () => {
    const work = await tempDir('camnode-hold-disk-');
    cleanup(() => rm(work, { recursive: true, force: true }));
    const mnt = join(work, 'mnt');
    await mkdir(mnt);
    await exec('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    cleanup(() => umount(mnt));
    const startedAt = Date.now();
    const node = await startNode({ incident: { maxLockedPercent: 40 } }, join(mnt, 'storage'));
    cleanup(async () => { node.agent.killGroup(); await node.agent.exited; });
    // Until the ring has deleted its first seconds on both cameras.
    await waitFor(async () => {
      for (const c of CAMERAS) {
        const files = await listSegments(node.storage, c);
        if (files.length === 0 || files[0]!.startMs < startedAt + 4_000) return false;
      }
      return true;
    }, 'the ring to delete its oldest footage', 90_000, 500);
    // From before the agent started to a little of what is still there.
    const oldest = Math.min(...await Promise.all(CAMERAS.map(async (c) => (await listSegments(node.storage, c))[0]!.startMs)));
    const from = startedAt - 10_000;
    const to = oldest + 2_500;
    const reply = await askOk<HoldReply>(node, 'hold', { from: iso(from), to: iso(to), reason: 'reported later', by: 'b' });
    // Pinned from the reply on: the files in range now are what the hold keeps.
    for (const c of CAMERAS) {
      const files = overlapping(await listSegments(node.storage, c), from, to);
      expect(files.length, c).toBeGreaterThan(0);
      // Exactly the stretch before the first file left; the rest is continuous.
      expect(reply.missing.filter((m) => m.camera === c), c).toEqual([{ camera: c, start: iso(from), end: iso(files[0]!.startMs) }]);
    }
    // Kept until sealed, then as clips: each clip is exactly the files that were left, and its
    // manifest names the missing stretch as a gap.
    const kept = new Map<string, SegmentFile[]>();
    for (const c of CAMERAS) kept.set(c, overlapping(await listSegments(node.storage, c), from, to));
    await waitForState(node, reply.incident, 'sealed');
    const manifest = JSON.parse(await readFile(join(node.storage, 'incidents', reply.incident, 'manifest.json'), 'utf8')) as { files: (ManifestFile & { gaps: { start: string; end: string; reason?: string }[] })[] };
    for (const c of CAMERAS) {
      const files = kept.get(c)!;
      const f = manifest.files.find((x) => x.camera === c)!;
      expect(f.start, c).toBe(iso(files[0]!.startMs));
      expect(f.end, c).toBe(iso(files[files.length - 1]!.startMs + files[files.length - 1]!.durationMs));
      expect(f.gaps[0], c).toMatchObject({ start: iso(from), end: iso(files[0]!.startMs) });
    }
    // Holding most of the ring would pin more than 40% of the quota: conflict, with the figures.
    const all = await ask(node, 'hold', { from: iso(to), to: iso(Date.now() - 500), reason: 'everything', by: 'b' });
    expect(all.ok ? null : all.error).toMatchObject({ code: 'conflict', message: expect.stringMatching(/would pin .* of the .* quota, over incident\.maxLockedPercent \(40%/) });
  });
});
