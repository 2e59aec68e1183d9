// The pruner's one decision, kept pure: which finished segments to delete so that what
// camnode holds stays within its quota, oldest (lowest seq) first, never a locked one.
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
  locks: readonly LockedRange[];
  /** What camnode may hold (see quotaBytes()). */
  quotaBytes: number;
  /** Bytes held outside the finished segments: segments being written, sealed clips. */
  otherOwnBytes: number;
  now: number;
  maxAgeMs?: number | undefined;
  /** Segments with seq below this have an uncertain wall-clock stamp: never aged out. */
  uncertainBeforeSeq: number;
}

export interface EvictionPlan {
  evict: Segment[];
  /** Reason per evicted segment, same order. */
  reasons: ('quota' | 'age')[];
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

export function planEviction(input: EvictionInput): EvictionPlan {
  let held = input.otherOwnBytes;
  for (const s of input.segments) held += s.bytes;
  const evict: Segment[] = [];
  const reasons: ('quota' | 'age')[] = [];
  for (const s of input.segments) {
    const overQuota = held > input.quotaBytes;
    const expired = isExpired(s, input);
    if (!overQuota && input.maxAgeMs === undefined) break;
    if (!overQuota && !expired) continue;
    if (isLocked(s, input.locks)) continue;
    evict.push(s);
    reasons.push(expired ? 'age' : 'quota');
    held -= s.bytes;
  }
  return { evict, reasons, bytesAfter: held, shortfallBytes: Math.max(0, held - input.quotaBytes) };
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
