// `camnode check` against a real RTSP camera, a dead one, and real storage.
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, runCli, tempDir, writeConfig } from '../helpers/agent.js';
import { freePort, startRtspServer, stopAllRtspServers, type RtspServer } from '../helpers/rtsp-server.js';

let dir: string;
let camera: RtspServer;

beforeAll(async () => {
  dir = await tempDir();
  camera = await startRtspServer({ pattern: 'ball', width: 320, height: 240, fps: 10, bitrateKbps: 400 });
});
afterAll(async () => {
  await stopAllRtspServers();
  await rm(dir, { recursive: true, force: true });
});

describe('camnode check', () => {
  it('probes each camera, sizes the retention, and fails on a dead camera', async () => {
    const dead = `rtsp://viewer:hunter2@127.0.0.1:${await freePort()}/stream`;
    const config = await writeConfig(dir, baseConfig(dir, [
      { id: 'lobby', source: camera.url, zone: 'entrance' },
      { id: 'gone', source: dead, zone: 'parking' },
      { id: 'spare', source: 'testsrc', zone: 'seating', enabled: false },
    ], { storage: { maxBytes: '1GB', maxAge: '30d' } }));
    const r = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
    expect(r.code).toBe(1);
    const row = (name: string): string => r.stdout.split('\n').find((l) => l.startsWith(name)) ?? '';
    expect(row('config')).toMatch(/pass/);
    expect(row('ffmpeg')).toMatch(/pass\s+ffmpeg \d+\.\d+/);
    expect(row('storage')).toMatch(new RegExp(`pass\\s+${join(dir, 'storage')}: writable, \\w+`));
    expect(row('camera lobby')).toMatch(/pass\s+rtsp:\/\/127\.0\.0\.1:\d+\/\w+: h264 320x240, \d+ kbit\/s/);
    const kbps = Number(/(\d+) kbit\/s/.exec(row('camera lobby'))![1]);
    expect(kbps).toBeGreaterThan(50);
    expect(kbps).toBeLessThan(2000);
    expect(row('camera gone')).toMatch(/fail\s+rtsp:\/\/viewer:\*\*\*@127\.0\.0\.1:\d+\/stream: Connection refused/);
    expect(row('camera spare')).toMatch(/pass\s+disabled/);
    // 1 GB at the measured rate, in days or hours.
    expect(row('retention')).toMatch(/quota 1\.0 GB holds [\d.]+ (days|hours) at \d+ kbit\/s/);
    expect(row('clock')).toMatch(/pass|warn/);
    expect(row('button')).toMatch(/pass\s+none: no panic button/);
    expect(row('node key')).toMatch(/pass\s+none yet: generated under .* on the first start/);
    expect(row('media access')).toMatch(/pass\s+footage, sealed incidents and state: the camnode user and group only/);
    expect(row('encryption')).toMatch(/pass\s+sealed clips are kept in plaintext \(no upstream.encryptTo\)/);
    expect(row('signage')).toMatch(/warn\s+no signage attestation \(policy.signage\) in the config/);
    expect(r.stdout + r.stderr).not.toContain('hunter2');
  });

  it('exits 0 when nothing fails, and prints the key the node signs with', async () => {
    const today = new Date().toISOString().slice(0, 10);
    const config = await writeConfig(dir, baseConfig(dir, [{ id: 'lobby', source: camera.url, zone: 'entrance' }], {
      policy: { signage: { posted: true, checkedAt: today } },
    }), 'ok.yaml');
    const { loadOrCreateNodeKey } = await import('../../src/audit/keys.js');
    const key = await loadOrCreateNodeKey(join(dir, 'state'));
    const r = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
    expect(r.stdout).not.toMatch(/\bfail\b/);
    expect(r.stdout).toContain(`Ed25519 public key ${key.publicKeyBase64}`);
    expect(r.stdout).toMatch(new RegExp(`signage\\s+pass\\s+signs posted, last checked ${today}`));
    expect(r.code).toBe(0);
  });

  it('warns when other users can read the footage in folders the agent narrows, fails for those it cannot; names them and the fix', async () => {
    const open = join(dir, 'open');
    await mkdir(join(open, 'storage', 'segments'), { recursive: true, mode: 0o755 });
    await chmod(dir, 0o755);
    await chmod(open, 0o755);
    await chmod(join(open, 'storage'), 0o755);
    await chmod(join(open, 'storage', 'segments'), 0o755);
    const config = await writeConfig(open, baseConfig(open, [{ id: 'lobby', source: camera.url, zone: 'entrance' }]));
    const mediaRow = (stdout: string): [string, string] => {
      const lines = stdout.split('\n');
      const at = lines.findIndex((l) => l.startsWith('media access'));
      return [lines[at]!, lines[at + 1]!];
    };
    // Folders of the agent's own user: it narrows them when it starts.
    const own = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
    const [ownRow, ownFix] = mediaRow(own.stdout);
    expect(ownRow).toMatch(new RegExp(`warn\\s+${open}/storage \\(mode 0755\\), ${open}/storage/segments \\(mode 0755\\): other users can read footage .*; the agent narrows them when it starts`));
    expect(ownFix).toMatch(/fix: chmod o-rwx .*\/storage .*\/storage\/segments$/);
    // A folder another user owns stays open whatever the agent does: fail.
    if (process.getuid?.() === 0) {
      await chown(join(open, 'storage', 'segments'), 65534, 65534);
      const other = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
      expect(mediaRow(other.stdout)[0]).toMatch(/fail\s+.*: other users can read footage .*; the agent cannot narrow a folder another user owns/);
      expect(other.code).toBe(1);
    }
    // Behind a folder others cannot pass through, the same modes are no exposure.
    await chmod(dir, 0o700);
    const closed = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
    expect(closed.stdout).toMatch(/media access\s+pass/);
  });
});
