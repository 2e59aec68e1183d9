// The unit syntax of CONTRACT §2: sizes (`512MB` = 10⁶, `2GiB` = 2³⁰, plain bytes),
// durations (`50ms`, `90s`, `5m`, `2h`, `30d`, plain seconds) and rates (`4Mbit`, bits per second).
// Parsers return null on bad input so the schema can name the field in its own error.

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1, '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000,
};

const RATE_UNITS: Record<string, number> = {
  bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9,
};

function parseWithUnits(input: unknown, units: Record<string, number>): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input * (units[''] ?? NaN) : null;
  if (typeof input !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (!m) return null;
  const factor = units[m[2]!.toLowerCase()];
  if (factor === undefined) return null;
  return Number(m[1]) * factor;
}

/** Bytes, or null if not a size. */
export function parseSize(input: unknown): number | null {
  const v = parseWithUnits(input, SIZE_UNITS);
  return v === null ? null : Math.round(v);
}

/** Milliseconds, or null if not a duration. */
export function parseDuration(input: unknown): number | null {
  const v = parseWithUnits(input, DURATION_UNITS);
  return v === null ? null : Math.round(v);
}

/** Bits per second, or null if not a rate. A plain number is bits per second. */
export function parseRate(input: unknown): number | null {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : null;
  return parseWithUnits(input, RATE_UNITS);
}

export function formatBytes(bytes: number): string {
  const abs = Math.abs(bytes);
  if (abs >= 1e12) return `${(bytes / 1e12).toFixed(1)} TB`;
  if (abs >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (abs >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (abs >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  const h = s / 3600;
  if (h < 48) return `${h.toFixed(1)}h`;
  return `${(h / 24).toFixed(1)}d`;
}
