// A part of the agent that may fail without stopping the recording (CONTRACT §5: sync, the
// fleet link, the sealer, the button, the LED, the control socket). A failure to start, or a
// failure it reports later, becomes a fault in the state; the part is then built afresh and
// started again with capped exponential backoff and jitter, until it works and the fault clears.
// Only the recorders and the ring are essential and run unsupervised: their failure stops the
// agent and systemd restarts it.
import type { Component } from './component.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import type { Faults } from './faults.js';
import type { Logger } from '../platform/logger.js';
import { systemTimers, type Timers } from '../platform/timers.js';

/** Handed to each build: the part calls it when it fails while running. */
export type FailHandler = (err: unknown) => void;

export interface SupervisedDeps<T extends Component> {
  /** The fault's component name (CONTRACT §5). */
  name: string;
  /** A fresh instance for each attempt; constructors only assign, so building is cheap. */
  build: (fail: FailHandler) => T | Promise<T>;
  faults: Faults;
  log: Logger;
  backoff?: BackoffPolicy;
  random?: () => number;
  timers?: Timers;
  /** Monotonic milliseconds, to tell a part that ran a while from one that fails at once. */
  monotonic?: () => number;
  /** After this long running, the next failure starts the backoff from the beginning again. */
  stableMs?: number;
  /** How long a failed part may take to stop before it is abandoned. */
  stopTimeoutMs?: number;
  /**
   * For a part that heals itself (the button restarts gpiomon with its own backoff): what is
   * wrong with it while it runs, or null. Read every `problemIntervalMs`; reported as its fault
   * and cleared when gone, without restarting it.
   */
  problem?: (instance: T) => string | null;
  problemIntervalMs?: number;
}

export const SUPERVISOR_BACKOFF: BackoffPolicy = { baseMs: 2_000, maxMs: 300_000, jitter: 0.5 };

export class Supervised<T extends Component> implements Component {
  readonly name: string;
  private instance: T | undefined;
  private attempts = 0;
  private runningSince = 0;
  private retryTimer: unknown;
  private problemTimer: NodeJS.Timeout | undefined;
  private active = false;
  private signal: AbortSignal = new AbortController().signal;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly deps: SupervisedDeps<T>) {
    this.name = deps.name;
  }

  /** Tries once; a failure is reported and retried later, never thrown: the agent goes on. */
  async start(signal: AbortSignal): Promise<void> {
    this.active = true;
    this.signal = signal;
    await this.attempt();
  }

  async stop(): Promise<void> {
    this.active = false;
    this.cancelRetry();
    clearInterval(this.problemTimer);
    this.problemTimer = undefined;
    // A failure handled meanwhile chains its instance's stop onto inFlight: wait for all of it.
    for (let seen: Promise<void> | undefined; seen !== this.inFlight;) {
      seen = this.inFlight;
      await seen;
    }
    const instance = this.instance;
    this.instance = undefined;
    await instance?.stop();
  }

  /** The running instance, or undefined while the part is failing. */
  current(): T | undefined {
    return this.instance;
  }

  /** Retry at once when failing (an operator fixed the cause and asked); resolves after the attempt. */
  async retryNow(): Promise<void> {
    if (!this.active || this.instance) return;
    this.cancelRetry();
    await this.attempt();
  }

  private attempt(): Promise<void> {
    this.inFlight = this.inFlight.then(() => this.tryStart());
    return this.inFlight;
  }

  private async tryStart(): Promise<void> {
    if (!this.active || this.instance) return;
    let built: T | undefined;
    // A failure reported while start() is still running (a loop that broke at once) counts
    // as a failed start.
    let failedEarly: { err: unknown } | undefined;
    try {
      built = await this.deps.build((err) => {
        if (built !== undefined && this.instance === undefined && !failedEarly) failedEarly = { err };
        else this.failed(built, err);
      });
      await built.start(this.signal);
      if (failedEarly) throw failedEarly.err;
    } catch (err) {
      await built?.stop().catch(() => {});
      this.deps.faults.report(this.name, err);
      this.scheduleRetry();
      return;
    }
    if (!this.active) {
      await built.stop().catch(() => {});
      return;
    }
    this.instance = built;
    this.runningSince = this.now();
    if (this.attempts > 0) this.deps.log.info({ component: this.name, attempts: this.attempts }, 'started after retrying');
    this.deps.faults.clear(this.name);
    if (this.deps.problem && !this.problemTimer) {
      this.problemTimer = setInterval(() => this.checkProblem(), this.deps.problemIntervalMs ?? 5_000);
      this.problemTimer.unref();
    }
  }

  private checkProblem(): void {
    const instance = this.instance;
    if (!instance || !this.deps.problem) return;
    const problem = this.deps.problem(instance);
    if (problem) this.deps.faults.report(this.name, problem);
    else this.deps.faults.clear(this.name);
  }

  /** A running instance reports that it cannot go on: it is stopped and built again later. */
  private failed(which: T | undefined, err: unknown): void {
    if (!which || which !== this.instance) return;
    this.instance = undefined;
    if (this.now() - this.runningSince >= (this.deps.stableMs ?? 5 * 60_000)) this.attempts = 0;
    this.deps.faults.report(this.name, err);
    const stopping = this.stopWithin(which);
    this.inFlight = this.inFlight.then(() => stopping);
    if (this.active) this.scheduleRetry();
  }

  private async stopWithin(which: T): Promise<void> {
    const timers = this.deps.timers ?? systemTimers;
    let handle: unknown;
    const timeout = new Promise<void>((resolve) => { handle = timers.setTimeout(resolve, this.deps.stopTimeoutMs ?? 15_000); });
    try {
      await Promise.race([which.stop().catch((err: unknown) => this.deps.log.warn({ component: this.name, err }, 'failed part did not stop cleanly')), timeout]);
    } finally {
      timers.clearTimeout(handle);
    }
  }

  private scheduleRetry(): void {
    if (!this.active) return;
    this.cancelRetry();
    this.attempts++;
    const delay = backoffDelay(this.attempts, this.deps.backoff ?? SUPERVISOR_BACKOFF, this.deps.random);
    this.deps.log.warn({ component: this.name, attempt: this.attempts, retryInMs: delay }, 'will try again');
    const timers = this.deps.timers ?? systemTimers;
    this.retryTimer = timers.setTimeout(() => {
      this.retryTimer = undefined;
      void this.attempt();
    }, delay);
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    (this.deps.timers ?? systemTimers).clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private now(): number {
    return this.deps.monotonic?.() ?? performance.now();
  }
}
