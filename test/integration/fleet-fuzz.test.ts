// Bad input over MQTT (CONTRACT §3, §5, §7), against a real Mosquitto configured from provisioning/
// (TLS, client certificates, the ACL) and the real agent run through the CLI. Commands must be
// signed, so the input is fuzzed at two layers: the envelope (malformed JSON, non-objects, a
// 10 MB payload, no JWS: `forbidden`, "commands must be signed") and, inside valid signatures
// by ops:admin, the arguments (wrong types, unknown commands and arguments: `bad_request`).
// Missing and foreign reply addresses too. Each gets an error reply where it has a reply
// address, a log line, and changes nothing; the agent keeps answering. Then thousands of random
// requests on both protocol versions, each answered exactly as its envelope, reply address and
// arguments say it must be.
//
// Requests are sent on a plain listener, so that names the fleet ACL would stop reach the node;
// what the node publishes is watched by a subscriber to `#` there, which no ACL filters. With the node on the TLS listener the ACL would drop a publish outside its subtree
// anyway, so the foreign-address cases also run with the node on the plain listener, where only
// the node's own refusal keeps those topics empty.
import { createPrivateKey, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { CompactSign } from 'jose';
import { join } from 'node:path';
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandArgs, isCommandName } from '../../src/commands/protocol.js';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { listSegments, recorderPids } from '../helpers/segments.js';
import { seededRandom } from '../helpers/random.js';

const NODE = 'node-1';
const PREFIX = 'camnode';
const SUBTREE = `${PREFIX}/${NODE}/`;
const REPLY_BASE = `${PREFIX}/${NODE}/reply`;
/** ops:admin's replies: the only reply topics a node answers its signed commands on. */
const ADMIN_REPLIES = `${REPLY_BASE}/ops:admin`;
const MUST_BE_SIGNED = 'commands must be signed';
const CMD = (name: string) => `${PREFIX}/${NODE}/cmd/${name}`;
const CAMERAS = ['cam-a'];
const ERROR = 50;
const MIB = 1024 * 1024;
const FOREIGN = [`${PREFIX}/other-node/reply/x`, 'elsewhere/x'];

type Version = 5 | '3.1.1';
interface Msg { topic: string; raw: Buffer; body: unknown; correlationData?: Buffer }
interface Client { client: MqttClient; got: Msg[] }
interface Reply { id?: unknown; ok: boolean; data?: unknown; error?: { code: string; message: string } }

let broker: Mosquitto;
let signArgs: (cmd: string, argsText: string) => Promise<string>;

beforeAll(async () => {
  // 16 MiB so that a 10 MB request reaches the node and the node's own limit is what answers.
  broker = await startMosquitto({ nodes: [NODE], ops: ['admin'], plain: true, maxPacketSize: 16 * MIB });
  const files = broker.certFor('ops:admin');
  const key = createPrivateKey(readFileSync(files.key));
  const x5c = [Buffer.from(new X509Certificate(readFileSync(files.cert)).raw).toString('base64')];
  // The JWS payload written as text, so that fuzzed arguments (a `__proto__` key, say) are
  // signed exactly as generated.
  signArgs = (cmd, argsText) => new CompactSign(Buffer.from(
    `{"node":${JSON.stringify(NODE)},"cmd":${JSON.stringify(cmd)},"args":${argsText},"iat":${Math.floor(Date.now() / 1000)},"nonce":"${randomBytes(18).toString('base64url')}"}`,
  )).setProtectedHeader({ alg: 'ES256', x5c }).sign(key);
});
afterAll(async () => {
  await stopAllMosquittos();
});

function parseBody(raw: Buffer): unknown {
  try { return JSON.parse(raw.toString('utf8')); } catch { return undefined; }
}

async function connect(url: string, version: Version, as?: string): Promise<Client> {
  const client = await mqtt.connectAsync(url, {
    // MQTT.js goes TLS when given a certificate: only ever for the TLS listener.
    ...(as ? broker.tls(as) : {}),
    protocolVersion: version === 5 ? 5 : 4,
    clientId: `fuzz-${randomUUID().slice(0, 8)}`,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  const got: Msg[] = [];
  client.on('message', (topic, raw, packet) => {
    const correlationData = packet.properties?.correlationData;
    got.push({ topic, raw, body: parseBody(raw), ...(correlationData ? { correlationData } : {}) });
  });
  return { client, got };
}

describe.each([
  { version: 5 as Version, link: 'tls', fuzz: 1500 },
  { version: '3.1.1' as Version, link: 'tls', fuzz: 1500 },
  { version: 5 as Version, link: 'plain', fuzz: 300 },
  { version: '3.1.1' as Version, link: 'plain', fuzz: 300 },
])('bad input over MQTT $version (node on the $link listener)', ({ version, link, fuzz }) => {
  let dir: string;
  let agent: RunningAgent;
  let ops: Client;
  let observer: Client;
  /**
   * Sends every request, on the plain listener: the fleet ACL lets ops:admin write only the
   * commands its role names, so a request for an unknown command would never reach the node
   * from the TLS side (broker-acl.test.ts proves that part). Replies are read by `ops` on TLS,
   * under the ACL: what ops:admin receives is what reaches it in production.
   */
  let sender: Client;
  const v5 = version === 5;

  beforeAll(async () => {
    dir = await tempDir('camnode-fleet-fuzz-');
    const files = broker.certFor(NODE);
    const mqttConfig = link === 'tls'
      ? { url: broker.url, ca: broker.caFile, cert: files.cert, key: files.key }
      : { url: broker.plainUrl };
    const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: 'testsrc', zone: 'entrance' })), {
      node: { id: NODE },
      incident: { preRoll: '2s', postRoll: '2m', maxLength: '1h' },
      control: { socket: join(dir, 'control.sock') },
      mqtt: { ...mqttConfig, protocolVersion: version, keepalive: '2s', stateInterval: '60s' },
      // On the plain listener there is no mqtt.ca: the fleet CA is named here.
      fleet: { ca: broker.caFile },
    });
    agent = RunningAgent.start(await writeConfig(dir, config));
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
    await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
    observer = await connect(broker.plainUrl!, 5);
    sender = await connect(broker.plainUrl!, version);
    await observer.client.subscribeAsync('#', { qos: 1 });
    ops = await connect(broker.url, version, 'ops:admin');
    await ops.client.subscribeAsync(`${REPLY_BASE}/#`, { qos: 1 });
  });

  afterAll(async () => {
    await Promise.all([ops, observer, sender].map((c) => c?.client.endAsync(true).catch(() => undefined)));
    agent?.killGroup();
    await agent?.exited;
    if (dir) {
      for (const pid of await recorderPids(join(dir, 'storage'))) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** A fresh reply topic under ops:admin's part of the node's reply subtree. */
  const own = (tag = 'r'): string => `${ADMIN_REPLIES}/${tag}-${randomUUID()}`;

  /**
   * Publishes one request: an object is signed by ops:admin as the command's arguments (the
   * envelope `{jws}`), a string or bytes go as they are (an envelope of their own). `address`
   * goes as Response Topic (v5) or beside the JWS as replyTo/id (3.1.1).
   */
  async function send(cmd: string, payload: string | Buffer | Record<string, unknown>, address?: string, id?: unknown): Promise<Buffer | undefined> {
    let body: string | Buffer;
    let opts: IClientPublishOptions = { qos: 1 };
    const correlationData = Buffer.from(randomUUID());
    if (typeof payload === 'object' && !Buffer.isBuffer(payload)) {
      const jws = await signArgs(cmd, JSON.stringify(payload));
      body = JSON.stringify(!v5 && address ? { jws, replyTo: address, id } : { jws });
    } else {
      body = payload;
    }
    if (v5 && address) opts = { qos: 1, properties: { responseTopic: address, correlationData } };
    await sender.client.publishAsync(CMD(cmd), body, opts);
    return v5 && address ? correlationData : undefined;
  }

  async function replyOn(topic: string, timeoutMs = 15_000): Promise<Msg> {
    return waitFor(() => ops.got.find((m) => m.topic === topic), `a reply on ${topic}`, timeoutMs, 20);
  }

  /** The node answers a ping at once; afterwards anything it would have done earlier is done. */
  async function ping(): Promise<void> {
    const to = own('ping');
    await send('ping', {}, to, 'ping');
    const r = await replyOn(to);
    expect((r.body as Reply).ok).toBe(true);
  }

  async function incidentCount(): Promise<{ incidents: number; triggers: number }> {
    const to = own('incidents');
    await send('incidents', {}, to, 'n');
    const r = (await replyOn(to)).body as Reply;
    expect(r.ok).toBe(true);
    const list = (r.data as { incidents: { triggers: unknown[] }[] }).incidents;
    return { incidents: list.length, triggers: list.reduce((n, i) => n + i.triggers.length, 0) };
  }

  function logsSince(from: number, pred: (l: LogLine) => boolean): Promise<LogLine> {
    return waitFor(() => agent.logs.slice(from).find(pred), 'the log line', 10_000, 50);
  }

  /** Every message the observer saw that the ops client did not publish: the node's. */
  function fromNode(): Msg[] {
    return observer.got.filter((m) => !m.topic.startsWith(`${PREFIX}/${NODE}/cmd/`));
  }

  interface Case { name: string; cmd: string; payload: string | Buffer | Record<string, unknown>; error: RegExp; code?: string; log: string; replyless311?: boolean; skip?: boolean }
  const unsigned = /^commands must be signed$/;
  const cases: Case[] = [
    // The envelope. Under 3.1.1 the reply address lives inside the payload: a payload that is
    // not a JSON object has none, so these are answered only over MQTT 5.
    { name: 'malformed JSON', cmd: 'lock', payload: '{"reason": "x", ', error: unsigned, code: 'forbidden', log: 'malformed request', replyless311: true },
    { name: 'a JSON array', cmd: 'lock', payload: `[{"replyTo":"${ADMIN_REPLIES}/arr"}]`, error: unsigned, code: 'forbidden', log: 'malformed request', replyless311: true },
    { name: 'bytes that are not UTF-8', cmd: 'ping', payload: Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0xc3]), error: unsigned, code: 'forbidden', log: 'malformed request', replyless311: true },
    { name: 'an unsigned command (an old ctl)', cmd: 'lock', payload: '{"reason":"x","replyTo":"@TO@","id":"case-id"}', error: unsigned, code: 'forbidden', log: 'unsigned command refused' },
    { name: 'an empty command name', cmd: '', payload: {}, error: unsigned, code: 'forbidden', log: 'malformed request' },
    // The arguments, inside valid signatures.
    { name: 'a wrong type: preRoll "soon"', cmd: 'lock', payload: { preRoll: 'soon' }, error: /^lock: preRoll: not a duration: "soon"/, log: 'command refused' },
    { name: 'a wrong type: cameras "a"', cmd: 'lock', payload: { cameras: 'a' }, error: /^lock: cameras: /, log: 'command refused' },
    { name: 'a wrong type: urgent "yes"', cmd: 'lock', payload: { urgent: 'yes', reason: 'r' }, error: /^lock: urgent: /, log: 'command refused' },
    { name: 'a reason over its limit', cmd: 'lock', payload: { reason: 'x'.repeat(501) }, error: /^lock: reason: /, log: 'command refused' },
    { name: 'an unknown camera', cmd: 'lock', payload: { cameras: ['cam-z'] }, error: /unknown or disabled camera "cam-z"/, log: 'command refused' },
    { name: 'an unknown command', cmd: 'explode', payload: {}, error: /^unknown command "explode"/, log: 'unknown command refused' },
    { name: 'an unknown argument', cmd: 'lock', payload: { reason: 'x', colour: 'red' }, error: /^lock: unknown argument "colour"/, log: 'command refused' },
    { name: 'an argument to ping', cmd: 'ping', payload: { verbose: true }, error: /^ping: unknown argument "verbose"/, log: 'command refused' },
    { name: 'an argument to state', cmd: 'state', payload: { cameras: ['cam-a'] }, error: /^state: unknown argument "cameras"/, log: 'command refused' },
    { name: 'an argument to sync', cmd: 'sync', payload: { force: true }, error: /^sync: unknown argument "force"/, log: 'command refused' },
    { name: 'dispose without its arguments', cmd: 'dispose', payload: { incident: 5 }, error: /^dispose: incident: .*reason: required/, log: 'command refused' },
    { name: 'a malformed incident id', cmd: 'incident', payload: { incident: '../../etc/passwd' }, error: /^incident: incident: not an incident id/, log: 'command refused' },
    { name: 'a snapshot of an unknown camera', cmd: 'snapshot', payload: { camera: 'cam-z' }, error: /no camera cam-z/, log: 'command refused' },
    { name: 'arguments nested 200 deep', cmd: 'lock', payload: { reason: JSON.parse('['.repeat(200) + ']'.repeat(200)) as unknown }, error: /^JWS payload: request nested deeper than 64/, code: 'forbidden', log: 'signed command refused' },
    { name: 'type confusion: an object where the command reads strings', cmd: 'lock', payload: { reason: { toString: 0 }, by: ['a'] }, error: /^lock: reason: .*by: /, log: 'command refused' },
  ];

  it.each(cases.filter((c) => !c.skip))('$name: an error reply where it has an address, a log line, nothing changed', async (c) => {
    const before = await incidentCount();
    const from = agent.logs.length;
    const to = own('case');
    const payload = typeof c.payload === 'string' ? c.payload.replace('@TO@', to) : c.payload;
    const correlationData = await send(c.cmd, payload, to, 'case-id');
    if (!v5 && c.replyless311) {
      await logsSince(from, (l) => l.msg === c.log);
      await ping();
      expect(ops.got.filter((m) => m.topic === to)).toEqual([]);
    } else {
      const reply = await replyOn(to);
      const body = reply.body as Reply;
      expect(Object.keys(body)).toEqual(v5 ? ['ok', 'error'] : ['id', 'ok', 'error']);
      expect(body).toMatchObject({ ok: false, error: { code: c.code ?? expect.stringMatching(/^(bad_request|not_found)$/), message: expect.stringMatching(c.error) } });
      if (v5) expect(reply.correlationData?.equals(correlationData!)).toBe(true);
      else expect(body.id).toBe('case-id');
      await logsSince(from, (l) => l.msg === c.log);
    }
    expect(await incidentCount()).toEqual(before);
    expect(agent.proc.exitCode).toBeNull();
  });

  // The reply's JSON.stringify recursed into an id nested tens of thousands deep and threw in a
  // handler nothing awaited. The 3.1.1 form only: under MQTT 5 Correlation Data is the id.
  if (!v5) it('an id nested 50,000 deep: refused, answered with id null, the agent unharmed', async () => {
    const to = own('deep-id');
    const deepId = '['.repeat(50_000) + ']'.repeat(50_000);
    await sender.client.publishAsync(CMD('ping'), `{"jws":"${await signArgs('ping', '{}')}","replyTo":"${to}","id":${deepId}}`, { qos: 1 });
    const reply = await replyOn(to);
    expect(reply.body).toEqual({ id: null, ok: false, error: { code: 'forbidden', message: MUST_BE_SIGNED } });
    const longId = 'x'.repeat(129);
    const to2 = own('long-id');
    await sender.client.publishAsync(CMD('ping'), JSON.stringify({ jws: await signArgs('ping', '{}'), replyTo: to2, id: longId }), { qos: 1 });
    expect((await replyOn(to2)).body).toMatchObject({ id: null, ok: true });
    await ping();
    expect(agent.proc.exitCode).toBeNull();
  });

  it('a 10 MB request: refused with an error reply, nothing locked', async () => {
    const before = await incidentCount();
    const from = agent.logs.length;
    const to = own('big');
    const reason = 'x'.repeat(10 * MIB);
    const correlationData = await send('lock', { reason }, to, 'big-id');
    const reply = await replyOn(to, 30_000);
    const body = reply.body as Reply;
    expect(body).toMatchObject({ ok: false, error: { code: 'forbidden', message: MUST_BE_SIGNED } });
    if (v5) expect(reply.correlationData?.equals(correlationData!)).toBe(true);
    else expect(body.id).toBe('big-id');
    // The log says what was refused without repeating 10 MB.
    const line = await logsSince(from, (l) => l.msg === 'malformed request' || l.msg === 'command refused');
    expect(JSON.stringify(line).length).toBeLessThan(4_096);
    expect(await incidentCount()).toEqual(before);
    await ping();
  });

  it('a request without a reply address: refused, logged, nothing changed', async () => {
    const before = await incidentCount();
    const from = agent.logs.length;
    await send('lock', { preRoll: 'soon' });
    await logsSince(from, (l) => l.msg === 'command refused' && l['cmd'] === 'lock');
    await logsSince(from, (l) => l.msg === 'request without a reply address' && l['ok'] === false);
    expect(await incidentCount()).toEqual(before);
  });

  it.each(FOREIGN)('a reply address on %s: refused, logged, no reply anywhere, no lock', async (foreign) => {
    const before = await incidentCount();
    const jws = (): Promise<string> => signArgs('lock', '{"reason":"foreign"}');
    const forms: { payload: Record<string, unknown>; opts: IClientPublishOptions }[] = [
      { payload: { jws: await jws(), replyTo: foreign, id: 1 }, opts: { qos: 1 } },
    ];
    if (v5) {
      forms.push({ payload: { jws: await jws() }, opts: { qos: 1, properties: { responseTopic: foreign, correlationData: Buffer.from('f') } } });
      // MQTT 5 wins: an acceptable replyTo in the payload does not rescue a foreign Response Topic.
      forms.push({ payload: { jws: await jws(), replyTo: own('rescue'), id: 2 }, opts: { qos: 1, properties: { responseTopic: foreign } } });
    }
    for (const f of forms) {
      const from = agent.logs.length;
      await sender.client.publishAsync(CMD('lock'), JSON.stringify(f.payload), f.opts);
      const line = await logsSince(from, (l) => l.msg === 'request refused: reply topic not allowed; no reply sent');
      expect(line['reason']).toContain(JSON.stringify(foreign));
    }
    await ping();
    expect(await incidentCount()).toEqual(before);
    expect(observer.got.filter((m) => m.topic === foreign || m.topic.startsWith(`${PREFIX}/other-node/`) || m.topic.startsWith('elsewhere/'))).toEqual([]);
    expect(ops.got.filter((m) => m.topic.includes('/rescue-'))).toEqual([]);
    expect(agent.logs.filter((l) => l.msg === 'incident locked')).toEqual([]);
  });

  if (fuzz > 0) {
    it(`${fuzz} random requests: each answered as its address and arguments say, the agent unharmed`, async () => {
      const seed = Number(process.env['FUZZ_SEED'] ?? Date.now() % 1_000_000);
      const rnd = seededRandom(seed);
      const note = `seed ${seed} (FUZZ_SEED=${seed} replays it)`;
      const before = await incidentCount();
      const repliesBefore = ops.got.length;
      const expected = new Map<string, { ok: boolean; id?: unknown; hasId: boolean; correlationData?: Buffer; n: number }>();
      let validLocks = 0;

      const requests = Array.from({ length: fuzz }, (_, n) => randomRequest(rnd, n, v5));
      for (const r of requests) await seal(r, signArgs);
      for (const r of requests) {
        const e = expectation(r);
        if (e.replyTopic) expected.set(e.replyTopic, { ok: e.ok, hasId: e.hasId, id: e.id, ...(r.correlationData ? { correlationData: r.correlationData } : {}), n: r.n });
        if (e.lock) validLocks++;
      }
      // Sent quickly: 100 in flight at a time.
      for (let i = 0; i < requests.length; i += 100) {
        await Promise.all(requests.slice(i, i + 100).map((r) => sender.client.publishAsync(CMD(r.cmd), r.payload, {
          qos: 1, ...(r.responseTopic ? { properties: { responseTopic: r.responseTopic, ...(r.correlationData ? { correlationData: r.correlationData } : {}) } } : {}),
        })));
      }
      const replies = () => ops.got.slice(repliesBefore).filter((m) => m.topic.includes('/fz-'));
      await waitFor(() => replies().length >= expected.size, `${expected.size} replies; ${note}`, 40_000, 100)
        .catch((err: Error) => { throw new Error(`${err.message} (got ${replies().length})`); });
      await ping();
      expect(agent.proc.exitCode, note).toBeNull();

      // Exactly one reply per request with its own reply address, and none to any other.
      const seen = new Map<string, number>();
      for (const m of replies()) seen.set(m.topic, (seen.get(m.topic) ?? 0) + 1);
      expect([...seen].filter(([t, k]) => k !== 1 || !expected.has(t)), note).toEqual([]);
      expect(seen.size, note).toBe(expected.size);
      for (const m of replies()) {
        const e = expected.get(m.topic)!;
        const body = m.body as Reply;
        const what = `request #${e.n} ${JSON.stringify(describeRequest(requests[e.n]!))} → ${m.raw.toString()}; ${note}`;
        expect(body.ok, what).toBe(e.ok);
        expect(Object.keys(body).filter((k) => k !== 'id'), what).toEqual(body.ok ? ['ok', 'data'] : ['ok', 'error']);
        if (!body.ok) expect(['bad_request', 'not_found', 'conflict', 'forbidden'], what).toContain(body.error!.code);
        if (e.correlationData) expect(m.correlationData?.equals(e.correlationData), what).toBe(true);
        if (e.hasId) expect(body.id, what).toEqual(e.id);
        else expect(body, what).not.toHaveProperty('id');
      }

      // Locks: every valid lock and nothing else; they all extend the one open incident.
      const after = await incidentCount();
      expect(after.triggers - before.triggers, `${validLocks} valid locks; ${note}`).toBe(validLocks);
      expect(after.incidents - before.incidents, note).toBe(validLocks > 0 && before.incidents === 0 ? 1 : 0);

      // The node published only under its subtree: status, state, events and the replies asked for.
      const outside = fromNode().filter((m) => !m.topic.startsWith(SUBTREE));
      expect(outside.map((m) => m.topic), note).toEqual([]);
      for (const m of fromNode()) {
        const kind = m.topic.slice(SUBTREE.length).split('/')[0];
        expect(['status', 'state', 'events', 'reply'], m.topic).toContain(kind);
        if (kind === 'state') expect(Object.keys(m.body as object).sort(), 'a state document').toEqual(['cameras', 'configSource', 'health', 'incidents', 'policy', 'storage', 'sync', 'ts']);
        if (kind === 'status') expect(m.body).toHaveProperty('online');
      }
      expect(agent.logs.filter((l) => l.msg === 'reply not published'), note).toEqual([]);
    });
  }

  it('the agent is alive, answers, logged no errors, and recorded throughout without a gap', async () => {
    await ping();
    expect(agent.proc.exitCode).toBeNull();
    // Every request above arrived while the camera recorded: its segments follow each other.
    // (A short run on the plain listener may hold only a few seconds of footage.)
    const segs = await listSegments(join(dir, 'storage'), CAMERAS[0]!);
    expect(segs.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < segs.length; i++) {
      const hole = segs[i]!.startMs - (segs[i - 1]!.startMs + segs[i - 1]!.durationMs);
      expect(hole, `hole before seq ${segs[i]!.seq}`).toBeLessThan(1_500);
    }
    expect(agent.logs.filter((l) => l.level >= ERROR)).toEqual([]);
    // Nothing the ACL would have had to drop.
    expect(fromNode().filter((m) => !m.topic.startsWith(SUBTREE))).toEqual([]);
  });
});

// --- the random requests ---------------------------------------------------------------------

interface FuzzRequest {
  n: number;
  cmd: string;
  /** What goes on the wire; for a signed request, made by `seal()` once the JWS is signed. */
  payload: Buffer;
  /** A signed request: its arguments (the JWS's `args`), and what stands beside the JWS. */
  signed?: { argsText: string; envelope: [string, unknown][]; cutAt?: number };
  responseTopic?: string;
  correlationData?: Buffer;
  /** Own reply topics by construction: no other value generated is one (see `randomValue`). */
  ownTopics: Set<string>;
}


const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

function randomString(rnd: () => number, max = 12): string {
  const chars = 'abcxyzABC019-_. :"\\{}[]ä💥\n\t';
  const chars2 = [...chars];
  return Array.from({ length: Math.floor(rnd() * max) }, () => pick(rnd, chars2)).join('');
}

function randomValue(rnd: () => number, depth = 0): unknown {
  const r = rnd();
  if (r < 0.1) return null;
  if (r < 0.2) return rnd() < 0.5;
  if (r < 0.35) return pick(rnd, [0, 1, -1, 2.5, 1e21, -0, 6, 90, 2 ** 53]);
  if (r < 0.6) return randomString(rnd);
  if (r < 0.75 || depth > 2) return pick(rnd, ['', '6s', '5m', '90', 'soon', '-1s', ' 2s ', '1e3', '20261128T165500Z-7kq2', FOREIGN[0]]);
  if (r < 0.88) return Array.from({ length: Math.floor(rnd() * 4) }, () => randomValue(rnd, depth + 1));
  return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [randomString(rnd, 6), randomValue(rnd, depth + 1)]));
}

/** Values for the real argument names, likely enough right that some locks are valid. */
const ARG_VALUES: Record<string, (rnd: () => number) => unknown> = {
  reason: (rnd) => pick(rnd, ['fight', '', 'x'.repeat(501), 'ä💥', 42]),
  by: (rnd) => pick(rnd, ['ops/jdoe', '', null, ['x']]),
  // No short valid post-rolls: the first lock's incident stays open through the whole run.
  preRoll: (rnd) => pick(rnd, ['2s', 5, '1m', '500ms', 'soon', -1, null, '', '1.5.2s', {}]),
  postRoll: (rnd) => pick(rnd, ['90s', 120, '3m', 'soon', -5, '', 'PT5S', true]),
  cameras: (rnd) => pick(rnd, [['cam-a'], [], ['cam-a', 'cam-a'], ['cam-z'], ['CAM-A'], [''], 'cam-a', [5], null]),
  urgent: (rnd) => pick(rnd, [true, false, 'yes', 1, null]),
  incident: (rnd) => pick(rnd, ['20261128T165500Z-7kq2', 'x', 5, '', '20261128T165500Z-7kq1']),
  force: (rnd) => pick(rnd, [true, false, 'true']),
  camera: (rnd) => pick(rnd, ['cam-z', 'CAM', '', 5, ['cam-a']]),
};
const KEYS = [...Object.keys(ARG_VALUES), '__proto__', 'constructor', 'toString', 'colour'];

/** JSON text of an object from entries (a `__proto__` key must be a key, not a prototype). */
function objectText(entries: [string, unknown][]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

function randomRequest(rnd: () => number, n: number, v5: boolean): FuzzRequest {
  const ownTopics = new Set<string>();
  const ownTopic = (): string => {
    const t = `${ADMIN_REPLIES}/fz-${n}-${ownTopics.size}`;
    ownTopics.add(t);
    return t;
  };
  const cmd = rnd() < 0.75 ? pick(rnd, [...Object.keys(commandArgs), 'lock', 'lock', 'lock']) : pick(rnd, ['explode', '', 'LOCK', 'ping ', 'pïng', '$sys', 'release.', randomString(rnd, 8).replace(/[\n\t]/g, '')]);
  const r = rnd();
  let payload = Buffer.alloc(0);
  let signed: FuzzRequest['signed'];
  if (r < 0.1) {
    payload = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
  } else if (r < 0.2) {
    payload = Buffer.from(JSON.stringify(pick(rnd, [[], [1, 2], 'ping', 42, null, true, [{ replyTo: ownTopic() }]])));
  } else {
    // The arguments, signed; each key once (a member twice is refused by the signature check,
    // which the component tests cover).
    const args = new Map<string, unknown>();
    const count = Math.floor(rnd() * 4);
    for (let i = 0; i < count; i++) {
      const key = rnd() < 0.8 ? pick(rnd, KEYS) : randomString(rnd, 6);
      const values = Object.hasOwn(ARG_VALUES, key) ? ARG_VALUES[key] : undefined; // not `constructor` of Object
      args.set(key, values && rnd() < 0.85 ? values(rnd) : randomValue(rnd));
    }
    const entries: [string, unknown][] = [];
    const a = rnd();
    if (a < 0.5) entries.push(['replyTo', ownTopic()]);
    else if (a < 0.65) entries.push(['replyTo', pick(rnd, [...FOREIGN, REPLY_BASE, `${REPLY_BASE}/`, `${REPLY_BASE}/#`, `${REPLY_BASE}/+/x`, `${PREFIX}/${NODE}/state`, `${PREFIX}/${NODE}-2/reply/x`])]);
    else if (a < 0.75) entries.push(['replyTo', randomValue(rnd)]);
    if (rnd() < 0.7) entries.push(['id', randomValue(rnd)]);
    // Shuffled, so replyTo and id are not always last.
    for (let i = entries.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [entries[i], entries[j]] = [entries[j]!, entries[i]!];
    }
    // Now and then an envelope cut short.
    signed = { argsText: objectText([...args]), envelope: entries, ...(rnd() < 0.05 ? { cutAt: rnd() } : {}) };
  }
  const req: FuzzRequest = { n, cmd, payload, ownTopics, ...(signed ? { signed } : {}) };
  if (v5) {
    const p = rnd();
    // No wildcards in a Response Topic: that is a protocol error the broker disconnects for.
    if (p < 0.35) req.responseTopic = ownTopic();
    else if (p < 0.45) req.responseTopic = pick(rnd, [...FOREIGN, REPLY_BASE, `${PREFIX}/${NODE}/state`, `${PREFIX}/${NODE}/reply/`]);
    if (req.responseTopic && rnd() < 0.8) req.correlationData = Buffer.from(Array.from({ length: Math.floor(rnd() * 16) }, () => Math.floor(rnd() * 256)));
    if (req.correlationData?.length === 0) delete req.correlationData;
  }
  return req;
}

/** Signs a request's arguments and writes its envelope: `{jws}` with replyTo and id where drawn. */
async function seal(r: FuzzRequest, signArgs: (cmd: string, argsText: string) => Promise<string>): Promise<void> {
  if (!r.signed) return;
  const entries: [string, unknown][] = [['jws', await signArgs(r.cmd, r.signed.argsText)], ...r.signed.envelope];
  const text = objectText(entries);
  r.payload = Buffer.from(r.signed.cutAt !== undefined ? text.slice(0, Math.floor(r.signed.cutAt * text.length)) : text);
}

/** What the node must do with a request, worked out independently of src/fleet. */
function expectation(r: FuzzRequest): { replyTopic?: string; ok: boolean; hasId: boolean; id?: unknown; lock: boolean } {
  let body: unknown = {};
  let parsed = true;
  if (r.payload.length > 0) {
    // CONTRACT §5: valid UTF-8 only (no request here nests anywhere near 64 deep).
    try { body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(r.payload)); } catch { parsed = false; }
  }
  const isObject = parsed && body !== null && typeof body === 'object' && !Array.isArray(body);
  let replyTopic: string | undefined;
  let hasId = false;
  let id: unknown;
  let args: Record<string, unknown> = {};
  if (isObject) {
    const { replyTo, id: bodyId, ...rest } = body as Record<string, unknown>;
    args = rest;
    if (r.responseTopic === undefined && typeof replyTo === 'string') replyTopic = replyTo;
    // The payload's id is echoed unless Correlation Data does that job.
    // CONTRACT §5: an id is echoed when it is a string of at most 128 characters or a safe
    // integer; any other id is echoed as null.
    if (bodyId !== undefined && !r.correlationData && (r.responseTopic !== undefined || typeof replyTo === 'string')) {
      hasId = true;
      id = (typeof bodyId === 'string' && bodyId.length <= 128) || Number.isSafeInteger(bodyId) ? bodyId : null;
    }
  }
  if (r.responseTopic !== undefined) replyTopic = r.responseTopic;
  const answered = replyTopic !== undefined && r.ownTopics.has(replyTopic);
  let ok = false;
  let lock = false;
  // The envelope: exactly {jws} (with the 3.1.1 replyTo and id beside it); else refused unsigned.
  const envelopeOk = isObject && r.signed !== undefined && Object.keys(args).length === 1 && typeof args['jws'] === 'string';
  if (envelopeOk && isCommandName(r.cmd) && r.cmd !== 'incident' && r.cmd !== 'dispose' && r.cmd !== 'disclose' && r.cmd !== 'snapshot') {
    // incident/dispose/disclose name incidents that do not exist, snapshot cameras that do not.
    args = JSON.parse(r.signed!.argsText) as Record<string, unknown>;
    const valid = commandArgs[r.cmd].safeParse(args);
    // A camera the node does not have is not_found (footage) or bad_request (lock).
    ok = valid.success && (r.cmd !== 'lock' || ((args['cameras'] as string[] | undefined) ?? []).every((c) => CAMERAS.includes(c)))
      && (r.cmd !== 'footage' || args['camera'] === undefined || CAMERAS.includes(args['camera'] as string));
    lock = ok && r.cmd === 'lock';
  }
  // A request refused for its reply address is not carried out at all.
  const refused = replyTopic !== undefined && !answered;
  return { ...(answered ? { replyTopic } : {}), ok, hasId: answered && hasId, ...(answered && hasId ? { id } : {}), lock: lock && !refused };
}

function describeRequest(r: FuzzRequest): Record<string, unknown> {
  return { cmd: r.cmd, payload: r.payload.toString('utf8'), ...(r.responseTopic ? { responseTopic: r.responseTopic } : {}), ...(r.correlationData ? { correlationData: r.correlationData.toString('hex') } : {}) };
}
