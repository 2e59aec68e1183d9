// What footage the ring holds, as people ask for it (CONTRACT §6): per camera, the ranges
// recorded, the holes between them, and what is locked or kept as clips. Pure: built from the
// ring's in-memory index, never from the disk, so that a timeline of months answers at once.
import { iso } from '../platform/clock.js';
import { segmentEndMs, type Segment } from './segment.js';

export interface Span { startMs: number; endMs: number }
export interface TimeRange { start: string; end: string }
export interface IncidentRange extends TimeRange { incident: string }

export interface CameraFootage {
  id: string;
  oldest: string | null;
  newest: string | null;
  bytes: number;
  ranges: TimeRange[];
  locked: IncidentRange[];
  kept: IncidentRange[];
  truncated: boolean;
}

/** At most this many ranges per camera in a reply (CONTRACT §6). */
export const MAX_RANGES = 1_000;

/** An incident's span on some cameras: locked (not yet sealed) or kept (sealed, held as clips). */
export interface IncidentSpan extends Span { incident: string; cameras: readonly string[] }

export interface FootageInput {
  /** The ring's finished segments (any order). */
  segments: readonly Segment[];
  /** Cameras to list even without footage (the configured ones), in order. */
  cameras: readonly string[];
  /** Only this camera. */
  camera?: string | undefined;
  fromMs?: number | undefined;
  toMs?: number | undefined;
  /** A hole longer than this starts a new range (1.5 segment lengths). */
  joinWithinMs: number;
  locked: readonly IncidentSpan[];
  kept: readonly IncidentSpan[];
  maxRanges?: number;
}

/**
 * Spans covered by segments (sorted by start), merged where the hole between them is at most
 * `joinWithinMs`. Pure.
 */
export function coveredSpans(segments: readonly Pick<Segment, 'startMs' | 'durationMs'>[], joinWithinMs: number): Span[] {
  const spans: Span[] = [];
  let current: Span | undefined;
  for (const s of segments) {
    const end = segmentEndMs(s);
    if (current && s.startMs - current.endMs <= joinWithinMs) {
      current.endMs = Math.max(current.endMs, end);
      continue;
    }
    current = { startMs: s.startMs, endMs: end };
    spans.push(current);
  }
  return spans;
}

/**
 * The parts of [fromMs, toMs] no segment covers (segments sorted by start), ignoring seams of at
 * most `toleranceMs` between consecutive segments (their stamps are read when each closes). Pure.
 */
export function holesIn(segments: readonly Pick<Segment, 'startMs' | 'durationMs'>[], fromMs: number, toMs: number, toleranceMs: number): Span[] {
  const holes: Span[] = [];
  let covered = fromMs;
  for (const s of segments) {
    if (s.startMs >= toMs) break;
    if (s.startMs - covered > toleranceMs) holes.push({ startMs: covered, endMs: Math.min(s.startMs, toMs) });
    covered = Math.max(covered, segmentEndMs(s));
  }
  if (toMs - covered > toleranceMs) holes.push({ startMs: covered, endMs: toMs });
  return holes;
}

/**
 * How far apart two consecutive segments may be stamped and still meet: each is stamped when it
 * closes, so neighbours sit a few ms apart; a pruned or unrecorded segment leaves a whole one.
 */
export function seamToleranceMs(segmentSeconds: number): number {
  return Math.max(250, Math.min(1_000, segmentSeconds * 500));
}

/** A camera's segments in start order (the ring is in seq order, which a clock step can break). */
export function byCamera(segments: readonly Segment[], fromMs = -Infinity, toMs = Infinity): Map<string, Segment[]> {
  const out = new Map<string, Segment[]>();
  for (const s of segments) {
    if (s.startMs >= toMs || segmentEndMs(s) <= fromMs) continue;
    let list = out.get(s.camera);
    if (!list) out.set(s.camera, (list = []));
    list.push(s);
  }
  for (const list of out.values()) {
    let sorted = true;
    for (let i = 1; i < list.length && sorted; i++) if (list[i]!.startMs < list[i - 1]!.startMs) sorted = false;
    if (!sorted) list.sort((a, b) => a.startMs - b.startMs);
  }
  return out;
}

function incidentRanges(spans: readonly IncidentSpan[], camera: string, fromMs: number, toMs: number): IncidentRange[] {
  return spans
    .filter((s) => s.cameras.includes(camera) && s.startMs < toMs && s.endMs > fromMs)
    .sort((a, b) => a.startMs - b.startMs)
    .map((s) => ({ start: iso(s.startMs), end: iso(s.endMs), incident: s.incident }));
}

/** The `footage` reply (CONTRACT §6). Pure. */
export function footageOf(input: FootageInput): { cameras: CameraFootage[] } {
  const fromMs = input.fromMs ?? -Infinity;
  const toMs = input.toMs ?? Infinity;
  const max = input.maxRanges ?? MAX_RANGES;
  const grouped = byCamera(input.segments, fromMs, toMs);
  // The configured cameras first, then any others with footage (removed from the config since).
  const ids = [...input.cameras, ...[...grouped.keys()].filter((c) => !input.cameras.includes(c)).sort()];
  const cameras: CameraFootage[] = [];
  for (const id of ids) {
    if (input.camera !== undefined && id !== input.camera) continue;
    const list = grouped.get(id) ?? [];
    let bytes = 0;
    let newestMs = -Infinity;
    for (const s of list) {
      bytes += s.bytes;
      newestMs = Math.max(newestMs, segmentEndMs(s));
    }
    const spans = coveredSpans(list, input.joinWithinMs);
    cameras.push({
      id,
      oldest: list.length > 0 ? iso(list[0]!.startMs) : null,
      newest: list.length > 0 ? iso(newestMs) : null,
      bytes,
      // The newest when there are too many: footage is mostly asked for soon after.
      ranges: spans.slice(Math.max(0, spans.length - max)).map((r) => ({ start: iso(r.startMs), end: iso(r.endMs) })),
      locked: incidentRanges(input.locked, id, fromMs, toMs),
      kept: incidentRanges(input.kept, id, fromMs, toMs),
      truncated: spans.length > max,
    });
  }
  return { cameras };
}

/** Merges spans (sorted or not) that touch or overlap. Pure. */
export function mergeSpans(spans: readonly Span[]): Span[] {
  const sorted = [...spans].sort((a, b) => a.startMs - b.startMs);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.startMs <= last.endMs) last.endMs = Math.max(last.endMs, s.endMs);
    else out.push({ ...s });
  }
  return out;
}
