// The fleet broker as ops would run it: a real Mosquitto configured from
// provisioning/mosquitto/*.template with certificates from provisioning/fleet-ca.sh. Proves the
// ACL confines each node to <prefix>/<node>/#, ops may read all and command all, strangers are
// refused at TLS, and a killed node's retained will says it is offline.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { resolveCommand } from '../../src/commands/protocol.js';
import { roleAllows } from '../../src/commands/roles.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const FLEET_CA = join(REPO, 'provisioning/fleet-ca.sh');
const run = promisify(execFile);
const NOT_AUTHORIZED = 135;
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const itRoot = IS_ROOT || IN_CI ? it : it.skip;
if (!IS_ROOT && !IN_CI) console.warn('broker-acl.test.ts: privilege-drop test skipped: Mosquitto only drops privileges when started as root');

type Version = 4 | 5;
interface Received { topic: string; payload: string; retain: boolean }

const clients = new Set<MqttClient>();
afterEach(async () => {
  await Promise.all([...clients].map((c) => c.endAsync(true).catch(() => undefined)));
  clients.clear();
});
afterAll(async () => {
  await stopAllMosquittos();
});

function options(broker: Mosquitto, name: string, version: Version, extra: IClientOptions = {}): IClientOptions {
  return {
    ...broker.tls(name),
    protocolVersion: version,
    clientId: `${name.replace(':', '-')}-${randomUUID().slice(0, 8)}`,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    keepalive: 10,
    ...extra,
  };
}

/** Connects as a node id or `ops:NAME`; every message it gets is recorded in `got`. */
async function connectAs(broker: Mosquitto, name: string, version: Version = 5): Promise<{ client: MqttClient; got: Received[] }> {
  const client = await mqtt.connectAsync(broker.url, options(broker, name, version));
  clients.add(client);
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain }));
  return { client, got };
}

/** Resolves with whether a connection came up; refused ones end in 'error' or 'close'. */
function tryConnect(url: string, opts: IClientOptions): Promise<{ connected: boolean; error?: string }> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
    clients.add(client);
    let error: string | undefined;
    client.on('error', (err) => { error = err.message; });
    client.once('connect', () => resolve({ connected: true }));
    client.once('close', () => resolve({ connected: false, ...(error ? { error } : {}) }));
  });
}

async function waitFor<T>(fn: () => T | undefined | false, what: string | (() => string), timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The broker handles one connection's packets in order and writes to each subscriber in order:
 * once a marker published after X has come back to `subscriber`, X would have arrived before
 * it. Turns "never receives" into a deterministic check instead of a sleep.
 */
async function flush(sender: MqttClient, subscriber: { got: Received[] }, topic: string): Promise<void> {
  const marker = `flush-${randomUUID()}`;
  await sender.publishAsync(topic, marker, { qos: 1 });
  await waitFor(() => subscriber.got.some((m) => m.payload === marker), `marker on ${topic}`);
}

describe.each([
  { prefix: 'camnode', plain: false },
  { prefix: 'fleet', plain: true },
])('fleet broker ACL with prefix $prefix', ({ prefix, plain }) => {
  let broker: Mosquitto;
  beforeAll(async () => {
    // alice is an admin; the others have the role after their name (CONTRACT §7).
    broker = await startMosquitto({ prefix, nodes: ['node-1', 'node-2'], ops: ['alice', 'vera:viewer', 'otto:ops', 'cleo:custodian'], plain });
  });
  afterAll(async () => {
    await broker.dispose();
  });

  it.each([5, 4] as const)('node-1 publishes and subscribes under its own subtree (MQTT v%i)', async (version) => {
    const pub = await connectAs(broker, 'node-1', version);
    const sub = await connectAs(broker, 'node-1', version);
    await sub.client.subscribeAsync(`${prefix}/node-1/#`, { qos: 1 });
    await pub.client.publishAsync(`${prefix}/node-1/state`, `{"v":${version}}`, { qos: 1, retain: true });
    await pub.client.publishAsync(`${prefix}/node-1/events`, '{"id":1}', { qos: 1 });
    // Live messages only: the other version's run left its state retained.
    const live = () => sub.got.filter((m) => !m.retain);
    await waitFor(() => live().length >= 2, 'own messages');
    expect(live().map((m) => [m.topic, m.payload])).toEqual([
      [`${prefix}/node-1/state`, `{"v":${version}}`],
      [`${prefix}/node-1/events`, '{"id":1}'],
    ]);
  });

  it('node-1 cannot publish under node-2: v5 PUBACK 135, v3.1.1 dropped silently', async () => {
    const node2 = await connectAs(broker, 'node-2');
    await node2.client.subscribeAsync(`${prefix}/node-2/#`, { qos: 1 });
    const ops = await connectAs(broker, 'ops:alice');
    await ops.client.subscribeAsync(`${prefix}/#`, { qos: 1 });

    const v5 = await connectAs(broker, 'node-1', 5);
    const err = await v5.client.publishAsync(`${prefix}/node-2/status`, '{"online":false,"forged":5}', { qos: 1, retain: true }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: NOT_AUTHORIZED });

    const v4 = await connectAs(broker, 'node-1', 4);
    // 3.1.1 has no reason codes: the PUBACK looks like success and the message is dropped.
    await v4.client.publishAsync(`${prefix}/node-2/cmd/lock`, '{"forged":4}', { qos: 1 });
    // A forbidden write cannot hide under another prefix either.
    const other = prefix === 'camnode' ? 'fleet' : 'camnode';
    await expect(v5.client.publishAsync(`${other}/node-1/status`, '{"forged":"prefix"}', { qos: 1 })).rejects.toMatchObject({ code: NOT_AUTHORIZED });

    await flush(v4.client, ops, `${prefix}/node-1/events`);
    await flush(node2.client, node2, `${prefix}/node-2/events`);
    const forged = (m: Received) => m.payload.includes('forged');
    expect(node2.got.filter(forged)).toEqual([]);
    expect(ops.got.filter(forged)).toEqual([]);
    expect(v4.client.connected).toBe(true); // denied, not disconnected

    // Nothing forged was retained either.
    const late = await connectAs(broker, 'ops:alice');
    await late.client.subscribeAsync(`${prefix}/node-2/status`, { qos: 1 });
    await flush(node2.client, late, `${prefix}/node-2/status`);
    expect(late.got.filter(forged)).toEqual([]);
  });

  it.each([5, 4] as const)('node-1 cannot read under node-2 (MQTT v%i): subscription granted, nothing delivered', async (version) => {
    const node1 = await connectAs(broker, 'node-1', version);
    const granted = await node1.client.subscribeAsync([`${prefix}/node-2/#`, `${prefix}/#`, '#'], { qos: 1 });
    // What Mosquitto 2.0 does: it grants wildcard subscriptions and checks read access per
    // message at delivery time.
    expect(granted.map((g) => g.qos)).toEqual([1, 1, 1]);

    const node2 = await connectAs(broker, 'node-2');
    await node2.client.subscribeAsync(`${prefix}/node-2/#`, { qos: 1 });
    const ops = await connectAs(broker, 'ops:alice');
    await ops.client.subscribeAsync(`${prefix}/+/status`, { qos: 1 });
    await node2.client.publishAsync(`${prefix}/node-2/status`, '{"online":true,"secret":"n2"}', { qos: 1, retain: true });
    await node2.client.publishAsync(`${prefix}/node-2/reply/x`, '{"secret":"n2"}', { qos: 1 });
    // Positive control: the message exists and ops sees it.
    await waitFor(() => ops.got.some((m) => m.payload.includes('"n2"')), 'ops to see node-2 status');

    // node-1 gets its own marker (via '#') but nothing of node-2's.
    await flush(node1.client, node1, `${prefix}/node-1/events`);
    expect(node1.got.filter((m) => m.payload.includes('"n2"'))).toEqual([]);
    expect(node1.got.every((m) => m.topic.startsWith(`${prefix}/node-1/`))).toBe(true);
  });

  it('ops sends commands to any node and reads every status, but cannot forge one', async () => {
    const node1 = await connectAs(broker, 'node-1');
    await node1.client.subscribeAsync(`${prefix}/node-1/cmd/#`, { qos: 1 });
    await node1.client.publishAsync(`${prefix}/node-1/status`, '{"online":true,"who":"node-1"}', { qos: 1, retain: true });
    const node2 = await connectAs(broker, 'node-2');
    await node2.client.publishAsync(`${prefix}/node-2/status`, '{"online":true,"who":"node-2"}', { qos: 1, retain: true });

    for (const version of [5, 4] as const) {
      const ops = await connectAs(broker, 'ops:alice', version);
      await ops.client.subscribeAsync(`${prefix}/+/status`, { qos: 1 });
      await waitFor(() => ops.got.length >= 2, 'retained statuses');
      expect(ops.got.map((m) => [m.topic, JSON.parse(m.payload).who, m.retain]).sort()).toEqual([
        [`${prefix}/node-1/status`, 'node-1', true],
        [`${prefix}/node-2/status`, 'node-2', true],
      ]);
      await ops.client.publishAsync(`${prefix}/node-1/cmd/ping`, `{"replyTo":"${prefix}/node-1/reply/ops-${version}","id":"p${version}"}`, { qos: 1 });
      await waitFor(() => node1.got.some((m) => m.payload.includes(`"p${version}"`)), `ping v${version} at node-1`);
    }

    const ops = await connectAs(broker, 'ops:alice', 5);
    await expect(ops.client.publishAsync(`${prefix}/node-1/status`, '{"online":false}', { qos: 1, retain: true }))
      .rejects.toMatchObject({ code: NOT_AUTHORIZED });
    await expect(ops.client.publishAsync(`${prefix}/node-1/reply/x`, '{"ok":true}', { qos: 1 }))
      .rejects.toMatchObject({ code: NOT_AUTHORIZED });
    await expect(ops.client.publishAsync(`${prefix}/node-1/events`, '{"id":999}', { qos: 1 }))
      .rejects.toMatchObject({ code: NOT_AUTHORIZED });
  });

  it('each principal may send the commands its role allows, and no other (the ACL rendered from the roster)', async () => {
    const principals = { 'ops:vera': 'viewer', 'ops:otto': 'ops', 'ops:cleo': 'custodian', 'ops:alice': 'admin' } as const;
    const commands = ['state', 'incidents', 'footage', 'report', 'ping', 'lock', 'hold', 'note', 'still', 'snapshot', 'sync', 'dispose', 'release', 'disclose', 'config', 'update', 'explode'];
    for (const [cn, role] of Object.entries(principals)) {
      const c = await connectAs(broker, cn, 5);
      for (const cmd of commands) {
        const allowed = roleAllows(role, resolveCommand(cmd) ?? cmd);
        const outcome = await c.client.publishAsync(`${prefix}/node-1/cmd/${cmd}`, '{}', { qos: 1 }).then(() => 'sent', (e: { code?: number }) => (e.code === NOT_AUTHORIZED ? 'refused' : String(e)));
        expect(outcome, `${cn} (${role}) → cmd/${cmd}`).toBe(allowed ? 'sent' : 'refused');
      }
    }
  });

  it('a viewer subscribed to # never receives another principal\'s reply, nor a command payload; its own replies reach it', async () => {
    const vera = await connectAs(broker, 'ops:vera');
    await vera.client.subscribeAsync(`${prefix}/#`, { qos: 1 });
    const node1 = await connectAs(broker, 'node-1');
    const alice = await connectAs(broker, 'ops:alice');
    // A still meant for alice, and alice's command carrying a camera password.
    await node1.client.publishAsync(`${prefix}/node-1/reply/ops:alice/r1`, '{"ok":true,"data":{"jpegBase64":"SECRET-STILL"}}', { qos: 1 });
    await alice.client.publishAsync(`${prefix}/node-1/cmd/config`, '{"jws":"SECRET-CONFIG"}', { qos: 1 });
    // Each sender's next message reaches vera only after the ones before it would have.
    await flush(node1.client, vera, `${prefix}/node-1/events`);
    await flush(alice.client, vera, `${prefix}/_fleet/marker`);
    expect(vera.got.filter((m) => m.payload.includes('SECRET'))).toEqual([]);
    // Its own reply does arrive, and every node's status, state and events.
    await node1.client.publishAsync(`${prefix}/node-1/reply/ops:vera/r2`, '{"ok":true,"data":"for vera"}', { qos: 1 });
    await waitFor(() => vera.got.some((m) => m.topic === `${prefix}/node-1/reply/ops:vera/r2`), 'vera\'s own reply');
    expect(vera.got.every((m) => /\/(status|state|events)$|\/reply\/ops:vera\/|\/_fleet\//.test(m.topic)), JSON.stringify(vera.got.map((m) => m.topic))).toBe(true);
  });

  it('_ctl/<CN>/ is each principal\'s own; _fleet/ is read by all and written by admins only', async () => {
    const vera = await connectAs(broker, 'ops:vera', 5);
    await vera.client.subscribeAsync(`${prefix}/_ctl/ops:vera/#`, { qos: 1 });
    await vera.client.publishAsync(`${prefix}/_ctl/ops:vera/m1`, 'mine', { qos: 1 });
    await waitFor(() => vera.got.some((m) => m.payload === 'mine'), 'its own ctl marker');
    await expect(vera.client.publishAsync(`${prefix}/_ctl/ops:alice/m`, 'x', { qos: 1 })).rejects.toMatchObject({ code: NOT_AUTHORIZED });
    await expect(vera.client.publishAsync(`${prefix}/_fleet/crl`, 'forged', { qos: 1, retain: true })).rejects.toMatchObject({ code: NOT_AUTHORIZED });
    const cleo = await connectAs(broker, 'ops:cleo', 5);
    await expect(cleo.client.publishAsync(`${prefix}/_fleet/crl`, 'forged', { qos: 1, retain: true })).rejects.toMatchObject({ code: NOT_AUTHORIZED });
    const node1 = await connectAs(broker, 'node-1', 5);
    await expect(node1.client.publishAsync(`${prefix}/_fleet/crl`, 'forged', { qos: 1, retain: true })).rejects.toMatchObject({ code: NOT_AUTHORIZED });
    const alice = await connectAs(broker, 'ops:alice', 5);
    await alice.client.publishAsync(`${prefix}/_fleet/crl`, 'the CRL', { qos: 1, retain: true });
    // A node (any node) reads it, retained.
    const node2 = await connectAs(broker, 'node-2', 5);
    await node2.client.subscribeAsync(`${prefix}/_fleet/crl`, { qos: 1 });
    const got = await waitFor(() => node2.got.find((m) => m.topic === `${prefix}/_fleet/crl`), 'the retained CRL at node-2');
    expect(got).toMatchObject({ payload: 'the CRL', retain: true });
  });

  it('fleet-ca.sh crl --publish: re-signs for 30 days, installs it as the broker\'s crlfile, reloads the broker, publishes it retained', async () => {
    const crlDest = join(broker.dir, 'broker', 'tls', 'crl.pem');
    const before = await readFile(crlDest, 'utf8');
    const env = {
      ...process.env, CRL_DEST: crlDest, RELOAD: `kill -HUP ${broker.pid}`, BROKER_HOST: '127.0.0.1',
      BROKER_PORT: String(broker.port), PREFIX: prefix, PUBLISH_AS: 'alice',
    };
    const { stdout } = await run('bash', [FLEET_CA, 'crl', broker.caDir, '--publish'], { env });
    expect(stdout).toContain(`published ${prefix}/_fleet/crl (retained)`);
    const installed = await readFile(crlDest, 'utf8');
    expect(installed).not.toBe(before);
    expect(installed).toBe(await readFile(join(broker.caDir, 'crl.pem'), 'utf8'));
    const { stdout: dates } = await run('openssl', ['crl', '-in', crlDest, '-noout', '-lastupdate', '-nextupdate']);
    const [last, next] = [...dates.matchAll(/=(.+)/g)].map((m) => Date.parse(m[1]!));
    expect(Math.round((next! - last!) / 86_400_000)).toBe(30);
    await waitFor(() => broker.log().includes('Reloading config'), 'the broker reloaded');
    const node2 = await connectAs(broker, 'node-2', 5);
    await node2.client.subscribeAsync(`${prefix}/_fleet/crl`, { qos: 1 });
    const got = await waitFor(() => node2.got.find((m) => m.topic === `${prefix}/_fleet/crl` && m.payload.includes('BEGIN X509 CRL')), 'the published CRL');
    expect(got.payload).toBe(installed);
    expect(got.retain).toBe(true);
  });
});

describe('fleet broker (prefix camnode)', () => {
  let broker: Mosquitto;
  beforeAll(async () => {
    broker = await startMosquitto({ nodes: ['node-1', 'node-2', 'node-3', 'node-4'], ops: ['alice'], plain: true });
  });

  // Off CI without root it skips with a reason; under CI it runs (and fails if not root).
  itRoot('runs as the unprivileged mosquitto user, as in production, when started as root', async () => {
    const status = await readFile(`/proc/${broker.pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)![1]); // effective uid
    const passwd = await readFile('/etc/passwd', 'utf8');
    const mosquittoUid = /^mosquitto:[^:]*:(\d+):/m.exec(passwd)?.[1];
    expect(mosquittoUid).toBeDefined();
    expect(uid).toBe(Number(mosquittoUid));
  });

  it('refuses a client without a certificate at TLS', async () => {
    const r = await tryConnect(broker.url, { ca: broker.tls('node-1').ca, protocolVersion: 5 });
    expect(r.connected).toBe(false);
    expect(r.error).toMatch(/certificate required|handshake failure|ECONNRESET|socket hang up/i);
    expect(broker.log()).toMatch(/peer did not return a certificate/);
  });

  it('refuses a certificate from another CA, even with a fleet node id as CN', async () => {
    const other = await mkdtemp(join(tmpdir(), 'camnode-foreign-ca-'));
    try {
      await run('bash', [FLEET_CA, 'init', other]);
      await run('bash', [FLEET_CA, 'node', other, 'node-1']);
      const foreign = { cert: await readFile(join(other, 'nodes/node-1.crt')), key: await readFile(join(other, 'nodes/node-1.key')) };
      const r = await tryConnect(broker.url, { ...foreign, ca: broker.tls('node-1').ca, protocolVersion: 5 });
      expect(r.connected).toBe(false);
      expect(r.error).toMatch(/unknown ca|bad certificate|decrypt|ECONNRESET|socket hang up/i);
      expect(broker.log()).toMatch(/certificate verify failed/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('refuses a node whose certificate was revoked, once the broker reloads the CRL', async () => {
    const before = await tryConnect(broker.url, options(broker, 'node-4', 5));
    expect(before.connected).toBe(true);
    const key = broker.tls('node-4'); // the stolen copy
    await broker.revoke('node-4');
    const after = await tryConnect(broker.url, { ...key, protocolVersion: 5 });
    expect(after.connected).toBe(false);
    // Everyone else is unaffected.
    expect((await tryConnect(broker.url, options(broker, 'node-1', 5))).connected).toBe(true);
  });

  it('publishes the retained will {"online":false} when the node process group is SIGKILLed', async () => {
    const topic = 'camnode/node-3/status';
    const ops = await connectAs(broker, 'ops:alice');
    await ops.client.subscribeAsync(topic, { qos: 1 });

    const files = broker.certFor('node-3');
    const child = spawn(process.execPath, ['-e', WILL_CLIENT, broker.url, broker.caFile, files.cert, files.key, topic], {
      cwd: REPO,
      detached: true, // its own process group, like the agent under systemd
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const gone = new Promise((resolve) => child.once('exit', resolve));
    try {
      await waitFor(() => out.includes('READY'), `will client READY (output: ${out})`, 10_000);
      await waitFor(() => ops.got.some((m) => JSON.parse(m.payload).online === true), 'online status');
      process.kill(-child.pid!, 'SIGKILL');
      await gone;
      // The kernel closes the socket at once; the broker publishes the will without waiting
      // for a keepalive to lapse.
      await waitFor(() => ops.got.some((m) => JSON.parse(m.payload).online === false), 'the will');
    } finally {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
    }
    expect(ops.got.map((m) => JSON.parse(m.payload))).toEqual([{ online: true, pid: child.pid }, { online: false }]);

    // And it stays: a later subscriber gets the will as the retained status.
    const late = await connectAs(broker, 'ops:alice');
    await late.client.subscribeAsync(topic, { qos: 1 });
    await waitFor(() => late.got.length > 0, 'retained status');
    expect(late.got).toEqual([{ topic, payload: '{"online":false}', retain: true }]);
  });

  it('delivers a whole fleet of retained state to ops at once (1,500 nodes)', async () => {
    // Seeded through the open plain listener: 1,500 identities would take 1,500 certificates.
    const nodes = 1_500;
    const seeder = await mqtt.connectAsync(broker.plainUrl!, { reconnectPeriod: 0, protocolVersion: 5 });
    clients.add(seeder);
    const body = JSON.stringify({ ts: new Date().toISOString(), pad: 'x'.repeat(600) });
    const seeded: Promise<unknown>[] = [];
    for (let i = 0; i <= nodes; i++) seeded.push(seeder.publishAsync(`camnode/sim-${i}/state`, body, { qos: 1, retain: true }));
    await Promise.all(seeded);

    // QoS 1 retained messages (as nodes publish them) go out 20 in flight, the rest queued:
    // Mosquitto's default queue (1,000) would drop a third of these silently.
    const ops = await connectAs(broker, 'ops:alice');
    await ops.client.subscribeAsync('camnode/+/state', { qos: 1 });
    await waitFor(() => ops.got.length >= nodes + 1, () => `${nodes + 1} retained states (got ${ops.got.length})`, 10_000);
    expect(new Set(ops.got.map((m) => m.topic)).size).toBe(nodes + 1);
  });

  it('takes a snapshot-sized reply but disconnects a client sending more than 4 MiB', async () => {
    const sub = await connectAs(broker, 'node-1', 4);
    await sub.client.subscribeAsync('camnode/node-1/reply/#', { qos: 1 });
    const pub = await connectAs(broker, 'node-1', 4);
    const snapshot = Buffer.alloc(3_000_000, 'A'); // a base64 JPEG of ~2.2 MB
    await pub.client.publishAsync('camnode/node-1/reply/snap', snapshot, { qos: 1 });
    await waitFor(() => sub.got.some((m) => m.topic === 'camnode/node-1/reply/snap'), 'the 3 MB reply');
    expect(sub.got.find((m) => m.topic === 'camnode/node-1/reply/snap')!.payload.length).toBe(3_000_000);

    let closed = false;
    pub.client.once('close', () => { closed = true; });
    pub.client.publish('camnode/node-1/reply/huge', Buffer.alloc(5 * 1024 * 1024, 'A'), { qos: 0 });
    await waitFor(() => closed, 'the broker to disconnect the sender');
    await flush(sub.client, sub, 'camnode/node-1/reply/marker');
    expect(sub.got.some((m) => m.topic === 'camnode/node-1/reply/huge')).toBe(false);
  });

  it('comes back on the same port after restart() with retained messages kept', async () => {
    const { client } = await connectAs(broker, 'node-2');
    await client.publishAsync('camnode/node-2/status', '{"online":true,"kept":1}', { qos: 1, retain: true });
    await client.endAsync();
    const { port, pid } = broker;
    await broker.restart();
    expect(broker.port).toBe(port);
    expect(broker.pid).not.toBe(pid);
    const ops = await connectAs(broker, 'ops:alice');
    await ops.client.subscribeAsync('camnode/node-2/status', { qos: 1 });
    await waitFor(() => ops.got.length > 0, 'retained status after restart');
    expect(ops.got[0]!.payload).toBe('{"online":true,"kept":1}');
  });
});

// The node side of the will test, as its own process so that it can really die: connects with
// a retained will, publishes a retained online status, prints READY and waits to be killed.
const WILL_CLIENT = `
const fs = require('node:fs');
const mqtt = require('mqtt');
const [url, ca, cert, key, topic] = process.argv.slice(1);
const client = mqtt.connect(url, {
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  protocolVersion: 5, keepalive: 5, reconnectPeriod: 0, clientId: 'node-3-' + process.pid,
  will: { topic, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
});
client.on('error', (err) => { console.error(err.message); process.exit(2); });
client.on('connect', async () => {
  await client.publishAsync(topic, JSON.stringify({ online: true, pid: process.pid }), { qos: 1, retain: true });
  console.log('READY');
});
`;
