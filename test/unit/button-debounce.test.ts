import { describe, expect, it } from 'vitest';
import { debounceStep, initialDebounceState, pressesOf } from '../../src/button/debounce.js';
import type { Edge, Level } from '../../src/button/types.js';

const D = 50;
/** Edges from `[level, atMs]` pairs. */
const edges = (...pairs: [Level, number][]): Edge[] => pairs.map(([level, atMs]) => ({ level, atMs }));
/** A contact that bounces `n` times, 1 ms apart, and settles at `settle`. */
const bounce = (from: number, n: number, settle: Level): Edge[] =>
  Array.from({ length: n }, (_, i) => ({ level: (i % 2 === 0 ? settle : 1 - settle) as Level, atMs: from + i }))
    .concat([{ level: settle, atMs: from + n }]);

describe('debounce: named scenarios', () => {
  it('a clean press fires once, at its first edge', () => {
    expect(pressesOf(edges([1, 1000], [0, 1300]), D)).toEqual([0]);
  });

  it('a bouncy press fires once, at the first edge (no waiting for the bounce to settle)', () => {
    const seq = [...bounce(1000, 7, 1), { level: 0 as Level, atMs: 1400 }];
    expect(pressesOf(seq, D)).toEqual([0]);
  });

  it('a bouncy release makes no press, and the next press counts once the release was stable', () => {
    const release = bounce(1400, 6, 0); // last edge (level 0) at 1406
    const base = [{ level: 1 as Level, atMs: 1000 }, ...release];
    expect(pressesOf(base, D)).toEqual([0]);
    expect(pressesOf([...base, { level: 1, atMs: 1406 + D }], D)).toEqual([0, base.length]);
    expect(pressesOf([...base, { level: 1, atMs: 1406 + D - 1 }], D)).toEqual([0]);
  });

  it('a button held for 10 s does not repeat, even with noise on the line while held', () => {
    const spikes = Array.from({ length: 9 }, (_, i) => edges([0, 2000 + i * 1000], [1, 2001 + i * 1000])).flat();
    const seq = [...edges([1, 1000]), ...spikes, ...edges([0, 11_000])];
    expect(pressesOf(seq, D)).toEqual([0]);
  });

  it('two presses 200 ms apart are two presses', () => {
    expect(pressesOf(edges([1, 1000], [0, 1080], [1, 1200], [0, 1290]), D)).toEqual([0, 2]);
  });

  it('noise spikes shorter than the debounce after a release or during a hold never add a press', () => {
    // press, release, then 2 ms spikes every 10 ms: each comes within D of the last change.
    const spikes = Array.from({ length: 10 }, (_, i) => edges([1, 1210 + i * 10], [0, 1212 + i * 10])).flat();
    expect(pressesOf([...edges([1, 1000], [0, 1200]), ...spikes], D)).toEqual([0]);
  });

  it('a burst of spikes on an idle line counts once (the documented price of firing on the first edge)', () => {
    const burst = Array.from({ length: 5 }, (_, i) => edges([1, 5000 + i * 10], [0, 5002 + i * 10])).flat();
    expect(pressesOf(burst, D)).toEqual([0]);
  });

  it('a line that reads pressed when opened must be released before it presses', () => {
    expect(pressesOf(edges([1, 1000]), D, 1)).toEqual([]);
    expect(pressesOf(edges([0, 1000], [1, 1000 + D]), D, 1)).toEqual([1]);
    expect(pressesOf(edges([0, 1000], [1, 1000 + D - 1]), D, 1)).toEqual([]);
  });

  it('repeated edges of the same level count as activity, not as presses', () => {
    expect(pressesOf(edges([1, 1000], [1, 1002], [1, 1004]), D)).toEqual([0]);
    // held, then a repeated release report: the release is stable only from the last report
    expect(pressesOf(edges([1, 1000], [0, 1100], [0, 1140], [1, 1160]), D)).toEqual([0]);
    expect(pressesOf(edges([1, 1000], [0, 1100], [0, 1140], [1, 1190]), D)).toEqual([0, 3]);
  });

  it('an edge timestamped before the last one is never mistaken for a quiet line', () => {
    expect(pressesOf(edges([1, 1000], [0, 1100], [1, 900]), D)).toEqual([0]);
  });

  it('a zero debounce still counts a held button once', () => {
    expect(pressesOf(edges([1, 1000], [1, 1000], [0, 1001], [1, 1001]), 0)).toEqual([0, 3]);
  });

  it('debounceStep is pure: the input state is not changed', () => {
    const state = initialDebounceState();
    const frozen = structuredClone(state);
    debounceStep(state, { level: 1, atMs: 5 }, D);
    expect(state).toEqual(frozen);
  });
});

// The specification, as properties over edges e_0..e_{n-1} (an initial level holding since
// forever before e_0). A "stable release" is a stretch at level 0 lasting >= D; stretch k runs
// from e_k to e_{k+1}, stretch -1 is the initial level before e_0.
//   P1 presses happen only on edges to level 1;
//   P2 between two presses (and before the first) a stable release ended;
//   P3 every edge to level 1 after a stable release with no press since then presses.
// Together they define exactly one press per physical press, fired at its first edge.
function checkProperties(seq: readonly Edge[], initial: Level, d: number, presses = new Set(pressesOf(seq, d, initial))): string | null {
  /** Index of the edge at which stretch k ends, if stretch k is a stable release. */
  const stableEnds: number[] = [];
  if (initial === 0) stableEnds.push(0);
  for (let k = 0; k + 1 < seq.length; k++) {
    if (seq[k]!.level === 0 && seq[k + 1]!.atMs - seq[k]!.atMs >= d) stableEnds.push(k + 1);
  }
  let lastPress = -1;
  let armedSince = -1; // the end of the latest stable release not yet consumed by a press
  for (let j = 0; j < seq.length; j++) {
    if (stableEnds.includes(j)) armedSince = j;
    const pressed = presses.has(j);
    if (pressed && seq[j]!.level !== 1) return `P1: press at ${j} on a release edge`;
    if (pressed && armedSince < 0) return `P2: press at ${j} without a stable release since ${lastPress}`;
    if (!pressed && seq[j]!.level === 1 && armedSince >= 0) return `P3: no press at ${j} after the stable release ending at ${armedSince}`;
    if (pressed) {
      lastPress = j;
      armedSince = -1;
    }
  }
  return null;
}

function* sequences(length: number, gaps: readonly number[]): Generator<Edge[]> {
  if (length === 0) {
    yield [];
    return;
  }
  for (const prefix of sequences(length - 1, gaps)) {
    const last = prefix[prefix.length - 1];
    for (const level of [0, 1] as const) {
      for (const gap of last ? gaps : [0]) {
        yield [...prefix, { level, atMs: (last?.atMs ?? 1000) + gap }];
      }
    }
  }
}

describe('debounce: exhaustive over short edge sequences', () => {
  it('holds P1–P3 for every sequence of up to 6 edges, gaps around the debounce boundary', () => {
    const gaps = [0, 1, D - 1, D, D + 1, 4 * D];
    let checked = 0;
    for (let n = 1; n <= 6; n++) {
      for (const seq of sequences(n, gaps)) {
        for (const initial of [0, 1] as const) {
          const broken = checkProperties(seq, initial, D);
          if (broken) expect.fail(`${broken} in ${JSON.stringify(seq)} (initial ${initial})`);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(190_000);
  });

  it('holds P1–P3 for every sequence of 9 edges with gaps just below and at the debounce', () => {
    let checked = 0;
    for (const seq of sequences(9, [D - 1, D])) {
      const broken = checkProperties(seq, 0, D);
      if (broken) expect.fail(`${broken} in ${JSON.stringify(seq)}`);
      checked++;
    }
    expect(checked).toBe(2 ** 9 * 2 ** 8);
  });

  it('the property checker itself rejects wrong debouncers (so the sweep can fail)', () => {
    const seq = [...bounce(1000, 4, 1), { level: 0 as Level, atMs: 1300 }, { level: 1 as Level, atMs: 1400 }];
    const everyRise = new Set(seq.flatMap((e, i) => (e.level === 1 ? [i] : [])));
    expect(checkProperties(seq, 0, D, everyRise)).toMatch(/^P2/);
    expect(checkProperties(seq, 0, D, new Set([0]))).toMatch(/^P3/);
    expect(checkProperties(seq, 0, D, new Set([0, 5, 6]))).toMatch(/^P1/);
    expect(checkProperties(seq, 0, D)).toBeNull();
  });
});
