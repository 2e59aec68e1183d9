// Time is injected everywhere: wall time for names and windows, monotonic time for
// measuring intervals (a Pi's wall clock jumps when NTP first syncs after boot).

export interface Clock {
  /** Wall-clock milliseconds since the epoch (may jump). */
  now(): number;
  /** Monotonic milliseconds (never jumps; counts from boot on Linux, so it is comparable across runs of one boot). */
  monotonic(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  // CLOCK_MONOTONIC (libuv's hrtime): from boot, not from process start like performance.now().
  monotonic: () => Number(process.hrtime.bigint() / 1_000n) / 1_000,
};

/** ISO-8601 UTC with milliseconds, the one time format the product writes. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A clock driven by hand (tests). */
export class ManualClock implements Clock {
  constructor(private wall = Date.UTC(2026, 10, 28, 12), private mono = 1_000_000) {}
  now(): number { return this.wall; }
  monotonic(): number { return this.mono; }
  /** Time passes: both clocks advance. */
  advance(ms: number): void { this.wall += ms; this.mono += ms; }
  /** The wall clock is set (NTP, faketime): only it moves. */
  jump(ms: number): void { this.wall += ms; }
}
