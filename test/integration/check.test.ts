// `camnode check` against a real RTSP camera, a dead one, and real storage.
import { rm } from 'node:fs/promises';
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
    expect(r.stdout + r.stderr).not.toContain('hunter2');
  });

  it('exits 0 when nothing fails, and prints the key the node signs with', async () => {
    const config = await writeConfig(dir, baseConfig(dir, [{ id: 'lobby', source: camera.url, zone: 'entrance' }]), 'ok.yaml');
    const { loadOrCreateNodeKey } = await import('../../src/audit/keys.js');
    const key = await loadOrCreateNodeKey(join(dir, 'state'));
    const r = await runCli(['check', '--config', config], { timeoutMs: 90_000 });
    expect(r.stdout).not.toMatch(/\bfail\b/);
    expect(r.stdout).toContain(`Ed25519 public key ${key.publicKeyBase64}`);
    expect(r.code).toBe(0);
  });
});
