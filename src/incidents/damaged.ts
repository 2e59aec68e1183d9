// Sealed incidents found damaged — a manifest missing or unreadable, a clip gone or of another
// size than its manifest says (a crash between seal and enqueue, a disk fault) — are moved aside
// to `<storage>/incidents/<id>.damaged/`, never deleted, and reported (CONTRACT §5): an audit
// entry, the event `incident.damaged`, and the count in the state. The rest goes on.
import { mkdir, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditLog } from '../audit/log.js';
import type { EventBus } from '../events.js';
import type { Component } from '../lifecycle/component.js';
import { iso, type Clock } from '../platform/clock.js';
import { fsyncDir } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { INCIDENT_ID } from './incident.js';

export const DAMAGED_SUFFIX = '.damaged';

export class DamagedIncidents implements Component {
  readonly name = 'damaged-incidents';
  private readonly ids = new Set<string>();

  constructor(private readonly deps: { sealedDir: string; audit: Pick<AuditLog, 'append'>; events: EventBus; clock: Clock; log: Logger }) {}

  /** Those set aside earlier are still there (the filesystem is the record). */
  async start(): Promise<void> {
    for (const name of await readdir(this.deps.sealedDir).catch(() => [] as string[])) {
      const id = name.endsWith(DAMAGED_SUFFIX) ? name.slice(0, -DAMAGED_SUFFIX.length) : '';
      if (INCIDENT_ID.test(id)) this.ids.add(id);
    }
    if (this.ids.size > 0) this.deps.log.warn({ incidents: [...this.ids] }, 'damaged incidents kept aside');
  }

  async stop(): Promise<void> {}

  count(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Moves the incident's folder aside (whatever is left of it) and reports it. */
  async setAside(id: string, reason: string): Promise<void> {
    const { sealedDir, log } = this.deps;
    const folder = join(sealedDir, id);
    let keptAt = join(sealedDir, `${id}${DAMAGED_SUFFIX}`);
    if (await stat(folder).then(() => true, () => false)) {
      // Set aside before: keep this one too, under the first.
      if (await stat(keptAt).then(() => true, () => false)) keptAt = join(keptAt, `again-${iso(this.deps.clock.now()).replace(/[:.]/g, '')}`);
      else await mkdir(sealedDir, { recursive: true });
      await rename(folder, keptAt);
      await fsyncDir(sealedDir);
    } else if (!(await stat(keptAt).then(() => true, () => false))) {
      // Nothing left to keep; the folder marks it (and holds nothing that was not already lost).
      await mkdir(keptAt, { recursive: true });
      await fsyncDir(sealedDir);
    }
    const first = !this.ids.has(id);
    this.ids.add(id);
    log.error({ incident: id, reason, keptAt }, 'incident damaged: set aside, not deleted');
    await this.deps.audit.append('damaged', { incident: id, reason, keptAt });
    if (first) this.deps.events.emit('incident.damaged', { incident: id, reason });
  }
}
