// Small real disks for tests (root only): unmounting, and clean-ups run in reverse after each
// test — the agent and its ffmpeg go before the disk they write to, even after a failure.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach } from 'vitest';

const exec = promisify(execFile);

export async function umount(dir: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    try {
      await exec('umount', [dir]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250)); // a file still open a moment after its process exited
    }
  }
  await exec('umount', ['-l', dir]);
}

/** Registers clean-ups for the current test; they run in reverse order after it. */
export function useCleanups(): (fn: () => Promise<unknown>) => void {
  let cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => console.error('cleanup:', err));
    cleanups = [];
  });
  return (fn) => { cleanups.push(fn); };
}
