// Whether the OS says the clock is synchronised, polled now and then (asking timedatectl
// costs a process) and read synchronously by the ring, the sealer and the health report.
import type { Component } from '../lifecycle/component.js';
import { clockSynced } from './device.js';

export class ClockStatus implements Component {
  readonly name = 'clock-status';
  private value: boolean | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: { read?: () => Promise<boolean | null>; intervalMs?: number } = {}) {}

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
    this.value = await (this.deps.read ?? (() => clockSynced()))().catch(() => null);
  }
}
