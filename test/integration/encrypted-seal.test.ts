// Evidence encrypted to the district (CONTRACT §7) on the real agent, ffmpeg and the real `age`:
// with upstream.encryptTo each clip is sealed as `<camera>.mp4.age`, the manifest names the
// ciphertext and the plaintext inside it, `age -d` gives the exact plaintext, `evidence verify
// --identity` decrypts and checks it, `evidence export` needs the identity. A SIGKILL at each
// step of the crash order (ciphertext durable, manifest, plaintext removed) leaves an incident
// that seals again — encrypted and verifiable, never neither. Footage is the camnode user's and
// group's only.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { listSegments, probeDuration } from '../helpers/segments.js';
import { ageDecrypt as ageDecryptWith, ageKeygen } from '../helpers/age.js';

const run = promisify(execFile);
const CAMERAS = ['front', 'back'];

interface ManifestFile { name: string; camera: string; bytes: number; sha256: string; plaintext?: { name: string; bytes: number; sha256: string } }
interface Node { dir: string; configPath: string; storage: string; stateDir: string; sealedDir: string; agents: RunningAgent[] }

let keys: string;
let identity: string;
let recipient: string;
let stranger: string;

beforeAll(async () => {
  keys = await tempDir('camnode-age-keys-');
  identity = join(keys, 'district.key');
  stranger = join(keys, 'stranger.key');
  recipient = await ageKeygen(identity);
  await ageKeygen(stranger);
});
afterAll(async () => {
  await rm(keys, { recursive: true, force: true });
});

async function makeNode(ctx: TestContext): Promise<Node> {
  const dir = await tempDir('camnode-encrypted-');
  // Made by an installer with the usual umask: open to everyone until the agent narrows it.
  const storage = join(dir, 'storage');
  await mkdir(storage, { mode: 0o755 });
  await chmod(storage, 0o755);
  await chmod(dir, 0o755);
  const config = baseConfig(dir, CAMERAS.map((id) => ({ id, source: 'testsrc', zone: 'entrance' })), {
    incident: { preRoll: '2s', postRoll: '2s' },
    control: { socket: join(dir, 'control.sock') },
    upstream: { type: 'dir', path: join(dir, 'upstream'), encryptTo: [recipient] },
  });
  await mkdir(join(dir, 'upstream'));
  const node: Node = { dir, configPath: await writeConfig(dir, config), storage, stateDir: join(dir, 'state'), sealedDir: join(storage, 'incidents'), agents: [] };
  ctx.onTestFinished(async () => {
    for (const a of node.agents) a.killGroup();
    await Promise.all(node.agents.map((a) => a.exited));
    await rm(dir, { recursive: true, force: true });
  });
  return node;
}

function startAgent(node: Node, fault = ''): RunningAgent {
  const agent = RunningAgent.start(node.configPath, { env: { CAMNODE_FAULT: fault } });
  node.agents.push(agent);
  return agent;
}

async function started(agent: RunningAgent): Promise<string> {
  return String((await agent.waitForLog((l) => l.msg === 'agent started', 'agent started', 60_000))['publicKey']);
}

async function lock(node: Node): Promise<string> {
  // Recording for a while first, so the window has footage on both cameras.
  await waitFor(async () => {
    for (const c of CAMERAS) if ((await readdir(join(node.storage, 'segments', c)).catch(() => [])).length < 3) return false;
    return true;
  }, 'footage on both cameras', 30_000);
  const r = await runCli(['ctl', 'lock', '--local', '--config', node.configPath, '--json', '--reason', 'encrypted', '--by', 'test', '--timeout', '20s'], { timeoutMs: 40_000 });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { incident: string }).incident;
}

async function bookState(node: Node, id: string): Promise<string | undefined> {
  const text = await readFile(join(node.stateDir, 'incidents.json'), 'utf8').catch(() => '');
  try {
    return ((JSON.parse(text) as { incidents: { id: string; state: string }[] }).incidents.find((i) => i.id === id))?.state;
  } catch {
    return undefined;
  }
}

const waitSealed = (node: Node, id: string) => waitFor(async () => ['sealed', 'synced'].includes((await bookState(node, id)) ?? ''), `incident ${id} sealed`, 60_000, 250);

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `age -d` with the district's identity: the plaintext. */
async function ageDecrypt(file: string): Promise<Buffer> {
  const r = await ageDecryptWith(file, identity);
  if (r.code !== 0) throw new Error(`age -d ${file}: ${r.stderr}`);
  return r.stdout;
}

/** The sealed folder holds only ciphertext and the manifest, and each clip decrypts (by age) to what the manifest says. */
async function expectEncryptedSeal(node: Node, id: string, key: string): Promise<ManifestFile[]> {
  const dir = join(node.sealedDir, id);
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { files: ManifestFile[] };
  expect(manifest.files.map((f) => f.name).sort()).toEqual(CAMERAS.map((c) => `${c}.mp4.age`).sort());
  expect((await readdir(dir)).sort()).toEqual([...CAMERAS.map((c) => `${c}.mp4.age`), 'manifest.json'].sort());
  for (const f of manifest.files) {
    const ciphertext = await readFile(join(dir, f.name));
    expect(ciphertext.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    expect({ bytes: ciphertext.length, sha256: sha256(ciphertext) }).toEqual({ bytes: f.bytes, sha256: f.sha256 });
    const plain = await ageDecrypt(join(dir, f.name));
    expect(f.plaintext).toEqual({ name: `${f.camera}.mp4`, bytes: plain.length, sha256: sha256(plain) });
    const out = join(node.dir, `${f.camera}.decrypted.mp4`);
    await writeFile(out, plain);
    expect(await probeDuration(out), `${f.name} decrypts to a playable MP4`).toBeGreaterThan(1);
  }
  const verified = await runCli(['evidence', 'verify', dir, '--key', key, '--identity', identity, '--audit', join(node.stateDir, 'audit.log')]);
  expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  for (const c of CAMERAS) expect(verified.stdout).toMatch(new RegExp(`clip ${c}\\.mp4 \\(in ${c}\\.mp4\\.age\\).*decrypts to \\d+ bytes`));
  return manifest.files;
}

describe('evidence encrypted to the district', () => {
  it('seals each clip as age ciphertext that age, evidence verify and evidence export open with the identity', async (ctx) => {
    const node = await makeNode(ctx);
    const agent = startAgent(node);
    const key = await started(agent);
    const narrowed = agent.find((l) => l.msg.startsWith('folder was open to other users') && l['path'] === node.storage);
    expect(narrowed, 'the storage folder made 0755 is narrowed at start').toBeDefined();
    expect((await stat(node.storage)).mode & 0o777).toBe(0o750);
    const id = await lock(node);
    await waitSealed(node, id);
    const files = await expectEncryptedSeal(node, id, key);
    const dir = join(node.sealedDir, id);
    // Upstream gets the ciphertext only; its copy verifies and decrypts the same.
    await waitFor(async () => (await bookState(node, id)) === 'synced', `incident ${id} synced`, 60_000, 250);
    const up = join(node.dir, 'upstream', 'incidents', 'test-node', id);
    expect((await readdir(up)).sort()).toEqual([...CAMERAS.map((c) => `${c}.mp4.age`), 'manifest.json'].sort());
    const upVerified = await runCli(['evidence', 'verify', up, '--key', key, '--identity', identity]);
    expect(upVerified.code, upVerified.stdout).toBe(0);

    // Readable by the camnode user and group only: umask 0027 for the agent and its ffmpeg.
    for (const name of await readdir(dir)) expect((await stat(join(dir, name))).mode & 0o027, name).toBe(0);
    expect((await stat(join(dir, 'front.mp4.age'))).mode & 0o777).toBe(0o640);
    const segment = (await listSegments(node.storage, 'front')).at(-1)!;
    expect((await stat(segment.path)).mode & 0o777, 'a segment ffmpeg wrote').toBe(0o640);
    expect((await stat(join(node.storage, 'segments'))).mode & 0o777).toBe(0o750);
    const check = await runCli(['check', '--config', node.configPath], { timeoutMs: 60_000 });
    expect(check.stdout).toMatch(/media access\s+pass/);
    expect(check.stdout).toMatch(/encryption\s+pass\s+sealed clips are encrypted to 1 age recipient/);

    // Without the identity the ciphertext still verifies, and says the plaintext was not checked.
    const plain = await runCli(['evidence', 'verify', dir, '--key', key]);
    expect(plain.code, plain.stdout).toBe(0);
    expect(plain.stdout).toMatch(/front\.mp4\.age is encrypted: its ciphertext is as signed; give --identity/);
    // A stranger's identity fails loudly.
    const wrong = await runCli(['evidence', 'verify', dir, '--key', key, '--identity', stranger]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(/does not decrypt: no identity given decrypts this file/);
    const notAnIdentity = await runCli(['evidence', 'verify', dir, '--key', key, '--identity', join(dir, 'manifest.json')]);
    expect(notAnIdentity.code).toBe(2);
    expect(notAnIdentity.stderr).toMatch(/--identity .*manifest\.json line 1: not an age identity/);

    // The export holds the plaintext clips, checked by coreutils; without the identity, exit 2.
    const refused = await runCli(['evidence', 'export', dir, '--out', join(node.dir, 'bundle'), '--key', key]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/is encrypted .*give --identity FILE/);
    expect(existsSync(join(node.dir, 'bundle'))).toBe(false);
    const exported = await runCli(['evidence', 'export', dir, '--out', join(node.dir, 'bundle'), '--key', key, '--identity', identity]);
    expect(exported.code, exported.stderr).toBe(0);
    const bundle = join(node.dir, 'bundle');
    for (const f of files) expect(sha256(await readFile(join(bundle, f.plaintext!.name)))).toBe(f.plaintext!.sha256);
    expect(existsSync(join(bundle, 'front.mp4.age'))).toBe(false);
    const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: bundle });
    expect(sums.stdout).toMatch(/front\.mp4: OK/);
    await run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', 'public-key.pem', '-rawin', '-in', 'manifest.signed', '-sigfile', 'manifest.sig'], { cwd: bundle });
    // The README's own check that a clip is the signed one prints 1 for a decrypted clip too.
    const grep = await run('bash', ['-c', `grep -c "\\"name\\":\\"front.mp4\\",\\"sha256\\":\\"$(sha256sum front.mp4 | cut -c1-64)\\"" manifest.signed`], { cwd: bundle });
    expect(grep.stdout.trim()).toBe('1');

    // One flipped byte of ciphertext: verify fails on it, and export writes nothing.
    const age = join(dir, 'front.mp4.age');
    const bytes = await readFile(age);
    bytes[bytes.length - 1000] = bytes[bytes.length - 1000]! ^ 0x01;
    await writeFile(age, bytes);
    const tampered = await runCli(['evidence', 'verify', dir, '--key', key, '--identity', identity]);
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toMatch(/FAIL.*file front\.mp4\.age.*SHA-256/);
    await agent.stop();
  });

  const steps = [
    { point: 'seal.encrypted', left: (c: string[]) => [...c.map((x) => `${x}.mp4`), ...c.map((x) => `${x}.mp4.age`)] },
    { point: 'seal.manifest', left: (c: string[]) => [...c.map((x) => `${x}.mp4`), ...c.map((x) => `${x}.mp4.age`), 'manifest.json'] },
    { point: 'seal.plaintext-removed', left: (c: string[]) => [...c.map((x) => `${x}.mp4.age`), 'manifest.json'] },
  ];
  for (const { point, left } of steps) {
    it(`a SIGKILL at ${point} leaves an incident that seals again, encrypted and verifiable`, async (ctx) => {
      const node = await makeNode(ctx);
      const first = startAgent(node, point);
      await started(first);
      const id = await lock(node);
      const code = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r('alive'), 60_000))]);
      expect(code, first.stderrText).toBeNull();
      expect(first.stderrText).toContain(`fault injected at ${point}`);
      // What the kill left: the work folder at that step, nothing sealed.
      expect(await bookState(node, id)).toBe('sealing');
      expect(existsSync(join(node.sealedDir, id))).toBe(false);
      expect((await readdir(join(node.sealedDir, `${id}.sealing`))).sort()).toEqual(left(CAMERAS).sort());

      const second = startAgent(node);
      const key = await started(second);
      await waitSealed(node, id);
      await expectEncryptedSeal(node, id, key);
      expect(existsSync(join(node.sealedDir, `${id}.sealing`))).toBe(false);
      await second.stop();
    });
  }
});
