// Upstream records (CONTRACT §7): small node-signed files that go upstream on their own, outside
// any incident's upload — a disclosure record (a disposed incident's too: subpoenas often
// arrive after the local copy is gone), each node key ever used. Each waits as a file under
// `<stateDir>/upstream/<key below <prefix>/<node>/>`, written durably before what it records is
// acknowledged; the RecordPublisher uploads it, reads it back and only then removes it. An
// object already upstream with other bytes is never overwritten: the record is set aside and
// reported. Without an upstream the files simply wait (a few kB) until one is configured.
import { createHash } from 'node:crypto';
import { access, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/backoff.js';
import { fsyncDir, mkdirsDurable, writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { sleepUnlessAborted, sleepUntilEither } from '../platform/timers.js';
import { UploadError, type ObjectStore, type UploadIo } from './store.js';

export const UPSTREAM_DIR = 'upstream';
/** Records upstream refused to take (another object holds the key): kept, never overwritten. */
export const UPSTREAM_CONFLICTS_DIR = 'upstream-conflicts';

/** A key below `<prefix>/<node>/`: plain segments, no `.`/`..`, nothing hidden. */
const REL_KEY = /^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\/){0,4}[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function isRecordKey(rel: string): boolean {
  return REL_KEY.test(rel) && !rel.split('/').some((s) => s === '..' || s === '.');
}

/** Queues a record for upload, durably (file, then each new folder's entry). Returns its local path. */
export async function queueRecord(stateDir: string, rel: string, bytes: string | Uint8Array): Promise<string> {
  if (!isRecordKey(rel)) throw new Error(`not an upstream record key: ${JSON.stringify(rel)}`);
  const path = join(stateDir, UPSTREAM_DIR, rel);
  for (let attempt = 1; ; attempt++) {
    try {
      await mkdirsDurable(dirname(path));
      await writeFileDurable(path, bytes);
      return path;
    } catch (err) {
      // The publisher removes folders it emptied: one may go between the mkdir and the write.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

/** The records waiting, as keys below `<prefix>/<node>/`, in a stable order (keys first: they prove the rest). */
export async function pendingRecords(stateDir: string): Promise<string[]> {
  const root = join(stateDir, UPSTREAM_DIR);
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      // writeFileDurable's temp files start with a dot: never records.
      if (e.name.startsWith('.')) continue;
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile() && isRecordKey(r)) out.push(r);
    }
  };
  await walk('');
  const rank = (k: string): number => (k.startsWith('keys/') ? 0 : 1);
  return out.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

export interface RecordPublisherDeps {
  stateDir: string;
  /** `<prefix>/<node>` */
  keyPrefix: string;
  openStore: () => Promise<ObjectStore>;
  log: Logger;
  /** Once per start, after the first pass that left nothing waiting (the key history reads what is upstream then). */
  onceDrained?: (store: ObjectStore) => Promise<void>;
  backoff?: BackoffPolicy;
  random?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const RETRY: BackoffPolicy = { baseMs: 2_000, maxMs: 300_000, jitter: 0.5 };
const IDLE_MS = 60_000;

export class RecordPublisher implements Component {
  readonly name = 'records';
  private stopper = new AbortController();
  private wake = new AbortController();
  private loop: Promise<void> | undefined;
  private lastError: string | null = null;
  private waiting = 0;

  constructor(private readonly deps: RecordPublisherDeps) {}

  async start(): Promise<void> {
    this.stopper = new AbortController();
    // The target is built in the loop: one that cannot be built (a credentials file not there
    // yet) is the sync's fault to report; the records wait and retry with it.
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    this.wake.abort();
    await this.loop;
  }

  /** A record was queued: send it now. */
  poke(): void {
    this.wake.abort();
  }

  status(): { waiting: number; lastError: string | null } {
    return { waiting: this.waiting, lastError: this.lastError };
  }

  private async run(): Promise<void> {
    const sleep = this.deps.sleep ?? sleepUnlessAborted;
    let failures = 0;
    let drained = false;
    let store: ObjectStore | undefined;
    while (!this.stopper.signal.aborted) {
      this.wake = new AbortController();
      let waitMs = IDLE_MS;
      try {
        store ??= await this.deps.openStore();
        const pending = await pendingRecords(this.deps.stateDir);
        this.waiting = pending.length;
        for (const rel of pending) {
          if (this.stopper.signal.aborted) return;
          await this.publish(store, rel);
          this.waiting--;
        }
        if (!drained) await this.deps.onceDrained?.(store);
        drained = true;
        failures = 0;
        this.lastError = null;
      } catch (err) {
        if (this.stopper.signal.aborted) return;
        failures++;
        this.lastError = (err as Error).message;
        // Built again at the next try (cheap): a fixed credentials file needs no restart.
        store = undefined;
        waitMs = backoffDelay(failures, this.deps.backoff ?? RETRY, this.deps.random);
        if (failures === 1 || failures % 10 === 0) this.deps.log.warn({ reason: this.lastError, retryInMs: waitMs }, 'upstream records could not be sent; will retry');
      }
      await sleepUntilEither(sleep, waitMs, this.stopper.signal, this.wake.signal);
    }
  }

  private async publish(store: ObjectStore, rel: string): Promise<void> {
    const path = join(this.deps.stateDir, UPSTREAM_DIR, rel);
    const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (bytes === null) return;
    const key = `${this.deps.keyPrefix}/${rel}`;
    const meta = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    if (!await store.isStored(key, path, meta, { kind: 'none' })) {
      // Records are never overwritten upstream: another object under this key is a conflict
      // (the same bytes are not: a store whose ETag is no MD5 says "not stored" for them).
      const there = await store.get(key);
      if (there !== null && !there.equals(bytes)) {
        await this.setAside(rel, path);
        this.deps.log.error({ key, bytes: there.length }, 'upstream already holds another object under this record\'s key; the record is kept on the node, not overwritten');
        return;
      }
      if (there === null) {
        await store.upload(key, path, meta, { kind: 'none' }, this.io());
        const back = await store.get(key);
        if (back === null || !back.equals(bytes)) throw new UploadError(`${key} did not verify after upload`, false, 'VerifyFailed');
      }
    }
    // What was sent is what is removed: a record rewritten meanwhile stays for the next pass.
    const now = await readFile(path).catch(() => null);
    if (now === null || !now.equals(bytes)) return;
    await unlink(path);
    await fsyncDir(dirname(path));
    await this.prune(dirname(path));
    this.deps.log.info({ key }, 'record stored upstream');
  }

  private io(): UploadIo {
    return {
      pace: async () => {},
      sent: () => {},
      save: async () => {},
      fault: () => {},
      note: (fields, msg) => this.deps.log.debug(fields, msg),
      signal: this.stopper.signal,
    };
  }

  private async setAside(rel: string, path: string): Promise<void> {
    let to = join(this.deps.stateDir, UPSTREAM_CONFLICTS_DIR, rel);
    await mkdirsDurable(dirname(to));
    // An earlier conflict under the same key is kept too.
    for (let i = 1; await access(to).then(() => true, () => false); i++) to = join(this.deps.stateDir, UPSTREAM_CONFLICTS_DIR, `${rel}.${i}`);
    await rename(path, to);
    await fsyncDir(dirname(to));
    await fsyncDir(dirname(path));
  }

  /** Empty folders left by sent records go, up to the records' root. */
  private async prune(dir: string): Promise<void> {
    const root = join(this.deps.stateDir, UPSTREAM_DIR);
    for (let d = dir; d.startsWith(`${root}/`); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        return;
      }
    }
  }
}
