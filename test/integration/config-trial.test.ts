// A pushed config on trial (CONTRACT §9 Config push), end to end: a real TLS Mosquitto with the
// fleet's ACL, the real agent recording real RTSP cameras, `camnode ctl config --set` signing as
// an admin. A new camera records and the push commits; a changed camera restarts while the
// others' segments run on without a gap (checked in the files, and by the same ffmpeg process);
// a bad config changes nothing; a camera that never comes up is rolled back after
// fleet.rollbackAfter, the old config recording again; a push during a trial is a conflict; an
// ops principal may not push; `***` keeps the password; `camnode config reset` returns to the
// file; a trial cut short by a restart is rolled back at the next start.
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { startRtspServer, stopAllRtspServers, type RtspServer } from '../helpers/rtsp-server.js';
import { killAgentAndRecorders, listSegments } from '../helpers/segments.js';

const NODE = 'branch-trial';
const PASSWORD = 'Desk-Pass-2291';
const ROLLBACK_S = 15;

let broker: Mosquitto;
let dir: string;
let storage: string;
let configPath: string;
let agent: RunningAgent;
const cams: Record<string, RtspServer> = {};
const events: Record<string, unknown>[] = [];
let watcher: mqtt.MqttClient;

function ctlAs(name: string, ...args: string[]): Promise<CliResult> {
  const files = broker.certFor(`ops:${name}`);
  return runCli(['ctl', ...args], { env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key } });
}

async function state(): Promise<Record<string, unknown>> {
  const r = await ctlAs('vera', 'state', NODE, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

async function configInForce(): Promise<{ sha256: string; source: string; config: { cameras: Record<string, unknown>[]; [k: string]: unknown } }> {
  const r = await ctlAs('ada', 'config', NODE, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { sha256: string; source: string; config: { cameras: Record<string, unknown>[] } };
}

/** Pushes a document as an admin; the trial's sha256. */
async function push(document: unknown, name: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, stringify(document));
  const r = await ctlAs('ada', 'config', NODE, '--set', file, '--json');
  expect(r.code, r.stderr).toBe(0);
  const reply = JSON.parse(r.stdout) as { sha256: string; trialUntil: string };
  expect(reply.trialUntil).toMatch(/^\d{4}-\d\d-\d\dT/);
  return reply.sha256;
}

/** The first event of a type for a config, among those after the `since`-th (a config pushed twice has two trials). */
function eventFor(type: string, sha256: string, timeoutMs = 60_000, since = 0): Promise<Record<string, unknown>> {
  return waitFor(() => events.slice(since).find((e) => e['type'] === type && e['sha256'] === sha256), `${type} ${sha256.slice(0, 12)}`, timeoutMs);
}

/** The ffmpeg recording one camera (its output names the camera's folder). */
async function recorderOf(camera: string): Promise<number[]> {
  const marker = `${join(storage, 'segments', camera)}/`;
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(join('/proc', name, 'cmdline'), 'utf8').catch(() => '');
    const args = cmd.split('\0');
    if (/(^|\/)ffmpeg$/.test(args[0] ?? '') && args.some((a) => a.startsWith(marker))) pids.push(Number(name));
  }
  return pids;
}

/** Waits until a camera has finished segments that started after `ms`. */
async function segmentsAfter(camera: string, ms: number, n = 2): Promise<void> {
  await waitFor(async () => (await listSegments(storage, camera)).filter((s) => s.startMs > ms).length >= n, `${n} segments of ${camera}`, 30_000);
}

/** Every hole between a camera's consecutive segments within [fromMs, toMs], in ms. */
async function holes(camera: string, fromMs: number, toMs: number): Promise<number[]> {
  const segs = (await listSegments(storage, camera)).filter((s) => s.startMs + s.durationMs >= fromMs && s.startMs <= toMs);
  return segs.slice(1).map((s, i) => s.startMs - (segs[i]!.startMs + segs[i]!.durationMs));
}

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE], ops: ['ada:admin', 'otto:ops', 'vera:viewer'] });
  dir = await tempDir('camnode-trial-');
  storage = join(dir, 'storage');
  for (const id of ['entrance', 'desk', 'lobby']) cams[id] = await startRtspServer({ width: 320, height: 240, fps: 10, bitrateKbps: 200 });
  const node = broker.certFor(NODE);
  const config = baseConfig(dir, [
    { id: 'entrance', source: cams['entrance']!.url, zone: 'entrance' },
    { id: 'desk', source: cams['desk']!.url.replace('rtsp://', `rtsp://viewer:${PASSWORD}@`), zone: 'service-desk' },
  ], {
    node: { id: NODE },
    control: { socket: join(dir, 'control.sock') },
    mqtt: { url: broker.url, ca: broker.caFile, cert: node.cert, key: node.key, keepalive: '2s' },
    fleet: { crl: join(broker.caDir, 'crl.pem'), rollbackAfter: `${ROLLBACK_S}s` },
  });
  configPath = await writeConfig(dir, config);
  watcher = await mqtt.connectAsync(broker.url, { ...broker.tls('ops:vera'), reconnectPeriod: 500 });
  watcher.on('message', (_t, p) => events.push(JSON.parse(p.toString()) as Record<string, unknown>));
  await watcher.subscribeAsync(`camnode/${NODE}/events`, { qos: 1 });
  agent = RunningAgent.start(configPath);
  await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
  await segmentsAfter('entrance', 0);
  await segmentsAfter('desk', 0);
}, 90_000);

afterAll(async () => {
  await watcher?.endAsync(true);
  await killAgentAndRecorders(agent, storage);
  await stopAllRtspServers();
  await rm(dir, { recursive: true, force: true });
  await stopAllMosquittos();
});

describe('config push on trial', () => {
  it('adds a camera: it records, the push commits, the cameras already there go on in the same ffmpeg without a gap', async () => {
    const before = await configInForce();
    expect(before.source).toBe('file');
    const pids = { entrance: await recorderOf('entrance'), desk: await recorderOf('desk') };
    expect(pids.entrance).toHaveLength(1);
    const pushedAt = Date.now();
    const doc = before.config;
    doc.cameras.push({ id: 'lobby', source: cams['lobby']!.url, zone: 'seating' });
    const sha = await push(doc, 'add-lobby.yaml');
    const committed = await eventFor('config.committed', sha);
    expect(committed).toMatchObject({ source: 'pushed' });
    await segmentsAfter('lobby', pushedAt);
    await segmentsAfter('entrance', Date.now(), 1);
    expect(await recorderOf('entrance')).toEqual(pids.entrance);
    expect(await recorderOf('desk')).toEqual(pids.desk);
    // Not one segment missing. (A segment's start is stamped by the agent as it names the file,
    // so a busy moment shifts one by a fraction of a second; ffmpeg's own timeline is unbroken:
    // the same process wrote them all.)
    for (const camera of ['entrance', 'desk']) {
      for (const hole of await holes(camera, pushedAt - 3_000, Date.now())) expect(hole, camera).toBeLessThan(1_000);
    }
    const after = await configInForce();
    expect(after).toMatchObject({ source: 'pushed', sha256: sha });
    const s = await state();
    expect(s['configSource']).toBe('pushed');
    expect(s['configTrial']).toBeUndefined();
    expect((s['cameras'] as { id: string; state: string }[]).map((c) => c.id)).toEqual(['entrance', 'desk', 'lobby']);
    // Stored 0600 in node.stateDir/config/, with the password in force kept.
    const stored = join(dir, 'state', 'config', `${sha}.json`);
    expect((await stat(stored)).mode & 0o777).toBe(0o600);
    expect(await readFile(stored, 'utf8')).toContain(PASSWORD);
    expect(JSON.parse(await readFile(join(dir, 'state', 'config', 'committed.json'), 'utf8'))).toMatchObject({ sha256: sha });
  }, 90_000);

  it('changes one camera: only it restarts, with its gap listed in the state; *** keeps its password; the broker link stays up', async () => {
    const links = agent.count((l) => l.msg === 'connected to the broker');
    const doc = (await configInForce()).config;
    const desk = doc.cameras.find((c) => c['id'] === 'desk')!;
    expect(desk['source']).toContain('viewer:***@');
    desk['zone'] = 'collections';
    const entrancePid = await recorderOf('entrance');
    const deskPid = await recorderOf('desk');
    const pushedAt = Date.now();
    const sha = await push(doc, 'desk-zone.yaml');
    await eventFor('config.committed', sha);
    await segmentsAfter('desk', pushedAt);
    await segmentsAfter('entrance', Date.now(), 1);
    expect(await recorderOf('entrance')).toEqual(entrancePid);
    const newDesk = await recorderOf('desk');
    expect(newDesk).toHaveLength(1);
    expect(newDesk).not.toEqual(deskPid);
    for (const hole of await holes('entrance', pushedAt - 3_000, Date.now())) expect(hole).toBeLessThan(1_000);
    const restarted = await waitFor(async () => {
      const list = (await state())['restartedCameras'] as { camera: string; gapMs: number | null }[] | undefined;
      return list?.find((r) => r.camera === 'desk' && r.gapMs !== null);
    }, 'the desk camera\'s gap in the state');
    expect(restarted.gapMs).toBeGreaterThanOrEqual(0);
    // The hole in the files is the one the state gives.
    const deskHoles = await holes('desk', pushedAt - 3_000, Date.now());
    expect(deskHoles).toContain(restarted.gapMs);
    expect(await readFile(join(dir, 'state', 'config', `${sha}.json`), 'utf8')).toContain(PASSWORD);
    expect(agent.count((l) => l.msg === 'connected to the broker')).toBe(links);
  }, 90_000);

  it('a bad config is refused with every bad field, and nothing changes', async () => {
    const before = await configInForce();
    const doc = before.config as { cameras: Record<string, unknown>[]; storage: Record<string, unknown> };
    doc.cameras[0]!['zone'] = 'restroom';
    doc.storage['maxbytes'] = '1GB';
    const file = join(dir, 'bad.yaml');
    await writeFile(file, stringify(doc));
    const r = await ctlAs('ada', 'config', NODE, '--set', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('storage.maxbytes: unknown key (did you mean "maxBytes"?)');
    expect(r.stderr).toMatch(/cameras\[0\]\.zone: "restroom" is a private area/);
    expect((await configInForce()).sha256).toBe(before.sha256);
    expect((await state())['configTrial']).toBeUndefined();
  });

  it('an ops principal may not push (the broker\'s ACL refuses it)', async () => {
    const file = join(dir, 'desk-zone.yaml');
    const r = await ctlAs('otto', 'config', NODE, '--set', file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Not authorized');
  });

  it('a camera that never comes up: a push during the trial is a conflict; rolled back after rollbackAfter, the old config recording again', async () => {
    const before = await configInForce();
    const doc = before.config;
    doc.cameras.push({ id: 'attic', source: 'rtsp://127.0.0.1:9/nothing', zone: 'collections' });
    const sha = await push(doc, 'add-attic.yaml');
    const trial = (await state())['configTrial'] as { sha256: string; until: string };
    expect(trial.sha256).toBe(sha);
    const again = await ctlAs('ada', 'config', NODE, '--set', join(dir, 'desk-zone.yaml'));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('(conflict)');
    expect(again.stderr).toContain(`config ${sha.slice(0, 12)} is on trial until`);
    const rolled = await eventFor('config.rolledBack', sha, (ROLLBACK_S + 30) * 1000);
    expect(rolled['reason']).toMatch(/^not proven within fleet\.rollbackAfter: camera attic is (connecting|error|stalled)/);
    const after = await configInForce();
    expect(after).toMatchObject({ sha256: before.sha256, source: 'pushed' });
    const s = await state();
    expect((s['cameras'] as { id: string }[]).map((c) => c.id)).toEqual(['entrance', 'desk', 'lobby']);
    expect(s['configTrial']).toBeUndefined();
    expect(await recorderOf('attic')).toEqual([]);
    await segmentsAfter('entrance', Date.now(), 1);
    expect(JSON.parse(await readFile(join(dir, 'state', 'config', 'committed.json'), 'utf8'))).toMatchObject({ sha256: before.sha256 });
  }, 90_000);

  it('a trial cut short by a restart is rolled back at the next start', async () => {
    const before = await configInForce();
    const doc = before.config;
    doc.cameras.push({ id: 'attic', source: 'rtsp://127.0.0.1:9/nothing', zone: 'collections' });
    const since = events.length;
    const sha = await push(doc, 'add-attic-2.yaml');
    await agent.waitForLog((l) => l.msg === 'cameras applied from the config' && (l['start'] as string[]).includes('attic'), 'the push applied');
    expect(await agent.stop()).toBe(0);
    agent = RunningAgent.start(configPath);
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started again');
    const rolled = await eventFor('config.rolledBack', sha, 60_000, since);
    expect(rolled['reason']).toBe('the agent stopped during the trial: the previous config is in force');
    expect((await configInForce()).sha256).toBe(before.sha256);
  }, 90_000);

  it('the segment length: the ring and every recorder are rebuilt, each camera\'s gap listed; never two recorders for one camera', async () => {
    const doc = (await configInForce()).config as { recording?: Record<string, unknown> };
    doc.recording = { ...doc.recording, segmentSeconds: 2 };
    const before = { entrance: await recorderOf('entrance'), desk: await recorderOf('desk') };
    const pushedAt = Date.now();
    const sha = await push(doc, 'segment-2s.yaml');
    await eventFor('config.committed', sha);
    for (const camera of ['entrance', 'desk']) {
      await segmentsAfter(camera, pushedAt, 1);
      const now = await recorderOf(camera);
      expect(now, camera).toHaveLength(1);
      expect(now, camera).not.toEqual(before[camera as 'entrance' | 'desk']);
    }
    const restarted = await waitFor(async () => {
      const list = (await state())['restartedCameras'] as { camera: string; gapMs: number | null }[] | undefined;
      return list && ['entrance', 'desk'].every((c) => list.some((r) => r.camera === c && r.gapMs !== null)) ? list : undefined;
    }, 'both cameras\' gaps in the state');
    for (const r of restarted) expect(await holes(r.camera, pushedAt - 3_000, Date.now()), r.camera).toContain(r.gapMs);
    // 2-s segments from now on.
    const last = (await listSegments(storage, 'entrance')).at(-1)!;
    expect(last.durationMs).toBeGreaterThan(1_500);
  }, 90_000);

  it('camnode config reset returns to the file through a trial', async () => {
    const file = parse(await readFile(configPath, 'utf8')) as { cameras: unknown[] };
    const r = await runCli(['config', 'reset', '--config', configPath, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const reply = JSON.parse(r.stdout) as { sha256: string; trialUntil: string };
    await eventFor('config.committed', reply.sha256);
    const after = await configInForce();
    expect(after).toMatchObject({ source: 'file', sha256: reply.sha256 });
    expect(after.config.cameras).toHaveLength(file.cameras.length);
    await expect(stat(join(dir, 'state', 'config', 'committed.json'))).rejects.toThrow(/ENOENT/);
    // Nothing to reset any more.
    const again = await runCli(['config', 'reset', '--config', configPath]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('is already the one in force; nothing to try');
    const s = await state();
    expect(s['configSource']).toBe('file');
    expect((s['cameras'] as { id: string }[]).map((c) => c.id)).toEqual(['entrance', 'desk']);
  }, 90_000);
});
