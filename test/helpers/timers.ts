import type { Timers } from '../../src/platform/timers.js';
import type { ManualClock } from '../../src/platform/clock.js';

/** Timers driven by a ManualClock: advance() runs what falls due, in order. */
export class ManualTimers implements Timers {
  private pending: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  constructor(private readonly clock: ManualClock) {}
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.push({ at: this.clock.monotonic() + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending = this.pending.filter((t) => t.id !== handle);
  }
  count(): number { return this.pending.length; }
  advance(ms: number): void {
    const until = this.clock.monotonic() + ms;
    for (;;) {
      const due = this.pending.filter((t) => t.at <= until).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.pending = this.pending.filter((t) => t !== due);
      this.clock.advance(due.at - this.clock.monotonic());
      due.fn();
    }
    this.clock.advance(until - this.clock.monotonic());
  }
}
