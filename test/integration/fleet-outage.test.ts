// The broker goes away while a node records (issue 4, CONTRACT §3): a real Mosquitto configured
// from provisioning/ (TLS, client certificates, the ACL), the real agent through the CLI with a
// synthetic camera, a fake panic button pressed through its stdin and the local control socket.
// - While the broker is down the node keeps recording, the button and the socket still lock and
//   extend, and the incident seals. When the broker returns (same port) the node reconnects on
//   its own backoff, republishes status and state, and ops receive exactly the events that
//   happened, in order, ids rising by one from where they were.
// - Events still undelivered when the node's process group is SIGKILLed survive in its durable
//   outbox and arrive after the restart, before what the restarted node adds.
// Ops listen the way a consumer that must not miss events does: a persistent MQTT 5 session
// (fixed client id, clean start off, a session expiry) with QoS 1 subscriptions, so events the
// node delivers before ops are back are queued for them by the broker. Duplicates are allowed by
// the contract (ids make them harmless) and must carry the same payload.
import { access, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { listSegments, outboxPending as readOutbox, recorderPids } from '../helpers/segments.js';

const PREFIX = 'camnode';
const CAMERA = 'cam-1';
// The node's reconnect backoff is capped at 60 s with full jitter: the worst case after a long
// outage is one full minute plus the connection itself.
const RECONNECT_MS = 75_000;

interface Msg { topic: string; raw: string; body: Record<string, unknown> | undefined; retain: boolean; at: number }
interface Event { id: number; type: string; ts: string; [k: string]: unknown }
interface Node { nodeId: string; dir: string; configPath: string; storage: string; socket: string; agent: RunningAgent }

let broker: Mosquitto;
const agents: RunningAgent[] = [];
const dirs: string[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquitto({ prefix: PREFIX, nodes: ['node-1', 'node-2'], ops: ['admin'] });
});
afterAll(async () => {
  await stopAllMosquittos();
});
afterEach(async () => {
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
  // A failed test may leave the broker stopped; the next one needs it.
  if (broker.pid === -1) await broker.restart();
});

async function makeNode(nodeId: string): Promise<Omit<Node, 'agent'>> {
  const dir = await tempDir(`camnode-outage-${nodeId}-`);
  dirs.push(dir);
  const files = broker.certFor(nodeId);
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, [{ id: CAMERA, source: 'testsrc', zone: 'entrance' }], {
    node: { id: nodeId },
    recording: { segmentSeconds: 1 },
    incident: { preRoll: '2s', postRoll: '3s', maxLength: '1h' },
    button: { backend: 'fake' },
    control: { socket },
    mqtt: { url: broker.url, ca: broker.caFile, cert: files.cert, key: files.key, keepalive: '2s', stateInterval: '60s' },
  });
  return { nodeId, dir, configPath: await writeConfig(dir, config), storage: join(dir, 'storage'), socket };
}

async function startAgent(node: Omit<Node, 'agent'>): Promise<RunningAgent> {
  const agent = RunningAgent.start(node.configPath, { stdin: 'pipe' });
  agents.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  return agent;
}

/**
 * Ops with a persistent session: the broker keeps its subscriptions and queues QoS 1 messages
 * for it while it is away, across a broker restart (Mosquitto persists sessions on SIGTERM).
 * MQTT.js reconnects it by itself.
 */
async function connectOps(nodeId: string): Promise<{ client: MqttClient; got: Msg[] }> {
  const client = await mqtt.connectAsync(broker.url, {
    ...broker.tls('ops:admin'),
    protocolVersion: 5,
    clientId: `ops-outage-${randomUUID().slice(0, 8)}`,
    clean: false,
    properties: { sessionExpiryInterval: 600 },
    reconnectPeriod: 500,
    connectTimeout: 5_000,
    keepalive: 5,
  });
  clients.push(client);
  const got: Msg[] = [];
  client.on('message', (topic, payload, packet) => {
    const raw = payload.toString('utf8');
    let body: Record<string, unknown> | undefined;
    try { body = JSON.parse(raw) as Record<string, unknown>; } catch { body = undefined; }
    got.push({ topic, raw, body, retain: packet.retain, at: Date.now() });
  });
  client.on('error', () => { /* reconnects by itself while the broker is down */ });
  await client.subscribeAsync([`${PREFIX}/${nodeId}/events`, `${PREFIX}/${nodeId}/status`, `${PREFIX}/${nodeId}/state`], { qos: 1 });
  return { client, got };
}

/**
 * The events received, duplicates removed. A duplicate (a redelivery after a lost PUBACK) must
 * be the same event: same id, same payload.
 */
function events(got: Msg[], nodeId: string): Event[] {
  const byId = new Map<number, Msg>();
  const out: Event[] = [];
  for (const m of got.filter((x) => x.topic === `${PREFIX}/${nodeId}/events`)) {
    const e = m.body as Event;
    const seen = byId.get(e.id);
    if (seen) {
      expect(m.raw, `duplicate of event ${e.id}`).toBe(seen.raw);
      continue;
    }
    byId.set(e.id, m);
    out.push(e);
  }
  return out;
}

/** Ids rise by one, in the order received, without a gap. */
function expectGapless(list: Event[]): void {
  const ids = list.map((e) => e.id);
  expect(ids, JSON.stringify(list.map((e) => [e.id, e.type]))).toEqual(ids.map((_, k) => ids[0]! + k));
}

/** waitFor, with a message built when it fails (it shows what did arrive). */
async function until<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, what: () => string, timeoutMs = 30_000): Promise<T> {
  try {
    return await waitFor(fn, 'condition', timeoutMs);
  } catch {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
  }
}

const durable = (l: LogLine): boolean => l.msg === 'panic button: lock durable';

async function ctlLocal(socket: string, ...args: string[]): Promise<string> {
  const r = await runCli(['ctl', 'lock', '--local', '--socket', socket, ...args]);
  expect(r.code, `ctl lock --local: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** The events in the node's durable outbox not yet acknowledged by a broker. */
async function outboxPending(node: Omit<Node, 'agent'>): Promise<Event[]> {
  return (await readOutbox(join(node.dir, 'state')).catch(() => [])) as unknown as Event[];
}

describe('broker outage during recording', () => {
  it('keeps recording and locking offline; when the broker returns, exactly the events that happened arrive in order', async () => {
    const base = await makeNode('node-1');
    const ops = await connectOps('node-1');
    const agent = await startAgent(base);
    const node: Node = { ...base, agent };

    // Online: the camera's start arrives live, and is the node's first event.
    await waitFor(() => events(ops.got, 'node-1').some((e) => e.type === 'camera.up'), 'camera.up before the outage');
    await waitFor(() => ops.got.some((m) => m.topic.endsWith('/state') && m.body?.['cameras']), 'first state');
    const before = events(ops.got, 'node-1');
    expect(before.map((e) => [e.id, e.type, e['camera']])).toEqual([[1, 'camera.up', CAMERA]]);

    // The broker goes away (SIGTERM: it saves retained messages and ops' session).
    await broker.stop();
    const outageAt = Date.now();
    await agent.waitForLog((l) => l.msg === 'broker unreachable; retrying', 'the node notices the outage');

    // The panic button locks, on this machine only.
    agent.press();
    await agent.waitForLog(durable, 'button lock durable (offline)');
    // The local socket extends the open incident.
    const viaSocket = await ctlLocal(node.socket, '--reason', 'offline drill', '--by', 'staff');
    expect(viaSocket).toMatch(/^this node: extended incident \d{8}T\d{6}Z-[a-z2-7]{4}$/);
    const incident = viaSocket.split(' ').pop()!;
    // A second press extends it again.
    agent.press();
    await waitFor(() => agent.count(durable) === 2, 'second button lock durable');
    expect(agent.logs.filter(durable).map((l) => [l['incident'], l['extended']])).toEqual([[incident, false], [incident, true]]);
    // The window closes 3 s after the last trigger; it seals with the broker still down.
    await agent.waitForLog((l) => l.msg === 'incident sealed', 'incident sealed offline', 30_000);
    await access(join(node.storage, 'incidents', incident, 'manifest.json'));
    expect(broker.pid).toBe(-1);

    // It kept recording all along: segments that started during the outage.
    const recordedOffline = (await listSegments(node.storage, CAMERA)).filter((s) => s.startMs >= outageAt);
    expect(recordedOffline.length).toBeGreaterThanOrEqual(5);
    // Nothing was delivered while offline: every event since the outage waits in the outbox.
    const expected = ['button.pressed', 'incident.locked', 'incident.extended', 'button.pressed', 'incident.extended', 'incident.sealed'];
    await until(async () => (await outboxPending(node)).length === expected.length, () => 'the offline events in the outbox');
    expect((await outboxPending(node)).map((e) => e.type)).toEqual(expected);
    const offlineReceived = ops.got.length;

    // The broker comes back on the same port; the node finds it on its own backoff.
    const backAt = Date.now();
    await broker.restart();
    await agent.waitForLog((l) => l.msg === 'connected to the broker' && l['reconnect'] === true, 'the node reconnects', RECONNECT_MS);
    await until(() => events(ops.got, 'node-1').length >= 1 + expected.length, () => `the offline events (got ${JSON.stringify(events(ops.got, 'node-1'))})`, 20_000);

    // Status online and a fresh state were republished after the reconnect (live, not retained).
    await waitFor(() => ops.got.slice(offlineReceived).some((m) => m.topic.endsWith('/status') && m.body?.['online'] === true && !m.retain), 'status republished');
    await waitFor(() => ops.got.slice(offlineReceived).some((m) => m.topic.endsWith('/state') && Date.parse(String(m.body?.['ts'])) >= backAt), 'state republished');
    const state = ops.got.slice(offlineReceived).filter((m) => m.topic.endsWith('/state')).at(-1)!.body!;
    expect(state['incidents']).toEqual({ active: 0, held: 1, unsynced: 1, damaged: 0 });

    // Exactly the events that happened, in order, ids continuing from 1 without a gap.
    const all = events(ops.got, 'node-1');
    expectGapless(all);
    expect(all.map((e) => e.type)).toEqual(['camera.up', ...expected]);
    const offline = all.slice(1);
    for (const e of offline.filter((x) => x.type.startsWith('incident.'))) expect(e['incident']).toBe(incident);
    // Their times are when they happened (offline), not when they were delivered.
    for (const e of offline) expect(Date.parse(e.ts)).toBeGreaterThanOrEqual(outageAt - 1);
    for (const e of offline) expect(Date.parse(e.ts)).toBeLessThan(backAt);
    expect(Date.parse(offline[0]!.ts)).toBeLessThanOrEqual(Date.parse(offline.at(-1)!.ts));
    // Delivered means acknowledged: the outbox empties.
    await waitFor(async () => (await outboxPending(node)).length === 0, 'outbox emptied');

    // And the link works again for new events, live.
    agent.press();
    await waitFor(() => events(ops.got, 'node-1').length >= all.length + 2, 'a new lock after the outage');
    const fresh = events(ops.got, 'node-1');
    expectGapless(fresh);
    expect(fresh.slice(all.length).map((e) => e.type)).toEqual(['button.pressed', 'incident.locked']);
  });

  it('events undelivered when the node is SIGKILLed offline arrive after its restart, before what the restarted node adds', async () => {
    const base = await makeNode('node-2');
    const ops = await connectOps('node-2');
    const first = await startAgent(base);
    await waitFor(() => events(ops.got, 'node-2').some((e) => e.type === 'camera.up'), 'camera.up before the outage');
    await waitFor(async () => (await outboxPending(base)).length === 0, 'outbox empty before the outage');

    await broker.stop();
    await first.waitForLog((l) => l.msg === 'broker unreachable; retrying', 'the node notices the outage');
    first.press();
    await first.waitForLog(durable, 'button lock durable (offline)');
    const incident = String(first.find(durable)!['incident']);
    // The lock is durable; its events are durable once they are in the outbox on disk.
    await waitFor(async () => (await outboxPending(base)).length === 2, 'both events in the outbox');
    first.killGroup();
    await first.exited;

    // Restarted while the broker is still down: the outbox is read back from disk.
    const second = await startAgent(base);
    expect(second.find((l) => l.msg === 'connected to the broker')).toBeUndefined();
    await second.waitForLog((l) => l.msg === 'broker unreachable; retrying', 'the restarted node finds no broker');
    await broker.restart();
    await second.waitForLog((l) => l.msg === 'connected to the broker', 'the restarted node connects', RECONNECT_MS);
    // The restarted node adds its camera's start, and seals the incident the kill left open.
    await until(() => events(ops.got, 'node-2').some((e) => e.type === 'incident.sealed'), () => `the sealed incident (got ${JSON.stringify(events(ops.got, 'node-2'))})`);

    const all = events(ops.got, 'node-2');
    expectGapless(all);
    expect(all[0]).toMatchObject({ id: 1, type: 'camera.up' });
    // The events from before the kill, in their order, with their original ids and times.
    expect(all.slice(1, 3).map((e) => [e.id, e.type])).toEqual([[2, 'button.pressed'], [3, 'incident.locked']]);
    expect(all[2]!['incident']).toBe(incident);
    // Then the restarted node's own: its camera starting, the incident sealed (their order
    // depends on how long the restart took relative to the window's end).
    expect(all.slice(3).map((e) => e.type).sort()).toEqual(['camera.up', 'incident.sealed']);
    expect(all.find((e) => e.type === 'incident.sealed')!['incident']).toBe(incident);
  });
});
