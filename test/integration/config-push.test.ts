// The config in force, to central ops (CONTRACT §9 Config push), end to end: a real TLS
// Mosquitto with the fleet's ACL, the real agent through the CLI, `camnode ctl config` signing
// with an admin's and an ops person's certificates. `get` shows the config with its secrets as
// `***` and the sha256 the status carries; `compare` names the differing paths of a file
// validated as a push would be, `***` keeping the password in force; only admin may.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { baseConfig, runCli, RunningAgent, tempDir, writeConfig, type CliResult } from '../helpers/agent.js';
import { retainedStatus, startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { killAgentAndRecorders } from '../helpers/segments.js';
import { preparePush } from '../../src/config/push.js';
import { loadConfigInForce, PushedConfigs } from '../../src/config/store.js';

const NODE = 'branch-cfg';
const PASSWORD = 'Cam-Pass-4417';

let broker: Mosquitto;
let dir: string;
let agent: RunningAgent;

function ctlAs(name: string, ...args: string[]): Promise<CliResult> {
  const files = broker.certFor(`ops:${name}`);
  return runCli(['ctl', ...args], { env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key } });
}

/** The node's retained status, as the broker holds it. */
function status(): Promise<Record<string, unknown>> {
  return retainedStatus(broker, NODE, 'ops:vera');
}

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE], ops: ['ada:admin', 'otto:ops', 'vera:viewer'] });
  dir = await tempDir('camnode-config-');
  const node = broker.certFor(NODE);
  const config = baseConfig(dir, [
    { id: 'entrance', source: 'testsrc', zone: 'entrance' },
    // A camera behind a password (down: nothing listens there; get and compare do not mind).
    { id: 'desk', source: `rtsp://viewer:${PASSWORD}@127.0.0.1:9/stream1`, zone: 'service-desk' },
  ], {
    node: { id: NODE },
    storage: { maxAge: '30d' },
    control: { socket: join(dir, 'control.sock') },
    mqtt: { url: broker.url, ca: broker.caFile, cert: node.cert, key: node.key, keepalive: '2s' },
    // Admin commands need revocation to be known: the CA's current list.
    fleet: { crl: join(broker.caDir, 'crl.pem') },
  });
  agent = RunningAgent.start(await writeConfig(dir, config));
  await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker');
}, 60_000);

afterAll(async () => {
  await killAgentAndRecorders(agent, join(dir, 'storage'));
  await rm(dir, { recursive: true, force: true });
  await stopAllMosquittos();
});

describe('ctl config: get and compare', () => {
  it('get: the config as written, every password as ***, its source and the sha256 the status carries', async () => {
    const r = await ctlAs('ada', 'config', NODE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(PASSWORD);
    expect(r.stdout).toContain('rtsp://viewer:***@127.0.0.1:9/stream1');
    expect(r.stdout).toContain('maxAge: 30d');
    const sha = /sha256 ([0-9a-f]{64})/.exec(r.stdout)?.[1];
    expect(r.stdout).toContain(`# ${NODE}: the config in force, from its file; sha256 ${sha}`);
    expect((await status())['configSha256']).toBe(sha);
    expect((await status())['configSource']).toBe('file');
    const json = await ctlAs('ada', 'config', NODE, '--get', '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ source: 'file', sha256: sha, config: { node: { id: NODE }, storage: { maxAge: '30d' } } });
    // The state says whence the config in force came, too.
    const state = await ctlAs('vera', 'state', NODE, '--json');
    expect(JSON.parse(state.stdout)).toMatchObject({ configSource: 'file' });
    // ctl nodes shows which config each node runs.
    const nodes = await ctlAs('vera', 'nodes');
    expect(nodes.stdout).toContain(sha!.slice(0, 8));
  });

  it('compare: what get showed, unchanged, is the config in force; edited, the paths that differ', async () => {
    const shown = (await ctlAs('ada', 'config', NODE, '--get')).stdout;
    const same = join(dir, 'same.yaml');
    await writeFile(same, shown);
    const r = await ctlAs('ada', 'config', NODE, '--compare', same);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${NODE}: .*same\\.yaml is the config in force \\(sha256 [0-9a-f]{64}\\)`));

    const doc = parse(shown) as { storage: Record<string, unknown>; cameras: { id: string; source: string }[] };
    doc.storage['maxAge'] = '7d';
    doc.cameras[1]!.source = 'rtsp://viewer:***@127.0.0.1:9/stream2';
    doc.cameras.push({ id: 'lobby', source: 'testsrc', zone: 'seating' } as { id: string; source: string });
    const edited = join(dir, 'edited.yaml');
    await writeFile(edited, stringify(doc));
    const d = await ctlAs('ada', 'config', NODE, '--compare', edited, '--json');
    expect(d.code, d.stderr).toBe(0);
    const data = JSON.parse(d.stdout) as { differs: string[]; sha256: string; candidateSha256: string };
    expect(data.differs).toEqual(['cameras[1].source', 'cameras[2]', 'storage.maxAge']);
    expect(data.candidateSha256).not.toBe(data.sha256);
  });

  it('compare: a bad config is refused with every bad field on a line of its own (exit 2)', async () => {
    const bad = join(dir, 'bad.yaml');
    const shown = (await ctlAs('ada', 'config', NODE)).stdout;
    await writeFile(bad, shown.replace('zone: entrance', 'zone: restroom').replace('maxAge: 30d', 'maxAge: 30d\n  maxbytes: 1GB').replace(`id: ${NODE}`, 'id: another-node'));
    const r = await ctlAs('ada', 'config', NODE, '--compare', bad);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^camnode ctl: config refused \(bad_request\): node\.id: cannot be changed by a push/);
    expect(lines).toContain('storage.maxbytes: unknown key (did you mean "maxBytes"?)');
    expect(lines.some((l) => l.startsWith('cameras[0].zone: "restroom" is a private area'))).toBe(true);
  });

  it('compare never quotes a password in force, whatever the file makes of it', async () => {
    const shown = (await ctlAs('ada', 'config', NODE)).stdout;
    const probe = join(dir, 'probe.yaml');
    // A scheme that carries no password, a host of someone else's, and a source the schema refuses.
    await writeFile(probe, shown.replace('rtsp://viewer:***@127.0.0.1:9/stream1', 'v4l2://x:***@h'));
    const a = await ctlAs('ada', 'config', NODE, '--compare', probe);
    await writeFile(probe, shown.replace('rtsp://viewer:***@127.0.0.1:9/stream1', 'rtsp://viewer:***@203.0.113.9:554/stream1'));
    const b = await ctlAs('ada', 'config', NODE, '--compare', probe);
    for (const r of [a, b]) {
      expect(r.code).toBe(2);
      expect(`${r.stdout}${r.stderr}`).not.toContain(PASSWORD);
    }
    expect(a.stderr).toContain('cameras[1].source: "***" keeps the password in force of camera "desk", which is kept only in rtsp://, rtsps:// URLs');
    expect(b.stderr).toContain('is kept only for the same host and port (rtsp://127.0.0.1:9 on this node)');
  });

  it('only admin: an ops or viewer principal is refused, by the broker\'s ACL before the node', async () => {
    for (const who of ['otto', 'vera']) {
      const r = await ctlAs(who, 'config', NODE, '--get');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('Not authorized');
      expect(r.stdout).not.toContain(PASSWORD);
    }
  });

  it('--all: one line per online node; --json keyed by node; a file refused as bad exits 2 as for one node', async () => {
    const r = await ctlAs('ada', 'config', '--all');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]!.split(/\s+/)).toEqual(['NODE', 'SOURCE', 'SHA256', 'DIFFERS']);
    expect(lines[1]).toMatch(new RegExp(`^${NODE}\\s+file\\s+[0-9a-f]{12}\\s+-$`));
    expect(lines.at(-1)).toBe('1 node(s) online, 1 answered');
    const json = await ctlAs('ada', 'config', '--all', '--json');
    expect(JSON.parse(json.stdout)[NODE]).toMatchObject({ source: 'file', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown });
    const compared = await ctlAs('ada', 'config', '--all', '--compare', join(dir, 'edited.yaml'));
    expect(compared.code, compared.stderr).toBe(0);
    expect(compared.stdout.trim().split('\n').at(-1)).toBe('1 node(s) online, 1 answered, 1 differ from the file');
    const bad = await ctlAs('ada', 'config', '--all', '--compare', join(dir, 'bad.yaml'));
    expect(bad.code).toBe(2);
    expect(bad.stdout).toContain('error: refused: node.id: cannot be changed by a push');
    expect((await ctlAs('ada', 'config', '--all', '--set', join(dir, 'same.yaml'))).code).toBe(2);
  });

  it('the sha256 stays the same across a restart (its key is kept in node.stateDir)', async () => {
    const before = (await status())['configSha256'];
    expect((await readFile(join(dir, 'state', 'config-hash.key'))).length).toBe(32);
    expect(await agent.stop()).toBe(0);
    agent = RunningAgent.start(join(dir, 'config.yaml'));
    await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker again');
    const after = await ctlAs('ada', 'config', NODE, '--json');
    expect((JSON.parse(after.stdout) as { sha256: string }).sha256).toBe(before);
  });

  it('a committed push is the config in force at the next start, for run and check alike', async () => {
    const shown = (await ctlAs('ada', 'config', NODE, '--json')).stdout;
    const { config: document, sha256: fileSha } = JSON.parse(shown) as { config: { storage: Record<string, unknown> }; sha256: string };
    document.storage['maxAge'] = '7d';
    // What the node stores for a push it committed (the push itself is not built yet).
    const inForce = loadConfigInForce(join(dir, 'config.yaml'));
    const prepared = preparePush(JSON.stringify(document), inForce);
    const store = new PushedConfigs(join(dir, 'state'));
    const sha = 'b'.repeat(64);
    await store.save(prepared.document, sha);
    await store.commit(sha, Date.now());
    expect(await agent.stop()).toBe(0);
    agent = RunningAgent.start(join(dir, 'config.yaml'));
    await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker with the pushed config');
    const got = JSON.parse((await ctlAs('ada', 'config', NODE, '--json')).stdout) as { source: string; sha256: string; config: { storage: { maxAge: string }; cameras: { source: string }[] } };
    expect(got.source).toBe('pushed');
    expect(got.config.storage.maxAge).toBe('7d');
    expect(got.config.cameras[1]!.source).toBe('rtsp://viewer:***@127.0.0.1:9/stream1');
    expect(got.sha256).not.toBe(fileSha);
    expect((await status())['configSource']).toBe('pushed');
    const check = await runCli(['check', '--config', join(dir, 'config.yaml')], { timeoutMs: 60_000 });
    expect(check.stdout).toMatch(/config\s+pass\s+node branch-cfg, 2 camera\(s\); source: pushed by central ops/);
    expect(check.stdout).not.toContain(PASSWORD);
  });
});
