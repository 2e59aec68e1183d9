// The fleet link from the outside (CONTRACT §1 ctl, §3), against a real Mosquitto configured
// from provisioning/ (TLS, client certificates, the ACL) and the real agent run through the CLI
// with synthetic cameras:
// - the retained status goes online with the node's public key, and offline through the will
//   when the process group is SIGKILLed, and through the node itself on a clean stop;
// - every command of §3 over MQTT 5 and over 3.1.1 (the node configured for each in turn),
//   through `camnode ctl` and through a raw MQTT.js client checking the exact reply shapes:
//   Correlation Data echoed (v5), `{"id","ok"}` on replyTo (3.1.1), MQTT 5 winning over the
//   payload form when both are there.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { signingWith, type Signing } from '../../src/ops/signer.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { recorderPids } from '../helpers/segments.js';

const run = promisify(execFile);
const NODE = 'node-1';
const CAMERAS = ['cam-a', 'cam-b'];
const PREFIX = 'camnode';
const REPLY_BASE = `${PREFIX}/${NODE}/reply`;
/** Where a node answers ops:admin's signed commands (CONTRACT §7): only ops:admin may read there. */
const ADMIN_REPLIES = `${REPLY_BASE}/ops:admin`;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const INCIDENT_ID = /^\d{8}T\d{6}Z-[a-z2-7]{4}$/;

type Version = 5 | '3.1.1';
interface Msg { topic: string; body: unknown; raw: string; retain: boolean; correlationData?: Buffer }
interface Node { dir: string; configPath: string; agent: RunningAgent }

let broker: Mosquitto;
const agents: RunningAgent[] = [];
const dirs: string[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE], ops: ['admin'] });
});
afterAll(async () => {
  await stopAllMosquittos();
});

async function cleanup(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  for (const a of agents.splice(0)) {
    a.killGroup();
    await a.exited;
  }
  for (const d of dirs.splice(0)) {
    // A recorder orphaned by a failure must not outlive its test.
    for (const pid of await recorderPids(join(d, 'storage'))) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await rm(d, { recursive: true, force: true });
  }
}

async function startNode(version: Version): Promise<Node> {
  const dir = await tempDir('camnode-fleet-cmd-');
  dirs.push(dir);
  const files = broker.certFor(NODE);
  const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: 'testsrc', zone: 'entrance' })), {
    node: { id: NODE },
    incident: { preRoll: '2s', postRoll: '60s', maxLength: '1h' },
    control: { socket: join(dir, 'control.sock') },
    // A folder upstream whose root is not there yet: sealed incidents wait in the queue.
    upstream: { type: 'dir', path: join(dir, 'nas') },
    mqtt: { url: broker.url, protocolVersion: version, ca: broker.caFile, cert: files.cert, key: files.key, keepalive: '2s', stateInterval: '60s' },
  });
  const configPath = await writeConfig(dir, config);
  const agent = RunningAgent.start(configPath);
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
  return { dir, configPath, agent };
}

/** An ops client (CN ops:admin) that records every message it receives. */
async function connectOps(version: Version): Promise<{ client: MqttClient; got: Msg[] }> {
  const client = await mqtt.connectAsync(broker.url, {
    ...broker.tls('ops:admin'),
    protocolVersion: version === 5 ? 5 : 4,
    clientId: `ops-test-${randomUUID().slice(0, 8)}`,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  clients.push(client);
  const got: Msg[] = [];
  client.on('message', (topic, payload, packet) => {
    const raw = payload.toString('utf8');
    let body: unknown;
    try { body = JSON.parse(raw); } catch { body = undefined; }
    const correlationData = packet.properties?.correlationData;
    got.push({ topic, body, raw, retain: packet.retain, ...(correlationData ? { correlationData } : {}) });
  });
  return { client, got };
}

function ctlEnv(): NodeJS.ProcessEnv {
  const ops = broker.certFor('ops:admin');
  return { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: ops.cert, CAMNODE_CTL_KEY: ops.key };
}

function ctl(version: Version, ...args: string[]): Promise<CliResult> {
  return runCli(['ctl', ...args, '--mqtt-version', String(version)], { env: ctlEnv() });
}

async function ctlJson<T>(version: Version, ...args: string[]): Promise<T> {
  const r = await ctl(version, ...args, '--json');
  expect(r.code, `ctl ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

function statusOf(got: Msg[]): Msg[] {
  return got.filter((m) => m.topic === `${PREFIX}/${NODE}/status`);
}

describe('retained status and last will', () => {
  afterEach(cleanup);

  it('goes online with the public key, offline through the will on SIGKILL, and offline on a clean stop', async () => {
    const watcher = await connectOps(5);
    await watcher.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });

    const node = await startNode(5);
    const started = node.agent.find((l) => l.msg === 'agent started')!;
    expect(started['publicKey']).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const online = await waitFor(() => statusOf(watcher.got).find((m) => (m.body as { online?: boolean }).online === true), 'status online', 15_000);
    expect(online.body).toEqual({
      online: true, version: VERSION, since: expect.stringMatching(ISO), publicKey: started['publicKey'], commands: 'signed',
      // CONTRACT §7: every key the node used, first used when it was made (this fresh node: at start).
      keys: [{ publicKey: started['publicKey'], firstUsed: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/) }],
      // CONTRACT §9: the config in force.
      configSha256: expect.stringMatching(/^[0-9a-f]{64}$/), configSource: 'file',
    });
    expect(Buffer.from(started['publicKey'] as string, 'base64')).toHaveLength(32);

    // The whole process group dies at once, as systemd does it: only the will can say so.
    const before = statusOf(watcher.got).length;
    node.agent.killGroup();
    await node.agent.exited;
    const offline = await waitFor(() => statusOf(watcher.got).slice(before).find((m) => (m.body as { online?: boolean }).online === false), 'will: status offline', 15_000);
    expect(offline.raw).toBe('{"online":false}');
    // Retained: someone who subscribes only now learns the node is offline.
    const late = await connectOps(5);
    await late.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
    const retained = await waitFor(() => statusOf(late.got)[0], 'retained status', 5_000);
    expect(retained).toMatchObject({ retain: true, raw: '{"online":false}' });

    // Back online (a fresh start), then a clean SIGTERM: the node says so itself before leaving.
    const mark = statusOf(watcher.got).length;
    const again = await startNode(5);
    await waitFor(() => statusOf(watcher.got).slice(mark).find((m) => (m.body as { online?: boolean }).online === true), 'status online again', 15_000);
    const mark2 = statusOf(watcher.got).length;
    expect(await again.agent.stop()).toBe(0);
    const clean = await waitFor(() => statusOf(watcher.got).slice(mark2)[0], 'status after a clean stop', 10_000);
    expect(clean.raw).toBe('{"online":false}');
    const late2 = await connectOps(5);
    await late2.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
    expect(await waitFor(() => statusOf(late2.got)[0], 'retained status', 5_000)).toMatchObject({ retain: true, raw: '{"online":false}' });
  });
});

describe.each([5, '3.1.1'] as Version[])('every command over MQTT %s', (version) => {
  let node: Node;
  let ops: { client: MqttClient; got: Msg[] };
  let signing: Signing;

  beforeAll(async () => {
    const admin = broker.certFor('ops:admin');
    signing = signingWith({ certPem: await readFile(admin.cert, 'utf8'), keyPem: await readFile(admin.key, 'utf8') });
    node = await startNode(version);
    ops = await connectOps(version);
    await ops.client.subscribeAsync(`${REPLY_BASE}/#`, { qos: 1 });
    // Both cameras recording before the commands that report or capture them.
    await waitFor(async () => {
      const s = (await request('state', {})).body as { data: { cameras: { state: string }[] } };
      return s.data.cameras.every((c) => c.state === 'recording');
    }, 'both cameras recording', 30_000, 500);
  });
  afterAll(cleanup);

  /**
   * One request from the raw client in the form of its protocol (v5: Response Topic and
   * Correlation Data; 3.1.1: replyTo and id in the payload), signed by ops:admin (the JWS
   * names the same reply topic); resolves with the one reply.
   */
  async function request(cmd: string, args: Record<string, unknown>, opts: { id?: unknown } = {}): Promise<Msg> {
    const replyTo = `${ADMIN_REPLIES}/raw-${randomUUID()}`;
    const correlationData = Buffer.from(randomUUID());
    const v5 = version === 5;
    const jws = await signing.sign(NODE, cmd, args, replyTo);
    const payload: Record<string, unknown> = v5 ? { jws } : { jws, replyTo, id: opts.id ?? randomUUID() };
    const publish: IClientPublishOptions = { qos: 1, ...(v5 ? { properties: { responseTopic: replyTo, correlationData } } : {}) };
    await ops.client.publishAsync(`${PREFIX}/${NODE}/cmd/${cmd}`, JSON.stringify(payload), publish);
    const reply = await waitFor(() => ops.got.find((m) => m.topic === replyTo), `reply to ${cmd}`, 20_000, 20);
    if (v5) {
      expect(reply.correlationData?.equals(correlationData), 'Correlation Data echoed').toBe(true);
      expect(reply.body).not.toHaveProperty('id');
    } else {
      expect((reply.body as { id: unknown }).id).toEqual(payload['id']);
      expect(reply.correlationData).toBeUndefined();
    }
    expect(ops.got.filter((m) => m.topic === replyTo)).toHaveLength(1);
    return reply;
  }

  /** The reply body without the 3.1.1 id, which `request` has checked already. */
  function body(reply: Msg): Record<string, unknown> {
    const { id: _id, ...rest } = reply.body as Record<string, unknown>;
    return rest;
  }

  it('ping', async () => {
    const r = await request('ping', {}, { id: 42 });
    expect(Object.keys(r.body as object)).toEqual(version === 5 ? ['ok', 'data'] : ['id', 'ok', 'data']);
    expect(body(r)).toEqual({ ok: true, data: { version: VERSION } });
    if (version === '3.1.1') expect(r.raw).toBe(`{"id":42,"ok":true,"data":{"version":"${VERSION}"}}`);

    expect(await ctlJson(version, 'ping', NODE)).toEqual({ version: VERSION });
    const text = await ctl(version, 'ping', NODE);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^pong from ${NODE} \\(camnode ${VERSION.replace(/\./g, '\\.')}\\) in \\d+ ms\\n$`));
  });

  it('state, which is also re-published retained on <prefix>/<node>/state', async () => {
    const watch = await connectOps(version);
    await watch.client.subscribeAsync(`${PREFIX}/${NODE}/state`, { qos: 1 });
    await waitFor(() => watch.got.length > 0, 'the retained state', 5_000);
    const r = await request('state', {});
    const data = (body(r) as { ok: boolean; data: Record<string, unknown> }).data;
    expect(body(r).ok).toBe(true);
    expect(data).toMatchObject({
      ts: expect.stringMatching(ISO),
      cameras: CAMERAS.map((id) => ({ id, state: 'recording', lastSegmentAt: expect.stringMatching(ISO), kbps: expect.any(Number), restarts: 0 })),
      storage: { quotaBytes: expect.any(Number), usedBytes: expect.any(Number), freeBytes: expect.any(Number) },
      incidents: { active: expect.any(Number), held: expect.any(Number), unsynced: expect.any(Number) },
      sync: { queued: 0, bytesPending: 0, lastError: null, current: null },
      health: { load: expect.any(Number), memUsedPct: expect.any(Number), uptimeS: expect.any(Number) },
    });
    // With an upstream the state also names the last audit head signed upstream (CONTRACT §7).
    expect(Object.keys(data).sort()).toEqual(['audit', 'cameras', 'configSource', 'health', 'incidents', 'policy', 'storage', 'sync', 'ts']);
    // The policy's signage attestation (CONTRACT §7): this config has none.
    expect(data['policy']).toEqual({ signage: 'missing' });
    const audit = data['audit'] as { logId: string; seq: number; head: string; at: string } | null;
    if (audit !== null) expect(audit).toEqual({ logId: expect.stringMatching(/^\d{8}T\d{6}Z$/), seq: expect.any(Number), head: expect.stringMatching(/^[0-9a-f]{64}$/), at: expect.stringMatching(ISO) });
    // The very document of the reply went out on the state topic, and stays there retained.
    await waitFor(() => watch.got.find((m) => (m.body as { ts?: string }).ts === data['ts']), 'the re-published state', 5_000);
    expect(watch.got.find((m) => (m.body as { ts?: string }).ts === data['ts'])!.body).toEqual(data);
    const late = await connectOps(version);
    await late.client.subscribeAsync(`${PREFIX}/${NODE}/state`, { qos: 1 });
    const retained = await waitFor(() => late.got[0], 'retained state', 5_000);
    expect(retained.retain).toBe(true);
    expect((retained.body as { ts: string }).ts >= (data['ts'] as string)).toBe(true);

    const viaCtl = await ctlJson<{ cameras: { id: string; state: string }[]; sync: unknown }>(version, 'state', NODE);
    expect(viaCtl.cameras.map((c) => [c.id, c.state])).toEqual(CAMERAS.map((id) => [id, 'recording']));
    const text = await ctl(version, 'state', NODE);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${NODE} at `));
    for (const id of CAMERAS) expect(text.stdout).toMatch(new RegExp(`^  ${id}\\s+recording`, 'm'));
  });

  it('ctl nodes shows the node online with its cameras up', async () => {
    const rows = await ctlJson<{ node: string; online: boolean; camerasUp: number; camerasTotal: number; version: string | null }[]>(version, 'nodes');
    expect(rows.find((r) => r.node === NODE)).toMatchObject({ node: NODE, online: true, camerasUp: 2, camerasTotal: 2, version: VERSION });
    const text = await ctl(version, 'nodes');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^NODE\s+ONLINE\s+CAMERAS/);
    expect(text.stdout).toMatch(new RegExp(`^${NODE}\\s+yes\\s+2/2\\s`, 'm'));
  });

  it('lock, extended by a second lock; incidents; incident', async () => {
    const locked = await ctlJson<{ incident: string; extended: boolean }>(version, 'lock', NODE, '--reason', 'fight at the desk', '--by', 'ops/jdoe', '--camera', 'cam-a', '--pre-roll', '2s', '--post-roll', '60s');
    expect(locked).toEqual({ incident: expect.stringMatching(INCIDENT_ID), extended: false });

    const second = await request('lock', { reason: 'still going', by: 'ops/raw', cameras: ['cam-b'], postRoll: 90, urgent: false });
    expect(body(second)).toEqual({ ok: true, data: { incident: locked.incident, extended: true } });
    const text = await ctl(version, 'lock', NODE, '--reason', 'third');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe(`${NODE}: extended incident ${locked.incident}\n`);

    const one = body(await request('incident', { incident: locked.incident }));
    expect(one['ok']).toBe(true);
    const incident = one['data'] as { id: string; node: string; state: string; cameras: string[]; urgent: boolean; triggers: unknown[]; window: { start: string; end: string } };
    expect(incident).toMatchObject({ id: locked.incident, node: NODE, state: 'active', urgent: true });
    expect([...incident.cameras].sort()).toEqual(CAMERAS);
    // Signed: `by` is the signer's CN, a typed `by` is kept as onBehalfOf (CONTRACT §7 Who).
    const signer = { cn: 'ops:admin', role: 'admin', certSha256: expect.stringMatching(/^[0-9a-f]{64}$/) };
    expect(incident.triggers).toEqual([
      { at: expect.stringMatching(ISO), via: 'mqtt', by: 'ops:admin', onBehalfOf: 'ops/jdoe', signer, reason: 'fight at the desk' },
      { at: expect.stringMatching(ISO), via: 'mqtt', by: 'ops:admin', onBehalfOf: 'ops/raw', signer, reason: 'still going' },
      { at: expect.stringMatching(ISO), via: 'mqtt', by: 'ops:admin', signer, reason: 'third' },
    ]);
    // The second trigger's 90 s post-roll moved the end.
    expect(Date.parse(incident.window.end) - Date.parse((incident.triggers[1] as { at: string }).at)).toBe(90_000);
    expect(await ctlJson(version, 'incident', NODE, locked.incident)).toEqual(incident);

    const list = body(await request('incidents', {}));
    expect(list).toEqual({ ok: true, data: { incidents: [incident] } });
    expect(await ctlJson(version, 'incidents', NODE)).toEqual({ incidents: [incident] });
    const table = await ctl(version, 'incidents', NODE);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${locked.incident}\\s+lock\\s+active\\s`, 'm'));

    const missing = body(await request('incident', { incident: '20200101T000000Z-aaaa' }));
    expect(missing).toEqual({ ok: false, error: { code: 'not_found', message: expect.stringContaining('20200101T000000Z-aaaa') } });
    const notFound = await ctl(version, 'incident', NODE, '20200101T000000Z-aaaa');
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toContain('not_found');
  });

  it('dispose: refused while active (conflict, exit 1), done with --force; `release` still answers as its alias', async () => {
    const { incidents } = await ctlJson<{ incidents: { id: string; state: string }[] }>(version, 'incidents', NODE);
    const active = incidents.find((i) => i.state === 'active');
    expect(active, 'the incident locked by the previous test').toBeDefined();
    const id = active!.id;

    const raw = body(await request('release', { incident: id, by: 'counsel', reason: 'done' }));
    expect(raw).toEqual({ ok: false, error: { code: 'conflict', message: expect.stringContaining('active') } });
    const refused = await ctl(version, 'release', NODE, id, '--by', 'counsel', '--reason', 'done');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/conflict/);
    expect((await ctlJson<{ state: string }>(version, 'incident', NODE, id)).state).toBe('active');

    const forced = await ctl(version, 'dispose', NODE, id, '--by', 'counsel', '--reason', 'subpoena answered', '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toBe(`disposed of incident ${id}\n`);
    expect((await ctlJson<{ state: string }>(version, 'incident', NODE, id)).state).toBe('disposed');
    const again = body(await request('release', { incident: id, by: 'counsel', reason: 'twice', force: true }));
    expect(again).toEqual({ ok: false, error: { code: 'conflict', message: expect.stringContaining('already disposed of') } });
    // Bad arguments are bad usage (exit 2), not a failure.
    const bad = await ctl(version, 'dispose', NODE, 'not-an-id', '--by', 'x', '--reason', 'y');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('bad_request');
  });

  it('snapshot: a JPEG in the reply, and `ctl snapshot -o` writes a valid one', async () => {
    const r = body(await request('snapshot', { camera: 'cam-b' }));
    const data = r['data'] as { camera: string; capturedAt: string; contentType: string; jpegBase64: string };
    expect(r['ok']).toBe(true);
    expect(data).toEqual({ camera: 'cam-b', capturedAt: expect.stringMatching(ISO), contentType: 'image/jpeg', jpegBase64: expect.any(String) });
    const jpeg = Buffer.from(data.jpegBase64, 'base64');
    expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');

    const file = join(node.dir, 'cam-a.jpg');
    const shot = await ctl(version, 'snapshot', NODE, 'cam-a', '-o', file);
    expect(shot.code, shot.stderr).toBe(0);
    const written = await readFile(file);
    expect(shot.stdout).toBe(`${file}: ${written.length} bytes from cam-a at ${shot.stdout.split(' at ')[1]!.trim()}\n`);
    expect(written.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(written.subarray(-2).toString('hex')).toBe('ffd9');
    // ffmpeg decodes it as one JPEG picture of a real size.
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', file]);
    const [stream] = (JSON.parse(stdout) as { streams: { codec_name: string; width: number; height: number }[] }).streams;
    expect(stream).toMatchObject({ codec_name: 'mjpeg' });
    expect(stream!.width).toBeGreaterThan(0);
    expect(stream!.height).toBeGreaterThan(0);
    await run('ffmpeg', ['-v', 'error', '-xerror', '-i', file, '-f', 'null', '-']);

    const unknown = await ctl(version, 'snapshot', NODE, 'nope', '-o', join(node.dir, 'nope.jpg'));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('not_found');
  });

  it('sync: counts what waits for the upstream, and sends it at once when asked after the fix', async () => {
    const nas = join(node.dir, 'nas');
    const { incident } = await ctlJson<{ incident: string }>(version, 'lock', NODE, '--reason', 'sync check', '--pre-roll', '2s', '--post-roll', '1s');
    type Sync = { queued: number; lastError: string | null };
    const syncState = async (): Promise<Sync> => ((body(await request('state', {})) as { data: { sync: Sync } }).data.sync);
    // Sealed, then held back: the target folder does not exist (camnode never creates it).
    await waitFor(async () => (await syncState()).lastError?.includes('does not exist'), 'the upload to fail for the missing folder', 30_000, 500);
    expect(await ctlJson(version, 'sync', NODE)).toEqual({ queued: 1 });
    expect((await ctlJson<{ state: string }>(version, 'incident', NODE, incident)).state).toBe('sealed');

    await mkdir(nas);
    // Asked the moment the share is back (a raw request: starting ctl takes long enough for the
    // retry the last failure scheduled to get there first).
    expect(body(await request('sync', {}))).toEqual({ ok: true, data: { queued: 1 } });
    await waitFor(async () => (await ctlJson<{ state: string }>(version, 'incident', NODE, incident)).state === 'synced', 'the incident synced', 20_000, 300);
    expect(JSON.parse(await readFile(join(nas, 'incidents', NODE, incident, 'manifest.json'), 'utf8'))).toMatchObject({ incident: { id: incident } });
    expect(body(await request('sync', {}))).toEqual({ ok: true, data: { queued: 0 } });
    expect(await syncState()).toMatchObject({ queued: 0, lastError: null });
  });

  it('a node that does not exist: ctl exits 3 with a clear message', async () => {
    const r = await ctl(version, 'ping', 'node-404', '--timeout', '2s');
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/node-404 did not answer ping within 2000 ms/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack
    expect(r.stdout).toBe('');
  });

  // Only MQTT 5 carries both forms (a 3.1.1 packet has no properties).
  if (version === 5) it('the reply address: the JWS\'s replyTo first, then MQTT 5 over the payload form', async () => {
    const v5Topic = `${ADMIN_REPLIES}/both-v5-${randomUUID()}`;
    const payloadTopic = `${ADMIN_REPLIES}/both-311-${randomUUID()}`;
    const correlationData = Buffer.from('both');
    // The JWS names no reply topic: MQTT 5's Response Topic wins over the payload's replyTo.
    await ops.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await signing.sign(NODE, 'ping', {}, undefined), replyTo: payloadTopic, id: 'payload-id' }), {
      qos: 1, properties: { responseTopic: v5Topic, correlationData },
    });
    const reply = await waitFor(() => ops.got.find((m) => m.topic === v5Topic), 'the reply on the Response Topic', 10_000, 20);
    expect(reply.raw).toBe(`{"ok":true,"data":{"version":"${VERSION}"}}`);
    expect(reply.correlationData?.equals(correlationData)).toBe(true);
    // The JWS names one: it wins over the Response Topic (the signed address is the one that counts).
    const signedTopic = `${ADMIN_REPLIES}/signed-${randomUUID()}`;
    await ops.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await signing.sign(NODE, 'ping', {}, signedTopic) }), {
      qos: 1, properties: { responseTopic: payloadTopic, correlationData: Buffer.from('signed') },
    });
    await waitFor(() => ops.got.find((m) => m.topic === signedTopic), 'the reply on the JWS reply topic', 10_000, 20);
    // One request, one reply: once a later request on the payload's topic is answered there,
    // nothing from the first two can still be on its way to it.
    await ops.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await signing.sign(NODE, 'ping', {}, undefined) }), { qos: 1, properties: { responseTopic: payloadTopic, correlationData: Buffer.from('flush') } });
    await waitFor(() => ops.got.find((m) => m.topic === payloadTopic), 'flush reply', 10_000, 20);
    expect(ops.got.filter((m) => m.topic === payloadTopic).map((m) => m.correlationData?.toString())).toEqual(['flush']);
  });

  it('the agent logged no errors', () => {
    expect(node.agent.logs.filter((l) => l.level >= 50)).toEqual([]);
    expect(node.agent.proc.exitCode).toBeNull();
  });

  it('its retained status carries the public key, and the will says offline after a SIGKILL', async () => {
    const watch = await connectOps(version);
    await watch.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
    const online = await waitFor(() => statusOf(watch.got)[0], 'retained status', 5_000);
    const started = node.agent.find((l) => l.msg === 'agent started')!;
    expect(online).toMatchObject({ retain: true, body: { online: true, version: VERSION, since: expect.stringMatching(ISO), publicKey: started['publicKey'], commands: 'signed' } });
    node.agent.killGroup();
    await node.agent.exited;
    const offline = await waitFor(() => statusOf(watch.got).find((m) => !m.retain), 'the will', 15_000);
    expect(offline.raw).toBe('{"online":false}');
  });
});
