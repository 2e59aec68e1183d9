// The sync outbox: sealed incidents waiting to go upstream, with every file's size and SHA-256
// and each file's upload progress, kept durably under node.stateDir (fsynced after every part)
// so a power cut halfway through a 2 GB clip resumes where it stopped.
import { rename } from 'node:fs/promises';
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

function isQueuedIncident(v: unknown): v is QueuedIncident {
  const q = v as QueuedIncident;
  return typeof v === 'object' && v !== null && typeof q.incident === 'string' && Array.isArray(q.files)
    && q.files.every((f) => typeof f === 'object' && f !== null && typeof f.name === 'string' && Number.isSafeInteger(f.bytes) && typeof f.progress === 'object' && f.progress !== null)
    && typeof q.attempts === 'number' && typeof q.urgent === 'boolean';
}

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
      // Sealed incidents are queued again from the book at start; only progress is lost. The
      // damaged file is kept aside for whoever looks into it.
      const keptAs = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '')}`;
      await rename(path, keptAs).catch(() => {});
      this.deps.log.error({ err: err.message, keptAs }, 'sync queue is corrupt; kept aside, uploads start over');
      db.data = { version: 1, incidents: [] };
    }
    // An entry that is not one (a hand edit, a bug) is dropped: the book queues it again.
    const before = db.data.incidents.length;
    db.data.incidents = db.data.incidents.filter(isQueuedIncident);
    if (db.data.incidents.length < before) this.deps.log.error({ dropped: before - db.data.incidents.length }, 'sync queue entries not understood were dropped; queued again from the book');
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
