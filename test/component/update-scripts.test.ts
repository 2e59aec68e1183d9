// The root side of updates (CONTRACT §9 Update), on real files under an injected /opt/camnode:
// the launcher's trial (two failed starts, a missed deadline, an update cut before its switch,
// a record it must not trust) and the root helper's checks (the request's fields, the signature
// with the root-owned key, the release's own version, the machine's arch) and its kill points.
// The records are written by the agent's own code, so both sides agree on the format.
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { debianArch, formatUpdateRecord, parseUpdateRecord, type UpdateRecord } from '../../src/deploy/update.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAUNCHER = join(ROOT, 'device', 'camnode-launcher');
const HELPER = join(ROOT, 'device', 'camnode-update-helper');
const ARCH = debianArch()!;

let dir: string;
let opt: string;
let state: string;
let key: KeyObject;

async function fakeRelease(root: string, version: string): Promise<void> {
  await mkdir(join(root, 'dist', 'src'), { recursive: true });
  await mkdir(join(root, 'node_modules'), { recursive: true });
  await writeFile(join(root, 'dist', 'src', 'main.js'), '// camnode\n');
  await writeFile(join(root, 'package.json'), `${JSON.stringify({ name: 'camnode', version }, null, 2)}\n`);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-upd-'));
  opt = join(dir, 'opt');
  state = join(dir, 'state');
  await mkdir(join(state, 'updates'), { recursive: true });
  for (const v of ['1.0.0', '1.1.0']) await fakeRelease(join(opt, 'releases', v), v);
  await symlink('releases/1.1.0', join(opt, 'current'));
  const pair = generateKeyPairSync('ed25519');
  key = pair.privateKey;
  await writeFile(join(opt, 'release-key.pem'), pair.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  await writeFile(join(dir, 'systemctl'), `#!/bin/sh\necho "$@" >> '${join(dir, 'restarts')}'\n`, { mode: 0o755 });
});
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

function launcher(): { code: number | null; out: string } {
  const r = spawnSync('bash', [LAUNCHER], { encoding: 'utf8', env: { ...process.env, CAMNODE_OPT: opt, CAMNODE_STATE_DIR: state } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

function helper(fault?: string): { code: number | null; out: string } {
  const r = spawnSync('bash', [HELPER, '--state-dir', state], {
    encoding: 'utf8',
    env: { ...process.env, CAMNODE_OPT: opt, CAMNODE_SYSTEMCTL: join(dir, 'systemctl'), ...(fault ? { CAMNODE_HELPER_FAULT: fault } : {}) },
  });
  return { code: r.status ?? (r.signal ? 137 : null), out: `${r.stdout}${r.stderr}` };
}

const trial = (over: Partial<UpdateRecord> = {}): UpdateRecord => ({
  version: '1.1.0', previous: '1.0.0', state: 'trial', attempts: 0, deadline: 0, rollbackAfterS: 120, reason: '', reported: false, ...over,
});
const writeRecord = (r: UpdateRecord | string) => writeFile(join(state, 'update.json'), typeof r === 'string' ? r : formatUpdateRecord(r));
const readRecord = async () => parseUpdateRecord(await readFile(join(state, 'update.json'), 'utf8'));
const current = async () => readlink(join(opt, 'current'));

describe('the launcher keeps an update\'s trial', () => {
  it('counts the starts and sets the deadline at the first; the third start goes back', async () => {
    await writeRecord(trial());
    const before = Math.floor(Date.now() / 1000);
    let r = launcher();
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('starting 1.1.0 on trial (start 1 of 2');
    const first = (await readRecord())!;
    expect(first).toMatchObject({ state: 'trial', attempts: 1 });
    expect(first.deadline).toBeGreaterThanOrEqual(before + 120);
    r = launcher();
    expect(r.out).toContain('start 2 of 2');
    expect((await readRecord())!.deadline).toBe(first.deadline);
    r = launcher();
    expect(r.code).toBe(0);
    expect(r.out).toContain('1.1.0 failed to start twice: back to 1.0.0');
    expect(await current()).toBe('releases/1.0.0');
    expect(await readRecord()).toMatchObject({ state: 'rolledBack', reason: '1.1.0 failed to start twice', reported: false });
    // Reported by the agent once; the launcher leaves it be from then on.
    await writeRecord({ ...(await readRecord())!, reported: true });
    expect(launcher().out).toContain('starting release 1.0.0');
  });

  it('a deadline passed without a commit: back to the previous release', async () => {
    await writeRecord(trial({ attempts: 1, deadline: Math.floor(Date.now() / 1000) - 5 }));
    expect(launcher().out).toContain('1.1.0 was not committed within fleet.rollbackAfter: back to 1.0.0');
    expect(await current()).toBe('releases/1.0.0');
  });

  it('an update cut before its switch is reported, and nothing is switched', async () => {
    await writeRecord(trial({ version: '1.2.0', previous: '1.1.0' }));
    launcher();
    expect(await current()).toBe('releases/1.1.0');
    expect(await readRecord()).toMatchObject({ state: 'rolledBack', reason: 'the update was interrupted before it switched to 1.2.0' });
  });

  it('a committed update, or a record it cannot trust, changes nothing', async () => {
    await writeRecord(trial({ state: 'committed', attempts: 1 }));
    launcher();
    expect(await current()).toBe('releases/1.1.0');
    for (const hostile of [
      '{"version":"1.1.0","previous":"../../etc","state":"trial","attempts":9,"deadline":1}\n',
      '{"version":"1.1.0","previous":"1.0.0\\"; rm -rf /","state":"trial","attempts":9,"deadline":1}\n',
      'not json at all\n',
    ]) {
      await writeRecord(hostile);
      const r = launcher();
      expect(r.code, hostile).toBe(0);
      expect(await current(), hostile).toBe('releases/1.1.0');
      expect(await readFile(join(state, 'update.json'), 'utf8')).toBe(hostile);
    }
  });

  it('without a whole previous release it stays on the new one', async () => {
    await rm(join(opt, 'releases', '1.0.0', 'node_modules'), { recursive: true });
    await writeRecord(trial({ attempts: 2 }));
    expect(launcher().out).toContain('but 1.0.0 is not a whole release: staying on 1.1.0');
    expect(await current()).toBe('releases/1.1.0');
  });
});

describe('the root helper installs only what the release key signed', () => {
  async function stage(version: string, opts: { inside?: string; signer?: KeyObject; file?: string; request?: string } = {}): Promise<string> {
    const tree = join(dir, `tree-${version}`);
    await fakeRelease(join(tree, 'camnode'), opts.inside ?? version);
    const file = opts.file ?? `camnode-${version}-${ARCH}.tgz`;
    execFileSync('tar', ['-C', tree, '-czf', join(state, 'updates', file), 'camnode']);
    const bytes = await readFile(join(state, 'updates', file));
    await writeFile(join(state, 'updates', `${file}.sig`), sign(null, bytes, opts.signer ?? key));
    await writeFile(join(state, 'updates', 'request.env'), opts.request ?? `version=${version}\nfile=${file}\nrollback_after_s=60\n`);
    return file;
  }

  it('verifies, unpacks beside the releases, writes the trial, switches, restarts', async () => {
    await stage('1.2.0');
    const r = helper();
    expect(r.code, r.out).toBe(0);
    expect(await current()).toBe('releases/1.2.0');
    expect(JSON.parse(await readFile(join(opt, 'releases', '1.2.0', 'package.json'), 'utf8'))).toMatchObject({ version: '1.2.0' });
    expect(await readRecord()).toMatchObject({ version: '1.2.0', previous: '1.1.0', state: 'trial', attempts: 0, rollbackAfterS: 60 });
    expect((await stat(join(state, 'update.json'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(dir, 'restarts'), 'utf8')).toBe('try-restart camnode.service\n');
    await expect(stat(join(state, 'updates', 'request.env'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(state, 'updates', `camnode-1.2.0-${ARCH}.tgz`))).rejects.toThrow(/ENOENT/);
    // The launcher then counts its first start.
    expect(launcher().out).toContain('starting 1.2.0 on trial (start 1 of 2');
  });

  it.each([
    ['another key', { signer: generateKeyPairSync('ed25519').privateKey }, 'the signature of camnode-1.2.0'],
    ['another version inside', { inside: '6.6.6' }, 'does not hold camnode 1.2.0'],
    ['a request that is not one', { request: 'version=1.2.0; rm -rf /\nfile=../../x.tgz\n' }, 'the request is not one'],
    ['another arch', { file: `camnode-1.2.0-${ARCH === 'amd64' ? 'arm64' : 'amd64'}.tgz`, request: `version=1.2.0\nfile=camnode-1.2.0-${ARCH === 'amd64' ? 'arm64' : 'amd64'}.tgz\nrollback_after_s=60\n` }, 'is not for this machine'],
  ])('refuses %s: nothing unpacked or switched, the refusal recorded for the agent to report', async (_what, opts, message) => {
    await stage('1.2.0', opts);
    const r = helper();
    expect(r.code).toBe(1);
    expect(r.out).toContain(message);
    expect(await current()).toBe('releases/1.1.0');
    await expect(stat(join(opt, 'releases', '1.2.0'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(opt, 'releases', '.1.2.0.new'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(state, 'updates', 'request.env'))).rejects.toThrow(/ENOENT/);
    if (!message.startsWith('the request')) expect(await readRecord()).toMatchObject({ version: '1.2.0', state: 'rolledBack', reason: expect.stringContaining('the root helper refused it') as unknown });
  });

  it('takes no link the camnode user left: not for the bundle, not for the record\'s temp file', async () => {
    const file = await stage('1.2.0');
    const real = join(dir, 'elsewhere.tgz');
    await writeFile(real, await readFile(join(state, 'updates', file)));
    await rm(join(state, 'updates', file));
    await symlink(real, join(state, 'updates', file));
    const r = helper();
    expect(r.code).toBe(1);
    expect(r.out).toContain('or its .sig is missing (or not a plain file)');
    // A link where an old temp name used to be changes nothing outside the state dir.
    const target = join(dir, 'precious');
    await writeFile(target, 'keep me\n');
    await symlink(target, join(state, 'update.json.tmp'));
    await stage('1.2.0');
    expect(helper().code).toBe(0);
    expect(await readFile(target, 'utf8')).toBe('keep me\n');
    expect(await readRecord()).toMatchObject({ version: '1.2.0', state: 'trial' });
  });

  it('killed at each step: a whole release stays current, and running it again completes the update', async () => {
    for (const fault of ['unpacked', 'recorded', 'switched']) {
      await stage('1.2.0');
      expect(helper(fault).code, fault).toBe(137);
      expect(launcher().code, fault).toBe(0);
      const now = await current();
      expect(['releases/1.1.0', 'releases/1.2.0'], fault).toContain(now);
      const again = helper();
      expect(again.code, `${fault}: ${again.out}`).toBe(0);
      expect(await current(), fault).toBe('releases/1.2.0');
      expect((await readRecord())!.state, fault).toBe('trial');
      // Back to 1.1.0 for the next round.
      await rm(join(state, 'update.json'));
      await rm(join(opt, 'current'));
      await symlink('releases/1.1.0', join(opt, 'current'));
    }
  });
});
