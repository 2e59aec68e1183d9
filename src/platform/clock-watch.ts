// Detects wall-clock jumps (NTP's first sync after a Pi boots, an operator setting the date)
// by watching the offset between the wall clock and the monotonic clock.
import type { Clock } from './clock.js';

export const CLOCK_JUMP_THRESHOLD_MS = 5_000;

/** Offset change beyond the threshold, or 0. Pure. */
export function clockJump(previousOffsetMs: number, currentOffsetMs: number, thresholdMs = CLOCK_JUMP_THRESHOLD_MS): number {
  const delta = currentOffsetMs - previousOffsetMs;
  return Math.abs(delta) > thresholdMs ? delta : 0;
}

export class ClockWatch {
  private offset: number;
  constructor(private readonly clock: Clock) {
    this.offset = clock.now() - clock.monotonic();
  }
  /** The jump since the last check in ms (0 if none); re-bases after a jump. */
  check(): number {
    const current = this.clock.now() - this.clock.monotonic();
    const jump = clockJump(this.offset, current);
    // Follow slow drift (NTP slewing) too, so it never adds up to a false jump.
    this.offset = current;
    return jump;
  }
}
