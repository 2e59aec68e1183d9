// The folder target (a NAS share mounted on the node): the same protocol as S3, resumed by
// byte offset. Each file is written under a temporary name, fsynced, renamed into place and
// its folder fsynced; the manifest goes last like every file after the clips.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDir, mkdirsDurable } from '../platform/durable.js';
import { MiB, readRange } from './hashing.js';
import { UploadError, type FileMeta, type FileProgress, type ObjectStore, type UploadIo } from './store.js';

const CHUNK = 1 * MiB;
/** Progress is made durable every this many bytes. */
const SAVE_EVERY = 8 * MiB;

function fsError(err: unknown, what: string): UploadError {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  // A read-only or missing share is not going to fix itself between two retries… but a NAS
  // that is not mounted yet will; only permissions are treated as permanent.
  const permanent = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  return new UploadError(`${what}: ${(err as Error).message}`, permanent, code);
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class DirStore implements ObjectStore {
  constructor(private readonly root: string) {}

  describe(): string {
    return this.root;
  }

  async isStored(key: string, _file: string, meta: FileMeta): Promise<boolean> {
    const path = join(this.root, key);
    try {
      if ((await stat(path)).size !== meta.bytes) return false;
    } catch {
      return false;
    }
    // Read back: a share can lose what it acknowledged.
    return (await sha256Of(path)) === meta.sha256;
  }

  /**
   * upstream.path itself must already exist: camnode creates folders below it, never it. A
   * share that is not mounted then fails (and is retried) instead of filling the local disk
   * with "synced" copies that a dispose would treat as safe.
   */
  private async requireRoot(): Promise<void> {
    const isDir = await stat(this.root).then((s) => s.isDirectory(), () => false);
    if (!isDir) throw new UploadError(`upstream.path ${this.root} does not exist (is the share mounted?); camnode does not create it`, false, 'NoTargetFolder');
  }

  async upload(key: string, file: string, meta: FileMeta, progress: FileProgress, io: UploadIo): Promise<void> {
    const final = join(this.root, key);
    const temp = join(dirname(final), `.${basename(final)}.partial`);
    await this.requireRoot();
    try {
      await mkdirsDurable(dirname(final));
      let offset = progress.kind === 'offset' ? progress.offset : 0;
      const existing = await stat(temp).then((s) => s.size, () => -1);
      if (existing < offset) offset = 0;
      const handle = await open(temp, existing < 0 ? 'w' : 'r+');
      try {
        // Anything past the last durable offset may be torn: cut it and write it again.
        await handle.truncate(offset);
        let unsaved = 0;
        while (offset < meta.bytes) {
          if (io.signal.aborted) throw new UploadError('stopped', false, 'Aborted');
          const length = Math.min(CHUNK, meta.bytes - offset);
          const chunk = await readRange(file, offset, length);
          await io.pace(length);
          await handle.write(chunk, 0, length, offset);
          io.sent(length);
          offset += length;
          unsaved += length;
          if (unsaved >= SAVE_EVERY || offset === meta.bytes) {
            await handle.sync();
            await io.save({ kind: 'offset', offset });
            unsaved = 0;
          }
        }
      } finally {
        await handle.close();
      }
      io.fault('sync.dir.before-rename');
      await rename(temp, final);
      await fsyncDir(dirname(final));
    } catch (err) {
      if (err instanceof UploadError) throw err;
      throw fsError(err, `writing ${final}`);
    }
  }

  async probe(): Promise<string> {
    const probe = join(this.root, `.camnode-probe-${process.pid}`);
    await this.requireRoot();
    try {
      const handle = await open(probe, 'w');
      await handle.writeFile('probe');
      await handle.sync();
      await handle.close();
      await unlink(probe);
    } catch (err) {
      throw fsError(err, `${this.root} is not writable`);
    }
    return `${this.root}: writable`;
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const entries = await readdir(join(this.root, rel), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
        throw fsError(err, `listing ${join(this.root, rel)}`);
      });
      for (const e of entries) {
        // Files being written (`.name.partial`) and probes are not objects.
        if (e.name.startsWith('.')) continue;
        if (e.isDirectory()) await walk(`${rel}${e.name}/`);
        else if (e.isFile()) out.push(`${rel}${e.name}`);
      }
    };
    await walk(prefix.endsWith('/') ? prefix : `${prefix}/`);
    return out.sort();
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      return await readFile(join(this.root, key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw fsError(err, `reading ${join(this.root, key)}`);
    }
  }
}
