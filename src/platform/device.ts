// Facts about the machine read from injectable roots (a Pi's firmware files do not exist here).
import { readFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** "Raspberry Pi 4 Model B Rev 1.4", or null when not a device-tree machine. */
export async function deviceModel(root = '/'): Promise<string | null> {
  try {
    return (await readFile(join(root, 'proc/device-tree/model'), 'utf8')).replace(/\0+$/, '').trim() || null;
  } catch {
    return null;
  }
}

/**
 * Whether the OS reports the clock synchronised: systemd-timesyncd's flag file, else
 * `timedatectl`; null when nothing can tell (no systemd, as in containers).
 */
export async function clockSynced(root = '/', timedatectl = 'timedatectl'): Promise<boolean | null> {
  try {
    await access(join(root, 'run/systemd/timesync/synchronized'));
    return true;
  } catch { /* not timesyncd, or not yet */ }
  try {
    const { stdout } = await promisify(execFile)(timedatectl, ['show', '--property=NTPSynchronized', '--value'], { timeout: 5_000 });
    const v = stdout.trim();
    return v === 'yes' ? true : v === 'no' ? false : null;
  } catch {
    return null;
  }
}
