// Disclosure on a legal basis and proof that survives the box (CONTRACT §7), end to end: a real
// Mosquitto with TLS and the roster's ACL, the real agent recording a real stream, a real S3
// protocol server (s3rver). A custodian's signed `ctl disclose` records a node-signed disclosure
// beside the clips and upstream; ops and a missing legal basis are refused. The examiner's copy
// is downloaded from S3 and checked by `evidence verify`, exported as a bundle and checked with
// nothing but `sha256sum -c` and `openssl pkeyutl -verify -rawin`; a flipped byte fails both. A
// disposed incident is still disclosed (upstream only). Then the SD card is "replaced" (a new
// state dir: a new node key) and the old manifest still verifies against the published history.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingWith, type Signing } from '../../src/ops/signer.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { disposeAllS3rvers, s3Upstream, startS3rver, writeS3Credentials, S3RVER_KEY, S3RVER_SECRET, type S3Server } from '../helpers/s3.js';
import { killAgentAndRecorders, listSegments } from '../helpers/segments.js';
import { requestLocal } from '../../src/control/socket.js';

const run = promisify(execFile);
const NODE = 'branch-7';
const PREFIX = 'camnode';
const BUCKET = 'evidence';
const UP = `incidents/${NODE}`;

let broker: Mosquitto;
let s3: S3Server;
let client: S3Client;
let dir: string;
let configPath: string;
let agent: RunningAgent;
const raws: MqttClient[] = [];

async function startAgent(): Promise<RunningAgent> {
  const a = RunningAgent.start(configPath);
  await a.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker', 60_000);
  return a;
}

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE], ops: ['otto:ops', 'cleo:custodian'] });
  s3 = await startS3rver({ buckets: [BUCKET] });
  client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET } });
  dir = await tempDir('camnode-disclose-');
  const node = broker.certFor(NODE);
  configPath = await writeConfig(dir, baseConfig(dir, [{ id: 'cam-a', source: 'testsrc', zone: 'entrance' }], {
    node: { id: NODE },
    incident: { preRoll: '3s', postRoll: '1s', maxLength: '1h' },
    control: { socket: join(dir, 'control.sock') },
    mqtt: { url: broker.url, ca: broker.caFile, cert: node.cert, key: node.key, keepalive: '2s', stateInterval: '60s' },
    upstream: s3Upstream(s3, BUCKET, await writeS3Credentials(dir)),
    audit: { headInterval: '2s' },
  }));
  agent = await startAgent();
}, 90_000);

afterAll(async () => {
  await Promise.all(raws.map((c) => c.endAsync(true).catch(() => undefined)));
  await killAgentAndRecorders(agent, join(dir, 'storage'));
  await rm(dir, { recursive: true, force: true });
  await stopAllMosquittos();
  await disposeAllS3rvers();
});

function ctlAs(cn: string, ...args: string[]): Promise<CliResult> {
  const files = broker.certFor(cn);
  return runCli(['ctl', ...args], { env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key } });
}

async function local(cmd: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const reply = await requestLocal(join(dir, 'control.sock'), cmd, args, 10_000);
  if (!reply.ok) throw new Error(`${cmd}: ${JSON.stringify(reply.error)}`);
  return reply.data as Record<string, unknown>;
}

async function stored(key: string): Promise<Buffer | null> {
  try {
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from(await got.Body!.transformToByteArray());
  } catch {
    return null;
  }
}

/** What an examiner is handed from upstream: `<node>/<incident>/…` and `<node>/keys/…`, as files. */
async function download(prefix: string, to: string): Promise<void> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/` }));
  for (const o of listed.Contents ?? []) {
    const path = join(to, o.Key!.slice(prefix.length + 1));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, (await stored(o.Key!))!);
  }
}

async function rawAs(cn: string): Promise<{ client: MqttClient; got: { topic: string; body: Record<string, unknown> }[] }> {
  const c = await mqtt.connectAsync(broker.url, { ...broker.tls(cn), protocolVersion: 5, clientId: `t-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  raws.push(c);
  const got: { topic: string; body: Record<string, unknown> }[] = [];
  c.on('message', (topic, payload) => {
    try { got.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }); } catch { /* not JSON */ }
  });
  await c.subscribeAsync(`${PREFIX}/${NODE}/reply/${cn}/#`, { qos: 1 });
  return { client: c, got };
}

async function signer(cn: string): Promise<Signing> {
  const files = broker.certFor(cn);
  return signingWith({ certPem: await readFile(files.cert, 'utf8'), keyPem: await readFile(files.key, 'utf8') });
}

const flip = async (path: string, at = 0): Promise<void> => {
  const bytes = await readFile(path);
  const i = Math.min(at, bytes.length - 1);
  bytes[i] = bytes[i]! ^ 0x01;
  await writeFile(path, bytes);
};

const exits = async (cmd: string, args: string[], cwd: string): Promise<number> => run(cmd, args, { cwd }).then(() => 0, (e: { code?: number }) => e.code ?? 1);

describe('disclose, the examiner\'s bundle and the key history (real broker, real S3 server, real agent)', () => {
  let incident: string;
  let publicKey: string;
  let copy: string;

  it('a sealed, synced incident: ops and a missing legal basis are refused; a custodian\'s disclosure is signed beside the clips and upstream', async () => {
    await waitFor(async () => (await listSegments(join(dir, 'storage'), 'cam-a')).length >= 4, 'a few seconds of footage', 60_000);
    ({ incident } = await local('lock', { reason: 'theft at the desk', by: 'desk' }) as { incident: string });
    await waitFor(async () => (await local('incident', { incident })).state === 'synced', 'the incident synced', 90_000, 250);

    // The broker's ACL stops an ops principal publishing cmd/disclose…
    const otto = await ctlAs('ops:otto', 'disclose', NODE, incident, '--legal-basis', 'subpoena', '--reference', 'S-1', '--agency', 'PD', '--requested-by', 'Officer K');
    expect(otto.code).not.toBe(0);
    // …and the node refuses ops' signature carried by a custodian's connection.
    const cleoRaw = await rawAs('ops:cleo');
    const ottoRaw = await rawAs('ops:otto');
    const toOtto = `${PREFIX}/${NODE}/reply/ops:otto/t-${randomUUID()}`;
    const ottoJws = await (await signer('ops:otto')).sign(NODE, 'disclose', { incident, legalBasis: 'subpoena', reference: 'S-1', agency: 'PD', requestedBy: 'K' }, toOtto);
    await cleoRaw.client.publishAsync(`${PREFIX}/${NODE}/cmd/disclose`, JSON.stringify({ jws: ottoJws }), { qos: 1 });
    expect(await waitFor(() => ottoRaw.got.find((m) => m.topic === toOtto)?.body, 'otto\'s refusal')).toEqual({ ok: false, error: { code: 'forbidden', message: 'ops:otto (ops) may not disclose' } });

    // A custodian without a legal basis: bad_request naming it.
    const toCleo = `${PREFIX}/${NODE}/reply/ops:cleo/t-${randomUUID()}`;
    const noBasis = await (await signer('ops:cleo')).sign(NODE, 'disclose', { incident, reference: 'S-1', agency: 'PD', requestedBy: 'K' }, toCleo);
    await cleoRaw.client.publishAsync(`${PREFIX}/${NODE}/cmd/disclose`, JSON.stringify({ jws: noBasis }), { qos: 1 });
    const refused = await waitFor(() => cleoRaw.got.find((m) => m.topic === toCleo)?.body, 'the refusal') as { ok: boolean; error: { code: string; message: string } };
    expect(refused.ok).toBe(false);
    expect(refused.error.code).toBe('bad_request');
    expect(refused.error.message).toMatch(/legalBasis/);
    // The local socket never discloses (CONTRACT §7).
    const viaSocket = await requestLocal(join(dir, 'control.sock'), 'disclose', { incident, legalBasis: 'subpoena', reference: 'S-1', agency: 'PD', requestedBy: 'K', by: 'desk' }, 5_000);
    expect(viaSocket).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect(await readdir(join(dir, 'storage', 'incidents', incident))).not.toContain('disclosures');

    const events = await rawAs('ops:cleo');
    await events.client.subscribeAsync(`${PREFIX}/${NODE}/events`, { qos: 1 });
    const cleo = await ctlAs('ops:cleo', 'disclose', NODE, incident, '--legal-basis', 'subpoena', '--reference', 'SUB-2026-0147', '--agency', 'County Sheriff', '--requested-by', 'Det. Ruiz', '--by', 'M. Stone (branch manager)');
    expect(cleo.code, cleo.stderr).toBe(0);
    expect(cleo.stdout).toContain(`disclosure 1 of incident ${incident} recorded`);
    expect(cleo.stdout).toContain('sha256sum -c SHA256SUMS');
    expect(cleo.stdout).toContain(`${UP}/${incident}/disclosures/1.json`);

    const local1 = await readFile(join(dir, 'storage', 'incidents', incident, 'disclosures', '1.json'));
    const record = JSON.parse(local1.toString()) as Record<string, unknown>;
    const manifest = await readFile(join(dir, 'storage', 'incidents', incident, 'manifest.json'));
    expect(record).toMatchObject({
      incident, node: NODE, n: 1, legalBasis: 'subpoena', reference: 'SUB-2026-0147', agency: 'County Sheriff', requestedBy: 'Det. Ruiz',
      onBehalfOf: 'M. Stone (branch manager)',
      manifestSha256: (await import('node:crypto')).createHash('sha256').update(manifest).digest('hex'),
      custodian: { cn: 'ops:cleo', role: 'custodian', certSha256: expect.stringMatching(/^[0-9a-f]{64}$/), certificate: expect.any(String) },
      signature: { alg: 'ed25519' },
    });
    publicKey = (record['signature'] as { publicKey: string }).publicKey;
    // Upstream, byte for byte.
    expect(await waitFor(() => stored(`${UP}/${incident}/disclosures/1.json`), 'the record upstream')).toEqual(local1);
    // Audited with the JWS; an event for central ops.
    const entries = (await readFile(join(dir, 'state', 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.find((e) => e['type'] === 'disclose')).toMatchObject({
      incident, disclosure: { n: 1, legalBasis: 'subpoena', by: 'ops:cleo' }, onBehalfOf: 'M. Stone (branch manager)',
      signer: { cn: 'ops:cleo', role: 'custodian' }, jws: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
    });
    expect(await waitFor(() => events.got.find((m) => m.topic.endsWith('/events') && m.body['type'] === 'incident.disclosed')?.body, 'the event'))
      .toEqual(expect.objectContaining({ incident, n: 1, legalBasis: 'subpoena' }));
    // Every viewer reads events: the subpoena's details stay in the record, the book and the log.
    expect(JSON.stringify(events.got.filter((m) => m.body['type'] === 'incident.disclosed'))).not.toContain('SUB-2026-0147');
  }, 180_000);

  it('the upstream copy verifies; any changed byte in a record or a clip fails evidence verify', async () => {
    copy = join(dir, 'examiner');
    await download(UP, copy);
    const folder = join(copy, incident);
    const ok = await runCli(['evidence', 'verify', folder, '--key', publicKey]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/ok {6}disclosure disclosures\/1\.json: signed disclosure .* to County Sheriff on subpoena SUB-2026-0147/);

    for (const victim of ['disclosures/1.json', 'cam-a.mp4']) {
      const tampered = join(dir, `tampered-${victim.replace('/', '-')}`);
      await run('cp', ['-r', folder, tampered]);
      await flip(join(tampered, victim), 40);
      const bad = await runCli(['evidence', 'verify', tampered, '--key', publicKey]);
      expect(bad.code, `${victim}: ${bad.stdout}`).toBe(1);
      expect(bad.stdout).toMatch(/FAILED/);
    }
  }, 60_000);

  it('the exported bundle checks with only sha256sum and openssl; a flipped byte fails both', async () => {
    const bundle = join(dir, 'bundle');
    const made = await runCli(['evidence', 'export', join(copy, incident), '--out', bundle]);
    expect(made.code, made.stderr + made.stdout).toBe(0);
    expect(made.stdout).toContain('published key history');
    const files = (await readdir(bundle, { recursive: true })).sort();
    expect(files).toEqual(expect.arrayContaining(['README.txt', 'SHA256SUMS', 'public-key.pem', 'manifest.json', 'manifest.signed', 'manifest.sig', 'cam-a.mp4',
      'disclosures/1.json', 'disclosures/1.signed', 'disclosures/1.sig']));
    const verify = (name: string, cwd = bundle): Promise<number> => exits('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', 'public-key.pem', '-rawin', '-in', `${name}.signed`, '-sigfile', `${name}.sig`], cwd);
    expect(await exits('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], bundle)).toBe(0);
    expect(await verify('manifest')).toBe(0);
    expect(await verify('disclosures/1')).toBe(0);
    const readme = await readFile(join(bundle, 'README.txt'), 'utf8');
    expect(readme).toContain('openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.signed -sigfile manifest.sig');
    // The README's own check that each clip is the one the manifest names, run as printed.
    const clipCheck = readme.split('\n').find((l) => l.includes('grep -c') && l.includes('cam-a.mp4'))!.trim();
    expect((await run('sh', ['-c', clipCheck], { cwd: bundle })).stdout.trim()).toBe('1');
    expect(await readFile(join(bundle, 'SHA256SUMS'), 'utf8')).toContain('  public-key.pem\n');

    await flip(join(bundle, 'cam-a.mp4'), 1000);
    expect(await exits('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], bundle)).not.toBe(0);
    await flip(join(bundle, 'manifest.signed'), 30);
    expect(await verify('manifest')).not.toBe(0);
    await flip(join(bundle, 'disclosures/1.signed'), 30);
    expect(await verify('disclosures/1')).not.toBe(0);
  }, 60_000);

  it('a disposed incident is still disclosed: the record goes upstream only', async () => {
    const disposed = await ctlAs('ops:cleo', 'dispose', NODE, incident, '--reason', 'retention: synced and kept upstream');
    expect(disposed.code, disposed.stderr).toBe(0);
    const again = await ctlAs('ops:cleo', 'disclose', NODE, incident, '--legal-basis', 'court-order', '--reference', 'CO-88', '--agency', 'State Police', '--requested-by', 'Sgt. Lee', '--json');
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ incident, n: 2, where: 'upstream', record: 'disclosures/2.json' });
    await waitFor(() => stored(`${UP}/${incident}/disclosures/2.json`), 'the second record upstream');
    const fresh = join(dir, 'examiner-2');
    await download(UP, fresh);
    const ok = await runCli(['evidence', 'verify', join(fresh, incident), '--key', publicKey]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toContain('disclosures/2.json: signed disclosure');
  }, 60_000);

  it('the audit log\'s head is signed upstream: the node\'s log checks against it, and a tail cut off is seen', async () => {
    const log = join(dir, 'state', 'audit.log');
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    const disclosed = lines.map((l) => JSON.parse(l) as { seq: number; type: string }).filter((e) => e.type === 'disclose').at(-1)!;
    // A head at or past the last disclosure, upstream under this key's series, and in the state.
    const logId = (JSON.parse(await readFile(join(dir, 'state', 'node-keys.json'), 'utf8')) as { keys: { firstUsed: string }[] }).keys[0]!.firstUsed.replace(/[-:]/g, '').replace('.000Z', 'Z');
    const heads = `${UP}/audit/${logId}/heads`;
    await waitFor(async () => {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${heads}/` }));
      return (listed.Contents ?? []).some((o) => Number(o.Key!.split('/').at(-1)!.replace('.json', '')) >= disclosed.seq);
    }, 'a signed head covering the disclosure upstream', 30_000, 250);
    const state = await local('state', {}) as { audit?: { logId: string; seq: number; head: string } };
    expect(state.audit).toMatchObject({ logId, seq: expect.any(Number), head: expect.stringMatching(/^[0-9a-f]{64}$/) });

    const copy = join(dir, 'examiner-heads');
    await download(`${UP}/audit/${logId}`, copy);
    const whole = await runCli(['audit', 'verify', '--log', log, '--key', publicKey, '--heads', join(copy, 'heads')]);
    expect(whole.code, whole.stdout).toBe(0);
    expect(whole.stdout).toMatch(/signed heads: \d+ of \d+ checked against the log, all match/);
    // The same log with its last entries cut off (a copy: the node's own stays whole).
    const cut = join(dir, 'audit-cut.log');
    await writeFile(cut, `${lines.slice(0, Math.max(1, disclosed.seq - 3)).join('\n')}\n`);
    const detected = await runCli(['audit', 'verify', '--log', cut, '--key', publicKey, '--heads', join(copy, 'heads')]);
    expect(detected.code, detected.stdout).toBe(1);
    expect(detected.stdout).toMatch(/but the node signed a head at seq \d+ at .*: entries after seq \d+ were cut off/);
  }, 60_000);

  it('status lists the key history; after the SD card is replaced the old manifest verifies against the published history', async () => {
    const watcher = await rawAs('ops:otto');
    await watcher.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
    const status = await waitFor(() => watcher.got.find((m) => m.topic.endsWith('/status'))?.body as { keys?: { publicKey: string; firstUsed: string }[] } | undefined, 'the status');
    expect(status.keys).toEqual([{ publicKey, firstUsed: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/) }]);
    const stamp = status.keys![0]!.firstUsed.replace(/[-:]/g, '').replace('.000Z', 'Z');
    expect((await stored(`${UP}/keys/${stamp}.pub`))?.toString()).toContain('BEGIN PUBLIC KEY');

    // A new SD card: the state dir (the key with it) is gone; the node makes a new key.
    await agent.stop();
    await rename(join(dir, 'state'), join(dir, 'state-old-card'));
    agent = await startAgent();
    const newer = await waitFor(async () => {
      const s = await rawAs('ops:otto');
      await s.client.subscribeAsync(`${PREFIX}/${NODE}/status`, { qos: 1 });
      const got = await waitFor(() => s.got.find((m) => m.topic.endsWith('/status'))?.body as { publicKey: string; keys?: { publicKey: string }[] } | undefined, 'the status');
      await s.client.endAsync(true);
      return got.keys?.length === 2 && got;
    }, 'a status listing both keys (the new node learns the old one from upstream)', 60_000, 1_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${agent.logs.filter((l) => l['component'] === 'records' || l['component'] === 'keys' || l.level >= 40).map((l) => JSON.stringify(l)).join('\n')}`);
    });
    expect(newer.publicKey).not.toBe(publicKey);
    expect(newer.keys!.map((k) => k.publicKey)).toEqual([publicKey, newer.publicKey]);

    // The examiner takes the old key from the published history, not from the node.
    const history = join(dir, 'examiner-3');
    await download(UP, history);
    const keyFiles = await readdir(join(history, 'keys'));
    expect(keyFiles).toHaveLength(2);
    const verified = await runCli(['evidence', 'verify', join(history, incident), '--key', join(history, 'keys', `${stamp}.pub`)]);
    expect(verified.code, verified.stdout).toBe(0);
    const other = keyFiles.find((f) => f !== `${stamp}.pub`)!;
    const refused = await runCli(['evidence', 'verify', join(history, incident), '--key', join(history, 'keys', other)]);
    expect(refused.code).toBe(1);
  }, 120_000);
});
