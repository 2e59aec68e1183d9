// Who may do what, end to end (CONTRACT §7): a real Mosquitto with TLS and the ACL rendered from
// the fleet CA's roster, the real agent through the CLI, `camnode ctl` signing with each
// principal's certificate, and a raw MQTT.js client for what ctl would never send. Roles decide;
// `by` in the book is the signer's CN; forged, replayed, misdirected, revoked and unsigned
// commands are refused `forbidden`, answered only under the signer's own reply topic, and
// audited as counts; the local socket works without signatures.
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingWith, type Signing } from '../../src/ops/signer.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { killAgentAndRecorders } from '../helpers/segments.js';

const run = promisify(execFile);
const NODE = 'node-1';
const PREFIX = 'camnode';
const PRINCIPALS = ['alice', 'vera:viewer', 'otto:ops', 'cleo:custodian', 'eve:ops'];

type Version = 5 | '3.1.1';
interface Msg { topic: string; body: { id?: unknown; ok: boolean; data?: unknown; error?: { code: string; message: string } } }

let broker: Mosquitto;
let dir: string;
let configPath: string;
let agent: RunningAgent;
const signers = new Map<string, Signing>();
const clients: MqttClient[] = [];

async function startAgent(): Promise<RunningAgent> {
  const a = RunningAgent.start(configPath);
  await a.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
  return a;
}

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE, 'node-2'], ops: PRINCIPALS });
  for (const p of PRINCIPALS) {
    const cn = `ops:${p.split(':')[0]}`;
    const files = broker.certFor(cn);
    signers.set(cn, signingWith({ certPem: await readFile(files.cert, 'utf8'), keyPem: await readFile(files.key, 'utf8') }));
  }
  const node = broker.certFor(NODE);
  signers.set(NODE, signingWith({ certPem: await readFile(node.cert, 'utf8'), keyPem: await readFile(node.key, 'utf8') }));
  dir = await tempDir('camnode-signed-');
  configPath = await writeConfig(dir, baseConfig(dir, [{ id: 'cam-a', source: 'testsrc', zone: 'entrance' }], {
    node: { id: NODE },
    incident: { preRoll: '2s', postRoll: '5m', maxLength: '1h' },
    control: { socket: join(dir, 'control.sock') },
    mqtt: { url: broker.url, ca: broker.caFile, cert: node.cert, key: node.key, keepalive: '2s', stateInterval: '60s' },
  }));
  agent = await startAgent();
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await killAgentAndRecorders(agent, join(dir, 'storage'));
  await rm(dir, { recursive: true, force: true });
  await stopAllMosquittos();
});

function ctlAs(cn: string, ...args: string[]): Promise<CliResult> {
  const files = broker.certFor(cn);
  return runCli(['ctl', ...args], { env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key } });
}

/** A raw client connected as `cn`, recording what it receives. */
async function rawAs(cn: string, version: Version = 5): Promise<{ client: MqttClient; got: Msg[] }> {
  const client = await mqtt.connectAsync(broker.url, { ...broker.tls(cn), protocolVersion: version === 5 ? 5 : 4, clientId: `t-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  clients.push(client);
  const got: Msg[] = [];
  client.on('message', (topic, payload) => {
    try { got.push({ topic, body: JSON.parse(payload.toString()) as Msg['body'] }); } catch { /* not JSON */ }
  });
  await client.subscribeAsync(`${PREFIX}/${NODE}/reply/${cn}/#`, { qos: 1 });
  return { client, got };
}

const replyTopic = (cn: string): string => `${PREFIX}/${NODE}/reply/${cn}/t-${randomUUID()}`;

/** Publishes `payload` on cmd/<cmd> with the reply topic as Response Topic; the reply, or null after `waitMs`. */
async function send(raw: { client: MqttClient; got: Msg[] }, cmd: string, payload: object | string, to: string, waitMs = 5_000): Promise<Msg['body'] | null> {
  await raw.client.publishAsync(`${PREFIX}/${NODE}/cmd/${cmd}`, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1, properties: { responseTopic: to } });
  return waitFor(() => raw.got.find((m) => m.topic === to)?.body, `a reply on ${to}`, waitMs, 20).catch(() => null);
}

describe('signed commands (real broker, real agent)', () => {
  it('advertises "commands": "signed" in its retained status', async () => {
    const raw = await rawAs('ops:vera');
    await raw.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
    const status = await waitFor(() => raw.got.find((m) => m.topic.endsWith('/status'))?.body as unknown as { commands?: string }, 'the status');
    expect(status.commands).toBe('signed');
  });

  it('roles: a viewer cannot lock, ops can and cannot dispose, a custodian can; by is the signer\'s CN', async () => {
    // The broker's ACL already stops a viewer writing cmd/lock; signed over a path the ACL
    // allows (vera's lock signed, sent by alice), the node itself refuses it.
    const alice = await rawAs('ops:alice');
    const veraLock = await signers.get('ops:vera')!.sign(NODE, 'lock', { reason: 'x' }, undefined);
    const toVera = replyTopic('ops:vera');
    const veraRaw = await rawAs('ops:vera');
    await alice.client.publishAsync(`${PREFIX}/${NODE}/cmd/lock`, JSON.stringify({ jws: veraLock }), { qos: 1, properties: { responseTopic: toVera } });
    const refused = await waitFor(() => veraRaw.got.find((m) => m.topic === toVera)?.body, 'vera\'s refusal');
    expect(refused).toEqual({ ok: false, error: { code: 'forbidden', message: 'ops:vera (viewer) may not lock' } });
    const viaCtl = await ctlAs('ops:vera', 'state', NODE, '--json');
    expect(viaCtl.code, viaCtl.stderr).toBe(0);

    const locked = await ctlAs('ops:otto', 'lock', NODE, '--reason', 'fight at the desk', '--by', 'J. Doe (desk)', '--json');
    expect(locked.code, locked.stderr).toBe(0);
    const { incident } = JSON.parse(locked.stdout) as { incident: string };
    const shown = JSON.parse((await ctlAs('ops:otto', 'incident', NODE, incident, '--json')).stdout) as { triggers: unknown[] };
    expect(shown.triggers).toEqual([{
      at: expect.any(String), via: 'mqtt', by: 'ops:otto', onBehalfOf: 'J. Doe (desk)', reason: 'fight at the desk',
      signer: { cn: 'ops:otto', role: 'ops', certSha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
    }]);

    // Disposing: ops cannot (the ACL stops ctl's publish: MQTT 5 "not authorized"), a custodian can.
    const otto = await ctlAs('ops:otto', 'dispose', NODE, incident, '--reason', 'no', '--force');
    expect(otto.code).not.toBe(0);
    const ottoRaw = await rawAs('ops:otto');
    const toOtto = replyTopic('ops:otto');
    await alice.client.publishAsync(`${PREFIX}/${NODE}/cmd/dispose`, JSON.stringify({ jws: await signers.get('ops:otto')!.sign(NODE, 'dispose', { incident, reason: 'no', force: true }, toOtto) }), { qos: 1 });
    expect(await waitFor(() => ottoRaw.got.find((m) => m.topic === toOtto)?.body, 'otto\'s refusal')).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'ops:otto (ops) may not dispose' } });
    const cleo = await ctlAs('ops:cleo', 'dispose', NODE, incident, '--reason', 'false alarm', '--force');
    expect(cleo.code, cleo.stderr).toBe(0);
    const entries = (await readFile(join(dir, 'state', 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const dispose = entries.find((e) => e['type'] === 'dispose.forced' && e['incident'] === incident)!;
    expect(dispose).toMatchObject({ by: 'ops:cleo', reason: 'false alarm', signer: { cn: 'ops:cleo', role: 'custodian' }, jws: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/) });
  });

  it('unsigned (an old ctl), for another node, for another command, tampered, a node\'s own certificate, alg none: forbidden, and where it may, answered', async () => {
    const otto = await rawAs('ops:otto');
    const s = signers.get('ops:otto')!;
    let to = replyTopic('ops:otto');
    expect(await send(otto, 'ping', {}, to)).toEqual({ ok: false, error: { code: 'forbidden', message: 'commands must be signed' } });
    to = replyTopic('ops:otto');
    expect(await send(otto, 'ping', { jws: await s.sign('node-2', 'ping', {}, to) }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'signed for node "node-2", not this one' } });
    to = replyTopic('ops:otto');
    expect(await send(otto, 'sync', { jws: await s.sign(NODE, 'ping', {}, to) }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'signed for command "ping", sent as "sync"' } });
    to = replyTopic('ops:otto');
    const [h, p, sig] = (await s.sign(NODE, 'lock', { reason: 'a' }, to)).split('.');
    const forged = Buffer.from(Buffer.from(p!, 'base64url').toString().replace('"reason":"a"', '"reason":"b"')).toString('base64url');
    expect(await send(otto, 'lock', { jws: `${h}.${forged}.${sig}` }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: expect.stringMatching(/signature does not verify/) } });
    to = replyTopic('ops:otto');
    const fresh = (await s.sign(NODE, 'lock', { reason: 'a' }, to)).split('.')[1];
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', x5c: (JSON.parse(Buffer.from(h!, 'base64url').toString()) as { x5c: string[] }).x5c })).toString('base64url')}.${fresh}.`;
    expect(await send(otto, 'lock', { jws: none }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'JWS alg "none" is not ES256 or EdDSA' } });
    // Signed with the node's own certificate: no principal; the refusal goes nowhere a principal reads.
    to = replyTopic('ops:otto');
    expect(await send(otto, 'ping', { jws: await signers.get(NODE)!.sign(NODE, 'ping', {}, to) }, to, 2_000)).toBeNull();
    // A valid signature with a reply topic under someone else's CN: refused, no reply at all.
    const elsewhere = replyTopic('ops:vera');
    const vera = await rawAs('ops:vera');
    await otto.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await s.sign(NODE, 'ping', {}, elsewhere) }), { qos: 1 });
    await agent.waitForLog((l) => l.msg === 'signed command refused; no reply sent', 'the refusal of the misdirected reply');
    expect(vera.got.filter((m) => m.topic === elsewhere)).toEqual([]);
  });

  it('over MQTT 3.1.1 too: an old unsigned command hears why on its replyTo', async () => {
    const otto = await rawAs('ops:otto', '3.1.1');
    const to = replyTopic('ops:otto');
    await otto.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ replyTo: to, id: 7 }), { qos: 1 });
    expect(await waitFor(() => otto.got.find((m) => m.topic === to)?.body, 'the refusal')).toEqual({ id: 7, ok: false, error: { code: 'forbidden', message: 'commands must be signed' } });
    const signed = replyTopic('ops:otto');
    await otto.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await signers.get('ops:otto')!.sign(NODE, 'ping', {}, undefined), replyTo: signed, id: 8 }), { qos: 1 });
    expect(await waitFor(() => otto.got.find((m) => m.topic === signed)?.body, 'the pong')).toMatchObject({ id: 8, ok: true });
  });

  it('a replayed command is refused, also after the agent restarts; a revoked principal, once the retained CRL says so and after a restart', async () => {
    const otto = await rawAs('ops:otto');
    const to = replyTopic('ops:otto');
    const jws = await signers.get('ops:otto')!.sign(NODE, 'ping', {}, to);
    expect(await send(otto, 'ping', { jws }, to)).toMatchObject({ ok: true });
    otto.got.length = 0;
    expect(await send(otto, 'ping', { jws }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'nonce already used (a replayed command)' } });

    expect(await agent.stop()).toBe(0);
    agent = await startAgent();
    otto.got.length = 0;
    expect(await send(otto, 'ping', { jws }, to)).toMatchObject({ ok: false, error: { code: 'forbidden', message: 'nonce already used (a replayed command)' } });

    // eve is revoked (the broker reloads its crlfile: eve can no longer connect); her key still
    // signs, and alice carries the command. The node learns of it from the retained CRL.
    const eveSigning = signers.get('ops:eve')!;
    const alice = await rawAs('ops:alice');
    const eveRaw = await rawAs('ops:eve');
    const before = replyTopic('ops:eve');
    await alice.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await eveSigning.sign(NODE, 'ping', {}, before) }), { qos: 1 });
    expect(await waitFor(() => eveRaw.got.find((m) => m.topic === before)?.body, 'eve\'s pong')).toMatchObject({ ok: true });
    await broker.revoke('ops:eve');
    await alice.client.publishAsync(`${PREFIX}/_fleet/crl`, await readFile(join(broker.caDir, 'crl.pem')), { qos: 1, retain: true });
    await agent.waitForLog((l) => l.msg === 'fleet CRL in use' && l['source'] === 'broker', 'the retained CRL adopted');
    const cmd = async (): Promise<string> => {
      const t = replyTopic('ops:eve');
      await alice.client.publishAsync(`${PREFIX}/${NODE}/cmd/ping`, JSON.stringify({ jws: await eveSigning.sign(NODE, 'ping', {}, t) }), { qos: 1 });
      return (await agent.waitForLog((l) => l.msg === 'signed command refused' && String(l['reason']).includes('revoked') && l['signer'] === 'ops:eve', 'eve refused')).msg;
    };
    expect(await cmd()).toBe('signed command refused');
    // Kept across a restart, broker or not.
    await alice.client.publishAsync(`${PREFIX}/_fleet/crl`, '', { qos: 1, retain: true });
    expect(await agent.stop()).toBe(0);
    agent = await startAgent();
    expect(await cmd()).toBe('signed command refused');
  });

  it('refusals are audited as counts; the local socket needs no signature and records via local', async () => {
    const local = await runCli(['ctl', 'lock', '--local', '--config', configPath, '--reason', 'desk', '--by', 'desk staff', '--json']);
    expect(local.code, local.stderr).toBe(0);
    const { incident } = JSON.parse(local.stdout) as { incident: string };
    const shown = JSON.parse((await runCli(['ctl', 'incident', '--local', '--config', configPath, incident, '--json'])).stdout) as { triggers: { via: string; by?: string; signer?: unknown }[] };
    expect(shown.triggers.at(-1)).toMatchObject({ via: 'local', by: 'desk staff' });
    expect(shown.triggers.at(-1)).not.toHaveProperty('signer');

    expect(await agent.stop()).toBe(0); // flushes the minute's count
    agent = await startAgent();
    const refused = (await readFile(join(dir, 'state', 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e['type'] === 'refused');
    const total = refused.reduce((n, e) => n + Number(e['count']), 0);
    expect(total).toBeGreaterThanOrEqual(10);
    const reasons = Object.keys(Object.assign({}, ...refused.map((e) => e['reasons'] as object)) as object);
    expect(reasons).toEqual(expect.arrayContaining(['commands must be signed', 'nonce already used (a replayed command)', 'ops:vera (viewer) may not lock']));
  });

  it('check: the fleet CA and the CRL — a warning without fleet.crl, a failure for an expired one', async () => {
    const plain = await runCli(['check', '--config', configPath]);
    expect(plain.stdout).toMatch(/fleet CA\s+pass\s+commands must be signed by a principal of "O=camnode fleet, CN=camnode fleet CA/);
    expect(plain.stdout).toMatch(/fleet CRL\s+warn\s+no fleet\.crl/);

    const expired = join(dir, 'expired-crl.pem');
    await run('openssl', ['ca', '-batch', '-config', join(broker.caDir, 'db', 'openssl.cnf'), '-gencrl', '-crlsec', '1', '-out', expired], { env: { ...process.env, FLEET_SAN: 'DNS:unused' } });
    const current = join(dir, 'current-crl.pem');
    await run('cp', [join(broker.caDir, 'crl.pem'), current]);
    const withCrl = async (crl: string): Promise<CliResult> => {
      const text = (await readFile(configPath, 'utf8')) + `fleet:\n  crl: ${crl}\n`;
      const path = join(dir, `check-${randomUUID().slice(0, 6)}.yaml`);
      await writeFile(path, text);
      return runCli(['check', '--config', path]);
    };
    expect((await withCrl(current)).stdout).toMatch(/fleet CRL\s+pass\s+.*number \d+, \d+ revoked, valid until 20/);
    await new Promise((r) => setTimeout(r, 1_500));
    const failed = await withCrl(expired);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/fleet CRL\s+fail\s+.*expired .*custodian and admin commands are refused/);
  });
});
