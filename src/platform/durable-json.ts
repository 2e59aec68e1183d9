// lowdb keeps the incident book; its own writes are atomic (temp + rename) but not durable,
// so this adapter fsyncs the file and its directory before a write counts as done.
import { readFile } from 'node:fs/promises';
import type { Adapter } from 'lowdb';
import { removeStaleTemps, writeFileDurable } from '../platform/durable.js';
import { faultPoint } from '../platform/fault.js';

export class CorruptFileError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`${path} is corrupt: ${reason}`);
    this.name = 'CorruptFileError';
  }
}

export class DurableJsonFile<T> implements Adapter<T> {
  constructor(private readonly path: string, private readonly faultName = 'book.write') {}

  async read(): Promise<T | null> {
    await removeStaleTemps(this.path);
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new CorruptFileError(this.path, (err as Error).message);
    }
  }

  async write(data: T): Promise<void> {
    await writeFileDurable(this.path, `${JSON.stringify(data, null, 1)}\n`, {
      beforeRename: () => faultPoint(`${this.faultName}.mid`),
    });
  }
}
