// Debounce as a small pure state machine: raw edges in, at most one press per physical press out.
//
// When does a press fire? On the *first* rising edge that follows a release that stayed low
// for `debounceMs` — not after the press has been stable for `debounceMs`. A staff member who
// presses in a bad moment must see the LED at once, and the lock's trigger time should be the
// moment of the press, not 50 ms later. The price: an isolated noise spike on an idle line
// counts as a press. That costs a few minutes of kept footage; a late or missed press costs the
// evidence. Everything else noise does is absorbed: spikes and bounces within `debounceMs` of a
// change never make a second press, and a held button never repeats.
//
// A release only counts once the line has stayed low for `debounceMs`. Edges are all we get,
// so that is decided lazily at the next edge: if the line went low and nothing happened for
// `debounceMs`, the release was stable. No timer is needed because a new press is itself an
// edge.
//
// Repeated edges with the same level happen (the kernel reads the level after the interrupt,
// so a fast bounce can report rising, rising): they count as activity on the line.
import type { Edge, Level } from './types.js';

export interface DebounceState {
  /** The raw level after the last edge. */
  level: Level;
  /** When the last edge arrived (-Infinity: the line has been quiet forever). */
  lastEdgeMs: number;
  /** A press has fired and no stable release has been seen since. */
  held: boolean;
}

/**
 * The state for a line just opened. A line that already reads pressed (held at boot, or a
 * missing pull-up) must be released before it can press: a stuck button does not lock at
 * every restart.
 */
export function initialDebounceState(level: Level = 0): DebounceState {
  return { level, lastEdgeMs: -Infinity, held: level === 1 };
}

export function debounceStep(state: DebounceState, edge: Edge, debounceMs: number): { state: DebounceState; press: boolean } {
  const quietMs = edge.atMs - state.lastEdgeMs;
  const released = !state.held || (state.level === 0 && quietMs >= debounceMs);
  const press = released && edge.level === 1;
  return {
    state: { level: edge.level, lastEdgeMs: edge.atMs, held: press || !released },
    press,
  };
}

/** The indices of `edges` at which a press fires (tests and tools). */
export function pressesOf(edges: readonly Edge[], debounceMs: number, initial: Level = 0): number[] {
  let state = initialDebounceState(initial);
  const out: number[] = [];
  edges.forEach((edge, i) => {
    const step = debounceStep(state, edge, debounceMs);
    state = step.state;
    if (step.press) out.push(i);
  });
  return out;
}
