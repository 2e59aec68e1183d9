// Sync: sealed incidents go upstream one at a time, urgent ones at once and the others in the
// upstream window, paced to `maxRate`, resumed after any stop, verified by the target's own
// rule, manifest last. Network errors, throttling and timeouts are retried with capped
// exponential backoff and jitter; a permanent failure stops and says so.
import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Clock } from '../platform/clock.js';
import { sleepUnlessAborted as defaultSleep, sleepUntilEither } from '../platform/timers.js';
import { iso } from '../platform/clock.js';
import { faultPoint } from '../platform/fault.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import type { IncidentBook } from '../incidents/book.js';
import type { DamagedIncidents } from '../incidents/damaged.js';
import { isSealedFileName, NOTES_DIR } from '../incidents/records.js';
import type { SyncProgress } from '../fleet/topics.js';
import { msUntilWindow, TokenBucket } from './pacing.js';
import { SyncQueue, type QueuedIncident } from './queue.js';
import { UploadError, type ObjectStore, type UploadIo } from './store.js';

export interface SyncerDeps {
  /**
   * Builds the target (reading the credentials file): at start — a failure is the component's
   * fault, retried by the agent's supervisor — and again on the `sync` command, so a fixed file
   * needs no restart.
   */
  openStore: () => Promise<ObjectStore>;
  book: IncidentBook;
  /** Where an incident found damaged goes (its folder set aside, reported): never the whole sync. */
  damaged: Pick<DamagedIncidents, 'has' | 'setAside'>;
  /** storage.path/incidents */
  sealedDir: string;
  stateDir: string;
  /** `<prefix>/<node>`: keys are `<keyPrefix>/<incident>/<file>`. */
  keyPrefix: string;
  maxRateBps?: number | undefined;
  window?: string | undefined;
  clock: Clock;
  log: Logger;
  events: EventBus;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** The loop broke on something it does not expect (the supervisor restarts the syncer). */
  onFailure?: (err: unknown) => void;
  /** Timers (tests make waits short). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface SyncStatus {
  queued: number;
  bytesPending: number;
  lastError: string | null;
  current: SyncProgress | null;
}

const RETRY: BackoffPolicy = { baseMs: 2_000, maxMs: 300_000, jitter: 0.5 };

interface SealedFile { name: string; bytes: number; sha256: string }

/** The file list of a sealed incident's manifest, checked for the shape sync relies on. Pure. */
export function parseSealedManifest(bytes: Buffer): { files: SealedFile[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`manifest.json is unreadable (${(err as Error).message})`);
  }
  const files = (doc as { files?: unknown } | null)?.files;
  const ok = Array.isArray(files) && files.every((f: unknown) => {
    const x = f as SealedFile;
    return typeof f === 'object' && f !== null && typeof x.name === 'string' && isSealedFileName(x.name)
      && Number.isSafeInteger(x.bytes) && x.bytes >= 0 && typeof x.sha256 === 'string' && /^[0-9a-f]{64}$/.test(x.sha256);
  });
  if (!ok) throw new Error('manifest.json does not list its files as sealed manifests do');
  return { files: files as SealedFile[] };
}

export class Syncer implements Component {
  readonly name = 'sync';
  private readonly queue: SyncQueue;
  private store: ObjectStore | undefined;
  private stopper = new AbortController();
  private wake = new AbortController();
  private loop: Promise<void> | undefined;
  private current: SyncProgress | null = null;
  private lastError: string | null = null;
  private nextAttemptAt = new Map<string, number>();
  private rate: { at: number; bytes: number }[] = [];
  private offSealed: (() => void) | undefined;

  constructor(private readonly deps: SyncerDeps) {
    this.queue = new SyncQueue({ stateDir: deps.stateDir, log: deps.log });
  }

  async start(): Promise<void> {
    this.stopper = new AbortController();
    this.store = await this.deps.openStore();
    await this.queue.open();
    // Anything sealed and not synced belongs in the queue (a crash between seal and enqueue).
    for (const incident of this.deps.book.list()) {
      if (incident.state === 'sealed') await this.enqueue(incident.id, incident.urgent);
    }
    const offSealed = this.deps.events.on('incident.sealed', ({ incident }) => {
      const found = this.deps.book.get(incident);
      void this.enqueue(incident, found?.urgent ?? true).then(() => this.poke(), (err: unknown) => this.deps.log.error({ err, incident }, 'could not queue the incident for upload'));
    });
    // A sealed incident that gained files (a note's record): only the new ones go up, the rest
    // are found stored already.
    const offGrew = this.deps.events.on('incident.grew', ({ incident }) => {
      void this.regrow(incident).then(() => this.poke(), (err: unknown) => this.deps.log.error({ err, incident }, 'could not queue the incident\'s new files for upload'));
    });
    // Disposed of before it went up (forced): nothing is left to send.
    const offDisposed = this.deps.events.on('incident.disposed', ({ incident }) => {
      if (!this.queue.get(incident)) return;
      void this.queue.remove(incident).then(() => this.deps.log.info({ incident }, 'disposed of before upload; taken off the queue'), (err: unknown) => this.deps.log.error({ err, incident }, 'could not take a disposed incident off the queue'));
    });
    this.offSealed = () => { offSealed(); offDisposed(); offGrew(); };
    this.loop = this.run().catch((err: unknown) => {
      this.deps.log.error({ err }, 'sync loop failed');
      this.deps.onFailure?.(err);
    });
  }

  async stop(): Promise<void> {
    this.offSealed?.();
    this.stopper.abort();
    this.wake.abort();
    await this.loop;
  }

  /** The `sync` command: retry everything now, permanent failures included. */
  async retryNow(): Promise<number> {
    try {
      this.store = await this.deps.openStore();
    } catch (err) {
      this.deps.log.warn({ reason: (err as Error).message }, 'upstream target could not be rebuilt; keeping the one in use');
    }
    for (const q of this.queue.list()) {
      q.permanent = false;
      q.attempts = 0;
    }
    this.nextAttemptAt.clear();
    await this.queue.save();
    this.poke();
    return this.queue.list().length;
  }

  status(): SyncStatus {
    let bytesPending = 0;
    for (const q of this.queue.list()) for (const f of q.files) if (!f.done) bytesPending += f.bytes;
    if (this.current) bytesPending = Math.max(0, bytesPending - this.currentFileSent);
    // After a restart the reason of a failure still queued (a permanent one waits for `sync`) is
    // only in the queue.
    const queuedError = this.queue.list().find((q) => q.lastError !== null);
    const lastError = this.lastError ?? (queuedError ? `${queuedError.incident}: ${queuedError.lastError}` : null);
    return { queued: this.queue.list().length, bytesPending, lastError, current: this.current };
  }

  private currentFileSent = 0;

  private poke(): void {
    this.wake.abort();
  }

  /**
   * Queues a sealed incident, read from its folder. One that cannot be read — the manifest
   * missing or unreadable, a clip gone or of another size — is set aside as damaged; the rest
   * of the sync goes on.
   */
  private async enqueue(id: string, urgent: boolean): Promise<void> {
    if (this.queue.get(id) || this.deps.damaged.has(id)) return;
    const dir = join(this.deps.sealedDir, id);
    let manifestBytes: Buffer;
    let manifest: { files: SealedFile[] };
    try {
      manifestBytes = await readFile(join(dir, 'manifest.json'));
      manifest = parseSealedManifest(manifestBytes);
      for (const f of manifest.files) {
        const size = await stat(join(dir, f.name)).then((st) => st.size, (e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return null;
          throw e;
        });
        if (size !== f.bytes) throw new Error(`${f.name} is ${size === null ? 'missing' : `${size} bytes, the manifest says ${f.bytes}`}`);
      }
    } catch (err) {
      // Missing, unreadable as a manifest, or of another size: damaged. Anything else (EIO,
      // EMFILE) may pass: it is thrown and the incident tried again.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== undefined && code !== 'ENOENT') throw err;
      await this.deps.damaged.setAside(id, code === 'ENOENT' ? 'manifest.json is missing' : (err as Error).message);
      return;
    }
    const entry: QueuedIncident = {
      incident: id, urgent, queuedAt: iso(this.deps.clock.now()),
      files: [
        ...manifest.files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: f.sha256, done: false, progress: { kind: 'none' as const } })),
        ...(await this.noteRecords(id)).map((f) => ({ ...f, done: false, progress: { kind: 'none' as const } })),
        { name: 'manifest.json', bytes: manifestBytes.length, sha256: createHash('sha256').update(manifestBytes).digest('hex'), done: false, progress: { kind: 'none' as const } },
      ],
      attempts: 0, lastError: null, permanent: false,
    };
    await this.queue.add(entry);
    this.deps.log.info({ incident: id, files: entry.files.length, bytes: entry.files.reduce((a, f) => a + f.bytes, 0), urgent }, 'queued for upload');
  }

  /** The signed note records beside a sealed incident's clips (CONTRACT §6), in order. */
  private async noteRecords(id: string): Promise<SealedFile[]> {
    const dir = join(this.deps.sealedDir, id, NOTES_DIR);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^\d+\.json$/.test(n));
    names.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
    const out: SealedFile[] = [];
    for (const n of names) {
      const bytes = await readFile(join(dir, n));
      out.push({ name: `${NOTES_DIR}/${n}`, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    return out;
  }

  /** Queues what a sealed incident gained since it was queued or synced. */
  private async regrow(id: string): Promise<void> {
    const queued = this.queue.get(id);
    if (!queued) {
      const incident = this.deps.book.get(id);
      if (incident?.state === 'sealed') await this.enqueue(id, incident.urgent);
      return;
    }
    const records = await this.noteRecords(id);
    // Taken off the queue meanwhile (synced, disposed of): queued again only if still unsynced.
    if (this.queue.get(id) !== queued) return this.regrow(id);
    const fresh = records.filter((f) => !queued.files.some((q) => q.name === f.name));
    if (fresh.length === 0) return;
    const files = fresh.map((f) => ({ ...f, done: false, progress: { kind: 'none' as const } }));
    const manifestAt = queued.files.findIndex((f) => f.name === 'manifest.json' && !f.done);
    if (manifestAt >= 0) queued.files.splice(manifestAt, 0, ...files);
    else queued.files.push(...files);
    await this.queue.save();
  }

  /** The next incident to send now, or how long to wait for one. */
  private next(): { incident: QueuedIncident } | { waitMs: number } {
    const now = this.deps.clock.now();
    let waitMs = 60_000;
    const ready = this.queue.list().filter((q) => !q.permanent);
    // Urgent first, then oldest.
    ready.sort((a, b) => Number(b.urgent) - Number(a.urgent) || a.queuedAt.localeCompare(b.queuedAt));
    for (const q of ready) {
      const retryIn = (this.nextAttemptAt.get(q.incident) ?? 0) - now;
      const windowIn = !q.urgent && this.deps.window ? msUntilWindow(new Date(now), this.deps.window) : 0;
      const wait = Math.max(retryIn, windowIn);
      if (wait <= 0) return { incident: q };
      waitMs = Math.min(waitMs, wait);
    }
    return { waitMs };
  }

  private async run(): Promise<void> {
    const sleep = this.deps.sleep ?? defaultSleep;
    while (!this.stopper.signal.aborted) {
      this.wake = new AbortController();
      const next = this.next();
      if ('waitMs' in next) {
        await sleepUntilEither(sleep, next.waitMs, this.stopper.signal, this.wake.signal);
        continue;
      }
      await this.send(next.incident);
    }
  }

  private async send(q: QueuedIncident): Promise<void> {
    const { deps } = this;
    const store = this.store!;
    const log = deps.log.child({ incident: q.incident });
    const bytesTotal = q.files.reduce((a, f) => a + f.bytes, 0);
    let bytesDone = q.files.filter((f) => f.done).reduce((a, f) => a + f.bytes, 0);
    const bucket = deps.maxRateBps ? new TokenBucket(deps.maxRateBps / 8, 256 * 1024, () => deps.clock.monotonic()) : null;
    const sleep = deps.sleep ?? defaultSleep;
    this.current = { incident: q.incident, bytesSent: bytesDone, bytesTotal, rateBps: 0, etaS: null };
    this.rate = [];
    try {
      for (const file of q.files) {
        if (file.done) continue;
        if (file.name === 'manifest.json') faultPoint('sync.before-manifest');
        const key = `${deps.keyPrefix}/${q.incident}/${file.name}`;
        const path = join(deps.sealedDir, q.incident, file.name);
        const size = await stat(path).then((s) => s.size, () => -1);
        if (size !== file.bytes && deps.book.get(q.incident)?.state === 'disposed') {
          // Disposed of meanwhile: nothing to send, nothing damaged.
          await this.queue.remove(q.incident);
          return;
        }
        if (size !== file.bytes) {
          // Changed under us since it was sealed: no upload can make it whole.
          await deps.damaged.setAside(q.incident, `${file.name} is ${size < 0 ? 'missing' : `${size} bytes`} since it was sealed (the manifest says ${file.bytes})`);
          await this.queue.remove(q.incident);
          this.nextAttemptAt.delete(q.incident);
          return;
        }
        // Already there whole (a crash after the upload, before it was recorded)?
        if (file.progress.kind === 'none' && await store.isStored(key, path, file, file.progress)) {
          log.info({ file: file.name }, 'already stored upstream');
        } else {
          this.currentFileSent = file.progress.kind === 'offset' ? file.progress.offset : file.progress.kind === 'multipart' ? file.progress.parts.length * file.progress.partSize : 0;
          const io: UploadIo = {
            pace: async (n) => {
              const wait = bucket?.take(n) ?? 0;
              if (wait > 0) await sleep(wait, this.stopper.signal);
            },
            sent: (n) => this.onSent(n, bytesDone),
            save: async (progress) => {
              file.progress = progress;
              await this.queue.save();
            },
            fault: (point) => faultPoint(point),
            note: (fields, msg) => log.debug(fields, msg),
            signal: this.stopper.signal,
          };
          await store.upload(key, path, file, file.progress, io);
          if (!await store.isStored(key, path, file, file.progress)) {
            throw new UploadError(`${key} did not verify after upload (size or ETag)`, false, 'VerifyFailed');
          }
        }
        file.done = true;
        file.progress = { kind: 'none' };
        bytesDone += file.bytes;
        this.currentFileSent = 0;
        await this.queue.save();
      }
      // Files added while these went up (a note's record) go up before it counts as synced.
      if (q.files.some((f) => !f.done)) return;
      // The book says synced only if no note record was written meanwhile (it checks in its own
      // queue, after any note before it); else the new records are queued and sent next.
      const recordsUploaded = q.files.filter((f) => f.name.startsWith(`${NOTES_DIR}/`)).length;
      const after = await deps.book.setState(q.incident, 'synced', { recordsUploaded }).catch((err: unknown) => {
        log.warn({ err }, 'incident not in the book; synced anyway');
        return null;
      });
      if (after && after.state !== 'synced') {
        await this.regrow(q.incident);
        return;
      }
      await this.queue.remove(q.incident);
      this.nextAttemptAt.delete(q.incident);
      this.lastError = null;
      log.info({ bytes: bytesTotal, to: store.describe() }, 'incident synced');
      deps.events.emit('incident.synced', { incident: q.incident });
    } catch (err) {
      if (this.stopper.signal.aborted) return;
      const e = err instanceof UploadError ? err : new UploadError((err as Error).message, false, (err as NodeJS.ErrnoException).code ?? 'Error');
      q.attempts++;
      q.lastError = e.message;
      q.permanent = e.permanent;
      this.lastError = `${q.incident}: ${e.message}`;
      await this.queue.save().catch(() => {});
      if (e.permanent) {
        log.error({ reason: e.message }, 'upload failed permanently; not retrying until `sync` is asked for');
      } else {
        const delay = backoffDelay(q.attempts, deps.backoff ?? RETRY, deps.random);
        this.nextAttemptAt.set(q.incident, deps.clock.now() + delay);
        log.warn({ reason: e.message, attempt: q.attempts, retryInMs: delay }, 'upload failed; will retry');
      }
      if (e.permanent || q.attempts === 1 || q.attempts % 10 === 0) {
        deps.events.emit('sync.failed', { incident: q.incident, reason: e.message, permanent: e.permanent });
      }
    } finally {
      this.current = null;
      this.currentFileSent = 0;
    }
  }

  private onSent(n: number, bytesDone: number): void {
    const now = this.deps.clock.monotonic();
    this.currentFileSent += n;
    this.rate.push({ at: now, bytes: n });
    while (this.rate.length > 0 && now - this.rate[0]!.at > 10_000) this.rate.shift();
    const span = Math.max(1, now - (this.rate[0]?.at ?? now)) / 1000;
    const rateBps = Math.round(this.rate.reduce((a, r) => a + r.bytes, 0) / Math.max(span, 1));
    if (this.current) {
      const bytesSent = bytesDone + this.currentFileSent;
      this.current = { ...this.current, bytesSent, rateBps, etaS: rateBps > 0 ? Math.round((this.current.bytesTotal - bytesSent) / rateBps) : null };
    }
  }
}
