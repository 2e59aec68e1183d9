// Whether the clock is synchronised, as the OS says: timesyncd's flag file, else timedatectl —
// a real program here (a script that counts its runs), asked no more often than the answer can change.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClockStatus } from '../../src/platform/clock-status.js';

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-clock-status-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

/** A timedatectl that answers `answer` and appends a line to runs.txt each time it runs. */
async function fakeTimedatectl(answer: string): Promise<string> {
  const path = join(dir, 'timedatectl');
  await writeFile(path, `#!/bin/sh\necho run >> '${join(dir, 'runs.txt')}'\necho '${answer}'\n`);
  await chmod(path, 0o755);
  return path;
}
const runs = async () => (await readFile(join(dir, 'runs.txt'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

/** Polls by hand: the interval is long, refresh is what the timer would call. */
async function poll(status: ClockStatus, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await (status as unknown as { refresh(): Promise<void> }).refresh();
}

describe('ClockStatus', () => {
  it('unsynchronised: asks timedatectl at every poll, and sees it become synchronised', async () => {
    const bin = await fakeTimedatectl('no');
    const status = new ClockStatus({ root: dir, timedatectl: bin, intervalMs: 3_600_000 });
    await status.start();
    expect(status.synced()).toBe(false);
    await poll(status, 3);
    expect(await runs()).toBe(4);
    await writeFile(bin, `#!/bin/sh\necho run >> '${join(dir, 'runs.txt')}'\necho yes\n`);
    await poll(status, 1);
    expect(status.synced()).toBe(true);
    await status.stop();
  });

  it('synchronised: asks only every tenth poll, and still notices it lost sync', async () => {
    const bin = await fakeTimedatectl('yes');
    const status = new ClockStatus({ root: dir, timedatectl: bin, intervalMs: 3_600_000 });
    await status.start();
    await poll(status, 19);
    expect(status.synced()).toBe(true);
    expect(await runs()).toBe(2); // polls 0 and 10
    await writeFile(bin, `#!/bin/sh\necho no\n`);
    await poll(status, 1); // poll 20
    expect(status.synced()).toBe(false);
    await status.stop();
  });

  it('timesyncd\'s flag file answers without a process', async () => {
    const bin = await fakeTimedatectl('no');
    await mkdir(join(dir, 'run/systemd/timesync'), { recursive: true });
    await writeFile(join(dir, 'run/systemd/timesync/synchronized'), '');
    const status = new ClockStatus({ root: dir, timedatectl: bin, intervalMs: 3_600_000 });
    await status.start();
    await poll(status, 5);
    expect(status.synced()).toBe(true);
    expect(await runs()).toBe(0);
    await status.stop();
  });

  it('no timedatectl installed: unknown, and not tried again', async () => {
    const missing = join(dir, 'timedatectl');
    const status = new ClockStatus({ root: dir, timedatectl: missing, intervalMs: 3_600_000 });
    await status.start();
    expect(status.synced()).toBeNull();
    // Installed now at the very path: a status that asked again would run it and see "yes".
    await fakeTimedatectl('yes');
    await poll(status, 3);
    expect(status.synced()).toBeNull();
    expect(await runs()).toBe(0);
    // The flag file still counts.
    await mkdir(join(dir, 'run/systemd/timesync'), { recursive: true });
    await writeFile(join(dir, 'run/systemd/timesync/synchronized'), '');
    await poll(status, 1);
    expect(status.synced()).toBe(true);
    await status.stop();
  });

  it('timedatectl that fails (no timedated, no D-Bus): unknown, asked again later', async () => {
    const path = join(dir, 'timedatectl');
    await writeFile(path, `#!/bin/sh\necho run >> '${join(dir, 'runs.txt')}'\necho 'Failed to connect to bus' >&2\nexit 1\n`);
    await chmod(path, 0o755);
    const status = new ClockStatus({ root: dir, timedatectl: path, intervalMs: 3_600_000 });
    await status.start();
    await poll(status, 2);
    expect(status.synced()).toBeNull();
    expect(await runs()).toBe(3);
    await status.stop();
  });
});
