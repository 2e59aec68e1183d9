// Passwords never printed (CONTRACT §2), whatever characters they hold: cameras whose RTSP URLs
// carry passwords full of URL-special characters, a broker URL with one, all pointing at ports
// where nothing answers, so every error path speaks — `run` (ffmpeg's start, its stderr, the
// recorder going down), `check`, a snapshot refused, and the crash path (exit 70). Every byte
// printed is scanned for every form of every password.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { freePort } from '../helpers/rtsp-server.js';

const PASSWORDS = ["it's-secret", 'qu"ote-pw', 'p@ss@word', 'co:lon-pw', 'sp ace-pw', 'pe%rcent', 'ha#sh?q&a=b', 'back\\slash', 'ümlaut€pw'];
const BROKER_PASSWORD = 'br0ker:p@ss';

let dir: string;
let configPath: string;
let socket: string;

function encoded(password: string): string {
  return password.replace(/[/#?% ]/g, (c) => encodeURIComponent(c));
}

/** Every form a password can take in output: raw, percent-encoded either way, JSON-escaped. */
function forms(password: string): string[] {
  return [...new Set([password, encoded(password), encodeURIComponent(password), JSON.stringify(password).slice(1, -1)])];
}

function expectNoSecret(text: string, where: string): void {
  for (const p of [...PASSWORDS, BROKER_PASSWORD]) for (const f of forms(p)) expect(text.includes(f), `${where} printed ${JSON.stringify(f)}`).toBe(false);
}

beforeAll(async () => {
  dir = await tempDir('camnode-secrets-');
  socket = join(dir, 'control.sock');
  const dead = await freePort();
  const cameras = PASSWORDS.map((p, i) => ({ id: `cam-${i}`, source: `rtsp://admin:${encoded(p)}@127.0.0.1:${dead}/stream${i}`, zone: 'entrance' }));
  configPath = await writeConfig(dir, baseConfig(dir, cameras, {
    control: { socket },
    mqtt: { url: `mqtt://camnode:${encodeURIComponent(BROKER_PASSWORD)}@127.0.0.1:${dead}`, protocolVersion: '3.1.1', requireSignedCommands: false },
  }));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('passwords with every URL-special character', () => {
  it('run: ffmpeg started, failing and restarting, the broker refusing — nothing printed holds a password', async () => {
    const agent = RunningAgent.start(configPath);
    try {
      await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
      // Every camera down at least once (its ffmpeg's stderr logged), the broker tried.
      await waitFor(() => new Set(agent.logs.filter((l) => l.msg === 'recorder down; restarting').map((l) => l['camera'])).size === PASSWORDS.length, 'every camera down', 30_000);
      await agent.waitForLog((l) => l.msg === 'broker unreachable; retrying', 'the broker tried');
      // A snapshot refused: its error reply comes back over the socket.
      const shot = await requestLocal(socket, 'snapshot', { camera: 'cam-0' }, 20_000);
      expect(shot.ok).toBe(false);
      expectNoSecret(JSON.stringify(shot), 'the snapshot reply');
      const state = await requestLocal(socket, 'state', {}, 5_000);
      expectNoSecret(JSON.stringify(state), 'the state');
    } finally {
      expect(await agent.stop()).toBe(0);
    }
    expect(agent.logs.some((l) => JSON.stringify(l).includes('admin:***@'))).toBe(true);
    expectNoSecret(JSON.stringify(agent.logs) + agent.stderrText, 'run');
  });

  it('check: each camera fails to probe, the table names them without their passwords', async () => {
    const r = await runCli(['check', '--config', configPath], { timeoutMs: 120_000 });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('admin:***@');
    expectNoSecret(r.stdout + r.stderr, 'check');
  });

  it('the crash path (an uncaught exception, exit 70) prints none either', async () => {
    const agent = RunningAgent.start(configPath, { env: { CAMNODE_FAULT: 'uncaught' } });
    expect(await agent.exited).toBe(70);
    expectNoSecret(JSON.stringify(agent.logs) + agent.stderrText, 'the crash');
  });
});
