// The readable rendering of `camnode ctl footage` (src/ops/timeline.ts, CONTRACT §6), pure: each
// camera's bar puts holes, locked and kept spans at the right columns (one cell a minute over an
// hour), with the priority locked > kept > recorded > none and the half-cell rule for recordings;
// cameras without footage and truncated replies; every bar the width asked; the axis in the zone
// asked; the lists of holes and held spans; colours only when asked.
import { describe, expect, it } from 'vitest';
import { renderFootage, type FootageCamera, type FootageData } from '../../src/ops/timeline.js';

const T0 = Date.parse('2026-12-01T15:00:00.000Z');
/** ISO time `m` minutes (and `s` seconds) after 15:00Z: with a 60-cell bar over the hour, cell m. */
const at = (m: number, s = 0): string => new Date(T0 + m * 60_000 + s * 1000).toISOString();
const span = (from: number, to: number): { start: string; end: string } => ({ start: at(from), end: at(to) });

function camera(over: Partial<FootageCamera> & { id: string }): FootageCamera {
  return { oldest: at(0), newest: at(60), bytes: 1_200_000_000, ranges: [span(0, 60)], locked: [], kept: [], truncated: false, ...over };
}

const HOUR = { from: T0, to: T0 + 3_600_000, timeZone: 'UTC' };
const ESC = '\x1b';
const plain = (text: string): string => text.replace(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');

/** The bar drawn for camera `id` (colours stripped). */
function bar(out: string, id: string): string {
  const line = plain(out).split('\n').find((l) => l.startsWith(`${id} `));
  const m = line === undefined ? null : /^\S+ +([▓▒█·]+)/.exec(line);
  if (!m) throw new Error(`no bar for ${id} in:\n${out}`);
  return m[1]!;
}

/** A bar from runs: [[char, cells], ...]. */
const runs = (...parts: [string, number][]): string => parts.map(([c, n]) => c.repeat(n)).join('');

describe('renderFootage: the bars', () => {
  it('shows a hole between two ranges as · at its columns', () => {
    const data: FootageData = { cameras: [camera({ id: 'entrance', ranges: [span(0, 10), span(20, 60)] })] };
    expect(bar(renderFootage(data, HOUR), 'entrance')).toBe(runs(['█', 10], ['·', 10], ['█', 40]));
  });

  it('marks a cell recorded when footage covers at least half of it, summed over ranges', () => {
    const half = camera({ id: 'a', ranges: [span(0, 10), { start: at(10, 30), end: at(60) }] });
    const less = camera({ id: 'b', ranges: [span(0, 10), { start: at(10, 31), end: at(60) }] });
    const split = camera({ id: 'c', ranges: [{ start: at(0), end: at(0, 15) }, { start: at(0, 45), end: at(1) }] });
    const out = renderFootage({ cameras: [half, less, split] }, { ...HOUR, width: 60 });
    expect(bar(out, 'a')[10]).toBe('█');
    expect(bar(out, 'b')[10]).toBe('·');
    expect(bar(out, 'c')[0]).toBe('█');
    expect(bar(out, 'c')[1]).toBe('·');
  });

  it('shows a locked span as ▓ at its columns where it has footage, and its holes as holes', () => {
    const data: FootageData = { cameras: [camera({ id: 'desk', ranges: [span(0, 42)], locked: [{ ...span(40, 45), incident: 'inc-a' }] })] };
    expect(bar(renderFootage(data, HOUR), 'desk')).toBe(runs(['█', 40], ['▓', 2], ['·', 18]));
  });

  it('marks every cell a lock touches, however little of it', () => {
    const data: FootageData = { cameras: [camera({ id: 'desk', locked: [{ start: at(30, 10), end: at(30, 20), incident: 'inc-a' }, { start: at(50, 5), end: at(50, 5), incident: 'inc-b' }] })] };
    expect(bar(renderFootage(data, HOUR), 'desk')).toBe(runs(['█', 30], ['▓', 1], ['█', 19], ['▓', 1], ['█', 9]));
  });

  it('shows a kept span as ▒, and locked wins where both fall in a cell', () => {
    const data: FootageData = { cameras: [camera({ id: 'desk', kept: [{ ...span(2, 4), incident: 'inc-k' }, { ...span(20, 30), incident: 'inc-k2' }], locked: [{ ...span(25, 35), incident: 'inc-l' }] })] };
    expect(bar(renderFootage(data, HOUR), 'desk')).toBe(runs(['█', 2], ['▒', 2], ['█', 16], ['▒', 5], ['▓', 10], ['█', 25]));
  });

  it('says no footage for a camera without any, with an empty bar beside the others', () => {
    const none = camera({ id: 'garage', oldest: null, newest: null, bytes: 0, ranges: [] });
    const out = renderFootage({ cameras: [camera({ id: 'entrance' }), none] }, HOUR);
    expect(bar(out, 'garage')).toBe('·'.repeat(60));
    expect(plain(out).split('\n').find((l) => l.startsWith('garage'))?.endsWith('·  no footage')).toBe(true);
  });

  it('says so when no camera has footage and no span is asked', () => {
    const none = camera({ id: 'garage', oldest: null, newest: null, bytes: 0, ranges: [] });
    expect(renderFootage({ cameras: [none] }, { timeZone: 'UTC' })).toBe('no footage retained on any camera\ngarage  no footage');
    expect(renderFootage({ cameras: [] }, { timeZone: 'UTC' })).toBe('no cameras in the reply');
  });

  it('shows the retained size and (truncated) after the bar', () => {
    const out = renderFootage({ cameras: [camera({ id: 'entrance', truncated: true }), camera({ id: 'desk', bytes: 512_000_000 })] }, HOUR);
    const lines = out.split('\n');
    expect(lines.find((l) => l.startsWith('entrance'))?.endsWith('█  1.2 GB (truncated)')).toBe(true);
    expect(lines.find((l) => l.startsWith('desk'))?.endsWith('█  512.0 MB')).toBe(true);
  });

  it('draws every bar the width asked, ids padded so the bars line up, with and without colour', () => {
    const cameras = [
      camera({ id: 'entrance', ranges: [span(0, 10), span(20, 60)], kept: [{ ...span(5, 6), incident: 'k' }] }),
      camera({ id: 'returns-area', locked: [{ ...span(30, 31), incident: 'l' }] }),
      camera({ id: 'x', oldest: null, newest: null, ranges: [] }),
    ];
    for (const width of [1, 7, 37, 60, 120]) {
      for (const color of [false, true]) {
        const out = plain(renderFootage({ cameras }, { ...HOUR, width, color }));
        for (const id of ['entrance', 'returns-area', 'x']) {
          expect(bar(out, id)).toHaveLength(width);
          expect(out.split('\n').find((l) => l.startsWith(`${id} `))!.indexOf(bar(out, id))).toBe('returns-area'.length + 2);
        }
      }
    }
  });

  it('draws the span asked, not the footage, and defaults to the earliest oldest .. latest newest', () => {
    const cameras = [camera({ id: 'a', oldest: at(0), newest: at(30), ranges: [span(0, 30)] }), camera({ id: 'b', oldest: at(30), newest: at(60), ranges: [span(30, 60)] })];
    const whole = renderFootage({ cameras }, { timeZone: 'UTC' });
    expect(bar(whole, 'a')).toBe(runs(['█', 30], ['·', 30]));
    expect(bar(whole, 'b')).toBe(runs(['·', 30], ['█', 30]));
    const second = renderFootage({ cameras }, { from: T0 + 1_800_000, to: T0 + 3_600_000, timeZone: 'UTC', width: 30 });
    expect(bar(second, 'a')).toBe('·'.repeat(30));
    expect(bar(second, 'b')).toBe('█'.repeat(30));
  });

  it('is deterministic: the same data and options give the same text', () => {
    const data: FootageData = { cameras: [camera({ id: 'a', ranges: [span(0, 10), span(20, 60)], locked: [{ ...span(40, 45), incident: 'i' }] })] };
    expect(renderFootage(data, { timeZone: 'Europe/Berlin' })).toBe(renderFootage(structuredClone(data), { timeZone: 'Europe/Berlin' }));
  });

  it('skips spans whose times it cannot read rather than failing', () => {
    const data: FootageData = { cameras: [camera({ id: 'a', ranges: [span(0, 60), { start: 'garbage', end: at(10) }], locked: [{ start: at(5), end: 'never', incident: 'i' }] })] };
    expect(bar(renderFootage(data, HOUR), 'a')).toBe('█'.repeat(60));
  });
});

describe('renderFootage: header, axis and legend', () => {
  const lines = (out: string): string[] => plain(out).split('\n');
  const data: FootageData = { cameras: [camera({ id: 'entrance' })] };
  const indent = ' '.repeat('entrance'.length + 2);

  it('heads the output with the span in local time and UTC', () => {
    expect(lines(renderFootage(data, { ...HOUR, timeZone: 'Europe/Berlin' }))[0])
      .toBe('footage from 2026-12-01 16:00:00 CET (2026-12-01T15:00:00.000Z) to 2026-12-01 17:00:00 CET (2026-12-01T16:00:00.000Z)');
  });

  it('puts the start, middle and end times under the bar in UTC', () => {
    const axis = lines(renderFootage(data, HOUR))[2]!;
    expect(axis).toBe(`${indent}15:00${' '.repeat(23)}15:30${' '.repeat(22)}16:00`);
    expect(axis.length).toBe(indent.length + 60);
  });

  it('puts them in the zone asked (Berlin is an hour ahead in December)', () => {
    const axis = lines(renderFootage(data, { ...HOUR, timeZone: 'Europe/Berlin' }))[2]!;
    expect(axis).toBe(`${indent}16:00${' '.repeat(23)}16:30${' '.repeat(22)}17:00`);
  });

  it('adds the date when the span crosses midnight in that zone, and only then', () => {
    const evening = { from: Date.parse('2026-12-01T22:00:00Z'), to: Date.parse('2026-12-02T04:00:00Z') };
    const ny = lines(renderFootage(data, { ...evening, timeZone: 'America/New_York' }))[2]!;
    expect(ny.trim()).toMatch(/^17:00 +20:00 +23:00$/);
    const berlin = lines(renderFootage(data, { ...evening, timeZone: 'Europe/Berlin' }))[2]!;
    expect(berlin.trim()).toMatch(/^2026-12-01 23:00 +2026-12-02 02:00 +2026-12-02 05:00$/);
  });

  it('shows seconds on a span of a few minutes, and drops the middle label where it does not fit', () => {
    const short = lines(renderFootage(data, { from: T0, to: T0 + 120_000, timeZone: 'UTC' }))[2]!;
    expect(short.trim()).toMatch(/^15:00:00 +15:01:00 +15:02:00$/);
    const narrow = lines(renderFootage(data, { ...HOUR, width: 12 }))[2]!;
    expect(narrow).toBe(`${indent}15:00  16:00`);
  });

  it('explains the characters, the cell length and the zone', () => {
    const legend = lines(renderFootage(data, { ...HOUR, timeZone: 'Europe/Berlin' }))[3]!;
    expect(legend).toBe('▓ locked (incident open)  ▒ kept (sealed clip)  █ recorded  · no footage; one cell = 1m; times in Europe/Berlin');
    expect(lines(renderFootage(data, { ...HOUR, width: 24 }))[3]).toContain('one cell = 2.5m');
  });
});

describe('renderFootage: holes and held spans listed', () => {
  it('lists the holes inside the span and the locked and kept spans with their incidents, in local time', () => {
    const data: FootageData = { cameras: [camera({
      id: 'entrance',
      ranges: [span(0, 10), span(20, 60)],
      locked: [{ ...span(40, 45), incident: 'inc-20261201-1540' }],
      kept: [{ ...span(2, 4), incident: 'inc-20261130-0900' }],
    })] };
    const out = renderFootage(data, { ...HOUR, timeZone: 'Europe/Berlin' });
    expect(out.split('\n').slice(5)).toEqual([
      'entrance:',
      '  hole   2026-12-01 16:10:00 – 16:20:00 (10m)',
      '  locked 2026-12-01 16:40:00 – 16:45:00 (5m)  inc-20261201-1540',
      '  kept   2026-12-01 16:02:00 – 16:04:00 (2m)  inc-20261130-0900',
    ]);
  });

  it('shows at most five holes, then how many more', () => {
    const ranges = Array.from({ length: 8 }, (_, i) => span(i * 7, i * 7 + 5));
    const out = renderFootage({ cameras: [camera({ id: 'a', ranges })] }, HOUR);
    const holes = out.split('\n').filter((l) => l.startsWith('  hole'));
    expect(holes).toHaveLength(5);
    expect(holes[0]).toBe('  hole   2026-12-01 15:05:00 – 15:07:00 (2m)');
    expect(out).toContain('  … and 2 more holes');
  });

  it('cuts holes to the span drawn, and leaves out those outside it', () => {
    const ranges = [span(-30, -20), span(-10, 10), span(20, 60)];
    const out = renderFootage({ cameras: [camera({ id: 'a', ranges })] }, HOUR);
    expect(out.split('\n').filter((l) => l.startsWith('  hole'))).toEqual(['  hole   2026-12-01 15:10:00 – 15:20:00 (10m)']);
    const cut = renderFootage({ cameras: [camera({ id: 'a', ranges: [span(0, 10), span(50, 60)] })] }, { ...HOUR, to: T0 + 30 * 60_000 });
    expect(cut).toContain('  hole   2026-12-01 15:10:00 – 15:30:00 (20m)');
  });

  it('gives the end its date when a span crosses midnight', () => {
    const data: FootageData = { cameras: [camera({ id: 'a', kept: [{ start: '2026-12-01T22:30:00Z', end: '2026-12-01T23:30:00Z', incident: 'inc-night' }] })] };
    expect(renderFootage(data, { ...HOUR, timeZone: 'Europe/Berlin' })).toContain('  kept   2026-12-01 23:30:00 – 2026-12-02 00:30:00 (60m)  inc-night');
  });

  it('lists nothing for a camera with no holes and nothing held', () => {
    const out = renderFootage({ cameras: [camera({ id: 'a' })] }, HOUR);
    expect(out.split('\n')).toHaveLength(4);
  });
});

describe('renderFootage: colour', () => {
  const data: FootageData = { cameras: [camera({ id: 'a', ranges: [span(0, 10), span(20, 60)], locked: [{ ...span(40, 45), incident: 'l' }], kept: [{ ...span(2, 4), incident: 'k' }] })] };

  it('uses plain characters only without colour', () => {
    expect(renderFootage(data, HOUR)).not.toContain(ESC);
  });

  it('paints locked yellow, kept cyan and holes dim, one sequence per run', () => {
    const line = renderFootage(data, { ...HOUR, color: true }).split('\n')[1]!;
    expect(line).toContain(`${ESC}[33m${'▓'.repeat(5)}${ESC}[0m`);
    expect(line).toContain(`${ESC}[36m${'▒'.repeat(2)}${ESC}[0m`);
    expect(line).toContain(`${ESC}[2m${'·'.repeat(10)}${ESC}[0m`);
    expect(line).toContain(`${ESC}[0m${'█'.repeat(20)}${ESC}[33m`);
  });
});
