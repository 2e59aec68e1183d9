// The phone system's spool, as the calls module sees it (CONTRACT §8): pure decisions about
// the files found there — whether a file is finished, when its call started, what it is named in
// the ring, and whether it was taken before. No I/O here; the module observes, these decide.

/** What one look at a spool file saw. */
export interface SpoolStat { size: number; mtimeMs: number }

/** A file seen before: what it looked like and since when it has looked like that. */
export interface Watched extends SpoolStat {
  sameSinceMs: number;
  /** Its mtime when first seen: a call already being written then began before that. */
  firstMtimeMs: number;
}

/**
 * The file as seen now against what was seen before: finished once it has kept its size and mtime
 * for `settleMs` (by this node's clock) and its mtime is that old too (a file copied in with an
 * old mtime still waits one settle of being seen unchanged). Pure.
 */
export function observe(before: Watched | undefined, now: SpoolStat, nowMs: number, settleMs: number): { watched: Watched; finished: boolean } {
  const same = before !== undefined && before.size === now.size && before.mtimeMs === now.mtimeMs;
  const watched: Watched = { ...now, sameSinceMs: same ? before.sameSinceMs : nowMs, firstMtimeMs: before?.firstMtimeMs ?? now.mtimeMs };
  const finished = nowMs - watched.sameSinceMs >= settleMs && nowMs - now.mtimeMs >= settleMs;
  return { watched, finished };
}

/** Each source file is taken once: its path, size and mtime (CONTRACT §8). */
export function tombstoneKey(relPath: string, s: SpoolStat): string {
  return `${relPath}\0${s.size}\0${Math.round(s.mtimeMs)}`;
}

const MAX_BASENAME = 96;

/**
 * A source file's basename made safe for the ring: letters, digits, `.`, `_` and `-` only, no
 * leading dot, at most 96 characters with its extension kept (lower case). Pure.
 */
export function sanitiseBasename(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  const clean = (s: string): string => s.normalize('NFKD').replace(/\p{M}/gu, '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/_+/g, '_').replace(/^[._-]+/, '');
  let ext = dot > 0 ? clean(base.slice(dot + 1)).toLowerCase().slice(0, 8) : '';
  let stem = clean(dot > 0 ? base.slice(0, dot) : base).replace(/[._-]+$/, '');
  if (stem === '') stem = 'call';
  if (ext !== '') ext = `.${ext}`;
  return stem.slice(0, MAX_BASENAME - ext.length) + ext;
}

/** `20261128T120000123Z`: a start time that sorts as text and is safe in a file name. */
export function startStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('.', '');
}

const STAMPED = /^(\d{8}T\d{9}Z)-(.+)$/;

/** The start a ring file's name carries, or null for a name the ring did not give. */
export function parseCallFileName(name: string): { startMs: number; basename: string } | null {
  const m = STAMPED.exec(name);
  if (!m) return null;
  const s = m[1]!;
  const ms = Date.parse(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}.${s.slice(15, 18)}Z`);
  return Number.isNaN(ms) ? null : { startMs: ms, basename: m[2]! };
}

/**
 * The ring's name for a call: `<start>-<sanitised basename>`, with `-2`, `-3`… before the
 * extension when that name is taken (two phones' `out-100.wav` in two day folders). Pure.
 */
export function callFileName(startMs: number, sourceName: string, taken: (name: string) => boolean): string {
  const base = sanitiseBasename(sourceName);
  const first = `${startStamp(startMs)}-${base}`;
  if (!taken(first)) return first;
  const dot = base.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  for (let n = 2; ; n++) {
    const name = `${startStamp(startMs)}-${stem}-${n}${ext}`;
    if (!taken(name)) return name;
  }
}

/** How a call's start is found (config `calls.startFrom`). */
export type StartFrom = { kind: 'mtime' } | { kind: 'name'; pattern: RegExp };

export function parseStartFrom(spec: string): StartFrom {
  return spec === 'mtime' ? { kind: 'mtime' } : { kind: 'name', pattern: new RegExp(spec) };
}

/**
 * When the call started, in ms since the epoch: from the file's path by the configured pattern
 * (its `epoch` group in seconds or milliseconds, or its `iso` group), else its mtime less its
 * duration (a recorder writes to the end of the call). `fromName` says which was used: a name
 * that did not match falls back to the mtime, and the module reports it. Pure.
 */
export function callStart(how: StartFrom, relPath: string, mtimeMs: number, durationMs: number): { startMs: number; fromName: boolean } {
  const fallback = { startMs: Math.round(mtimeMs - durationMs), fromName: false };
  if (how.kind === 'mtime') return fallback;
  const groups = how.pattern.exec(relPath)?.groups;
  const epoch = groups?.['epoch'];
  if (epoch !== undefined && /^\d{9,13}(\.\d+)?$/.test(epoch)) {
    const n = Number(epoch);
    return { startMs: Math.round(epoch.split('.')[0]!.length >= 12 ? n : n * 1000), fromName: true };
  }
  const text = groups?.['iso'];
  if (text !== undefined) {
    const ms = parseLooseIso(text);
    if (ms !== null) return { startMs: ms, fromName: true };
  }
  return fallback;
}

/**
 * ISO 8601 as phone systems write it in names: `2026-11-28T12:00:00Z`, `20261128-120000`,
 * `2026-11-28 12.00.00`; without a zone it is the node's local time (Asterisk's `monitor` names
 * are in the phone system's local time, which is the branch's).
 */
function parseLooseIso(text: string): number | null {
  const m = /^(\d{4})-?(\d{2})-?(\d{2})[T _-]?(\d{2})[:.]?(\d{2})[:.]?(\d{2})(?:[.,](\d{1,3}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const tz = zone === undefined ? '' : zone === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${(frac ?? '0').padEnd(3, '0')}${tz}`);
  return Number.isNaN(ms) ? null : ms;
}
