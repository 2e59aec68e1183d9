// The status LED: patterns staff can learn, timed here and written to any LedOutput.
//   locking    solid on while a lock is being made durable
//   confirmed  three slow blinks (0.6 s on, 0.4 s off), then off: the lock is on disk
//   error      fast flashing (0.1 s on, 0.1 s off) for 30 s: the lock could NOT be made durable
//   off
//   heartbeat  (button.heartbeat) while off: one short flash (80 ms) every 5 s while the agent
//              records, so staff can see the box is alive; no flash means look at it
// The shapes differ in rhythm, not only in length, so they read apart at a glance.
import type { Component } from '../lifecycle/component.js';
import type { Logger } from '../platform/logger.js';
import { systemTimers, type LedOutput, type Timers } from './types.js';

export type LedPattern = 'off' | 'locking' | 'confirmed' | 'error';

/** One step of a pattern; the last step of every schedule holds forever (`ms: Infinity`). */
export interface LedStep { on: boolean; ms: number }

export interface LedTiming {
  confirmOnMs: number;
  confirmOffMs: number;
  confirmBlinks: number;
  errorOnMs: number;
  errorOffMs: number;
  errorForMs: number;
}

export const LED_TIMING: LedTiming = {
  confirmOnMs: 600,
  confirmOffMs: 400,
  confirmBlinks: 3,
  errorOnMs: 100,
  errorOffMs: 100,
  errorForMs: 30_000,
};

export function ledSchedule(pattern: LedPattern, timing: LedTiming = LED_TIMING): LedStep[] {
  const blinks = (count: number, onMs: number, offMs: number): LedStep[] =>
    Array.from({ length: count }, (_, i) => [
      { on: true, ms: onMs },
      { on: false, ms: i === count - 1 ? Infinity : offMs },
    ]).flat();
  switch (pattern) {
    case 'off': return [{ on: false, ms: Infinity }];
    case 'locking': return [{ on: true, ms: Infinity }];
    case 'confirmed': return blinks(timing.confirmBlinks, timing.confirmOnMs, timing.confirmOffMs);
    case 'error': {
      const cycle = timing.errorOnMs + timing.errorOffMs;
      return blinks(Math.max(1, Math.ceil(timing.errorForMs / cycle)), timing.errorOnMs, timing.errorOffMs);
    }
  }
}

/** The heartbeat (CONTRACT §2 `button.heartbeat`): a short flash every `everyMs` while `healthy()`. */
export interface Heartbeat {
  healthy(): boolean;
  everyMs?: number;
  onMs?: number;
}
export const HEARTBEAT_EVERY_MS = 5_000;
export const HEARTBEAT_ON_MS = 80;

export interface LedDeps {
  output: LedOutput;
  log: Logger;
  timers?: Timers;
  timing?: LedTiming;
  heartbeat?: Heartbeat | undefined;
}

export class Led implements Component {
  readonly name = 'led';
  private current: LedPattern = 'off';
  private lit = false;
  private timer: unknown;
  private started = false;
  private inFlight = 0;
  private failedInFlight = false;

  constructor(private readonly deps: LedDeps) {}

  async start(_signal?: AbortSignal): Promise<void> {
    if (this.started) return;
    try {
      await this.deps.output.open();
    } catch (err) {
      // A missing LED never stops the button or the recorder: thrown to the supervisor, which
      // reports it and tries again; meanwhile patterns are kept and shown once it opens.
      this.deps.log.error({ err }, 'status LED unavailable');
      throw err;
    }
    this.started = true;
    this.show(this.current);
    this.beat();
  }

  /** The heartbeat's next flash: only while no pattern shows (a flash never cuts into one). */
  private beat(): void {
    const hb = this.deps.heartbeat;
    if (!hb || !this.started) return;
    const timers = this.deps.timers ?? systemTimers;
    this.beatTimer = timers.setTimeout(() => {
      this.beatTimer = undefined;
      if (!this.started) return;
      if (this.current === 'off' && this.timer === undefined && hb.healthy()) {
        this.write(true);
        this.timer = timers.setTimeout(() => {
          this.timer = undefined;
          if (this.current === 'off') this.write(false);
        }, hb.onMs ?? HEARTBEAT_ON_MS);
      }
      this.beat();
    }, hb.everyMs ?? HEARTBEAT_EVERY_MS);
  }

  private beatTimer: unknown;

  async stop(): Promise<void> {
    if (!this.started) return;
    if (this.beatTimer !== undefined) (this.deps.timers ?? systemTimers).clearTimeout(this.beatTimer);
    this.beatTimer = undefined;
    this.cancel();
    this.write(false);
    this.started = false;
    await this.deps.output.close().catch((err: unknown) => this.deps.log.warn({ err }, 'could not release the LED line'));
  }

  /** The pattern being shown: a finished `confirmed` or `error` reads `off`. */
  pattern(): LedPattern {
    return this.current;
  }

  /** Whether the LED is lit right now. */
  isOn(): boolean {
    return this.lit;
  }

  show(pattern: LedPattern): void {
    this.cancel();
    this.current = pattern;
    this.run(ledSchedule(pattern, this.deps.timing), 0);
  }

  /**
   * Lights the LED while `work` (making a lock durable) runs, then confirms or shows the
   * error. Overlapping calls (a second press while the first lock is written) keep it solid
   * until all are done; any failure among them shows the error.
   */
  async during<T>(work: () => Promise<T>): Promise<T> {
    if (this.inFlight++ === 0) this.failedInFlight = false;
    this.show('locking');
    let ok = false;
    try {
      const result = await work();
      ok = true;
      return result;
    } finally {
      if (!ok) this.failedInFlight = true;
      if (--this.inFlight === 0) this.show(this.failedInFlight ? 'error' : 'confirmed');
    }
  }

  private run(steps: LedStep[], index: number): void {
    const step = steps[index];
    if (!step) return;
    this.write(step.on);
    if (step.ms === Infinity) {
      if (index > 0 && !step.on) this.current = 'off';
      return;
    }
    const timers = this.deps.timers ?? systemTimers;
    this.timer = timers.setTimeout(() => {
      this.timer = undefined;
      this.run(steps, index + 1);
    }, step.ms);
  }

  private cancel(): void {
    if (this.timer === undefined) return;
    (this.deps.timers ?? systemTimers).clearTimeout(this.timer);
    this.timer = undefined;
  }

  private write(on: boolean): void {
    this.lit = on;
    if (!this.started) return;
    try {
      this.deps.output.set(on);
    } catch (err) {
      this.deps.log.warn({ err }, 'could not set the LED');
    }
  }
}

/** For backends without an LED line: patterns still run (the demo shows them), nothing is driven. */
export class NullLedOutput implements LedOutput {
  async open(): Promise<void> {}
  set(): void {}
  async close(): Promise<void> {}
}
