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
import { callFileName, callStart, observe, tombstoneKey, type SpoolStat, type StartFrom, type Watched } from './spool.js';

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
  /** A spool file taken or set aside, durably, as it was seen (`keepSource: false` deletes it here). */
  took?(relPath: string, sourcePath: string, seen: SpoolStat): Promise<void>;
  probe?: (path: string) => Promise<AudioProbe | { notAudio: string }>;
}

export interface TakerPass { taken: string[]; rejected: string[]; waiting: number; unreadable: { path: string; code: string }[]; failed: string[] }

/** How long a source must have left the spool before its tombstone goes (a week). */
export const FORGET_AFTER_MS = 7 * 86_400_000;
const FAIL_RETRY_MAX_MS = 600_000;

export class CallTaker {
  private readonly scanner: SpoolScanner;
  private readonly watched = new Map<string, Watched>();
  /** Files whose take failed (not as a source that moved): when to try again (monotonic ms). */
  private readonly failing = new Map<string, { attempts: number; atMs: number }>();
  /** Sources gone from the spool: since when (monotonic ms). Their tombstones go after a grace. */
  private readonly missingSince = new Map<string, number>();

  constructor(private readonly deps: TakerDeps) {
    this.scanner = new SpoolScanner(deps.spool, deps.pattern);
  }

  /** Files in the spool seen but not yet taken (still being written, or settling). */
  waiting(): number {
    return this.watched.size;
  }

  /**
   * Whether a file seen but not yet taken may hold part of [startMs, endMs]: written to at or
   * after the start, and already there by the end (first seen with an mtime at most `settle`
   * past it) — a call still being recorded when the window ended, not one begun after it.
   */
  waitingFor(startMs: number, endMs: number): boolean {
    for (const w of this.watched.values()) if (w.mtimeMs >= startMs && w.firstMtimeMs <= endMs + this.deps.settleMs) return true;
    return false;
  }

  /** One pass; `full` lists every spool folder again (a periodic safety net). */
  async pass(full = false): Promise<TakerPass> {
    const { deps } = this;
    const scan = await this.scanner.pass(full);
    // A source that left the spool keeps its tombstone for FORGET_AFTER_MS: a share that was
    // unmounted or misread for a while must not have its calls taken again when it is back.
    const nowMono = deps.clock.monotonic();
    for (const gone of scan.removed) {
      this.watched.delete(gone);
      this.failing.delete(gone);
      if (!this.missingSince.has(gone)) this.missingSince.set(gone, nowMono);
    }
    for (const back of scan.added) this.missingSince.delete(back);
    const forget = [...this.missingSince].filter(([, since]) => nowMono - since >= FORGET_AFTER_MS).map(([rel]) => rel);
    if (forget.length > 0) {
      await deps.index.forget(new Set(forget));
      for (const rel of forget) this.missingSince.delete(rel);
    }
    // New files and those still watched: the rest were taken (or are taken) already.
    const candidates = new Set([...scan.added, ...this.watched.keys()]);
    const out: TakerPass = { taken: [], rejected: [], waiting: 0, unreadable: scan.unreadable, failed: [] };
    for (const rel of candidates) {
      const failed = this.failing.get(rel);
      if (failed && failed.atMs > nowMono) continue;
      const path = join(deps.spool, rel);
      const st = await stat(path).catch(() => null);
      if (!st) {
        this.watched.delete(rel);
        continue;
      }
      const seen = { size: st.size, mtimeMs: st.mtimeMs };
      if (deps.index.isTaken(tombstoneKey(rel, seen))) {
        this.watched.delete(rel);
        // Taken before a crash cut the deletion `keepSource: false` asks for: deleted now.
        await deps.took?.(rel, path, seen);
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
        this.failing.delete(rel);
        await deps.took?.(rel, path, seen);
      } catch (err) {
        if (err instanceof SourceMovedError) {
          // Still being written after all, or moved away: watched again from now.
          deps.log.warn({ source: rel, how: err.how }, `call recording ${err.how} while it was copied; nothing was kept, it is watched again`);
          this.watched.delete(rel);
          continue;
        }
        // This file only (unreadable, the disk full): the others are still taken; it is tried again later.
        const attempts = (failed?.attempts ?? 0) + 1;
        const delayMs = Math.min(FAIL_RETRY_MAX_MS, 5_000 * 2 ** (attempts - 1));
        this.failing.set(rel, { attempts, atMs: nowMono + delayMs });
        if (attempts === 1 || attempts % 10 === 0) deps.log.error({ err, source: rel, attempts, retryInMs: delayMs }, 'could not take a call recording; it is tried again later');
        out.failed.push(rel);
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
      await copyDurable(path, join(rejectedDir, partialName(name)), seen);
      await deps.index.setAside(rel, tombstone, name);
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
