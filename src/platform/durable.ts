// Durable small-file writes: temp file, fsync, rename, fsync the directory. A plain
// rename is atomic but not durable: after power loss the directory entry may be gone.
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileDurable(path: string, data: string | Uint8Array, hooks: { beforeRename?: () => void } = {}): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await handle.close();
  hooks.beforeRename?.();
  await rename(tmp, path);
  await fsyncDir(dir);
}

/** Temp files of writeFileDurable left by a process that died mid-write (never acknowledged). */
export async function removeStaleTemps(path: string): Promise<number> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp') || name === `${prefix}${process.pid}.tmp`) continue;
    await unlink(join(dir, name)).then(() => { removed++; }, () => {});
  }
  return removed;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir reports a read-only share (EROFS) as
 * ENOENT, which would be retried forever instead of failing. Each new folder's entry is fsynced
 * in its parent, or a power cut could lose a folder whose files were synced.
 */
export async function mkdirsDurable(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
    await mkdirsDurable(dirname(dir));
    await mkdir(dir).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
  }
  await fsyncDir(dirname(dir));
}

/**
 * Writes every byte of `buffers` at the handle's position: a write to a nearly full disk can
 * write less than asked without failing, and the rest is written again (ENOSPC then throws).
 */
export async function writeAll(handle: FileHandle, buffers: readonly Buffer[]): Promise<void> {
  let pending = buffers.filter((b) => b.length > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await handle.writev(pending);
    const rest: Buffer[] = [];
    for (const b of pending) {
      if (bytesWritten >= b.length) bytesWritten -= b.length;
      else {
        rest.push(b.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    pending = rest;
  }
}
