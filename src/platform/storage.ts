// Is the media disk usable? Tests run as root, so permissions prove nothing: the probe writes,
// fsyncs and removes a real file, which a read-only mount refuses with EROFS.
import { mkdir, open, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export class StorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageError';
  }
}

/**
 * `mkdir -p` that reports the real reason: Node 20's recursive mkdir turns EROFS (and other
 * errors on a missing component) into ENOENT, so retry component by component without it.
 */
async function makeDirs(dir: string): Promise<void> {
  // The folders it makes hold footage or state: never open to other users (CONTRACT §7).
  try {
    await mkdir(dir, { recursive: true, mode: 0o750 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(dir) === dir) throw err;
    await makeDirs(dirname(dir));
    await mkdir(dir, { mode: 0o750 });
  }
}

/**
 * Writes, fsyncs and removes a probe file. A full disk is not a reason to stop: the ring frees
 * its own oldest footage first (never a foreign file), so that answers 'full'. A read-only or
 * forbidden one is: it throws StorageError naming the field.
 */
export async function probeWritable(dir: string, field = 'storage.path'): Promise<'ok' | 'full'> {
  const probe = join(dir, `.camnode-write-probe-${process.pid}`);
  try {
    await makeDirs(dir);
    try {
      const handle = await open(probe, 'w');
      try {
        await handle.writeFile('probe');
        await handle.sync();
      } finally {
        await handle.close();
      }
    } finally {
      await unlink(probe).catch(() => {});
    }
    return 'ok';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return 'full';
    const why = code === 'EROFS' ? 'is on a read-only filesystem'
      : code === 'EACCES' || code === 'EPERM' ? 'is not writable (permission denied)'
        : `cannot be written (${code ?? (err as Error).message})`;
    throw new StorageError(`${field} ${dir} ${why}`);
  }
}
