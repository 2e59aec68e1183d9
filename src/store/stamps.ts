// How far each segment's stamp can be trusted, kept in segments/clock.json beside the footage.
// A segment's file name holds the wall time it was stamped with; after a clock step that time
// is off by the step. Rather than rename thousands of files, the ring keeps the steps as seq
// ranges and corrects the stamps in its index: window membership, gaps and clip spans all use
// corrected time, the time base of the clock now. Kept pure.

/** Segments with fromSeq ≤ seq < toSeq were stamped `deltaMs` behind the current time base. */
export interface StampStep { fromSeq: number; toSeq: number; deltaMs: number }
export interface SeqRange { fromSeq: number; toSeq: number }

export interface StampState {
  /** Segments below this seq are never aged out (their age cannot be judged). */
  uncertainBeforeSeq: number;
  /**
   * The boot the latest segments were recorded in, its first seq (a step corrects only its own
   * boot's footage), and the number of the last of its steps taken in (see ClockSteps).
   */
  boot?: { id: string; firstSeq: number; applied?: number } | undefined;
  steps: StampStep[];
  /** Segments stamped while the OS did not say its clock was synchronised. */
  unsynced: SeqRange[];
}

/** How a file's times were stamped (CONTRACT §5 `files[].clock`). */
export type StampClock = 'synced' | 'unsynced' | 'stepped';

export const EMPTY_STAMPS: StampState = { uncertainBeforeSeq: 0, steps: [], unsynced: [] };

const inside = (seq: number, r: SeqRange): boolean => r.fromSeq <= seq && seq < r.toSeq;

/** What to add to a segment's stamp to put it in the current time base. */
export function correctionMs(seq: number, steps: readonly StampStep[]): number {
  let ms = 0;
  for (const s of steps) if (inside(seq, s)) ms += s.deltaMs;
  return ms;
}

/** The state after a step of `deltaMs`, which corrects this boot's segments so far ([firstSeq, nextSeq)). */
export function withStep(state: StampState, deltaMs: number, nextSeq: number): StampState {
  const fromSeq = state.boot?.firstSeq ?? nextSeq;
  if (fromSeq >= nextSeq) return state;
  return { ...state, steps: [...state.steps, { fromSeq, toSeq: nextSeq, deltaMs }] };
}

/** Marks one seq as stamped while unsynchronised (runs of seqs merge). */
export function withUnsynced(state: StampState, seq: number): StampState {
  const last = state.unsynced[state.unsynced.length - 1];
  if (last && last.toSeq === seq) return { ...state, unsynced: [...state.unsynced.slice(0, -1), { fromSeq: last.fromSeq, toSeq: seq + 1 }] };
  if (last && inside(seq, last)) return state;
  return { ...state, unsynced: [...state.unsynced, { fromSeq: seq, toSeq: seq + 1 }] };
}

/** Forgets ranges wholly below the oldest segment still in the ring. */
export function withoutBelow(state: StampState, oldestSeq: number): StampState {
  const keep = <T extends SeqRange>(list: T[]): T[] => list.filter((r) => r.toSeq > oldestSeq);
  const steps = keep(state.steps);
  const unsynced = keep(state.unsynced);
  return steps.length === state.steps.length && unsynced.length === state.unsynced.length ? state : { ...state, steps, unsynced };
}

export function stampClock(seq: number, state: StampState): StampClock {
  if (state.steps.some((s) => inside(seq, s) && s.deltaMs !== 0)) return 'stepped';
  if (state.unsynced.some((r) => inside(seq, r))) return 'unsynced';
  return 'synced';
}

/** One label for a clip: a step anywhere in it wins over unsynced, which wins over synced. */
export function clipClock(labels: Iterable<StampClock>): StampClock {
  let out: StampClock = 'synced';
  for (const l of labels) {
    if (l === 'stepped') return 'stepped';
    if (l === 'unsynced') out = 'unsynced';
  }
  return out;
}

/** Reads clock.json's content leniently: a missing or odd member falls back to its empty value. */
export function parseStamps(value: unknown): StampState {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const int = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
  const ranges = (x: unknown): SeqRange[] => (Array.isArray(x) ? x : [])
    .filter((r: { fromSeq?: unknown; toSeq?: unknown }) => int(r?.fromSeq) && int(r?.toSeq))
    .map((r: SeqRange) => ({ fromSeq: r.fromSeq, toSeq: r.toSeq }));
  const steps = (Array.isArray(v['steps']) ? v['steps'] : [])
    .filter((r: { fromSeq?: unknown; toSeq?: unknown; deltaMs?: unknown }) => int(r?.fromSeq) && int(r?.toSeq) && int(r?.deltaMs))
    .map((r: StampStep) => ({ fromSeq: r.fromSeq, toSeq: r.toSeq, deltaMs: r.deltaMs }));
  const boot = v['boot'] as { id?: unknown; firstSeq?: unknown; applied?: unknown } | undefined;
  return {
    uncertainBeforeSeq: int(v['uncertainBeforeSeq']) ? v['uncertainBeforeSeq'] : 0,
    ...(boot && typeof boot.id === 'string' && int(boot.firstSeq)
      ? { boot: { id: boot.id, firstSeq: boot.firstSeq, ...(int(boot.applied) ? { applied: boot.applied } : {}) } } : {}),
    steps,
    unsynced: ranges(v['unsynced']),
  };
}
