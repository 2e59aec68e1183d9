// Whether the OS says the clock is synchronised, polled now and then and read synchronously by
// the ring, the sealer and the health report. Asking timedatectl costs a process (a fork of the
// agent), so it is asked every poll only while the answer may change soon: not at all where it
// is not installed, and every tenth poll once it has said the clock is synchronised.
import type { Component } from '../lifecycle/component.js';
import { askTimedatectl, timesyncdSynced } from './device.js';

/** Once synchronised, timedatectl is asked only every this many polls (5 min at the default 30 s). */
const SYNCED_EVERY = 10;

export class ClockStatus implements Component {
  readonly name = 'clock-status';
  private value: boolean | null = null;
  private timer: NodeJS.Timeout | undefined;
  private polls = 0;
  private timedatectlMissing = false;

  constructor(private readonly deps: {
    /** The whole reading, replaced in tests. */
    read?: () => Promise<boolean | null>;
    root?: string;
    timedatectl?: string;
    intervalMs?: number;
  } = {}) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.deps.intervalMs ?? 30_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
  }

  /** true synced, false not synced, null the OS cannot tell. */
  synced(): boolean | null {
    return this.value;
  }

  private async refresh(): Promise<void> {
    this.value = await (this.deps.read ?? (() => this.readOs()))().catch(() => null);
  }

  private async readOs(): Promise<boolean | null> {
    const poll = this.polls++;
    if (await timesyncdSynced(this.deps.root)) return true;
    if (this.timedatectlMissing) return null;
    if (this.value === true && poll % SYNCED_EVERY !== 0) return true;
    try {
      return await askTimedatectl(this.deps.timedatectl);
    } catch {
      this.timedatectlMissing = true; // not installed: no point forking for it every poll
      return null;
    }
  }
}
