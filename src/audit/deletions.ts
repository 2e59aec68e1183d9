// The ring deletes footage every few seconds; the audit log gets a summary per camera and
// reason every few minutes (and at stop) instead of a line per pass, so it stays small
// enough to keep for years.
import type { Component } from '../lifecycle/component.js';
import type { EventBus, AgentEvents } from '../events.js';
import type { Logger } from '../platform/logger.js';
import type { AuditLog } from './log.js';
import { deletePayload } from './log.js';

type Deleted = AgentEvents['segments.deleted'];

/** Folds one deletion into the running summary for its camera and reason. Pure. */
export function foldDeletion(summary: Map<string, Deleted>, d: Deleted): void {
  const key = `${d.camera}\u0000${d.reason}`;
  const prev = summary.get(key);
  summary.set(key, prev
    ? { camera: d.camera, reason: d.reason, startMs: Math.min(prev.startMs, d.startMs), endMs: Math.max(prev.endMs, d.endMs), bytes: prev.bytes + d.bytes, count: prev.count + d.count }
    : { ...d });
}

export class DeletionAudit implements Component {
  readonly name = 'deletion-audit';
  private summary = new Map<string, Deleted>();
  private timer: NodeJS.Timeout | undefined;
  private off: (() => void) | undefined;

  constructor(private readonly deps: { events: EventBus; audit: Pick<AuditLog, 'append'>; log: Logger; flushIntervalMs?: number }) {}

  async start(): Promise<void> {
    this.off = this.deps.events.on('segments.deleted', (d) => foldDeletion(this.summary, d));
    this.timer = setInterval(() => void this.flush(), this.deps.flushIntervalMs ?? 300_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.off?.();
    await this.flush();
  }

  async flush(): Promise<void> {
    const entries = [...this.summary.values()];
    this.summary = new Map();
    for (const e of entries) {
      try {
        await this.deps.audit.append('delete', deletePayload(e));
      } catch (err) {
        this.deps.log.error({ err, camera: e.camera }, 'could not audit deleted footage');
      }
    }
  }
}
