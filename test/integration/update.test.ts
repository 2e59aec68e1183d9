// Updates (CONTRACT §9 Update), end to end with real bundles: `npm run bundle` of the current
// code, repacked as 1.0.0, 1.0.1 and a 1.0.2 whose agent exits at start, each signed with an
// Ed25519 release key and published to a folder upstream. The node runs under a supervisor that
// restarts it like systemd (`Restart=always`) and runs the launcher before every start; the root
// helper is run directly when the agent leaves its request (no systemd here to fire the path
// unit), with a stand-in for `systemctl try-restart` that stops the agent. `ctl update` goes
// through a real TLS Mosquitto as an admin and waits for each outcome.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { chmod, cp, mkdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debianArch } from '../../src/deploy/update.js';
import { releaseKeyBase64 } from '../../src/deploy/release-keys.js';
import { baseConfig, runCli, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { retainedStatus, startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { startRtspServer, stopAllRtspServers } from '../helpers/rtsp-server.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAUNCHER = join(ROOT, 'device', 'camnode-launcher');
const HELPER = join(ROOT, 'device', 'camnode-update-helper');
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeIf = IS_ROOT || IN_CI ? describe : describe.skip;
const NODE = 'branch-upd';
const ARCH = debianArch()!;
const PREFIX = 'district';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let opt: string;
let stateDir: string;
let upstream: string;
let configPath: string;
let broker: Mosquitto;
let releaseKey: KeyObject;
let supervisor: Supervisor;
const events: Record<string, unknown>[] = [];
let watcher: mqtt.MqttClient;

/** Restarts the agent like systemd's Restart=always (1 s later), running the launcher before each start. */
class Supervisor {
  /** Every start: the release the launcher left current, what it said, and how the agent exited (undefined: running). */
  readonly starts: { release: string; launcher: string; code?: number | null }[] = [];
  readonly logs: Record<string, unknown>[] = [];
  private child: ChildProcess | undefined;
  private stopping = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly pidFile: string) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopping) {
        const l = spawnSync('bash', [LAUNCHER], { env: { ...process.env, CAMNODE_OPT: opt, CAMNODE_STATE_DIR: stateDir }, encoding: 'utf8' });
        const launcher = `${l.stdout}${l.stderr}`.trim();
        const release = (await readlink(join(opt, 'current'))).replace(/^releases\//, '');
        const run: { release: string; launcher: string; code?: number | null } = { release, launcher };
        this.starts.push(run);
        const child = spawn(process.execPath, [join(opt, 'current', 'dist', 'src', 'main.js'), 'run', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
        this.child = child;
        await writeFile(this.pidFile, `${child.pid}\n`);
        createInterface({ input: child.stderr! }).on('line', (line) => {
          try { this.logs.push({ ...(JSON.parse(line) as Record<string, unknown>), release }); } catch { /* not a log line */ }
        });
        run.code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
        if (!this.stopping) await sleep(1_000);
      }
    })();
  }

  /** SIGTERM (a `systemctl restart`): the loop starts it again. */
  restart(): void {
    if (this.child?.pid) try { process.kill(this.child.pid, 'SIGTERM'); } catch { /* gone */ }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child?.pid) try { process.kill(-this.child.pid, 'SIGTERM'); } catch { /* gone */ }
    await this.loop;
  }
}

function ctl(...args: string[]): Promise<CliResult> {
  const files = broker.certFor('ops:ada');
  return runCli(['ctl', ...args], { timeoutMs: 240_000, env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key } });
}

function status(): Promise<Record<string, unknown>> {
  return retainedStatus(broker, NODE, 'ops:ada');
}

/** The root helper, as the path unit would run it. */
function helper(fault?: string): { code: number | null; out: string } {
  const r = spawnSync('bash', [HELPER, '--state-dir', stateDir], {
    encoding: 'utf8',
    env: { ...process.env, CAMNODE_OPT: opt, CAMNODE_RELEASE_KEY: join(opt, 'release-key.pem'), CAMNODE_SYSTEMCTL: join(dir, 'systemctl'), ...(fault ? { CAMNODE_HELPER_FAULT: fault } : {}) },
  });
  return { code: r.status ?? (r.signal ? 137 : null), out: `${r.stdout}${r.stderr}` };
}

/** `ctl update` while the helper is run once the agent's request is there; the ctl result. */
async function update(version: string, fault?: string): Promise<{ ctl: CliResult; helper: { code: number | null; out: string } }> {
  const running = ctl('update', NODE, '--version', version, '--wait', '90s');
  const request = join(stateDir, 'updates', 'request.env');
  let ended: CliResult | undefined;
  void running.then((r) => { ended = r; });
  await waitFor(async () => {
    if (ended) throw new Error(`ctl update ended before the node asked the helper: ${ended.code} ${ended.stdout} ${ended.stderr}`);
    return (await stat(request).catch(() => null)) !== null;
  }, `the request for ${version}`, 120_000);
  const h = helper(fault);
  return { ctl: await (fault ? Promise.race([running, sleep(3_000).then(() => ({ code: null, stdout: '', stderr: 'still waiting' }))]) : running), helper: h };
}

async function record(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(stateDir, 'update.json'), 'utf8')) as Record<string, unknown>;
}

function eventFor(type: string, version: string, since: number): Promise<Record<string, unknown>> {
  return waitFor(() => events.slice(since).find((e) => e['type'] === type && e['version'] === version), `${type} ${version}`, 120_000);
}

async function runningVersion(): Promise<string> {
  return waitFor(async () => {
    const s = await status();
    return s['online'] === true ? s['version'] as string : undefined;
  }, 'the node online');
}

/** Repacks the bundle's tree as `version` (its package.json says so), signed; returns its file name. */
async function release(tree: string, out: string, version: string, opts: { broken?: boolean; key?: KeyObject } = {}): Promise<string> {
  const pkgPath = join(tree, 'camnode', 'package.json');
  const pkg = JSON.parse(await readFile(pkgPath, 'utf8')) as { version: string };
  pkg.version = version;
  await writeFile(pkgPath, `${JSON.stringify(pkg, null, 2)}\n`);
  const main = join(tree, 'camnode', 'dist', 'src', 'main.js');
  const realMain = `${main}.real`;
  if (opts.broken) {
    await cp(main, realMain);
    await writeFile(main, '#!/usr/bin/env node\nconsole.error("camnode 1.0.2: broken on purpose, exiting at start");\nprocess.exit(1);\n');
  }
  const file = `camnode-${version}-${ARCH}.tgz`;
  await exec('tar', ['--owner=0', '--group=0', '--numeric-owner', '-C', tree, '-czf', join(out, file), 'camnode']);
  if (opts.broken) {
    await cp(realMain, main);
    await rm(realMain);
  }
  const bytes = await readFile(join(out, file));
  const releases = join(upstream, PREFIX, 'releases');
  await mkdir(releases, { recursive: true });
  await writeFile(join(releases, file), bytes);
  await writeFile(join(releases, `${file}.sig`), sign(null, bytes, opts.key ?? releaseKey));
  return file;
}

describeIf('update: fetched, verified, installed on trial, committed or rolled back', () => {
  beforeAll(async () => {
    dir = await tempDir('camnode-update-');
    opt = join(dir, 'opt');
    stateDir = join(dir, 'state');
    upstream = join(dir, 'upstream');
    broker = await startMosquitto({ nodes: [NODE], ops: ['ada:admin', 'vera:viewer'] });
    const camera = await startRtspServer({ width: 320, height: 240, fps: 10, bitrateKbps: 200 });
    // One real bundle of this code, repacked as each version.
    const build = join(dir, 'build');
    await exec('bash', ['provisioning/bundle.sh', '--arch', ARCH, '--out', build, '--no-build'], { cwd: ROOT, maxBuffer: 16 << 20 });
    const tree = join(dir, 'tree');
    await mkdir(tree);
    await exec('sh', ['-c', `tar -xzf ${build}/camnode-*-${ARCH}.tgz -C ${tree}`]);
    const keys = generateKeyPairSync('ed25519');
    releaseKey = keys.privateKey;
    const out = join(dir, 'out');
    await mkdir(out);
    const first = await release(tree, out, '1.0.0');
    await release(tree, out, '1.0.1');
    await release(tree, out, '1.0.2', { broken: true });
    // A release signed by someone else's key.
    await release(tree, out, '1.0.3', { key: generateKeyPairSync('ed25519').privateKey });
    // /opt/camnode as install.sh leaves it: 1.0.0 current, the release key as PEM.
    await mkdir(join(opt, 'releases', '.unpack'), { recursive: true });
    await exec('tar', ['-xzf', join(out, first), '-C', join(opt, 'releases', '.unpack')]);
    await exec('mv', ['-T', join(opt, 'releases', '.unpack', 'camnode'), join(opt, 'releases', '1.0.0')]);
    await symlink('releases/1.0.0', join(opt, 'current'));
    await writeFile(join(opt, 'release-key.pem'), keys.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    // systemctl try-restart: the supervisor's agent stopped (it starts again).
    const pidFile = join(dir, 'agent.pid');
    await writeFile(join(dir, 'systemctl'), `#!/bin/sh\nkill -TERM "$(cat '${pidFile}')"\n`);
    await chmod(join(dir, 'systemctl'), 0o755);
    const node = broker.certFor(NODE);
    configPath = await writeConfig(dir, baseConfig(dir, [{ id: 'entrance', source: camera.url, zone: 'entrance' }], {
      node: { id: NODE },
      control: { socket: join(dir, 'control.sock') },
      mqtt: { url: broker.url, ca: broker.caFile, cert: node.cert, key: node.key, keepalive: '2s' },
      fleet: { crl: join(broker.caDir, 'crl.pem'), releaseKey: releaseKeyBase64(keys.publicKey), rollbackAfter: '20s' },
      upstream: { type: 'dir', path: upstream, prefix: PREFIX },
    }));
    watcher = await mqtt.connectAsync(broker.url, { ...broker.tls('ops:vera'), reconnectPeriod: 500 });
    watcher.on('message', (_t, p) => events.push(JSON.parse(p.toString()) as Record<string, unknown>));
    await watcher.subscribeAsync(`camnode/${NODE}/events`, { qos: 1 });
    supervisor = new Supervisor(pidFile);
    supervisor.start();
    expect(await runningVersion()).toBe('1.0.0');
  }, 300_000);

  afterAll(async () => {
    await watcher?.endAsync(true);
    await supervisor?.stop();
    await stopAllRtspServers();
    await stopAllMosquittos();
    await rm(dir, { recursive: true, force: true });
  });

  it('1.0.0 → 1.0.1: fetched, verified twice, installed root-owned beside 1.0.0, committed; status.version says so', async () => {
    const since = events.length;
    const r = await update('1.0.1');
    expect(r.helper.code, r.helper.out).toBe(0);
    expect(r.ctl.code, r.ctl.stderr).toBe(0);
    expect(r.ctl.stdout).toContain(`${NODE}: committed (from 1.0.0)`);
    expect(await eventFor('update.committed', '1.0.1', since)).toMatchObject({ previous: '1.0.0' });
    expect(await runningVersion()).toBe('1.0.1');
    expect(await readlink(join(opt, 'current'))).toBe('releases/1.0.1');
    expect(await record()).toMatchObject({ version: '1.0.1', previous: '1.0.0', state: 'committed' });
    // The launcher counted one start; the request and the fetched files are gone.
    expect(supervisor.starts.at(-1)!.launcher).toContain('starting 1.0.1 on trial (start 1 of 2');
    await expect(stat(join(stateDir, 'updates', 'request.env'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(stateDir, 'updates', `camnode-1.0.1-${ARCH}.tgz`))).rejects.toThrow(/ENOENT/);
    await stat(join(opt, 'releases', '1.0.0', 'dist', 'src', 'main.js'));
  }, 240_000);

  it('1.0.1 → 1.0.2 that exits at start: two failed starts, then back to 1.0.1 with update.rolledBack', async () => {
    const since = events.length;
    const r = await update('1.0.2');
    expect(r.helper.code, r.helper.out).toBe(0);
    expect(r.ctl.code).toBe(1);
    expect(r.ctl.stdout).toContain(`${NODE}: rolledBack (1.0.2 failed to start twice)`);
    expect(await eventFor('update.rolledBack', '1.0.2', since)).toMatchObject({ reason: '1.0.2 failed to start twice' });
    expect(await runningVersion()).toBe('1.0.1');
    expect(await readlink(join(opt, 'current'))).toBe('releases/1.0.1');
    const broken = supervisor.starts.filter((s) => s.release === '1.0.2');
    expect(broken.map((s) => s.code)).toEqual([1, 1]);
    expect(await record()).toMatchObject({ version: '1.0.2', state: 'rolledBack', reported: true });
  }, 240_000);

  it('a release signed by another key is refused before anything is written or unpacked; so is a tampered one by the helper', async () => {
    const r = await ctl('update', NODE, '--version', '1.0.3', '--wait', '30s');
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`${NODE}: refused (bad_request: camnode-1.0.3-${ARCH}.tgz: its signature does not verify with fleet.releaseKey: refused, nothing installed)`);
    await expect(stat(join(stateDir, 'updates', 'request.env'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(stateDir, 'updates', `camnode-1.0.3-${ARCH}.tgz`))).rejects.toThrow(/ENOENT/);
    // A request the agent did not check (a compromised agent): the helper verifies on its own.
    const file = `camnode-1.0.3-${ARCH}.tgz`;
    await cp(join(upstream, PREFIX, 'releases', file), join(stateDir, 'updates', file));
    await cp(join(upstream, PREFIX, 'releases', `${file}.sig`), join(stateDir, 'updates', `${file}.sig`));
    await writeFile(join(stateDir, 'updates', 'request.env'), `version=1.0.3\nfile=${file}\nrollback_after_s=20\n`);
    const h = helper();
    expect(h.code).toBe(1);
    expect(h.out).toContain('the signature of camnode-1.0.3');
    await expect(stat(join(opt, 'releases', '1.0.3'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(opt, 'releases', '.1.0.3.new'))).rejects.toThrow(/ENOENT/);
    expect(await readlink(join(opt, 'current'))).toBe('releases/1.0.1');
    expect(await record()).toMatchObject({ version: '1.0.3', state: 'rolledBack', reason: expect.stringContaining('the root helper refused it') as unknown });
    expect(await runningVersion()).toBe('1.0.1');
  }, 120_000);

  it('the helper killed at each step leaves a whole release running, and the update completes or is reported', async () => {
    // After unpacking: nothing switched; the path unit fires again and the update completes.
    let since = events.length;
    let r = await update('1.0.0', 'unpacked');
    expect(r.helper.code).toBe(137);
    expect(await readlink(join(opt, 'current'))).toBe('releases/1.0.1');
    expect(helper().code).toBe(0);
    await eventFor('update.committed', '1.0.0', since);
    expect(await runningVersion()).toBe('1.0.0');

    // After the trial is written, before the switch, then a power cut: the old release starts, the update is reported interrupted.
    since = events.length;
    r = await update('1.0.1', 'recorded');
    expect(r.helper.code).toBe(137);
    supervisor.restart();
    expect(await eventFor('update.rolledBack', '1.0.1', since)).toMatchObject({ reason: 'the update was interrupted before it switched to 1.0.1' });
    expect(await runningVersion()).toBe('1.0.0');
    // The request is still there: the path unit runs the helper again, which completes it.
    expect(helper().code).toBe(0);
    await eventFor('update.committed', '1.0.1', since);
    expect(await runningVersion()).toBe('1.0.1');

    // After the switch, before the restart: the helper's next run finishes and restarts on trial.
    since = events.length;
    r = await update('1.0.0', 'switched');
    expect(r.helper.code).toBe(137);
    expect(await readlink(join(opt, 'current'))).toBe('releases/1.0.0');
    const again = helper();
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain('an earlier run was cut short');
    await eventFor('update.committed', '1.0.0', since);
    expect(await runningVersion()).toBe('1.0.0');
    // Every start ran a whole release.
    for (const s of supervisor.starts) expect(['1.0.0', '1.0.1', '1.0.2']).toContain(s.release);
  }, 300_000);
});
