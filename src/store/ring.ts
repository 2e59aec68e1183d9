// The ring buffer: the index of finished segments (rebuilt from the filesystem at start),
// the quota, and the pruner that keeps camnode's bytes within it, oldest unlocked first.
import { mkdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import { ClockWatch } from '../platform/clock-watch.js';
import type { DiskUsageReader } from '../platform/disk.js';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import { isLocked, planEviction, quotaBytes, type LockedRange } from './eviction.js';
import { scanRing, type ScanProblem } from './scan.js';
import { segmentEndMs, segmentFileName, type Segment } from './segment.js';

/** Where the ring learns what must not be deleted (the incident book serves it). */
export interface LockSource {
  lockedRanges(): readonly LockedRange[];
}

export interface RingOptions {
  /** storage.path */
  storagePath: string;
  maxUsePercent: number;
  reserveBytes: number;
  maxBytes?: number | undefined;
  maxAgeMs?: number | undefined;
  segmentSeconds: number;
}

export interface RingDeps {
  options: RingOptions;
  clock: Clock;
  log: Logger;
  events: EventBus;
  disk: DiskUsageReader;
  locks: LockSource;
  /** Segments being written right now (their bytes count against the quota). */
  inProgressFiles(): string[];
  /** camnode's bytes on this disk outside the ring: sealed clips. */
  heldOutsideRing?(): number;
  /** Room to keep free for footage already promised to a lock (an open incident's post-roll). */
  promisedBytes?(): number;
  /**
   * Whether the OS reports the clock synchronised (null: cannot tell). While it says no, nothing
   * is aged out: a clock months ahead at boot would make all footage look expired.
   */
  clockSynced?(): boolean | null;
  probeDurationMs(path: string): Promise<number | null>;
  /** How often the pruner runs besides after each finished segment. */
  pruneIntervalMs?: number;
}

export interface RingStats {
  quotaBytes: number;
  usedBytes: number;
  lockedBytes: number;
  freeBytes: number;
  segments: number;
  oldestAt: string | null;
  retainedSeconds: number;
  shortfallBytes: number;
}

interface ClockState { uncertainBeforeSeq: number }

/** Stamps before this cannot be right (a Pi without a battery clock boots in 1970). */
const EARLIEST_PLAUSIBLE_MS = Date.UTC(2024, 0, 1);

export class Ring implements Component {
  readonly name = 'ring';
  readonly root: string;
  private segments: Segment[] = [];
  private nextSeq = 1;
  private clockState: ClockState = { uncertainBeforeSeq: 0 };
  private clockWatch: ClockWatch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pruning: Promise<void> | undefined;
  private pruneAgain = false;
  private lastStats: RingStats | undefined;
  private problems: ScanProblem[] = [];
  private fullReported = false;
  /** The unlink in flight, if any: a lock cannot save a file already being unlinked. */
  private unlinking: Promise<void> | undefined;

  constructor(private readonly deps: RingDeps) {
    this.root = join(deps.options.storagePath, 'segments');
  }

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    const scan = await scanRing(this.root, this.deps.log);
    this.segments = scan.segments;
    this.nextSeq = scan.nextSeq;
    this.problems = scan.problems;
    this.clockWatch = new ClockWatch(this.deps.clock);
    await this.loadClockState();
    // After everything already in the ring, in the order they were last written.
    let adopted = 0;
    for (const p of scan.partials) if (await this.adopt(p.camera, p.path)) adopted++;
    this.deps.log.info({ segments: this.segments.length, adopted, problems: scan.problems.length, nextSeq: this.nextSeq }, 'ring index rebuilt');
    await this.prune();
    this.timer = setInterval(() => void this.requestPrune(), this.deps.pruneIntervalMs ?? 5_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.pruning;
  }

  /** Resolves once no unlink is in flight: from then on every lock in force is honoured. */
  async unlinkSettled(): Promise<void> {
    await this.unlinking?.catch(() => {});
  }

  /** Folder a camera's recorder writes into. */
  async cameraDir(camera: string): Promise<string> {
    const dir = join(this.root, camera);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** A segment ffmpeg has closed: name it into the ring and prune. */
  async finish(camera: string, file: string, durationMs: number): Promise<Segment> {
    await this.checkClock();
    const st = await stat(file);
    return this.add(camera, file, this.deps.clock.now() - durationMs, durationMs, st.size);
  }

  /**
   * A segment whose recorder died before closing it (killed, stalled, crashed agent): it plays
   * up to the cut, so it joins the ring, stamped from its last write. Returns null if empty.
   */
  async adopt(camera: string, file: string): Promise<Segment | null> {
    const st = await stat(file).catch(() => null);
    if (!st) return null;
    if (st.size === 0) {
      await unlink(file).catch(() => {});
      return null;
    }
    const probed = await this.deps.probeDurationMs(file);
    if (probed === null) this.deps.log.warn({ camera, file }, 'partial segment does not parse as video; kept in the ring');
    const durationMs = Math.round(probed ?? this.deps.options.segmentSeconds * 1000);
    const segment = await this.add(camera, file, st.mtimeMs - durationMs, durationMs, st.size);
    this.deps.log.info({ camera, seq: segment.seq, bytes: segment.bytes, durationMs }, 'partial segment adopted');
    return segment;
  }

  private async add(camera: string, file: string, startMs: number, durationMs: number, bytes: number): Promise<Segment> {
    const segment: Segment = { seq: this.nextSeq++, camera, startMs: Math.max(0, Math.round(startMs)), durationMs: Math.round(durationMs), bytes };
    await rename(file, join(this.root, camera, segmentFileName(segment)));
    this.segments.push(segment);
    void this.requestPrune();
    return segment;
  }

  pathOf(s: Segment): string {
    return join(this.root, s.camera, segmentFileName(s));
  }

  /** Finished segments of one camera overlapping [startMs, endMs), in order. */
  segmentsBetween(camera: string, startMs: number, endMs: number): Segment[] {
    return this.segments.filter((s) => s.camera === camera && s.startMs < endMs && segmentEndMs(s) > startMs);
  }

  allSegments(): readonly Segment[] {
    return this.segments;
  }

  scanProblems(): readonly ScanProblem[] {
    return this.problems;
  }

  stats(): RingStats | undefined {
    return this.lastStats;
  }

  /** Runs the pruner now (serialised: a request during a run schedules one more). */
  requestPrune(): Promise<void> {
    if (this.pruning) {
      this.pruneAgain = true;
      return this.pruning;
    }
    this.pruning = (async () => {
      try {
        do {
          this.pruneAgain = false;
          await this.prune();
        } while (this.pruneAgain);
      } catch (err) {
        this.deps.log.error({ err }, 'pruning failed');
      } finally {
        this.pruning = undefined;
      }
    })();
    return this.pruning;
  }

  private async inProgressBytes(): Promise<number> {
    let total = 0;
    for (const file of this.deps.inProgressFiles()) {
      total += await stat(file).then((s) => s.size, () => 0);
    }
    return total;
  }

  private async prune(): Promise<void> {
    const { options, clock, log, events } = this.deps;
    const disk = await this.deps.disk(options.storagePath);
    const outside = (await this.inProgressBytes()) + (this.deps.heldOutsideRing?.() ?? 0);
    const promised = this.deps.promisedBytes?.() ?? 0;
    let held = outside;
    for (const s of this.segments) held += s.bytes;
    const quota = quotaBytes({
      sizeBytes: disk.sizeBytes, usedBytes: disk.usedBytes, ownBytes: held,
      maxUsePercent: options.maxUsePercent, reserveBytes: options.reserveBytes, maxBytes: options.maxBytes,
    });
    const locks = this.deps.locks.lockedRanges();
    // Read the time, check the clock and plan in one synchronous step (checkClock marks a jump
    // before its first await): with an await in between, a clock step landing there would have
    // footage judged on a time the ring has not checked, and aged out by the jump.
    const now = clock.now();
    const clockChecked = this.checkClock();
    const plan = planEviction({
      segments: this.segments, locks, quotaBytes: quota, otherOwnBytes: outside + promised, now,
      maxAgeMs: this.deps.clockSynced?.() === false ? undefined : options.maxAgeMs, uncertainBeforeSeq: this.uncertainBeforeSeq(),
    });
    await clockChecked;
    // Segments a lock taken during the pass spared are still held.
    const sparedBytes = plan.evict.length > 0 ? await this.delete(plan.evict, plan.reasons) : 0;

    let lockedBytes = 0;
    for (const s of this.segments) if (isLocked(s, locks)) lockedBytes += s.bytes;
    const oldest = this.segments[0];
    const newest = this.segments[this.segments.length - 1];
    this.lastStats = {
      quotaBytes: quota,
      usedBytes: plan.bytesAfter + sparedBytes - promised,
      lockedBytes,
      freeBytes: disk.freeBytes,
      segments: this.segments.length,
      oldestAt: oldest ? iso(oldest.startMs) : null,
      retainedSeconds: oldest && newest ? Math.max(0, Math.round((segmentEndMs(newest) - oldest.startMs) / 1000)) : 0,
      shortfallBytes: plan.shortfallBytes,
    };
    if (plan.shortfallBytes > 0) {
      // Locked footage is never deleted to make room; say so loudly instead.
      // Reported once when it becomes full, not on every pass while it stays full.
      if (!this.fullReported) {
        log.error({ shortfallBytes: plan.shortfallBytes, lockedBytes, quotaBytes: quota }, 'storage full: locked footage leaves no room within the quota');
        events.emit('storage.full', { shortfallBytes: plan.shortfallBytes, quotaBytes: quota, usedBytes: plan.bytesAfter - promised, lockedBytes });
      }
      this.fullReported = true;
    } else {
      this.fullReported = false;
    }
  }

  /** Deletes what the plan chose; returns the bytes of those a lock spared meanwhile. */
  private async delete(evict: Segment[], reasons: ('quota' | 'age')[]): Promise<number> {
    const gone = new Set<number>();
    // One summary per camera and reason: what footage left the ring (warn: footage is deleted).
    const summary = new Map<string, { camera: string; reason: string; startMs: number; endMs: number; bytes: number; count: number }>();
    let spared = 0;
    let sparedBytes = 0;
    for (let i = 0; i < evict.length; i++) {
      const s = evict[i]!;
      // The plan read the locks before the first unlink; a lock acknowledged since (a press
      // while this pass deletes) must still win. Read again right before each one.
      if (isLocked(s, this.deps.locks.lockedRanges())) {
        spared++;
        sparedBytes += s.bytes;
        continue;
      }
      try {
        this.unlinking = unlink(this.pathOf(s));
        await this.unlinking;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.deps.log.error({ err, camera: s.camera, seq: s.seq }, 'could not delete segment');
          continue;
        }
      }
      gone.add(s.seq);
      const key = `${s.camera}/${reasons[i]}`;
      const entry = summary.get(key) ?? { camera: s.camera, reason: reasons[i]!, startMs: s.startMs, endMs: segmentEndMs(s), bytes: 0, count: 0 };
      entry.startMs = Math.min(entry.startMs, s.startMs);
      entry.endMs = Math.max(entry.endMs, segmentEndMs(s));
      entry.bytes += s.bytes;
      entry.count += 1;
      summary.set(key, entry);
    }
    this.segments = this.segments.filter((s) => !gone.has(s.seq));
    if (spared > 0) this.deps.log.info({ spared }, 'segments locked while the pruner ran were kept');
    for (const e of summary.values()) {
      this.deps.log.warn({ camera: e.camera, from: iso(e.startMs), to: iso(e.endMs), bytes: e.bytes, segments: e.count, reason: e.reason }, 'footage deleted by the ring');
      this.deps.events.emit('segments.deleted', e);
    }
    return sparedBytes;
  }

  private uncertainBeforeSeq(): number {
    return this.clockState.uncertainBeforeSeq;
  }

  private clockFile(): string {
    return join(this.root, 'clock.json');
  }

  private async loadClockState(): Promise<void> {
    try {
      const parsed = JSON.parse(await readFile(this.clockFile(), 'utf8')) as Partial<ClockState>;
      if (typeof parsed.uncertainBeforeSeq === 'number') this.clockState = { uncertainBeforeSeq: parsed.uncertainBeforeSeq };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.warn({ err }, 'clock.json unreadable; treating all stamps as trusted');
    }
    // Footage stamped in the future (the clock went back while we were down) or before any
    // plausible date (a Pi booted without a clock) cannot be aged: mark what exists uncertain.
    const now = this.deps.clock.now();
    const implausible = this.segments.some((s) => s.seq >= this.clockState.uncertainBeforeSeq
      && (segmentEndMs(s) > now + 60_000 || s.startMs < EARLIEST_PLAUSIBLE_MS));
    if (implausible) await this.markUncertain('footage stamped in the future or before 2024; its age cannot be judged');
  }

  /** Marks a jump synchronously, before the first await (prune relies on that); then persists it. */
  private async checkClock(): Promise<void> {
    const jump = this.clockWatch?.check() ?? 0;
    if (jump !== 0) await this.markUncertain(`wall clock jumped by ${Math.round(jump / 1000)} s`);
  }

  /** Everything recorded so far keeps its place in the ring but is no longer aged out. */
  private async markUncertain(why: string): Promise<void> {
    this.clockState = { uncertainBeforeSeq: this.nextSeq };
    this.deps.log.warn({ uncertainBeforeSeq: this.nextSeq }, `clock: ${why}; earlier footage is kept until space requires`);
    await writeFileDurable(this.clockFile(), JSON.stringify(this.clockState) + '\n');
  }
}
