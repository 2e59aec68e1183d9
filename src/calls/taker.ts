// One pass of taking finished recordings from the spool into the ring (CONTRACT §8): the scanner
// says what is there, each file not yet taken is watched until it has settled, then probed and
// either copied in as a call or set aside in `calls/rejected/`; either way its tombstone is
// kept, so it is taken once. A file that vanishes or changes mid-copy is reported and watched
// again, never half taken.
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.js';
import { faultPoint } from '../platform/fault.js';
import { CallIndex, partialName, REJECTED as REJECTED_DIR } from './index.js';
import { copyDurable, probeAudio, SourceMovedError, type AudioProbe } from './ingest.js';
import { SpoolScanner } from './scan.js';
import { callFileName, callStart, observe, tombstoneKey, type StartFrom, type Watched } from './spool.js';

export { REJECTED as REJECTED_DIR } from './index.js';

export interface TakerDeps {
  spool: string;
  /** `storage.path/calls`. */
  dir: string;
  pattern: string;
  settleMs: number;
  startFrom: StartFrom;
  clock: Clock;
  log: Logger;
  index: CallIndex;
  /** Told of each file set aside (the module's `calls.rejected` event). */
  rejected(r: { source: string; name: string; reason: string }): void;
  /** After a spool file was taken or set aside, durably (`keepSource: false` deletes it here). */
  took?(name: string, sourcePath: string): Promise<void>;
  probe?: (path: string) => Promise<AudioProbe | { notAudio: string }>;
}

export interface TakerPass { taken: string[]; rejected: string[]; waiting: number; unreadable: { path: string; code: string }[] }

export class CallTaker {
  private readonly scanner: SpoolScanner;
  private readonly watched = new Map<string, Watched>();
  private readonly rejectedCount = { n: 0 };

  constructor(private readonly deps: TakerDeps) {
    this.scanner = new SpoolScanner(deps.spool, deps.pattern);
  }

  /** Files in the spool seen but not yet taken (still being written, or settling). */
  waiting(): number {
    return this.watched.size;
  }

  rejectedTotal(): number {
    return this.rejectedCount.n;
  }

  /** Whether a file seen but not yet taken was last written at or after this time. */
  waitingSince(ms: number): boolean {
    for (const w of this.watched.values()) if (w.mtimeMs >= ms) return true;
    return false;
  }

  /** One pass; `full` lists every spool folder again (a periodic safety net). */
  async pass(full = false): Promise<TakerPass> {
    const { deps } = this;
    const scan = await this.scanner.pass(full);
    for (const gone of scan.removed) this.watched.delete(gone);
    if (scan.removed.length > 0) await deps.index.forget(new Set(scan.removed));
    // New files and those still watched: the rest were taken (or are taken) already.
    const candidates = new Set([...scan.added, ...this.watched.keys()]);
    const out: TakerPass = { taken: [], rejected: [], waiting: 0, unreadable: scan.unreadable };
    for (const rel of candidates) {
      const path = join(deps.spool, rel);
      const st = await stat(path).catch(() => null);
      if (!st) {
        this.watched.delete(rel);
        continue;
      }
      const seen = { size: st.size, mtimeMs: st.mtimeMs };
      if (deps.index.isTaken(tombstoneKey(rel, seen))) {
        this.watched.delete(rel);
        continue;
      }
      const nowMs = deps.clock.now();
      const { watched, finished } = observe(this.watched.get(rel), seen, nowMs, deps.settleMs);
      this.watched.set(rel, watched);
      if (!finished) continue;
      try {
        const r = await this.take(rel, path, seen);
        (r.rejected ? out.rejected : out.taken).push(r.name);
        this.watched.delete(rel);
        await deps.took?.(r.name, path);
      } catch (err) {
        if (!(err instanceof SourceMovedError)) throw err;
        // Still being written after all, or moved away: watched again from now.
        deps.log.warn({ source: rel, how: err.how }, `call recording ${err.how} while it was copied; nothing was kept, it is watched again`);
        this.watched.delete(rel);
      }
    }
    out.waiting = this.watched.size;
    return out;
  }

  private async take(rel: string, path: string, seen: { size: number; mtimeMs: number }): Promise<{ name: string; rejected: boolean }> {
    const { deps } = this;
    const tombstone = tombstoneKey(rel, seen);
    const probe = seen.size === 0 ? { notAudio: 'empty file' } : await (deps.probe ?? probeAudio)(path);
    if ('notAudio' in probe) {
      const rejectedDir = join(deps.dir, REJECTED_DIR);
      await mkdir(rejectedDir, { recursive: true });
      const name = callFileName(seen.mtimeMs, rel, (n) => existsSync(join(rejectedDir, n)));
      await copyDurable(path, join(rejectedDir, name), seen);
      await deps.index.setAside(rel, tombstone);
      this.rejectedCount.n++;
      deps.log.warn({ source: rel, name, reason: probe.notAudio }, 'a spool file is not audio: set aside in calls/rejected');
      deps.rejected({ source: rel, name, reason: probe.notAudio });
      return { name, rejected: true };
    }
    const { startMs, fromName } = callStart(deps.startFrom, rel, seen.mtimeMs, probe.durationMs);
    if (deps.startFrom.kind === 'name' && !fromName) deps.log.warn({ source: rel }, 'calls.startFrom did not match this file\'s path: its start is taken from its mtime');
    const name = callFileName(startMs, rel, (n) => deps.index.has(n));
    const copied = await copyDurable(path, join(deps.dir, partialName(name)), seen, { afterChunk: async () => faultPoint('calls.copying') });
    await deps.index.took({ name, startMs, durationMs: probe.durationMs, bytes: copied.bytes, sha256: copied.sha256, codec: probe.codec, source: rel, tombstone });
    deps.log.info({ source: rel, name, durationMs: probe.durationMs, codec: probe.codec }, 'call recording taken into the ring');
    return { name, rejected: false };
  }
}
