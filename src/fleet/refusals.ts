// Refused commands, audited as a count per minute (CONTRACT §7): a flood of forged or replayed
// commands must not flood the audit log, yet every minute with refusals leaves one entry that
// says how many and why.
import type { AuditLog } from '../audit/log.js';
import type { Component } from '../lifecycle/component.js';
import { iso, type Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';

/** Distinct reasons kept per minute; the rest are counted under "other". */
const MAX_REASONS = 10;
const REASON_CHARS = 160;

export class RefusalTally implements Component {
  readonly name = 'refusals';
  private count = 0;
  private reasons = new Map<string, number>();
  private fromMs = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: { audit: Pick<AuditLog, 'append'>; clock: Clock; log: Logger; everyMs?: number }) {}

  async start(): Promise<void> {
    this.fromMs = this.deps.clock.now();
    this.timer = setInterval(() => void this.flush(), this.deps.everyMs ?? 60_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  add(reason: string): void {
    this.count++;
    const key = this.reasons.has(reason) || this.reasons.size < MAX_REASONS ? reason.slice(0, REASON_CHARS) : 'other';
    this.reasons.set(key, (this.reasons.get(key) ?? 0) + 1);
  }

  async flush(): Promise<void> {
    const to = this.deps.clock.now();
    if (this.count === 0) {
      this.fromMs = to;
      return;
    }
    const entry = { from: iso(this.fromMs), to: iso(to), count: this.count, reasons: Object.fromEntries(this.reasons) };
    this.count = 0;
    this.reasons = new Map();
    this.fromMs = to;
    await this.deps.audit.append('refused', entry)
      .catch((err: unknown) => this.deps.log.error({ err, refused: entry.count }, 'refused commands could not be audited'));
  }
}
