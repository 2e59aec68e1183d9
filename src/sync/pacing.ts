// Being polite to a small branch uplink: a token bucket on bytes sent, and the local-time
// window for non-urgent incidents. Both pure, with the clock injected.

/** Token bucket: `rateBps` bytes per second on average, bursts up to `burstBytes`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(readonly rateBytesPerSecond: number, readonly burstBytes: number, private readonly now: () => number) {
    this.tokens = burstBytes;
    this.last = now();
  }

  /** Takes `bytes`; returns how long to wait (ms) before sending them so the rate holds. */
  take(bytes: number): number {
    const t = this.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((t - this.last) / 1000) * this.rateBytesPerSecond);
    this.last = t;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.rateBytesPerSecond) * 1000);
  }
}

/** "HH:MM-HH:MM" in minutes since local midnight; the window may wrap past midnight. */
export function parseWindow(window: string): { from: number; to: number } {
  const m = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(window);
  if (!m) throw new Error(`not a window: ${window}`);
  return { from: Number(m[1]) * 60 + Number(m[2]), to: Number(m[3]) * 60 + Number(m[4]) };
}

/** Whether local time `date` is inside the window. A window whose ends are equal is always open. */
export function inWindow(date: Date, window: string): boolean {
  const { from, to } = parseWindow(window);
  const minute = date.getHours() * 60 + date.getMinutes();
  if (from === to) return true;
  return from < to ? minute >= from && minute < to : minute >= from || minute < to;
}

/** Milliseconds until the window next opens (0 when open). */
export function msUntilWindow(date: Date, window: string): number {
  if (inWindow(date, window)) return 0;
  const { from } = parseWindow(window);
  const opens = new Date(date);
  opens.setHours(Math.floor(from / 60), from % 60, 0, 0);
  if (opens.getTime() <= date.getTime()) opens.setDate(opens.getDate() + 1);
  return opens.getTime() - date.getTime();
}
