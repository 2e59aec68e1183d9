// The sync outbox: sealed incidents waiting to go upstream, with every file's size and SHA-256
// and each file's upload progress, kept durably under node.stateDir (fsynced after every part)
// so a power cut halfway through a 2 GB clip resumes where it stopped.
import { join } from 'node:path';
import { Low } from 'lowdb';
import { CorruptFileError, DurableJsonFile } from '../platform/durable-json.js';
import type { Logger } from '../platform/logger.js';
import type { FileProgress } from './store.js';

export interface QueuedFile {
  name: string;
  bytes: number;
  sha256: string;
  done: boolean;
  progress: FileProgress;
}

export interface QueuedIncident {
  incident: string;
  urgent: boolean;
  queuedAt: string;
  /** Clips first, manifest.json last: its presence upstream means complete. */
  files: QueuedFile[];
  attempts: number;
  lastError: string | null;
  /** A failure retrying cannot fix (access denied, no such bucket): waits for `sync`. */
  permanent: boolean;
}

interface QueueData { version: 1; incidents: QueuedIncident[] }

export class SyncQueue {
  private db: Low<QueueData> | undefined;
  private writes: Promise<void> = Promise.resolve();

  constructor(private readonly deps: { stateDir: string; log: Logger }) {}

  async open(): Promise<void> {
    const path = join(this.deps.stateDir, 'sync-queue.json');
    const db = new Low<QueueData>(new DurableJsonFile(path, 'sync.queue.write'), { version: 1, incidents: [] });
    try {
      await db.read();
      if (!Array.isArray(db.data.incidents)) throw new CorruptFileError(path, 'no incidents list');
    } catch (err) {
      if (!(err instanceof CorruptFileError)) throw err;
      // Sealed incidents are queued again from the book at start; only progress is lost.
      this.deps.log.error({ err: err.message }, 'sync queue is corrupt; uploads start over');
      db.data = { version: 1, incidents: [] };
    }
    this.db = db;
  }

  list(): QueuedIncident[] {
    return this.db?.data.incidents ?? [];
  }

  get(id: string): QueuedIncident | undefined {
    return this.list().find((q) => q.incident === id);
  }

  async add(entry: QueuedIncident): Promise<void> {
    if (this.get(entry.incident)) return;
    this.db!.data.incidents.push(entry);
    await this.save();
  }

  async remove(id: string): Promise<void> {
    const list = this.db!.data.incidents;
    const at = list.findIndex((q) => q.incident === id);
    if (at >= 0) list.splice(at, 1);
    await this.save();
  }

  /** Writes the queue as it is now; resolves once it is on disk. */
  save(): Promise<void> {
    const run = this.writes.then(() => this.db!.write());
    this.writes = run.catch(() => {});
    return run;
  }
}
