// The incident book from the outside (CONTRACT §1, §3, §4, §5), through the real CLI with a real
// RTSP camera: dispose (refused while active or unsynced, audited, deletes the local copy),
// a corrupt book on restart (reported, kept aside, incidents recovered from the audit log and
// the sealed folders — never silently empty), and bad input on the control socket (an error
// reply and a log line each, nothing changed, the agent keeps answering).
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { LineClient } from '../helpers/line-client.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult, type LogLine } from '../helpers/agent.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments } from '../helpers/segments.js';

const CAMERAS = ['front', 'back'];
const WARN = 40;
const ERROR = 50;

interface Incident {
  id: string;
  node: string;
  triggers: { at: string; via: string; by?: string; reason?: string }[];
  cameras: string[];
  window: { start: string; end: string };
  state: string;
  urgent: boolean;
}
type AuditEntry = { seq: number; prev: string; ts: string; type: string; [k: string]: unknown };

interface Node {
  dir: string;
  configPath: string;
  storage: string;
  stateDir: string;
  socket: string;
  agent: RunningAgent;
}

const { servers, agents, dirs } = useRtspRig(CAMERAS);

async function makeNode(over: Record<string, Record<string, unknown>> = {}): Promise<Omit<Node, 'agent'>> {
  const dir = await tempDir('camnode-book-');
  dirs.push(dir);
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: servers.get(id)!.url, zone: 'entrance' })), {
    incident: { preRoll: '2s', postRoll: '2s', maxLength: '1h' },
    control: { socket },
    ...over,
  });
  return { dir, socket, configPath: await writeConfig(dir, config), storage: join(dir, 'storage'), stateDir: join(dir, 'state') };
}

async function launch(node: Omit<Node, 'agent'>, env?: NodeJS.ProcessEnv): Promise<Node> {
  const agent = RunningAgent.start(node.configPath, env ? { env } : {});
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return { ...node, agent };
}

async function startNode(over: Record<string, Record<string, unknown>> = {}): Promise<Node> {
  return launch(await makeNode(over));
}

async function recordedFor(node: Node, seconds: number): Promise<void> {
  for (const c of CAMERAS) {
    await waitFor(async () => (await listSegments(node.storage, c)).length >= seconds + 1, `${seconds + 1} segments of ${c}`, 30_000);
  }
}

function ctl(node: Node, sub: string, ...args: string[]): Promise<CliResult> {
  return runCli(['ctl', sub, '--local', '--config', node.configPath, ...args]);
}

async function ctlJson<T>(node: Node, sub: string, ...args: string[]): Promise<T> {
  const r = await ctl(node, sub, '--json', ...args);
  expect(r.code, `ctl ${sub} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

async function lock(node: Node, ...args: string[]): Promise<string> {
  const r = await ctlJson<{ incident: string; extended: boolean }>(node, 'lock', ...args);
  expect(r.extended).toBe(false);
  return r.incident;
}

async function listIncidents(node: Node): Promise<Incident[]> {
  return (await ctlJson<{ incidents: Incident[] }>(node, 'incidents')).incidents;
}

async function readIncident(node: Node, id: string): Promise<Incident> {
  const reply = await requestLocal(node.socket, 'incident', { incident: id }, 5_000);
  expect(reply.ok, JSON.stringify(reply)).toBe(true);
  return reply.data as Incident;
}

function waitForState(node: Node, id: string, state: string, timeoutMs = 30_000): Promise<Incident> {
  return waitFor(async () => {
    const i = await readIncident(node, id);
    return i.state === state && i;
  }, `incident ${id} ${state}`, timeoutMs, 250);
}

async function auditEntries(node: Pick<Node, 'stateDir'>): Promise<AuditEntry[]> {
  const text = await readFile(join(node.stateDir, 'audit.log'), 'utf8');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry);
}

describe('disposing of incidents', () => {
  it('refuses while active or being sealed, disposes of a sealed one (upstream none): audited, local copy deleted; bad arguments and unknown ids refused', async () => {
    // ffmpeg as the agent finds it on PATH: the real one, but slow to assemble a clip, so a
    // a dispose can land while the incident is `sealing`.
    const made = await makeNode();
    const bin = join(made.dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'ffmpeg'), '#!/bin/sh\ncase " $* " in *" concat "*) sleep 3 ;; esac\nexec /usr/bin/ffmpeg "$@"\n', { mode: 0o755 });
    const node = await launch(made, { PATH: `${bin}:${process.env['PATH'] ?? ''}` });
    await recordedFor(node, 2);
    const id = await lock(node, '--reason', 'shoplifting', '--by', 'desk');

    const early = await ctl(node, 'dispose', id, '--by', 'counsel', '--reason', 'subpoena');
    expect(early.code, early.stderr).toBe(1);
    expect(early.stderr).toContain('(conflict)');
    expect(early.stderr).toContain('still active');
    expect((await readIncident(node, id)).state).toBe('active');

    // Not even by force while the clips are being written: disposed of then, the incident would
    // lose its half-written clips to nobody, or come back sealed.
    await waitForState(node, id, 'sealing', 20_000);
    const during = await ctl(node, 'dispose', id, '--by', 'counsel', '--reason', 'subpoena', '--force');
    expect(during.code, during.stdout + during.stderr).toBe(1);
    expect(during.stderr).toContain('(conflict)');
    expect(during.stderr).toContain('being sealed');

    // Usage errors exit 2 and never reach the book; an unknown id is not_found (exit 1).
    // Who asks is required of every sender until commands are signed: the node says so.
    const noBy = await ctl(node, 'dispose', id, '--reason', 'subpoena');
    expect(noBy.code, noBy.stderr).toBe(2);
    expect(noBy.stderr).toContain('by: required');
    const noReason = await ctl(node, 'dispose', id, '--by', 'counsel');
    expect(noReason.code, noReason.stderr).toBe(2);
    const noId = await ctl(node, 'dispose', '--by', 'counsel', '--reason', 'subpoena');
    expect(noId.code, noId.stderr).toBe(2);
    const badId = await ctl(node, 'dispose', 'yesterday', '--by', 'counsel', '--reason', 'subpoena');
    expect(badId.code, badId.stderr).toBe(2);
    expect(badId.stderr).toContain('bad_request');
    const unknown = await ctl(node, 'dispose', '20200101T000000Z-abcd', '--by', 'counsel', '--reason', 'subpoena');
    expect(unknown.code, unknown.stderr).toBe(1);
    expect(unknown.stderr).toContain('not_found');
    const unknownShow = await ctl(node, 'incident', '20200101T000000Z-abcd');
    expect(unknownShow.code, unknownShow.stderr).toBe(1);
    expect(unknownShow.stderr).toContain('not_found');
    expect((await auditEntries(node)).filter((e) => e.type.startsWith('dispose'))).toEqual([]);

    await waitForState(node, id, 'sealed');
    const folder = join(node.storage, 'incidents', id);
    expect((await readdir(folder)).sort()).toEqual(['back.mp4', 'front.mp4', 'manifest.json']);

    const released = await ctl(node, 'dispose', id, '--by', 'counsel', '--reason', 'subpoena');
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout.trim()).toBe(`disposed of incident ${id}`);
    expect(existsSync(folder)).toBe(false);
    expect((await listIncidents(node)).map((i) => [i.id, i.state])).toEqual([[id, 'disposed']]);
    // Lock entries carry the whole incident, the others its id.
    const entries = (await auditEntries(node)).filter((e) => e['incident'] === id || (e['incident'] as Incident | undefined)?.id === id);
    expect(entries.map((e) => e.type)).toEqual(['lock', 'seal', 'dispose']);
    expect(entries[2]).toMatchObject({ by: 'counsel', reason: 'subpoena' });
    expect(node.agent.find((l) => l.msg.startsWith('incident disposed of') && l['incident'] === id)?.level).toBeGreaterThanOrEqual(WARN);

    // Once disposed of, a second dispose is a conflict and changes nothing.
    const again = await ctl(node, 'dispose', id, '--by', 'counsel', '--reason', 'subpoena');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already disposed of');
    expect((await auditEntries(node)).filter((e) => e.type.startsWith('dispose'))).toHaveLength(1);

    const audit = await runCli(['audit', 'verify', '--config', node.configPath]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(await node.agent.stop()).toBe(0);
  });

  it('with an upstream, a sealed but unsynced incident is disposed of only by force, audited as dispose.forced', async () => {
    // An upstream folder that can never be created (its parent is a file): sealed stays unsynced.
    const dir = await tempDir('camnode-upstream-');
    dirs.push(dir);
    await writeFile(join(dir, 'a-file'), 'not a folder\n');
    const node = await startNode({ upstream: { type: 'dir', path: join(dir, 'a-file', 'nas') } });
    await recordedFor(node, 2);
    const id = await lock(node);
    await waitForState(node, id, 'sealed');
    await node.agent.waitForLog((l) => l['component'] === 'sync' && l.level >= WARN, 'the upload failing', 10_000);
    expect((await readIncident(node, id)).state).toBe('sealed');
    const refused = await ctl(node, 'dispose', id, '--by', 'ops', '--reason', 'done');
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain('not been synced');
    expect(existsSync(join(node.storage, 'incidents', id))).toBe(true);

    const forced = await ctl(node, 'dispose', id, '--by', 'ops', '--reason', 'done', '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(existsSync(join(node.storage, 'incidents', id))).toBe(false);
    expect((await readIncident(node, id)).state).toBe('disposed');
    const audit = (await auditEntries(node)).filter((e) => e.type.startsWith('dispose'));
    expect(audit).toEqual([expect.objectContaining({ type: 'dispose.forced', incident: id, by: 'ops', reason: 'done', state: 'sealed' })]);
    expect(await node.agent.stop()).toBe(0);
  });
});

describe('a corrupt incident book', () => {
  it('is reported, kept aside, and every incident recovered from the audit log and the sealed folders', async () => {
    const node = await startNode({ incident: { preRoll: '2s', postRoll: '1s', maxLength: '1h' } });
    await recordedFor(node, 2);
    const sealedId = await lock(node, '--reason', 'first');
    await waitForState(node, sealedId, 'sealed');
    const activeId = await lock(node, '--reason', 'second', '--by', 'desk', '--post-roll', '12s');
    const sealed = await readIncident(node, sealedId);
    const active = await readIncident(node, activeId);
    expect(active.state).toBe('active');
    expect(await node.agent.stop()).toBe(0);

    const book = join(node.stateDir, 'incidents.json');
    const corruptions: [string, () => Promise<void>][] = [
      ['truncated', async () => truncate(book, Math.floor((await readFile(book)).length / 2))],
      ['not JSON', async () => writeFile(book, 'this is not JSON {{{\n')],
    ];
    let agent = node.agent;
    for (const [what, corrupt] of corruptions) {
      await corrupt();
      const damaged = await readFile(book);
      const keptBefore = (await readdir(node.stateDir)).filter((n) => n.startsWith('incidents.json.corrupt-'));
      agent = (await launch(node)).agent;
      const restarted = { ...node, agent };
      expect(Date.parse(active.window.end), `${what}: the restart took so long that the active incident's window closed`).toBeGreaterThan(Date.now() + 1_000);

      const report = agent.find((l: LogLine) => l.msg.startsWith('incident book is corrupt'));
      expect(report, `${what}: corruption reported`).toBeDefined();
      expect(report!.level, what).toBe(ERROR);
      const incidents = await listIncidents(restarted);
      expect(incidents.map((i) => i.id), what).toEqual([sealedId, activeId]);
      expect(incidents[0], what).toEqual(sealed);
      expect(incidents[1], what).toEqual(active);

      // The damaged file is kept, byte for byte, beside the rebuilt book.
      const kept = (await readdir(node.stateDir)).filter((n) => n.startsWith('incidents.json.corrupt-') && !keptBefore.includes(n));
      expect(kept, what).toHaveLength(1);
      expect(String(report!['keptAs']), what).toBe(join(node.stateDir, kept[0]!));
      expect(await readFile(join(node.stateDir, kept[0]!)), what).toEqual(damaged);
      const rebuilt = JSON.parse(await readFile(book, 'utf8')) as { incidents: Incident[] };
      expect(rebuilt.incidents.map((i) => [i.id, i.state]), what).toEqual([[sealedId, 'sealed'], [activeId, 'active']]);

      if (what !== corruptions.at(-1)![0]) expect(await agent.stop()).toBe(0);
    }

    // The recovered lock is live: its window is sealed when it ends, pre-roll from before the
    // restarts included; the sealed one is still releasable.
    const restarted = { ...node, agent };
    const done = await waitForState(restarted, activeId, 'sealed', 40_000);
    expect(done.window).toEqual(active.window);
    const manifest = JSON.parse(await readFile(join(node.storage, 'incidents', activeId, 'manifest.json'), 'utf8')) as { files: { camera: string; start: string }[] };
    expect(manifest.files.map((f) => f.camera).sort()).toEqual([...CAMERAS].sort());
    for (const f of manifest.files) expect(Date.parse(f.start)).toBeLessThan(Date.parse(active.triggers[0]!.at));
    expect((await ctl(restarted, 'dispose', sealedId, '--by', 'counsel', '--reason', 'closed')).code).toBe(0);
    const audit = await runCli(['audit', 'verify', '--config', node.configPath]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
    expect(await agent.stop()).toBe(0);
  });
});

describe('bad input on the control socket', () => {
  it('gets an error reply and a log line each, changes nothing, and the agent keeps answering', async () => {
    const node = await startNode();
    expect((await stat(node.socket)).mode & 0o777, 'control socket mode').toBe(0o660);
    const client = await LineClient.open(node.socket);
    const refusals = () => node.agent.count((l) => l.level >= WARN && (l['component'] === 'control' || l['component'] === 'commands'));
    const cases: [string, string, string][] = [
      // [raw line, expected code, a piece of the message]
      ['this is not JSON\n', 'bad_request', 'malformed request'],
      ['[1,2,3]\n', 'bad_request', 'not a JSON object'],
      ['{"id":1,"cmd":"explode","args":{}}\n', 'bad_request', 'unknown command "explode"'],
      ['{"id":2,"args":{}}\n', 'bad_request', 'unknown command'],
      ['{"id":3,"cmd":"lock","args":{"preRoll":"soon"}}\n', 'bad_request', 'preRoll'],
      ['{"id":4,"cmd":"lock","args":{"postRoll":-5}}\n', 'bad_request', 'postRoll'],
      ['{"id":5,"cmd":"lock","args":{"cameras":"front"}}\n', 'bad_request', 'cameras'],
      ['{"id":6,"cmd":"lock","args":{"cameras":["nowhere"]}}\n', 'bad_request', 'nowhere'],
      ['{"id":7,"cmd":"lock","args":{"urgent":"yes"}}\n', 'bad_request', 'urgent'],
      ['{"id":8,"cmd":"lock","args":{"colour":"red"}}\n', 'bad_request', 'unknown argument "colour"'],
      ['{"id":9,"cmd":"lock","args":[1]}\n', 'bad_request', 'lock'],
      [`{"id":10,"cmd":"lock","args":{"reason":"${'x'.repeat(600)}"}}\n`, 'bad_request', 'reason'],
      ['{"id":11,"cmd":"dispose","args":{"incident":"20200101T000000Z-abcd","by":"x"}}\n', 'bad_request', 'reason: required'],
      ['{"id":12,"cmd":"dispose","args":{"incident":"../../etc","by":"x","reason":"y"}}\n', 'bad_request', 'incident'],
      ['{"id":13,"cmd":"incident","args":{"incident":"20200101T000000Z-abcd"}}\n', 'not_found', '20200101T000000Z-abcd'],
      ['{"id":14,"cmd":"ping","args":{"verbose":true}}\n', 'bad_request', 'unknown argument "verbose"'],
    ];
    for (const [raw, code, message] of cases) {
      const logged = refusals();
      const reply = await client.ask(raw);
      const expectedId = /"id":(\d+)/.exec(raw)?.[1];
      expect(reply, raw).toMatchObject({ ok: false, error: { code, message: expect.stringContaining(message) } });
      expect(reply.id, raw).toBe(expectedId === undefined ? null : Number(expectedId));
      await waitFor(() => refusals() > logged, `a log line for ${raw.slice(0, 60)}`, 5_000, 50);
    }
    // The same connection still serves good requests, including one split across writes.
    client.socket.write('{"id":"split","cmd":"pi');
    expect(await client.ask('ng","args":{}}\n')).toMatchObject({ id: 'split', ok: true, data: { version: expect.any(String) } });
    client.close();

    // A 2 MB line: refused (an error reply if it gets through) and the connection closed.
    const big = await LineClient.open(node.socket);
    let received = '';
    big.socket.on('data', (d: string) => { received += d; });
    big.socket.write(`{"id":"big","cmd":"lock","args":{"reason":"${'y'.repeat(2 * 1024 * 1024)}"}}\n`);
    await big.closed;
    if (received !== '') expect(JSON.parse(received.split('\n')[0]!)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    await node.agent.waitForLog((l) => l.msg === 'control request refused; connection closed' && String(l['reason']).includes('larger than'), 'the oversize line logged', 5_000);

    // Nothing changed: no incident, no lock in the audit log, no sealed folder; still answering.
    expect(node.agent.proc.exitCode).toBeNull();
    expect(await listIncidents(node)).toEqual([]);
    expect((await auditEntries(node)).filter((e) => ['lock', 'extend', 'seal', 'dispose', 'dispose.forced'].includes(e.type))).toEqual([]);
    expect(await readdir(join(node.storage, 'incidents')).catch(() => [])).toEqual([]);
    const ping = await ctl(node, 'ping');
    expect(ping.code, ping.stderr).toBe(0);
    expect(node.agent.find((l) => l.level >= ERROR)).toBeUndefined();
    expect(await node.agent.stop()).toBe(0);
  });
});
