// The readable rendering of `camnode ctl footage` (CONTRACT §6), pure: one bar per camera over
// a span, so that staff see at a glance what the ring still holds, what is held for an incident
// and where the holes are; then the holes and the held spans spelled out in local time.
// Every time comes from the data and the options (never the clock), so a rendering is repeatable.
import { formatBytes, formatDuration } from '../config/units.js';
import { formatLocal, formatLocalAndUtc, machineTimeZone } from './times.js';

import type { CameraFootage, IncidentRange, TimeRange } from '../store/footage.js';

/** The shapes of the `footage` reply (CONTRACT §6), as the node builds them. */
export type FootageRange = TimeRange;
export type HeldRange = IncidentRange;
export type FootageCamera = CameraFootage;
export interface FootageData { cameras: FootageCamera[] }

export interface RenderFootageOptions {
  /** Zone for every time shown; default the machine's zone. */
  timeZone?: string;
  /** Cells in each bar (default 60). */
  width?: number;
  /** Span to draw, epoch ms; default the earliest `oldest` to the latest `newest`. */
  from?: number;
  to?: number;
  color?: boolean;
}

/** What a cell shows, most important first: a cell shows the first that applies. */
export const CELLS = {
  locked: { char: '▓', label: 'locked (incident open)', ansi: 33 },
  kept: { char: '▒', label: 'kept (sealed clip)', ansi: 36 },
  recorded: { char: '█', label: 'recorded', ansi: null },
  none: { char: '·', label: 'no footage', ansi: 2 },
} as const;
type Cell = keyof typeof CELLS;

const MAX_HOLES = 5;
/** Below this span the axis shows seconds, or its three labels could read the same. */
const SECONDS_BELOW_MS = 10 * 60_000;

interface Span { start: number; end: number }
interface Labelled extends Span { incident: string }

export function renderFootage(data: FootageData, opts: RenderFootageOptions = {}): string {
  const zone = opts.timeZone ?? machineTimeZone();
  const width = Math.max(1, Math.floor(opts.width ?? 60));
  const color = opts.color === true;
  if (data.cameras.length === 0) return 'no cameras in the reply';
  const span = drawnSpan(data.cameras, opts);
  const idWidth = Math.max(...data.cameras.map((c) => c.id.length));
  const lines: string[] = [];
  if (span) {
    lines.push(`footage from ${formatLocalAndUtc(span.start, zone)} to ${formatLocalAndUtc(span.end, zone)}`);
    for (const camera of data.cameras) lines.push(`${camera.id.padEnd(idWidth)}  ${paintBar(cellsOf(camera, span, width), color)}  ${sizeNote(camera)}`);
    lines.push(`${' '.repeat(idWidth + 2)}${axis(span, width, zone)}`);
    lines.push(legend(span, width, zone, color));
  } else {
    lines.push('no footage retained on any camera');
    for (const camera of data.cameras) lines.push(`${camera.id.padEnd(idWidth)}  ${sizeNote(camera)}`);
  }
  const listed = data.cameras.flatMap((camera) => details(camera, span, zone));
  return [...lines, ...(listed.length ? ['', ...listed] : [])].join('\n');
}

function hasFootage(camera: FootageCamera): boolean {
  return camera.oldest !== null || camera.ranges.length > 0;
}

function sizeNote(camera: FootageCamera): string {
  if (!hasFootage(camera)) return 'no footage';
  return `${formatBytes(camera.bytes)}${camera.truncated ? ' (truncated)' : ''}`;
}

/** The span asked for, else from the earliest footage to the latest; null when there is none. */
function drawnSpan(cameras: FootageCamera[], opts: RenderFootageOptions): Span | null {
  const starts = cameras.flatMap((c) => [c.oldest, ...c.ranges.map((r) => r.start)]).map(parse).filter(isTime);
  const ends = cameras.flatMap((c) => [c.newest, ...c.ranges.map((r) => r.end)]).map(parse).filter(isTime);
  const start = opts.from ?? (starts.length ? Math.min(...starts) : undefined);
  const end = opts.to ?? (ends.length ? Math.max(...ends) : undefined);
  if (start === undefined || end === undefined) return null;
  // A single instant still gets a bar: a second wide, so that every cell has a length.
  return { start, end: end > start ? end : start + 1000 };
}

function parse(iso: string | null): number {
  return iso === null ? NaN : Date.parse(iso);
}
function isTime(ms: number): boolean {
  return Number.isFinite(ms);
}

/** Spans with readable times, in order; a node of another version may send odd ones, dropped. */
function spans<T extends FootageRange>(list: T[]): (Span & Omit<T, 'start' | 'end'>)[] {
  return list
    .map((r) => ({ ...r, start: Date.parse(r.start), end: Date.parse(r.end) }))
    .filter((s) => isTime(s.start) && isTime(s.end) && s.end >= s.start)
    .sort((a, b) => a.start - b.start);
}

function overlap(a: Span, b: Span): number {
  return Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start));
}

/** Touching counts: a lock of a moment still marks its cell, since held footage matters most. */
function touches(s: Span, cell: Span): boolean {
  return overlap(s, cell) > 0 || (s.start === s.end && s.start >= cell.start && s.start < cell.end);
}

function cellSpan(span: Span, width: number, i: number): Span {
  const len = span.end - span.start;
  return { start: span.start + (len * i) / width, end: span.start + (len * (i + 1)) / width };
}

function cellsOf(camera: FootageCamera, span: Span, width: number): Cell[] {
  const recorded = spans(camera.ranges);
  const locked = spans(camera.locked);
  const kept = spans(camera.kept);
  return Array.from({ length: width }, (_, i) => {
    const cell = cellSpan(span, width, i);
    // Ranges are merged by the node, so their overlaps with a cell add up without counting twice.
    const covered = recorded.reduce((sum, s) => sum + overlap(s, cell), 0);
    const there = covered > 0;
    // A lock keeps footage still in the ring: where it has none, the hole shows (a hold's
    // missing part). Kept clips hold theirs outside the ring.
    if (there && locked.some((s) => touches(s, cell))) return 'locked';
    if (kept.some((s) => touches(s, cell))) return 'kept';
    return covered * 2 >= cell.end - cell.start ? 'recorded' : 'none';
  });
}

function paint(text: string, ansi: number | null, color: boolean): string {
  return color && ansi !== null ? `\x1b[${ansi}m${text}\x1b[0m` : text;
}

/** The bar, one escape sequence per run of like cells rather than per cell. */
function paintBar(cells: Cell[], color: boolean): string {
  let out = '';
  for (let i = 0; i < cells.length;) {
    const kind = cells[i]!;
    let j = i;
    while (j < cells.length && cells[j] === kind) j++;
    out += paint(CELLS[kind].char.repeat(j - i), CELLS[kind].ansi, color);
    i = j;
  }
  return out;
}

/** Local times at the start, middle and end of the bar; with the date when the span crosses days. */
function axis(span: Span, width: number, zone: string): string {
  const withSeconds = span.end - span.start < SECONDS_BELOW_MS;
  const crossesDays = formatLocal(span.start, zone).slice(0, 10) !== formatLocal(span.end, zone).slice(0, 10);
  const label = (ms: number): string => {
    const full = formatLocal(ms, zone, withSeconds);
    return crossesDays ? full : full.slice(11);
  };
  const first = label(span.start);
  const last = label(span.end);
  if (first.length + 1 + last.length > width) return `${first} … ${last}`;
  const line = first + ' '.repeat(width - first.length - last.length) + last;
  const middle = label(span.start + (span.end - span.start) / 2);
  const at = Math.floor(width / 2) - Math.floor(middle.length / 2);
  // The middle label only where it leaves a space either side of the others.
  if (at <= first.length || at + middle.length >= width - last.length) return line;
  return line.slice(0, at) + middle + line.slice(at + middle.length);
}

function legend(span: Span, width: number, zone: string, color: boolean): string {
  const keys = (Object.keys(CELLS) as Cell[]).map((k) => `${paint(CELLS[k].char, CELLS[k].ansi, color)} ${CELLS[k].label}`);
  return `${keys.join('  ')}; one cell = ${cellLength((span.end - span.start) / width)}; times in ${zone}`;
}

/** `1m`, `2.5h`: a cell's length in its largest unit, where formatDuration would say `60s`. */
function cellLength(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'm'], [1000, 's']];
  const [size, name] = units.find(([u]) => ms >= u) ?? [1, 'ms'];
  return `${Number((ms / size).toFixed(1))}${name}`;
}

/** `2026-12-01 16:10:00 – 16:25:00 (15m)`: the end's date only when it differs. */
function localSpan(s: Span, zone: string): string {
  const start = formatLocal(s.start, zone);
  const end = formatLocal(s.end, zone);
  return `${start} – ${end.slice(0, 10) === start.slice(0, 10) ? end.slice(11) : end} (${formatDuration(s.end - s.start)})`;
}

/** Gaps between ranges, cut to the span drawn. */
function holes(camera: FootageCamera, span: Span | null): Span[] {
  const ranges = spans(camera.ranges);
  const out: Span[] = [];
  let reached = ranges[0]?.end ?? 0;
  for (const r of ranges.slice(1)) {
    const gap = { start: Math.max(reached, span?.start ?? -Infinity), end: Math.min(r.start, span?.end ?? Infinity) };
    if (gap.end > gap.start) out.push(gap);
    reached = Math.max(reached, r.end);
  }
  return out;
}

/** Per camera: its holes (the first few) and every span held for an incident. */
function details(camera: FootageCamera, span: Span | null, zone: string): string[] {
  const gaps = holes(camera, span);
  const held = (kind: 'locked' | 'kept', list: Labelled[]): string[] =>
    list.map((s) => `  ${kind.padEnd(6)} ${localSpan(s, zone)}  ${s.incident}`);
  const lines = [
    ...gaps.slice(0, MAX_HOLES).map((g) => `  ${'hole'.padEnd(6)} ${localSpan(g, zone)}`),
    ...(gaps.length > MAX_HOLES ? [`  … and ${gaps.length - MAX_HOLES} more holes`] : []),
    ...held('locked', spans(camera.locked)),
    ...held('kept', spans(camera.kept)),
  ];
  return lines.length ? [`${camera.id}:`, ...lines] : [];
}
