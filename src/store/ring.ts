// The ring buffer: the index of finished segments (rebuilt from the filesystem at start),
// the quota, and the pruner that keeps camnode's bytes within it, oldest unlocked first.
import { mkdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import { ClockSteps, type StepSource } from '../platform/clock-steps.js';
import type { DiskUsageReader } from '../platform/disk.js';
import { writeFileDurable } from '../platform/durable.js';
import { faultPoint } from '../platform/fault.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import { deletionRuns, isLocked, passHeadroomBytes, planEviction, quotaBytes, type DeletedRun, type DeleteReason, type LockedRange } from './eviction.js';
import { CameraIndex } from './camera-index.js';
import { scanRing, type ScanProblem } from './scan.js';
import { segmentEndMs, segmentFileName, type Segment } from './segment.js';
import { correctionMs, EMPTY_STAMPS, parseStamps, stampClock, withoutBelow, withStep, withUnsynced, type StampClock, type StampState } from './stamps.js';

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
  /** The clock's steps (shared with the incident book); a private watcher when absent. */
  steps?: StepSource | undefined;
  probeDurationMs(path: string): Promise<number | null>;
  /**
   * Writes a pass's `delete` entry for one reason (CONTRACT §4), before any of its unlinks. A
   * failure is logged and the pass goes on: the recorders need the room more than the entry.
   */
  auditDeletion(entry: { reason: DeleteReason; cameras: Record<string, DeletedRun[]> }): Promise<void>;
  /**
   * How often the pruner runs (default 30 s); between passes it runs at once only when the
   * room left falls under what the cameras write in one interval.
   */
  pruneIntervalMs?: number | undefined;
  /** The phone system's call recordings in the ring (CONTRACT §8): counted in the quota, pruned with the video. */
  calls?: CallShelf | undefined;
}

/** Calls as the ring sees them: segments of camera `calls` in start order (their `seq` is the shelf's own). */
export interface CallShelf {
  calls(): readonly Segment[];
  /** Those overlapping [startMs, endMs). */
  between(startMs: number, endMs: number): Segment[];
  pathOf(call: Segment): string;
  /** A pruned call: out of the shelf's journal, then its file unlinked. */
  remove(call: Segment): Promise<void>;
}

export const DEFAULT_PRUNE_INTERVAL_MS = 30_000;

/** The camera id of the phone system's call recordings (CONTRACT §8). */
export const CALLS_CAMERA = 'calls';

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

/** clock.json is rewritten at most this often for unsynced stamps alone (a step writes it at once). */
const STAMPS_SAVE_EVERY_MS = 60_000;

/** Stamps before this cannot be right (a Pi without a battery clock boots in 1970). */
const EARLIEST_PLAUSIBLE_MS = Date.UTC(2024, 0, 1);

export class Ring implements Component {
  readonly name = 'ring';
  readonly root: string;
  private segments: Segment[] = [];
  /** What the finished segments hold, kept as they come and go (a pass must not walk them all to know). */
  private segmentBytes = 0;
  /** The same segments per camera, for one camera's window. */
  private readonly byCamera = new CameraIndex();
  private nextSeq = 1;
  private stamps: StampState = EMPTY_STAMPS;
  private stampsDirty = false;
  private stampsSavedAt = -Infinity;
  private stampsSaving: Promise<void> = Promise.resolve();
  private readonly steps: StepSource;
  private started = false;
  /** Settles once the last step taken in is on disk: no footage stamped after it is named before. */
  private stepDurable: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private pruning: Promise<void> | undefined;
  private pruneAgain = false;
  private lastStats: RingStats | undefined;
  private problems: ScanProblem[] = [];
  private fullReported = false;
  /** The unlink in flight, if any: a lock cannot save a file already being unlinked. */
  private unlinking: Promise<void> | undefined;
  /** `delete` entries not yet in the audit log (it could not be written), oldest first. */
  private readonly owedDeletions: { reason: DeleteReason; cameras: Record<string, DeletedRun[]> }[] = [];
  /** Bytes finished since the last pass, and each camera's last segment (their rate). */
  private addedSincePass = 0;
  /** camnode's bytes as the last pass measured them. */
  private usedAtPass = 0;
  private readonly lastByCamera = new Map<string, Segment>();

  private readonly offStep: () => void;

  constructor(private readonly deps: RingDeps) {
    this.root = join(deps.options.storagePath, 'segments');
    this.steps = deps.steps ?? new ClockSteps({ clock: deps.clock, stateDir: this.root, log: deps.log });
    // Before start the index is not built: start() takes in the steps it missed.
    this.offStep = this.steps.onStep((deltaMs, step) => { if (this.started) this.applyStep(deltaMs, step.n); });
  }

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    const scan = await scanRing(this.root, this.deps.log);
    this.segments = scan.segments;
    this.byCamera.reset(this.segments);
    this.segmentBytes = this.segments.reduce((n, seg) => n + seg.bytes, 0);
    this.nextSeq = scan.nextSeq;
    this.problems = scan.problems;
    await this.loadClockState();
    // The same boot: steps this index has not taken in yet (found while the agent was down, or
    // told before a crash let clock.json be written) correct what was recorded before them —
    // before the partials are adopted, which were stamped by the kernel's clock as it was then.
    const bootId = this.steps.bootId();
    const sameBoot = bootId !== null && this.stamps.boot?.id === bootId;
    this.started = true;
    if (sameBoot) for (const step of this.steps.stepsAfter(this.stamps.boot!.applied ?? 0)) this.applyStep(step.deltaMs, step.n);
    // After everything already in the ring, in the order they were last written.
    let adopted = 0;
    for (const p of scan.partials) if (await this.adopt(p.camera, p.path)) adopted++;
    // A new boot starts a new time base: a step from now on corrects only what it records.
    if (!sameBoot) this.stamps = { ...this.stamps, boot: { id: bootId ?? '', firstSeq: this.nextSeq, applied: this.steps.stepCount() } };
    // A full or read-only disk must not stop the recording: clock.json is written again later.
    await this.saveStamps().catch((err: unknown) => {
      this.deps.log.warn({ err: (err as Error).message }, 'clock.json not saved yet; trying again with the next prune pass');
    });
    this.deps.log.info({ segments: this.segments.length, adopted, problems: scan.problems.length, nextSeq: this.nextSeq }, 'ring index rebuilt');
    await this.prune();
    this.timer = setInterval(() => void this.requestPrune(), this.intervalMs());
    this.timer.unref();
  }

  async stop(): Promise<void> {
    // A ring rebuilt by a pushed config leaves the shared watcher of steps to the new one.
    this.offStep();
    clearInterval(this.timer);
    this.timer = undefined;
    await this.pruning;
    if (this.stampsDirty) await this.saveStamps().catch((err: unknown) => this.deps.log.warn({ err }, 'clock.json not saved at stop'));
  }

  /**
   * New limits from a pushed config (CONTRACT §9): the next pass plans with them; one is asked
   * for now, so a smaller quota frees its room at once.
   */
  setLimits(limits: Pick<RingOptions, 'maxUsePercent' | 'reserveBytes' | 'maxBytes' | 'maxAgeMs'>): Promise<void> {
    this.deps.options = { ...this.deps.options, ...limits };
    return this.requestPrune();
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
    // A step just taken in is durable before footage stamped after it gets a name: a crash then
    // cannot leave that footage inside the step's range.
    await this.stepDurable.catch(() => {});
    // In the index at once, with its seq: a step taken in during the rename corrects it too
    // (pathOf names the file by its stamp whatever the correction).
    const segment: Segment = { seq: this.nextSeq++, camera, startMs: Math.max(0, Math.round(startMs)), durationMs: Math.round(durationMs), bytes };
    const name = segmentFileName(segment);
    this.segments.push(segment);
    this.byCamera.push(segment);
    this.segmentBytes += segment.bytes;
    try {
      await rename(file, join(this.root, camera, name));
    } catch (err) {
      this.segments.splice(this.segments.indexOf(segment), 1);
      this.byCamera.remove(segment);
      this.segmentBytes -= segment.bytes;
      throw err;
    }
    if (this.deps.clockSynced?.() !== true) {
      this.stamps = withUnsynced(this.stamps, segment.seq);
      this.stampsDirty = true;
    }
    this.lastByCamera.set(camera, segment);
    this.addedSincePass += segment.bytes;
    if (this.lastStats) this.lastStats = { ...this.lastStats, usedBytes: this.usedAtPass + this.addedSincePass, ...this.spanStats() };
    if (this.roomShort()) void this.requestPrune();
    return segment;
  }

  private intervalMs(): number {
    return this.deps.pruneIntervalMs ?? DEFAULT_PRUNE_INTERVAL_MS;
  }

  /** The index's span now (between passes too: the state shows footage as it is recorded). */
  private spanStats(): Pick<RingStats, 'segments' | 'oldestAt' | 'retainedSeconds'> {
    const oldest = this.segments[0];
    const newest = this.segments[this.segments.length - 1];
    return {
      segments: this.segments.length,
      oldestAt: oldest ? iso(oldest.startMs) : null,
      retainedSeconds: oldest && newest ? Math.max(0, Math.round((segmentEndMs(newest) - oldest.startMs) / 1000)) : 0,
    };
  }

  /** Whether the room the last pass left is less than one more interval of recording. */
  private roomShort(): boolean {
    const stats = this.lastStats;
    if (!stats) return true;
    const room = stats.quotaBytes - this.usedAtPass - this.addedSincePass;
    return room < passHeadroomBytes(this.lastByCamera.values(), this.intervalMs());
  }

  /** The segment's file: named by its stamp, which a later clock step may have corrected in the index. */
  pathOf(s: Segment): string {
    if (s.camera === CALLS_CAMERA && this.deps.calls) return this.deps.calls.pathOf(s);
    return join(this.root, s.camera, segmentFileName({ seq: s.seq, startMs: s.startMs - correctionMs(s.seq, this.stamps.steps), durationMs: s.durationMs }));
  }

  /** Whether a segment's times were stamped with a synced clock, or while unsynced, or corrected for a step. */
  clockOf(s: Pick<Segment, 'seq'>): StampClock {
    return stampClock(s.seq, this.stamps);
  }

  /** Finished segments of one camera overlapping [startMs, endMs), in order. */
  segmentsBetween(camera: string, startMs: number, endMs: number): Segment[] {
    if (camera === CALLS_CAMERA && this.deps.calls) return this.deps.calls.between(startMs, endMs);
    return this.byCamera.between(camera, startMs, endMs);
  }

  /** Bytes of the finished segments any of these ranges would keep. */
  bytesLockedBy(ranges: readonly LockedRange[]): number {
    // Each segment once, however many ranges keep it.
    const kept = new Set<Segment>();
    for (const r of ranges) for (const s of this.segmentsBetween(r.camera, r.startMs, r.endMs)) kept.add(s);
    let bytes = 0;
    for (const s of kept) bytes += s.bytes;
    return bytes;
  }

  /** Cameras with footage in the ring (removed ones too, while it holds theirs). */
  cameraIds(): string[] {
    const ids = this.byCamera.cameraIds();
    return (this.deps.calls?.calls().length ?? 0) > 0 ? [...ids, CALLS_CAMERA] : ids;
  }

  /** The call recordings in the ring (camera `calls`), in start order. */
  calls(): readonly Segment[] {
    return this.deps.calls?.calls() ?? [];
  }

  /** The end of a camera's newest finished segment, or null. */
  newestEndOf(camera: string): number | null {
    return this.byCamera.newestEndOf(camera);
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
    this.pruneStartedAt = this.deps.clock.monotonic();
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
        this.pruneStartedAt = undefined;
      }
    })();
    return this.pruning;
  }

  /** How long the prune pass under way has run (0 when none is): one that never ends is wedged. */
  pruneRunningForMs(): number {
    return this.pruneStartedAt === undefined ? 0 : this.deps.clock.monotonic() - this.pruneStartedAt;
  }

  private pruneStartedAt: number | undefined;

  private async inProgressBytes(): Promise<number> {
    let total = 0;
    for (const file of this.deps.inProgressFiles()) {
      total += await stat(file).then((s) => s.size, () => 0);
    }
    return total;
  }

  private async prune(): Promise<void> {
    const { options, clock, log, events } = this.deps;
    this.addedSincePass = 0;
    const disk = await this.deps.disk(options.storagePath);
    const outside = (await this.inProgressBytes()) + (this.deps.heldOutsideRing?.() ?? 0);
    const promised = this.deps.promisedBytes?.() ?? 0;
    const calls = this.deps.calls?.calls() ?? [];
    const held = outside + this.segmentBytes + calls.reduce((n, c) => n + c.bytes, 0);
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
      segments: this.segments, segmentBytes: this.segmentBytes, locks, quotaBytes: quota, otherOwnBytes: outside + promised, now,
      maxAgeMs: this.deps.clockSynced?.() === false ? undefined : options.maxAgeMs, uncertainBeforeSeq: this.uncertainBeforeSeq(), calls,
    });
    await clockChecked;
    // Segments a lock taken during the pass spared are still held.
    const sparedBytes = plan.evict.length > 0 ? await this.delete(plan.evict, plan.reasons, calls) : 0;

    const lockedBytes = this.bytesLockedBy(locks);
    const oldest = this.segments[0];
    const pruned = withoutBelow(this.stamps, oldest?.seq ?? this.nextSeq);
    if (pruned !== this.stamps) [this.stamps, this.stampsDirty] = [pruned, true];
    if (this.stampsDirty && clock.monotonic() - this.stampsSavedAt > STAMPS_SAVE_EVERY_MS) {
      await this.saveStamps().catch((err: unknown) => log.warn({ err }, 'clock.json not saved'));
    }
    this.usedAtPass = plan.bytesAfter + sparedBytes - promised;
    this.lastStats = {
      quotaBytes: quota,
      usedBytes: this.usedAtPass + this.addedSincePass,
      lockedBytes,
      freeBytes: disk.freeBytes,
      ...this.spanStats(),
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

  /**
   * Deletes what the plan chose: first the pass's `delete` entries (one per reason, contiguous
   * runs per camera), then the unlinks. Returns the bytes of those a lock spared meanwhile.
   */
  private async delete(planned: Segment[], plannedReasons: DeleteReason[], calls: readonly Segment[]): Promise<number> {
    const { log } = this.deps;
    // The plan read the locks before its awaits; a lock acknowledged since (a press while this
    // pass runs) must still win. Read again before the entry, and before each unlink.
    const evict: Segment[] = [];
    const reasons: DeleteReason[] = [];
    planned.forEach((s, i) => {
      if (!isLocked(s, this.deps.locks.lockedRanges())) {
        evict.push(s);
        reasons.push(plannedReasons[i]!);
      }
    });
    let spared = planned.length - evict.length;
    // Entries an earlier pass could not write go first (their footage is gone already).
    while (this.owedDeletions.length > 0) {
      try {
        await this.deps.auditDeletion(this.owedDeletions[0]!);
        this.owedDeletions.shift();
      } catch {
        break;
      }
    }
    // Video runs by the ring's order; calls (their seq is the shelf's own) are runs of their own,
    // adjacent in start order.
    const part = (call: boolean): [Segment[], DeleteReason[]] => {
      const at = evict.flatMap((x, i) => ((x.camera === CALLS_CAMERA && calls.length > 0) === call ? [i] : []));
      return [at.map((i) => evict[i]!), at.map((i) => reasons[i]!)];
    };
    const runs = deletionRuns(this.segments, ...part(false));
    if (calls.length > 0) {
      for (const [reason, cameras] of deletionRuns(calls, ...part(true))) runs.set(reason, { ...(runs.get(reason) ?? {}), ...cameras });
    }
    let ageWaits = false;
    for (const [reason, cameras] of runs) {
      try {
        await this.deps.auditDeletion({ reason, cameras });
      } catch (err) {
        if (reason === 'age') {
          // Nothing needs that room: aged footage waits until its deletion can be audited.
          ageWaits = true;
          log.error({ err }, 'could not audit the footage aged out; it is kept until the audit log can be written');
        } else {
          // The cameras need the room: deleted anyway, the entry kept and written first thing.
          this.owedDeletions.push({ reason, cameras });
          log.error({ err, reason }, 'could not audit the footage this pass deletes; deleting anyway (the cameras need the room), the entry is written once the log can be');
        }
      }
    }
    if (ageWaits) {
      for (let i = evict.length - 1; i >= 0; i--) {
        if (reasons[i] === 'age') {
          evict.splice(i, 1);
          reasons.splice(i, 1);
        }
      }
    }
    const gone = new Set<Segment>();
    // Bytes still on disk of what was planned (locked since, or aged footage waiting for the log).
    let sparedBytes = planned.filter((s) => !evict.includes(s)).reduce((n, s) => n + s.bytes, 0);
    let bytes = 0;
    const byReason: Partial<Record<DeleteReason, number>> = {};
    for (let i = 0; i < evict.length; i++) {
      const s = evict[i]!;
      if (isLocked(s, this.deps.locks.lockedRanges())) {
        // Named in the entry just written; the lock's own entry follows it in the log.
        spared++;
        sparedBytes += s.bytes;
        continue;
      }
      try {
        this.unlinking = s.camera === CALLS_CAMERA && this.deps.calls ? this.deps.calls.remove(s) : unlink(this.pathOf(s));
        await this.unlinking;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          log.error({ err, camera: s.camera, seq: s.seq }, 'could not delete segment');
          continue;
        }
      }
      faultPoint('prune.unlinked');
      // Out of the index at once: what the index holds is what the files hold, for a hold's
      // `missing` read between two unlinks of one pass.
      const at = this.segments.indexOf(s);
      if (at >= 0) {
        this.segments.splice(at, 1);
        this.segmentBytes -= s.bytes;
      }
      this.byCamera.remove(s);
      gone.add(s);
      bytes += s.bytes;
      byReason[reasons[i]!] = (byReason[reasons[i]!] ?? 0) + 1;
    }
    if (spared > 0) log.info({ spared }, 'segments locked while the pruner ran were kept');
    // Routine: one line per pass (the audit log has the runs).
    if (gone.size > 0) {
      const cameras = [...new Set([...gone].map((s) => s.camera))];
      log.info({ segments: gone.size, bytes, reasons: byReason, cameras }, 'footage deleted by the ring');
    }
    return sparedBytes;
  }

  private uncertainBeforeSeq(): number {
    return this.stamps.uncertainBeforeSeq;
  }

  private clockFile(): string {
    return join(this.root, 'clock.json');
  }

  /** clock.json, and the corrections it holds applied to the index just scanned. */
  private async loadClockState(): Promise<void> {
    try {
      this.stamps = parseStamps(JSON.parse(await readFile(this.clockFile(), 'utf8')));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.warn({ err }, 'clock.json unreadable; treating all stamps as trusted');
    }
    for (const s of this.segments) s.startMs += correctionMs(s.seq, this.stamps.steps);
    this.byCamera.restamped();
    // Footage stamped in the future (the clock went back while we were down) or before any
    // plausible date (a Pi booted without a clock) cannot be aged: mark what exists uncertain.
    const now = this.deps.clock.now();
    const implausible = this.segments.some((s) => s.seq >= this.stamps.uncertainBeforeSeq
      && (segmentEndMs(s) > now + 60_000 || s.startMs < EARLIEST_PLAUSIBLE_MS));
    if (implausible) this.markUncertain('footage stamped in the future or before 2024; its age cannot be judged');
  }

  /** Asks whether the clock stepped; a step is applied (synchronously, by the listener) before this returns. */
  private async checkClock(): Promise<void> {
    if (this.steps.check() !== 0) await this.stepDurable;
  }

  /**
   * Step `n` of this boot (whoever checked the clock): this boot's footage so far is corrected
   * in the index, once — a step already taken in (a restart after a crash) is skipped — and
   * written at once.
   */
  private applyStep(deltaMs: number, n: number): void {
    if (n <= (this.stamps.boot?.applied ?? 0)) return;
    const before = this.stamps;
    this.stamps = withStep(this.stamps, deltaMs, this.nextSeq);
    const step = this.stamps.steps.length > before.steps.length ? this.stamps.steps[this.stamps.steps.length - 1]! : undefined;
    if (step) for (const s of this.segments) if (s.seq >= step.fromSeq && s.seq < step.toSeq) s.startMs += deltaMs;
    this.byCamera.restamped();
    if (this.stamps.boot) this.stamps = { ...this.stamps, boot: { ...this.stamps.boot, applied: n } };
    this.deps.log.warn({ stepMs: deltaMs, step: n, corrected: step ? step.toSeq - step.fromSeq : 0 }, 'clock step: the stamps of this boot\'s footage so far are corrected for window membership');
    this.markUncertain(`wall clock jumped by ${Math.round(deltaMs / 1000)} s`);
    this.stepDurable = this.saveStamps().catch((err: unknown) => this.deps.log.error({ err }, 'clock.json not saved after a step'));
  }

  /** Everything recorded so far keeps its place in the ring but is no longer aged out. */
  private markUncertain(why: string): void {
    this.stamps = { ...this.stamps, uncertainBeforeSeq: this.nextSeq };
    this.stampsDirty = true;
    this.deps.log.warn({ uncertainBeforeSeq: this.nextSeq }, `clock: ${why}; earlier footage is kept until space requires`);
  }

  /** Writes clock.json (serialised: the latest state wins, never two writers on one file). */
  private saveStamps(): Promise<void> {
    this.stampsDirty = false;
    this.stampsSavedAt = this.deps.clock.monotonic();
    const run = this.stampsSaving.catch(() => {}).then(() => writeFileDurable(this.clockFile(), JSON.stringify(this.stamps) + '\n'))
      .catch((err: unknown) => {
        this.stampsDirty = true; // written again with a later pass
        throw err;
      });
    this.stampsSaving = run;
    return run;
  }
}
