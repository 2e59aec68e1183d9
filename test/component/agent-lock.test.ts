// The single-agent lock on a storage: real files, real processes.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireAgentLock, AgentAlreadyRunning, processStartTime } from '../../src/platform/processes.js';

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-lock-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

describe('agent lock', () => {
  it('refuses while the holder runs, is released on stop', async () => {
    const holder = spawn('sleep', ['30']);
    try {
      const lock = join(dir, 'agent.pid');
      writeFileSync(lock, `${holder.pid} ${await processStartTime(holder.pid!)}\n`);
      await expect(acquireAgentLock(lock)).rejects.toBeInstanceOf(AgentAlreadyRunning);
      await expect(acquireAgentLock(lock)).rejects.toThrow(`another camnode agent (pid ${holder.pid})`);
    } finally {
      holder.kill();
    }
  });

  it('takes over a lock whose process is gone, or whose pid now names another process', async () => {
    const lock = join(dir, 'agent.pid');
    writeFileSync(lock, '99999999 12345\n');
    const release = await acquireAgentLock(lock);
    expect(readFileSync(lock, 'utf8').split(' ')[0]).toBe(String(process.pid));
    await release();
    expect(existsSync(lock)).toBe(false);
    // pid 1 is alive, but it did not start at the recorded time: a reused pid.
    writeFileSync(lock, '1 5\n');
    const again = await acquireAgentLock(lock);
    expect(readFileSync(lock, 'utf8').split(' ')[0]).toBe(String(process.pid));
    await again();
  });

  it('only one of two simultaneous takers wins', async () => {
    const lock = join(dir, 'agent.pid');
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      const m = await import(${JSON.stringify(new URL('../../dist/src/platform/processes.js', import.meta.url).href)});
      try { await m.acquireAgentLock(${JSON.stringify(lock)}); console.log('won'); } catch (e) { console.log('lost'); }
      setTimeout(() => {}, 3000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ours = acquireAgentLock(lock).then(() => 'won', () => 'lost');
    const theirs = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())));
    child.kill();
    expect([await ours, theirs].sort()).toEqual(['lost', 'won']);
  });
});
