// Events for the fleet go through a small durable outbox: each gets the node's next `id`
// (rising by one, so consumers drop duplicates and see gaps), survives restarts and broker
// outages, and is delivered in order once the link is back. Bounded: past the limit the
// oldest undelivered events are dropped, and the gap in ids says so.
//
// On disk it is a journal appended to, one JSON line per change — `{"e": event}` when one is
// added (fdatasynced before add() resolves), `{"d": id}` when the broker took everything up to
// id — rather than the whole outbox rewritten for every event, which on an SD card cost a
// file, a rename and two fsyncs per button press. It is compacted at start and whenever
// everything is delivered and the journal has grown. A line cut short by a crash is dropped.
import { open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import type { EventPayload, EventType } from './topics.js';

export const OUTBOX_LIMIT = 5_000;
export const OUTBOX_FILE = 'events-outbox.jsonl';
/** The outbox of earlier releases (one JSON document), read once and replaced. */
const LEGACY_FILE = 'events-outbox.json';
/** A journal this large is compacted once everything in it is delivered. */
const COMPACT_BYTES = 256 * 1024;

interface Replayed { nextId: number; pending: EventPayload[]; damaged: number }

function isEvent(v: unknown): v is EventPayload {
  const e = v as EventPayload;
  return typeof v === 'object' && v !== null && Number.isSafeInteger(e.id) && typeof e.type === 'string' && typeof e.ts === 'string';
}

/** The outbox a journal describes. Pure. */
export function replayOutbox(text: string, limit = OUTBOX_LIMIT): Replayed {
  let nextId = 1;
  let pending: EventPayload[] = [];
  const seen = new Set<number>();
  let damaged = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let entry: { n?: unknown; e?: unknown; d?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      damaged++;
      continue;
    }
    if (typeof entry.n === 'number' && Number.isSafeInteger(entry.n)) {
      nextId = Math.max(nextId, entry.n);
    } else if (isEvent(entry.e)) {
      // An event can be written twice (a rewrite raced its own append): ids say so.
      if (!seen.has(entry.e.id)) pending.push(entry.e);
      seen.add(entry.e.id);
      nextId = Math.max(nextId, entry.e.id + 1);
    } else if (typeof entry.d === 'number') {
      const upTo = entry.d;
      pending = pending.filter((e) => e.id > upTo);
    } else {
      damaged++;
    }
  }
  if (pending.length > limit) pending = pending.slice(pending.length - limit);
  return { nextId, pending, damaged };
}

export class EventOutbox implements Component {
  readonly name = 'event-outbox';
  private nextId = 1;
  private queue: EventPayload[] = [];
  private journal: FileHandle | undefined;
  private journalBytes = 0;
  private writing: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly deps: { stateDir: string; clock: Clock; log: Logger; limit?: number }) {}

  private get path(): string {
    return join(this.deps.stateDir, OUTBOX_FILE);
  }

  async start(): Promise<void> {
    const { log } = this.deps;
    const text = await readFile(this.path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    let replayed: Replayed;
    if (text !== null) {
      replayed = replayOutbox(text, this.deps.limit);
      if (replayed.damaged > 0) log.warn({ lines: replayed.damaged }, 'event outbox: damaged lines skipped (a write cut short)');
    } else {
      replayed = await this.readLegacy();
    }
    this.nextId = replayed.nextId;
    this.queue = replayed.pending;
    // Not written (a state dir that cannot take writes now): the events wait in memory, the
    // next append tries again, and the outbox of an earlier release stays until the journal is.
    await this.enqueue(() => this.rewrite()).catch(() => {});
    if (this.journal) await rm(join(this.deps.stateDir, LEGACY_FILE), { force: true }).catch(() => {});
  }

  async stop(): Promise<void> {
    await this.writing;
    const journal = this.journal;
    this.journal = undefined;
    await journal?.close();
  }

  /** Adds an event; resolves once it is on disk, rejects if it could not be written (it is kept in memory). */
  async add(type: EventType, fields: Record<string, unknown>): Promise<EventPayload> {
    const { id: _id, type: _type, ts: _ts, ...rest } = fields;
    const event: EventPayload = { id: this.nextId++, type, ts: iso(this.deps.clock.now()), ...rest };
    this.queue.push(event);
    const limit = this.deps.limit ?? OUTBOX_LIMIT;
    if (this.queue.length > limit) {
      const dropped = this.queue.splice(0, this.queue.length - limit);
      this.deps.log.warn({ dropped: dropped.length, fromId: dropped[0]?.id }, 'event outbox full: oldest undelivered events dropped');
    }
    await this.append({ e: event }, true);
    for (const l of this.listeners) l();
    return event;
  }

  /** Undelivered events, oldest first. */
  pending(): readonly EventPayload[] {
    return this.queue;
  }

  /** The broker acknowledged this event: it and everything before it leave the outbox. */
  delivered(id: number): void {
    const at = this.queue.findIndex((e) => e.id === id);
    if (at < 0) return;
    this.queue.splice(0, at + 1);
    // Not synced: a crash before it reaches the disk re-sends a few events, which ids make harmless.
    void this.append({ d: id }, false).then(() => {
      if (this.queue.length === 0 && this.journalBytes > COMPACT_BYTES) return this.enqueue(() => this.rewrite());
      return undefined;
    }).catch(() => {});
  }

  onAdded(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private append(entry: object, sync: boolean): Promise<void> {
    const line = `${JSON.stringify(entry)}\n`;
    return this.enqueue(async () => {
      // No journal (the last write failed): written anew, it holds this change already.
      if (!this.journal) return this.rewrite();
      const journal = this.journal;
      try {
        await journal.appendFile(line);
        if (sync) await journal.datasync();
      } catch (err) {
        // Part of the line may be on disk: never append after a torn line; write anew next time.
        this.journal = undefined;
        await journal.close().catch(() => {});
        throw err;
      }
      this.journalBytes += Buffer.byteLength(line);
    });
  }

  /** Writes run one at a time, in order; the returned promise says how this one went. */
  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.writing.then(work);
    this.writing = run.catch((err: unknown) => this.deps.log.error({ err }, 'could not write the event outbox'));
    return run;
  }

  /** The journal anew: what is pending and the next id, durably, then appended to. */
  private async rewrite(): Promise<void> {
    await this.journal?.close();
    this.journal = undefined;
    const text = [JSON.stringify({ n: this.nextId }), ...this.queue.map((e) => JSON.stringify({ e }))].join('\n') + '\n';
    await writeFileDurable(this.path, text);
    this.journal = await open(this.path, 'a');
    this.journalBytes = Buffer.byteLength(text);
  }

  /** The one-document outbox of earlier releases, once; removed after the journal holds it. */
  private async readLegacy(): Promise<Replayed> {
    const legacy = join(this.deps.stateDir, LEGACY_FILE);
    let text: string;
    try {
      text = await readFile(legacy, 'utf8');
    } catch {
      return { nextId: 1, pending: [], damaged: 0 };
    }
    let replayed: Replayed;
    try {
      const data = JSON.parse(text) as { nextId?: unknown; pending?: unknown };
      if (typeof data.nextId !== 'number' || !Array.isArray(data.pending)) throw new Error('unexpected shape');
      replayed = { nextId: data.nextId, pending: data.pending.filter(isEvent), damaged: 0 };
    } catch (err) {
      // Ids must keep rising: start past anything that might have been published.
      this.deps.log.error({ err: (err as Error).message }, 'event outbox is corrupt; undelivered events lost, ids continue from the clock');
      replayed = { nextId: Math.floor(this.deps.clock.now() / 1000), pending: [], damaged: 1 };
    }
    return replayed;
  }
}
