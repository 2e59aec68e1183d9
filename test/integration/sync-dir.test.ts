// Sync onto a folder (issue 5 "Dir target", CONTRACT §2 `upstream: {type: dir}`, §4 layout)
// through the real CLI: a synthetic camera recorded by real ffmpeg, a lock over the control
// socket, the agent's own sealer and syncer, a temp folder standing in for the NAS share.
// The crash test kills the whole process group at the fault point between a clip's last write
// and its rename (CAMNODE_FAULT=sync.dir.before-rename), then restarts the agent under strace
// to see, from its system calls, that no byte of that clip is written again and that
// manifest.json is renamed into place only after every clip.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, CLI, runCli, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { recorderPids } from '../helpers/segments.js';

const NODE = 'test-node';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const strace = hasStrace();
if (!strace && process.env['CI'] === 'true') throw new Error('strace is required in CI (Debian package strace)');

interface Node {
  dir: string;
  configPath: string;
  storage: string;
  stateDir: string;
  socket: string;
  nas: string;
}

let agents: RunningAgent[] = [];
let dirs: string[] = [];

afterEach(async () => {
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

async function makeNode(opts: { roll?: string; maxRate?: string } = {}): Promise<Node> {
  const dir = await tempDir('camnode-sync-dir-');
  dirs.push(dir);
  const socket = join(dir, 'control.sock');
  const nas = join(dir, 'nas');
  await mkdir(nas); // upstream.path exists on the share: camnode never creates it
  const config = baseConfig(dir, [{ id: 'front', source: 'testsrc', zone: 'entrance' }], {
    incident: { preRoll: opts.roll ?? '2s', postRoll: opts.roll ?? '2s' },
    control: { socket },
    upstream: { type: 'dir', path: nas, ...(opts.maxRate ? { maxRate: opts.maxRate } : {}) },
  });
  return { dir, configPath: await writeConfig(dir, config), storage: join(dir, 'storage'), stateDir: join(dir, 'state'), socket, nas };
}

async function start(node: Node, opts: Parameters<typeof RunningAgent.start>[1] = {}): Promise<RunningAgent> {
  const agent = RunningAgent.start(node.configPath, opts);
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return agent;
}

/** Locks once some footage is there for the pre-roll; returns the incident id. */
async function lock(node: Node): Promise<string> {
  await waitFor(async () => (await readdir(join(node.storage, 'segments', 'front')).catch(() => [] as string[])).length >= 4, 'footage for the pre-roll', 30_000);
  const r = await runCli(['ctl', 'lock', '--local', '--config', node.configPath, '--json', '--reason', 'sync test']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { incident: string }).incident;
}

async function incidentState(node: Node, id: string): Promise<string> {
  const reply = await requestLocal(node.socket, 'incident', { incident: id }, 5_000);
  expect(reply.ok, JSON.stringify(reply)).toBe(true);
  return (reply.data as { state: string }).state;
}

/** The sealed folder's files, by name. */
async function sealedFiles(node: Node, id: string): Promise<Map<string, Buffer>> {
  const dir = join(node.storage, 'incidents', id);
  const files = new Map<string, Buffer>();
  for (const name of await readdir(dir)) files.set(name, await readFile(join(dir, name)));
  return files;
}

async function expectUpstreamIdentical(node: Node, id: string, sealed: Map<string, Buffer>): Promise<void> {
  const folder = join(node.nas, 'incidents', NODE, id);
  // Exactly the sealed files: no `.partial` left behind, nothing else.
  expect((await readdir(folder)).sort()).toEqual([...sealed.keys()].sort());
  for (const [name, data] of sealed) expect(sha256(await readFile(join(folder, name))), name).toBe(sha256(data));
  const manifest = JSON.parse(sealed.get('manifest.json')!.toString('utf8')) as { files: { name: string; bytes: number; sha256: string }[] };
  expect(manifest.files.map((f) => f.name)).toEqual(['front.mp4']);
  for (const f of manifest.files) expect(sha256(await readFile(join(folder, f.name)))).toBe(f.sha256);
}

describe('sync to a folder through the real CLI', () => {
  it('lock → sealed → synced: the folder holds the sealed files byte for byte; dispose then needs no force', async () => {
    const node = await makeNode();
    const agent = await start(node);
    const id = await lock(node);
    await agent.waitForLog((l) => l.msg === 'incident synced' && l['incident'] === id, 'incident synced', 60_000);
    expect(await incidentState(node, id)).toBe('synced');
    await expectUpstreamIdentical(node, id, await sealedFiles(node, id));

    const state = await runCli(['ctl', 'state', '--local', '--config', node.configPath, '--json']);
    expect(state.code, state.stderr).toBe(0);
    const parsed = JSON.parse(state.stdout) as { sync: unknown; incidents: { unsynced: number } };
    expect(parsed.sync).toEqual({ queued: 0, bytesPending: 0, lastError: null, current: null });
    expect(parsed.incidents.unsynced).toBe(0);
    expect(agent.count((l) => l.level >= 40 && String(l['component']) === 'sync')).toBe(0);

    // Synced, so the local copy may go without --force (CONTRACT §4); the upstream copy stays.
    const released = await runCli(['ctl', 'dispose', '--local', '--config', node.configPath, id, '--by', 'ops', '--reason', 'archived']);
    expect(released.code, released.stderr).toBe(0);
    await expect(stat(join(node.storage, 'incidents', id))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(join(node.nas, 'incidents', NODE, id))).sort()).toEqual(['front.mp4', 'manifest.json']);
    expect(await agent.stop()).toBe(0);
  });

  it('killed halfway through writing a clip: the torn temporary file is cut back and written again, never renamed half', async () => {
    // 2 Mbit/s: the folder target's 1 MiB chunks go out seconds apart, so the kill lands
    // between two of them (a ~7 s testsrc clip at 2 Mbit/s is ~1.7 MB: two chunks).
    const node = await makeNode({ roll: '3s', maxRate: '2Mbit' });
    const first = await start(node);
    const id = await lock(node);
    const manifestPath = join(node.storage, 'incidents', id, 'manifest.json');
    const folder = join(node.nas, 'incidents', NODE, id);
    const partial = join(folder, '.front.mp4.partial');
    const bytes = await waitFor(async () => {
      const m = await readFile(manifestPath, 'utf8').catch(() => null);
      return m ? (JSON.parse(m) as { files: { bytes: number }[] }).files[0]!.bytes : null;
    }, 'sealed', 60_000);
    expect(bytes, 'the clip must be longer than one 1 MiB chunk for a kill to land inside it').toBeGreaterThan(1024 * 1024);
    const torn = await waitFor(async () => {
      const size = await stat(partial).then((st) => st.size, () => 0);
      return size > 0 && size < bytes ? size : null;
    }, 'a half-written clip upstream', 30_000, 50);
    first.killGroup();
    await first.exited;
    // Only the torn temporary file; no final name, no manifest.
    expect(await readdir(folder)).toEqual(['.front.mp4.partial']);
    expect((await stat(partial)).size).toBeLessThan(bytes);
    expect(torn).toBeLessThan(bytes);

    const second = await start(node);
    await second.waitForLog((l) => l.msg === 'incident synced' && l['incident'] === id, 'incident synced after the restart', 60_000);
    await expectUpstreamIdentical(node, id, await sealedFiles(node, id));
    expect(await second.stop()).toBe(0);
  });

  it.skipIf(!strace)('killed between a clip\'s last write and its rename: on restart it is renamed, not re-sent, and the manifest comes last', async () => {
    const node = await makeNode();
    const first = await start(node, { env: { CAMNODE_FAULT: 'sync.dir.before-rename' } });
    const id = await lock(node);
    // The fault SIGKILLs the whole process group: the agent and its ffmpeg.
    const code = await Promise.race([first.exited, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 60_000))]);
    expect(code, `the agent should have died at the fault point\n${first.stderrText}`).toBeNull();
    expect(first.proc.signalCode).toBe('SIGKILL');
    expect(first.stderrText).toContain('fault injected at sync.dir.before-rename');
    expect(await recorderPids(node.storage)).toEqual([]);

    // What the kill left: the clip written whole under its temporary name, nothing final.
    const folder = join(node.nas, 'incidents', NODE, id);
    const sealed = await sealedFiles(node, id);
    const clip = sealed.get('front.mp4')!;
    expect(await readdir(folder)).toEqual(['.front.mp4.partial']);
    expect(sha256(await readFile(join(folder, '.front.mp4.partial')))).toBe(sha256(clip));
    const queue = JSON.parse(await readFile(join(node.stateDir, 'sync-queue.json'), 'utf8')) as { incidents: { incident: string; files: { name: string; done: boolean; progress: unknown }[] }[] };
    expect(queue.incidents).toHaveLength(1);
    expect(queue.incidents[0]!.files.map((f) => [f.name, f.done, f.progress])).toEqual([
      ['front.mp4', false, { kind: 'offset', offset: clip.length }],
      ['manifest.json', false, { kind: 'none' }],
    ]);
    const book = JSON.parse(await readFile(join(node.stateDir, 'incidents.json'), 'utf8')) as { incidents: { id: string; state: string }[] };
    expect(book.incidents.find((i) => i.id === id)?.state).toBe('sealed');

    // Restart without the fault, under strace: every rename, and every positioned write (the
    // folder target's writes) with the file each went to.
    const trace = join(node.dir, 'strace.log');
    const second = await start(node, {
      command: ['strace', '-f', '--seccomp-bpf', '-y', '-s', '512', '-e', 'trace=rename,renameat,renameat2,pwrite64,pwritev', '-o', trace, process.execPath, CLI],
    });
    await second.waitForLog((l) => l.msg === 'incident synced' && l['incident'] === id, 'incident synced after the restart', 60_000);
    expect(await incidentState(node, id)).toBe('synced');
    await expectUpstreamIdentical(node, id, sealed);

    const lines = (await readFile(trace, 'utf8')).split('\n');
    // Not one byte of the clip written again: the durable offset said it was all there.
    const rewrites = lines.filter((l) => /\bpwrite(?:64|v)?\(\d+<[^>]*\/\.front\.mp4\.partial>/.test(l));
    expect(rewrites).toEqual([]);
    // The manifest was written (so the trace does see this target's writes) …
    expect(lines.some((l) => /\bpwrite(?:64|v)?\(\d+<[^>]*\/\.manifest\.json\.partial>/.test(l))).toBe(true);
    // … and renamed into the incident's folder last, after the clip.
    const intoFolder = lines
      .filter((l) => /\brename(at2?)?\(/.test(l))
      .map((l) => [...l.matchAll(/"([^"]*)"/g)].map((m) => m[1]!))
      .filter((paths) => paths.length >= 2 && paths[1]!.startsWith(`${folder}/`))
      .map((paths) => [paths[0]!.slice(folder.length + 1), paths[1]!.slice(folder.length + 1)]);
    expect(intoFolder).toEqual([['.front.mp4.partial', 'front.mp4'], ['.manifest.json.partial', 'manifest.json']]);
    // A clean stop: SIGTERM to the agent itself (strace, the group leader, passes on its exit code).
    const [agentPid] = (await readFile(`/proc/${second.pid}/task/${second.pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
    process.kill(agentPid!, 'SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
