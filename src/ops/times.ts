// Times people type in `camnode ctl` (CONTRACT §6), pure apart from reading the machine's zone:
// ISO-8601 with a zone, local wall time in a named zone, relative times and `now`; and the
// local-plus-UTC renderings printed back. Only Intl (full ICU) is used, no time-zone library.
// A wall time that a DST change makes ambiguous or nonexistent is refused, never guessed:
// an hour off is the wrong footage, kept or shown as if it were the right one.

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** The farthest instant a Date can hold (ECMA-262 time values). */
const MAX_TIME = 8.64e15;

/** Bad time or zone input: ctl prints the message and exits 2 (bad usage). */
export class TimeInputError extends Error {
  constructor(message: string, readonly input: string) {
    super(message);
    this.name = 'TimeInputError';
  }
}

export interface ParseTimeOptions {
  /** "now" for relative times; injected so that parsing is deterministic. */
  nowMs: number;
  /** IANA zone for local wall times; default the machine's zone. */
  timeZone?: string;
}

/** The machine's zone, read at each call so that a changed TZ is honoured. */
export function machineTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

function acceptedForms(zone: string): string {
  return 'accepted: 2026-12-01T15:00:00Z or with an offset (2026-12-01T16:00:00+01:00), '
    + `local time in ${zone} (2026-12-01 16:00 or 2026-12-01 16:00:00), `
    + 'relative to now (-90m, -2h, -1d, -1h30m, -45s, +10m), or now';
}

/** Epoch ms of a time typed by a person; throws TimeInputError naming the input if it is not one. */
export function parseUserTime(input: string, opts: ParseTimeOptions): number {
  const zone = checkZone(opts.timeZone ?? machineTimeZone());
  const text = input.trim();
  if (/^now$/i.test(text)) return opts.nowMs;
  const relative = parseRelative(text);
  if (relative !== null) return inRange(opts.nowMs + relative, input, zone);
  const wall = parseWallTime(text, input, zone);
  if (!wall) throw new TimeInputError(`"${input}" is not a time; ${acceptedForms(zone)}`, input);
  const wallMs = inRange(wall.ms, input, zone);
  if (wall.offsetMs !== null) return inRange(wallMs - wall.offsetMs, input, zone);
  return localToUtc(wallMs, input, zone);
}

/** Signed ms of `-1h30m`, `+10m`, `-1d`…, or null if the text is not a relative time. */
function parseRelative(text: string): number | null {
  // Units in falling order, each at most once: `-1h30m` reads one way only.
  const m = /^([+-])(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/i.exec(text);
  if (!m || text.length === 1) return null;
  const [, sign, d, h, min, s] = m;
  const ms = Number(d ?? 0) * DAY + Number(h ?? 0) * HOUR + Number(min ?? 0) * MINUTE + Number(s ?? 0) * 1000;
  return sign === '-' ? -ms : ms;
}

interface WallTime {
  /** The wall time's fields read as if they were UTC. */
  ms: number;
  /** The offset the input gave (ms east of UTC), or null for a local wall time. */
  offsetMs: number | null;
}

// `YYYY-MM-DD[T ]HH:MM[:SS[.fff]]` and an optional `Z`, `±HH`, `±HHMM` or `±HH:MM`.
const WALL = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

function parseWallTime(text: string, input: string, zone: string): WallTime | null {
  const m = WALL.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map((v) => Number(v ?? 0)) as [number, number, number, number, number, number];
  // Fractions beyond milliseconds are cut, not rounded: rounding could carry into the next second.
  const millis = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
  const bad = (what: string): never => {
    throw new TimeInputError(`"${input}" is not a time: ${what}; ${acceptedForms(zone)}`, input);
  };
  if (year < 1) bad('no year 0000');
  if (month < 1 || month > 12) bad(`no month ${month}`);
  if (day < 1 || day > daysInMonth(year, month)) bad(`${year}-${pad(month)} has no day ${day}`);
  if (hour > 23 || minute > 59 || second > 59) bad(`no time of day ${pad(hour)}:${pad(minute)}:${pad(second)}`);
  return { ms: utcFields(year, month, day, hour, minute, second, millis), offsetMs: m[8] === undefined ? null : parseOffset(m[8], bad) };
}

function parseOffset(text: string, bad: (what: string) => never): number {
  if (/^z$/i.test(text)) return 0;
  const hours = Number(text.slice(1, 3));
  const minutes = Number(text.slice(3).replace(':', '') || 0);
  if (hours > 23 || minutes > 59) bad(`no offset ${text}`);
  return (text.startsWith('-') ? -1 : 1) * (hours * HOUR + minutes * MINUTE);
}

function daysInMonth(year: number, month: number): number {
  return new Date(utcFields(year, month + 1, 0, 0, 0, 0, 0)).getUTCDate();
}

/** Date.UTC without its quirk of reading years 0–99 as 1900–1999. */
function utcFields(year: number, month: number, day: number, hour: number, minute: number, second: number, ms: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

function inRange(ms: number, input: string, zone: string): number {
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_TIME - 2 * DAY) {
    throw new TimeInputError(`"${input}" is out of range; ${acceptedForms(zone)}`, input);
  }
  return ms;
}

/** The one instant a local wall time names in `zone`, or TimeInputError showing the candidates. */
function localToUtc(wallMs: number, input: string, zone: string): number {
  // Offsets a day either side of the guess bracket any DST change near it; a reading is real
  // only if the zone has that offset at the resulting instant.
  const before = offsetAt(wallMs - DAY, zone);
  const after = offsetAt(wallMs + DAY, zone);
  const candidates = [...new Set([before, after])]
    .map((offset) => wallMs - offset)
    .filter((t) => offsetAt(t, zone) === wallMs - t)
    .sort((a, b) => a - b);
  if (candidates.length === 1) return candidates[0]!;
  const shown = (t: number, nameAt: number): string => `${new Date(t).toISOString()} (${zoneName(nameAt, zone)})`;
  if (candidates.length === 0) {
    // Read with the offset before the change and with the one after, earlier instant first.
    const readings = [{ t: wallMs - after, nameAt: wallMs + DAY }, { t: wallMs - before, nameAt: wallMs - DAY }].sort((a, b) => a.t - b.t);
    throw new TimeInputError(`"${input}" does not exist in ${zone} (clocks went forward): ${readings.map((r) => shown(r.t, r.nameAt)).join(' or ')}; give it in UTC`, input);
  }
  throw new TimeInputError(`"${input}" is ambiguous in ${zone} (clocks went back): ${candidates.map((t) => shown(t, t)).join(' or ')}; give it in UTC`, input);
}

// Formatters are costly to build and zones few: one of each kind per zone.
const fieldFormats = new Map<string, Intl.DateTimeFormat>();

function fieldFormat(zone: string): Intl.DateTimeFormat {
  let f = fieldFormats.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23',
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    fieldFormats.set(zone, f);
  }
  return f;
}

interface Fields { year: number; month: number; day: number; hour: number; minute: number; second: number }

/** The wall-clock fields of instant `ms` in `zone` (to the second). */
function fieldsAt(ms: number, zone: string): Fields {
  const parts = fieldFormat(zone).formatToParts(ms);
  const get = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)?.value);
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') };
}

/** The zone's offset from UTC at instant `ms`, in ms east of UTC. */
function offsetAt(ms: number, zone: string): number {
  const f = fieldsAt(ms, zone);
  const wholeSecond = Math.floor(ms / 1000) * 1000;
  return utcFields(f.year, f.month, f.day, f.hour, f.minute, f.second, 0) - wholeSecond;
}

// en-US names American zones (EST) but not European ones (GMT+1), which en-GB names (CET),
// and so on; the first locale with a name in letters wins, else the GMT±h form.
const NAME_LOCALES = ['en-US', 'en-GB', 'en-AU', 'en-IN'];
const nameFormats = new Map<string, Intl.DateTimeFormat>();

/** The zone's short name at instant `ms`: `CET`, `EDT`, `UTC`, or `GMT+9` where it has none. */
export function zoneName(ms: number, zone: string): string {
  let fallback = '';
  for (const locale of NAME_LOCALES) {
    const key = `${locale} ${zone}`;
    let f = nameFormats.get(key);
    if (!f) {
      f = new Intl.DateTimeFormat(locale, { timeZone: zone, timeZoneName: 'short' });
      nameFormats.set(key, f);
    }
    const name = f.formatToParts(ms).find((p) => p.type === 'timeZoneName')?.value ?? '';
    if (/^[A-Z]+$/.test(name)) return name;
    fallback ||= name;
  }
  return fallback;
}

/** The zone name as given if Intl knows it; TimeInputError naming it otherwise. */
function checkZone(zone: string): string {
  try {
    fieldFormat(zone);
    return zone;
  } catch {
    throw new TimeInputError(`unknown time zone "${zone}" (an IANA name such as Europe/Berlin, America/New_York or UTC)`, zone);
  }
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `2026-12-01 16:00:00` (or `2026-12-01 16:00`) in `timeZone`: for axes and lists. */
export function formatLocal(ms: number, timeZone?: string, withSeconds = true): string {
  const f = fieldsAt(ms, checkZone(timeZone ?? machineTimeZone()));
  const time = `${pad(f.hour)}:${pad(f.minute)}${withSeconds ? `:${pad(f.second)}` : ''}`;
  return `${pad(f.year, 4)}-${pad(f.month)}-${pad(f.day)} ${time}`;
}

/** `2026-12-01 16:00:00 CET (2026-12-01T15:00:00.000Z)`: what ctl prints for a time. */
export function formatLocalAndUtc(ms: number, timeZone?: string): string {
  const zone = checkZone(timeZone ?? machineTimeZone());
  return `${formatLocal(ms, zone)} ${zoneName(ms, zone)} (${new Date(ms).toISOString()})`;
}
