// Events for the fleet go through a small durable outbox: each gets the node's next `id`
// (rising by one, so consumers drop duplicates and see gaps), survives restarts and broker
// outages, and is delivered in order once the link is back. Bounded: past the limit the
// oldest undelivered events are dropped, and the gap in ids says so.
import { join } from 'node:path';
import { Low } from 'lowdb';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { CorruptFileError, DurableJsonFile } from '../platform/durable-json.js';
import type { EventPayload, EventType } from './topics.js';

interface OutboxData { nextId: number; pending: EventPayload[] }

export const OUTBOX_LIMIT = 5_000;

export class EventOutbox implements Component {
  readonly name = 'event-outbox';
  private db: Low<OutboxData> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private dirty = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly deps: { stateDir: string; clock: Clock; log: Logger; limit?: number }) {}

  async start(): Promise<void> {
    const path = join(this.deps.stateDir, 'events-outbox.json');
    const db = new Low<OutboxData>(new DurableJsonFile(path, 'outbox.write'), { nextId: 1, pending: [] });
    try {
      await db.read();
      if (!Array.isArray(db.data.pending) || typeof db.data.nextId !== 'number') throw new CorruptFileError(path, 'unexpected shape');
    } catch (err) {
      if (!(err instanceof CorruptFileError)) throw err;
      // Ids must keep rising: start past anything that might have been published.
      this.deps.log.error({ err: err.message }, 'event outbox is corrupt; undelivered events lost, ids continue from the clock');
      db.data = { nextId: Math.floor(this.deps.clock.now() / 1000), pending: [] };
    }
    this.db = db;
  }

  async stop(): Promise<void> {
    await this.flushWrites();
  }

  /** Adds an event; resolves once it is on disk. */
  async add(type: EventType, fields: Record<string, unknown>): Promise<EventPayload> {
    const db = this.db!;
    const { id: _id, type: _type, ts: _ts, ...rest } = fields;
    const event: EventPayload = { id: db.data.nextId++, type, ts: iso(this.deps.clock.now()), ...rest };
    db.data.pending.push(event);
    const limit = this.deps.limit ?? OUTBOX_LIMIT;
    if (db.data.pending.length > limit) {
      const dropped = db.data.pending.splice(0, db.data.pending.length - limit);
      this.deps.log.warn({ dropped: dropped.length, fromId: dropped[0]?.id }, 'event outbox full: oldest undelivered events dropped');
    }
    await this.persist();
    for (const l of this.listeners) l();
    return event;
  }

  /** Undelivered events, oldest first. */
  pending(): readonly EventPayload[] {
    return this.db?.data.pending ?? [];
  }

  /** The broker acknowledged this event: it leaves the outbox. */
  delivered(id: number): void {
    const db = this.db;
    if (!db) return;
    const at = db.data.pending.findIndex((e) => e.id === id);
    if (at < 0) return;
    db.data.pending.splice(0, at + 1);
    // Written lazily: a crash before the write re-sends a few events, which ids make harmless.
    void this.persist();
  }

  onAdded(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private persist(): Promise<void> {
    this.dirty = true;
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      await this.db!.write();
    }).catch((err: unknown) => {
      this.deps.log.error({ err }, 'could not write the event outbox');
    });
    return this.writing;
  }

  private async flushWrites(): Promise<void> {
    await this.writing;
  }
}
