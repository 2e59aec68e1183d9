// Call recordings under the video's retention (CONTRACT §8), end to end with the real CLI: a fake
// phone system writes real WAV and MP3 audio slowly into Asterisk's dated folders while the agent
// records a real RTSP camera. Each finished file is taken once, byte-identical; SIGKILLs mid-copy
// and after the journal line lose nothing and take nothing twice; what is not audio is set aside;
// a hold naming `calls` seals them, verifies and goes upstream; a press takes none; calls age out
// and are pruned under pressure in start order with the video, a held call kept.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { appendFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import type { Incident } from '../../src/incidents/incident.js';
import type { StatePayload } from '../../src/fleet/topics.js';
import { baseConfig, RunningAgent, runCli, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { umount, useCleanups } from '../helpers/mounts.js';
import { audio, datedPath, writeSlowly } from '../helpers/phone.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments } from '../helpers/segments.js';

const exec = promisify(execFile);
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

const rig = useRtspRig(['door']);
const cleanup = useCleanups();
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Node { dir: string; spool: string; storage: string; socket: string; configPath: string; nas: string }

async function makeNode(over: Record<string, Record<string, unknown>> = {}, storage?: string): Promise<Node> {
  const dir = await tempDir('camnode-calls-');
  rig.dirs.push(dir);
  const spool = join(dir, 'monitor');
  const nas = join(dir, 'nas');
  await mkdir(spool, { recursive: true });
  await mkdir(nas);
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, [{ id: 'door', source: rig.servers.get('door')!.url, zone: 'entrance' }], {
    control: { socket },
    calls: { watch: spool, pattern: '*.{wav,mp3}', settle: '1s', ...over['calls'] },
    ...(storage ? { storage: { path: storage, reserve: '100KB', ...over['storage'] } } : {}),
    ...Object.fromEntries(Object.entries(over).filter(([k]) => k !== 'calls' && !(storage && k === 'storage'))),
    // The upstream, when asked for, is this node's own `nas` folder.
    ...(over['upstream'] ? { upstream: { ...over['upstream'], path: nas } } : {}),
  });
  return { dir, spool, nas, socket, storage: storage ?? join(dir, 'storage'), configPath: await writeConfig(dir, config) };
}

async function start(node: Node, opts: Parameters<typeof RunningAgent.start>[1] = {}): Promise<RunningAgent> {
  const agent = RunningAgent.start(node.configPath, opts);
  rig.agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return agent;
}

async function ask<T>(node: Node, cmd: string, args: Record<string, unknown> = {}): Promise<T> {
  const r = await requestLocal(node.socket, cmd, args, 15_000) as { ok: true; data: T } | { ok: false; error: unknown };
  if (!r.ok) throw new Error(`${cmd} refused: ${JSON.stringify(r.error)}`);
  return r.data;
}

const callsState = async (node: Node): Promise<NonNullable<StatePayload['calls']>> => (await ask<StatePayload>(node, 'state')).calls!;

/** The calls in the ring: file name → SHA-256. */
async function ringCalls(node: Node): Promise<Map<string, string>> {
  const dir = join(node.storage, 'calls');
  const out = new Map<string, string>();
  for (const n of await readdir(dir)) {
    if (n.startsWith('.') || n === 'rejected') continue;
    out.set(n, sha(await readFile(join(dir, n))));
  }
  return out;
}

/** Each source path the journal says was taken, with how many times. */
async function takes(node: Node): Promise<Map<string, number>> {
  const text = await readFile(join(node.storage, 'calls', '.index.jsonl'), 'utf8');
  const out = new Map<string, number>();
  for (const l of text.split('\n').filter(Boolean)) {
    const e = JSON.parse(l) as { op: string; source?: string };
    if (e.op === 'took' || e.op === 'taken') out.set(e.source!, (out.get(e.source!) ?? 0) + 1);
  }
  return out;
}

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

describeRoot('call recordings', () => {
  it('takes each finished file once, byte-identical, across SIGKILLs mid-copy and after the journal line', async () => {
    const node = await makeNode();
    let agent = await start(node);
    const day = new Date();
    const files = new Map<string, Buffer>([
      [datedPath(day, 'out-2001-1001-1733200000.1.wav'), audio('wav', 3, 300)],
      [datedPath(day, 'in-1001-5550100-1733200001.2.mp3'), audio('mp3', 3, 400)],
      // The same basename in another folder: both taken, under different names.
      [datedPath(new Date(day.getTime() - 86_400_000), 'out-2001-1001-1733200000.1.wav'), audio('wav', 2, 500)],
    ]);
    // The phone system writes all three at once, each over two seconds in five chunks.
    await Promise.all([...files].map(([rel, bytes]) => writeSlowly(node.spool, rel, bytes)));
    await waitFor(async () => (await callsState(node)).files === 3, 'three calls in the ring', 30_000);
    expect(sorted((await ringCalls(node)).values())).toEqual(sorted([...files.values()].map(sha)));
    expect([...(await takes(node)).values()]).toEqual([1, 1, 1]);
    const state = await callsState(node);
    expect(state).toMatchObject({ files: 3, bytes: [...files.values()].reduce((n, b) => n + b.length, 0), waiting: 0, rejected: 0 });
    expect(Date.parse(state.oldest!)).toBeLessThan(Date.now());

    // Killed (the whole group, as a power cut) while copying, then after the journal line before the rename.
    for (const fault of ['calls.copying', 'calls.took']) {
      await agent.stop();
      const rel = datedPath(day, `out-${fault}.wav`);
      const bytes = audio('wav', 2, 600);
      files.set(rel, bytes);
      agent = await start(node, { env: { CAMNODE_FAULT: fault } });
      await writeSlowly(node.spool, rel, bytes, 2, 500);
      await waitFor(() => agent.proc.exitCode !== null || agent.proc.signalCode !== null, `the agent killed at ${fault}`, 30_000);
      expect(agent.stderrText).toContain(`fault injected at ${fault}`);
      agent = await start(node);
      await waitFor(async () => (await callsState(node)).files === files.size, `${files.size} calls after the kill at ${fault}`, 30_000);
      // A few more passes: nothing is taken a second time.
      await sleep(2_500);
      expect(sorted((await ringCalls(node)).values())).toEqual(sorted([...files.values()].map(sha)));
      expect([...(await takes(node)).values()].every((n) => n === 1)).toBe(true);
      expect((await readdir(join(node.storage, 'calls'))).filter((n) => n.endsWith('.partial'))).toEqual([]);
    }
    // The footage command lists them as camera calls (calls at the same time share a range).
    const footage = await ask<{ cameras: { id: string; bytes: number; ranges: unknown[] }[] }>(node, 'footage', { camera: 'calls' });
    expect(footage.cameras.map((c) => [c.id, c.bytes])).toEqual([['calls', [...files.values()].reduce((n, b) => n + b.length, 0)]]);
    expect(footage.cameras[0]!.ranges.length).toBeGreaterThanOrEqual(3);
    expect((await ask<{ cameras: { id: string }[] }>(node, 'footage')).cameras.map((c) => c.id)).toEqual(['door', 'calls']);
  }, 180_000);

  it('sets aside what is not audio, waits for a file still growing, and keeps odd names safe', async () => {
    const node = await makeNode();
    const agent = await start(node);
    const day = new Date();
    await mkdir(join(node.spool, datedPath(day, '')), { recursive: true });
    await writeFile(join(node.spool, datedPath(day, 'notes.wav')), 'this is a text file, not a call\n');
    await writeFile(join(node.spool, datedPath(day, 'empty.wav')), '');
    const odd = audio('wav', 2, 700);
    // (A name starting with a dot is a writer's temporary file, never taken.)
    await writeFile(join(node.spool, datedPath(day, 'x ..%2F..%2Fetc $(reboot) Müller.wav')), odd);
    // A call that goes on for 8 s, a chunk every 400 ms: never taken while it grows.
    const long = audio('wav', 8, 800);
    const growing = join(node.spool, datedPath(day, 'long.wav'));
    await writeFile(growing, long.subarray(0, 4_000));
    for (let at = 4_000; at < long.length; at += 6_400) {
      await sleep(400);
      expect(await ringCalls(node).then((m) => [...m.values()].includes(sha(long)) || [...m.keys()].some((n) => n.includes('long')))).toBe(false);
      await appendFile(growing, long.subarray(at, at + 6_400));
    }
    await waitFor(async () => (await callsState(node)).files === 2, 'the odd name and the long call taken', 30_000);
    const ring = await ringCalls(node);
    expect(sorted(ring.values())).toEqual(sorted([sha(odd), sha(long)]));
    for (const name of ring.keys()) expect(name).toMatch(/^\d{8}T\d{9}Z-[A-Za-z0-9._-]+$/);
    // Not audio: copied to calls/rejected, reported, never lost; taken once, so not again.
    await waitFor(async () => (await callsState(node)).rejected === 2, 'two files set aside', 30_000);
    const rejected = await readdir(join(node.storage, 'calls', 'rejected'));
    expect(rejected).toHaveLength(2);
    const contents = await Promise.all(rejected.map((n) => readFile(join(node.storage, 'calls', 'rejected', n), 'utf8')));
    expect(sorted(contents)).toEqual(['', 'this is a text file, not a call\n']);
    expect(agent.count((l) => l.msg === 'a spool file is not audio: set aside in calls/rejected')).toBe(2);
    await sleep(2_500);
    expect(await readdir(join(node.storage, 'calls', 'rejected'))).toHaveLength(2);
  }, 120_000);

  it('a hold naming calls seals them whole with their hashes, waits for a call still being written, verifies and goes upstream; a press takes none', async () => {
    const node = await makeNode({
      upstream: { type: 'dir' }, button: { backend: 'fake' }, incident: { preRoll: '2s', postRoll: '2s' },
    });
    const agent = await start(node, { stdin: 'pipe' });
    const day = new Date();
    const first = audio('wav', 3, 300);
    const second = audio('mp3', 3, 400);
    await writeSlowly(node.spool, datedPath(day, 'first.wav'), first, 3, 600);
    await writeSlowly(node.spool, datedPath(day, 'second.mp3'), second, 3, 600);
    await waitFor(async () => (await callsState(node)).files === 2, 'two calls in the ring', 30_000);
    await waitFor(async () => (await listSegments(node.storage, 'door')).length >= 4, 'some video', 30_000);

    // A press locks the cameras, never the calls.
    agent.press();
    const pressed = await waitFor(async () => (await ask<{ incidents: Incident[] }>(node, 'incidents')).incidents[0], 'the press\'s incident');
    expect(pressed.cameras).toEqual(['door']);

    // A hold from before the first call until 3 s from now, naming calls: a third call, begun
    // now and written for 6 s, is still in the spool when the window ends; the seal waits for it.
    const from = Date.now() - 15_000;
    const third = audio('wav', 6, 500);
    const writing = writeSlowly(node.spool, datedPath(day, 'third.wav'), third, 6, 6_000);
    const hold = await ask<{ incident: string }>(node, 'hold', { from: new Date(from).toISOString(), to: new Date(Date.now() + 3_000).toISOString(), cameras: ['door', 'calls'], reason: 'a call about the theft', by: 'custodian' });
    await writing;
    const synced = await waitFor(async () => {
      const i = await ask<Incident>(node, 'incident', { incident: hold.incident });
      return i.state === 'synced' && i;
    }, 'the hold sealed and synced', 90_000, 250);
    expect(synced.cameras).toEqual(['door', 'calls']);

    const folder = join(node.storage, 'incidents', hold.incident);
    const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as { files: { name: string; camera: string; kind?: string; sha256: string; bytes: number }[]; signature: { publicKey: string } };
    const calls = manifest.files.filter((f) => f.camera === 'calls');
    expect(calls.every((f) => f.kind === 'call' && /^calls\/\d{8}T\d{9}Z-/.test(f.name))).toBe(true);
    expect(sorted(calls.map((f) => f.sha256))).toEqual(sorted([first, second, third].map(sha)));
    for (const f of calls) expect(sha(await readFile(join(folder, f.name)))).toBe(f.sha256);
    expect(manifest.files.filter((f) => f.camera === 'door')).toHaveLength(1);
    const verified = await runCli(['evidence', 'verify', folder, '--key', manifest.signature.publicKey]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    // Upstream has them, byte for byte, under calls/.
    const up = join(node.nas, 'incidents', 'test-node', hold.incident);
    for (const f of calls) expect(sha(await readFile(join(up, f.name)))).toBe(f.sha256);
    const upstreamVerified = await runCli(['evidence', 'verify', up, '--key', manifest.signature.publicKey]);
    expect(upstreamVerified.code, upstreamVerified.stdout).toBe(0);

    // The press's clip has no calls.
    const lockDone = await waitFor(async () => {
      const i = await ask<Incident>(node, 'incident', { incident: pressed.id });
      return i.state === 'synced' && i;
    }, 'the press sealed', 60_000, 250);
    const lockManifest = JSON.parse(await readFile(join(node.storage, 'incidents', lockDone.id, 'manifest.json'), 'utf8')) as { files: { camera: string }[] };
    expect(lockManifest.files.map((f) => f.camera)).toEqual(['door']);
    expect(await readdir(join(node.storage, 'incidents', lockDone.id))).not.toContain('calls');
  }, 180_000);

  it('calls age out with maxAge and are not taken again while their source stays', async () => {
    const node = await makeNode({ storage: { maxAge: '8s' } });
    const agent = await start(node);
    const bytes = audio('wav', 2, 300);
    await writeSlowly(node.spool, datedPath(new Date(), 'aging.wav'), bytes, 2, 200);
    await waitFor(async () => (await callsState(node)).files === 1, 'the call taken', 30_000);
    await waitFor(async () => (await callsState(node)).files === 0, 'the call aged out', 40_000);
    const audit = (await readFile(join(node.dir, 'state', 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; reason?: string; cameras?: Record<string, { segments: number }[]> });
    const aged = audit.filter((e) => e.type === 'delete' && e.reason === 'age').flatMap((e) => e.cameras?.['calls'] ?? []);
    expect(aged.reduce((n, r) => n + r.segments, 0)).toBe(1);
    // The source is still in the spool (keepSource: true): never taken again, also after a restart.
    await sleep(3_000);
    await agent.stop();
    await start(node);
    await sleep(3_000);
    expect((await callsState(node)).files).toBe(0);
    expect([...(await takes(node)).values()]).toEqual([1]);
  }, 120_000);

  it('keepSource false deletes the spool file once the call is durable in the ring', async () => {
    const node = await makeNode({ calls: { keepSource: false } });
    await start(node);
    const bytes = audio('wav', 2, 300);
    const path = await writeSlowly(node.spool, datedPath(new Date(), 'moved.wav'), bytes, 2, 200);
    await waitFor(async () => (await callsState(node)).files === 1, 'the call taken', 30_000);
    await waitFor(async () => !(await readFile(path).then(() => true, () => false)), 'the source deleted', 10_000);
    expect([...(await ringCalls(node)).values()]).toEqual([sha(bytes)]);
  }, 60_000);

  it('under pressure on a small real disk, video and calls go oldest start first; a held call stays', async () => {
    const mnt = join(await tempDir('camnode-calls-disk-'), 'media');
    rig.dirs.push(join(mnt, '..'));
    await mkdir(mnt);
    await exec('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    cleanup(() => umount(mnt));
    const node = await makeNode({}, mnt);
    await start(node);
    const day = new Date();
    // A call every 3 s; the first is held as soon as it is in the ring.
    const sent: { rel: string; bytes: Buffer }[] = [];
    let held = '';
    let holdId = '';
    for (let i = 0; i < 16; i++) {
      const rel = datedPath(day, `call-${String(i).padStart(2, '0')}.wav`);
      const bytes = audio('wav', 3, 300 + i * 20);
      sent.push({ rel, bytes });
      await writeSlowly(node.spool, rel, bytes, 2, 400);
      if (i === 0) {
        const [name] = await waitFor(async () => [...(await ringCalls(node)).keys()].length === 1 && [...(await ringCalls(node)).keys()], 'the first call in the ring', 30_000);
        const footage = await ask<{ cameras: { ranges: { start: string; end: string }[] }[] }>(node, 'footage', { camera: 'calls' });
        const r = footage.cameras[0]!.ranges[0]!;
        holdId = (await ask<{ incident: string }>(node, 'hold', { from: r.start, to: r.end, cameras: ['calls'], reason: 'keep the first call', by: 'custodian' })).incident;
        held = name!;
      }
      await sleep(2_600);
    }
    // The ring has pruned both kinds by now (2 MB holds ~30 s of this camera and calls).
    const audit = async (): Promise<{ type: string; reason?: string; cameras?: Record<string, { from: string; to: string; segments: number }[]> }[]> =>
      (await readFile(join(node.dir, 'state', 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as never);
    // Video keeps coming: the ring goes on taking the oldest, whichever kind it is.
    const deleted = async (camera: string): Promise<number> => (await audit()).filter((e) => e.type === 'delete').flatMap((e) => e.cameras?.[camera] ?? []).reduce((n, r) => n + r.segments, 0);
    await waitFor(async () => (await deleted('calls')) >= 3 && (await deleted('door')) >= 3, 'calls and video pruned', 90_000);
    // The held call is kept: sealed whole as the hold's clip (the ring's copy may go after the seal).
    const heldClip = join(node.storage, 'incidents', holdId, 'calls', held);
    await waitFor(async () => readFile(heldClip).then(() => true, () => false), 'the held call sealed', 30_000);
    expect(sha(await readFile(heldClip))).toBe(sha(sent[0]!.bytes));
    const ring = await ringCalls(node);
    // Oldest start first across both: every call still in the ring (the held one aside) started
    // after every deleted video segment and call began, give or take the segment being cut.
    const deletes = (await audit()).filter((e) => e.type === 'delete' && e.reason === 'quota');
    const deletedStarts = deletes.flatMap((e) => Object.values(e.cameras ?? {}).flat().map((r) => Date.parse(r.from)));
    const lastDeletedStart = Math.max(...deletedStarts);
    const keptCalls = [...ring.keys()].filter((n) => n !== held).map((n) => Date.UTC(+n.slice(0, 4), +n.slice(4, 6) - 1, +n.slice(6, 8), +n.slice(9, 11), +n.slice(11, 13), +n.slice(13, 15), +n.slice(15, 18)));
    expect(keptCalls.length).toBeGreaterThan(0);
    for (const start of keptCalls) expect(start).toBeGreaterThan(lastDeletedStart - 1_000);
    const keptVideo = await listSegments(node.storage, 'door');
    for (const s of keptVideo) expect(s.startMs).toBeGreaterThan(lastDeletedStart - 1_000);
    // Calls were deleted, and video too.
    expect(deletes.some((e) => e.cameras?.['calls'])).toBe(true);
    expect(deletes.some((e) => e.cameras?.['door'])).toBe(true);
    // Every call taken once, never again after its prune.
    expect([...(await takes(node)).values()].every((n) => n === 1)).toBe(true);
  }, 180_000);
});
