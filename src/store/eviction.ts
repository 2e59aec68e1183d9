// The pruner's one decision, kept pure: which finished segments to delete so that what
// camnode holds stays within its quota, oldest (lowest seq) first, never a locked one.
import { iso } from '../platform/clock.js';
import { segmentEndMs, type Segment } from './segment.js';

/** A time range on one camera that the ring must not delete (served by the incident book). */
export interface LockedRange {
  camera: string;
  startMs: number;
  endMs: number;
}

export interface EvictionInput {
  /** Finished segments in ring order (ascending seq). */
  segments: readonly Segment[];
  /** Their bytes, when the caller keeps the sum (else summed here). */
  segmentBytes?: number;
  locks: readonly LockedRange[];
  /** What camnode may hold (see quotaBytes()). */
  quotaBytes: number;
  /** Bytes held outside the finished segments: segments being written, sealed clips. */
  otherOwnBytes: number;
  now: number;
  maxAgeMs?: number | undefined;
  /** Segments with seq below this have an uncertain wall-clock stamp: never aged out. */
  uncertainBeforeSeq: number;
  /**
   * Call recordings (camera `calls`, CONTRACT §8) in start order: pruned with the video, oldest
   * start first across both. Their stamps come from the phone system: `seq` is not consulted.
   */
  calls?: readonly Segment[];
}

export interface EvictionPlan {
  evict: Segment[];
  /** Reason per evicted segment, same order. */
  reasons: DeleteReason[];
  /** Own bytes once the plan is carried out. */
  bytesAfter: number;
  /** > 0 when locked footage keeps the ring above its quota by this much. */
  shortfallBytes: number;
}

export function overlaps(s: Pick<Segment, 'camera' | 'startMs' | 'durationMs'>, lock: LockedRange): boolean {
  return lock.camera === s.camera && s.startMs < lock.endMs && segmentEndMs(s) > lock.startMs;
}

export function isLocked(s: Pick<Segment, 'camera' | 'startMs' | 'durationMs'>, locks: readonly LockedRange[]): boolean {
  for (const lock of locks) if (overlaps(s, lock)) return true;
  return false;
}

/** Age is judged only on trusted stamps; uncertain ones stay until space requires. */
export function isExpired(s: Segment, input: Pick<EvictionInput, 'now' | 'maxAgeMs' | 'uncertainBeforeSeq'>): boolean {
  if (input.maxAgeMs === undefined || s.seq < input.uncertainBeforeSeq) return false;
  return input.now - segmentEndMs(s) > input.maxAgeMs;
}

/**
 * The ring's video segments (in seq order) and the calls (in start order) as one sequence, the
 * older start first where they interleave; the video keeps its own order throughout.
 */
export function* ringOrder(segments: readonly Segment[], calls: readonly Segment[]): Generator<{ s: Segment; call: boolean }> {
  let c = 0;
  for (const s of segments) {
    while (c < calls.length && calls[c]!.startMs < s.startMs) yield { s: calls[c++]!, call: true };
    yield { s, call: false };
  }
  while (c < calls.length) yield { s: calls[c++]!, call: true };
}

export function planEviction(input: EvictionInput): EvictionPlan {
  const calls = input.calls ?? [];
  let held = input.otherOwnBytes;
  if (input.segmentBytes !== undefined) held += input.segmentBytes;
  else for (const s of input.segments) held += s.bytes;
  for (const s of calls) held += s.bytes;
  const evict: Segment[] = [];
  const reasons: DeleteReason[] = [];
  for (const { s, call } of ringOrder(input.segments, calls)) {
    const overQuota = held > input.quotaBytes;
    const expired = call ? input.maxAgeMs !== undefined && input.now - segmentEndMs(s) > input.maxAgeMs : isExpired(s, input);
    if (!overQuota && input.maxAgeMs === undefined) break;
    if (!overQuota && !expired) continue;
    if (isLocked(s, input.locks)) continue;
    evict.push(s);
    // Needed for room, it is a quota deletion even when also past maxAge: the room cannot wait.
    reasons.push(overQuota ? 'quota' : 'age');
    held -= s.bytes;
  }
  return { evict, reasons, bytesAfter: held, shortfallBytes: Math.max(0, held - input.quotaBytes) };
}

export type DeleteReason = 'quota' | 'age';

/** A run of one camera's footage a pass deletes: contiguous in the ring (CONTRACT §4). */
export interface DeletedRun { from: string; to: string; segments: number; bytes: number }

/**
 * What a pass is about to delete, as the audit log states it: per reason, per camera, runs of
 * segments adjacent in that camera's footage. A segment the pass keeps (locked, or simply not
 * chosen) between two deleted ones splits the run, so a run never spans footage still there.
 * `segments` is the ring in order; `evict` a subset of it with `reasons` alongside. Pure.
 */
export function deletionRuns(segments: readonly Segment[], evict: readonly Segment[], reasons: readonly DeleteReason[]): Map<DeleteReason, Record<string, DeletedRun[]>> {
  const why = new Map<number, DeleteReason>();
  evict.forEach((s, i) => why.set(s.seq, reasons[i]!));
  const out = new Map<DeleteReason, Record<string, DeletedRun[]>>();
  // The run each camera is extending, and its reason; anything kept or of another reason ends it.
  const open = new Map<string, { reason: DeleteReason; run: DeletedRun; startMs: number; endMs: number }>();
  let left = why.size;
  for (const s of segments) {
    // Past the last segment to delete nothing more can join a run (the ring deletes its oldest).
    if (left === 0) break;
    const reason = why.get(s.seq);
    if (reason !== undefined) left--;
    const current = open.get(s.camera);
    if (reason === undefined) {
      open.delete(s.camera);
      continue;
    }
    // A segment stamped before the run's end (the clock went back between them) starts a new
    // run: a run's span must not cover footage still on disk.
    if (current && current.reason === reason && s.startMs >= current.endMs - 1_000) {
      current.run.segments += 1;
      current.run.bytes += s.bytes;
      current.startMs = Math.min(current.startMs, s.startMs);
      current.endMs = Math.max(current.endMs, segmentEndMs(s));
      current.run.from = iso(current.startMs);
      current.run.to = iso(current.endMs);
      continue;
    }
    const run: DeletedRun = { from: iso(s.startMs), to: iso(segmentEndMs(s)), segments: 1, bytes: s.bytes };
    open.set(s.camera, { reason, run, startMs: s.startMs, endMs: segmentEndMs(s) });
    const byCamera = out.get(reason) ?? {};
    (byCamera[s.camera] ??= []).push(run);
    out.set(reason, byCamera);
  }
  return out;
}

/** Bytes the cameras write in one interval, from each camera's last segment: one pass of headroom. Pure. */
export function passHeadroomBytes(lastSegments: Iterable<Pick<Segment, 'bytes' | 'durationMs'>>, intervalMs: number): number {
  let bytes = 0;
  for (const s of lastSegments) if (s.durationMs > 0) bytes += (s.bytes * intervalMs) / s.durationMs;
  return Math.round(bytes);
}

export interface QuotaInput {
  sizeBytes: number;
  usedBytes: number;
  /** Everything camnode holds on the filesystem. */
  ownBytes: number;
  maxUsePercent: number;
  reserveBytes: number;
  maxBytes?: number | undefined;
}

/**
 * CONTRACT §2: min(size × maxUsePercent/100, size − reserve) − othersUsed, capped by maxBytes.
 * Others are whatever the filesystem uses beyond camnode's own files.
 */
export function quotaBytes(q: QuotaInput): number {
  const othersUsed = Math.max(0, q.usedBytes - q.ownBytes);
  const ceiling = Math.min(Math.floor((q.sizeBytes * q.maxUsePercent) / 100), q.sizeBytes - q.reserveBytes);
  const quota = Math.max(0, ceiling - othersUsed);
  return q.maxBytes === undefined ? quota : Math.min(quota, q.maxBytes);
}
