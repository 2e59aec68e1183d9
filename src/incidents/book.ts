// The incident book: every incident of this node, kept in lowdb under node.stateDir and
// written durably before a lock is acknowledged. It serves the ring's locks.
import { createReadStream, existsSync } from 'node:fs';
import { access, readdir, readFile, rename, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Low } from 'lowdb';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import type { LockedRange } from '../store/eviction.js';
import type { AuditLog, AuditPayloads } from '../audit/log.js';
import { readRawLines, sha256Hex } from '../audit/chain.js';
import type { StepSource } from '../platform/clock-steps.js';
import { CorruptFileError, DurableJsonFile } from '../platform/durable-json.js';
import {
  applyExtension,
  extendIncident,
  type Disclosure, type Extension, type HoldRequest, INCIDENT_ID, type LegalBasis, isExtendable, lockedRanges, type Note, openHold, openIncident, shiftWindow, widenWindow,
  type Incident, type IncidentState, type TriggerRequest, type TriggerSigner, type WindowPolicy, withCurrentFields,
} from './incident.js';

/**
 * The time base each incident's window was drawn in: the boot and how many of its clock steps
 * had been taken in (see ClockSteps). A step moves only windows drawn earlier in its own boot,
 * once each — also when it is taken in again after a crash.
 */
interface WindowBase { boot: string; step: number }
interface BookData { version: 1; incidents: Incident[]; bases?: Record<string, WindowBase> }

export class BookError extends Error {
  constructor(readonly code: 'not_found' | 'conflict' | 'bad_request', message: string) {
    super(message);
    this.name = 'BookError';
  }
}

/** A press the book keeps in memory (the ring honours it) until the state dir can be written. */
export class LockNotDurable extends Error {
  constructor(readonly incident: string, cause: unknown) {
    super(`lock ${incident} is kept in memory and honoured, but could not be written yet (${(cause as Error)?.message ?? String(cause)}); retrying`);
    this.name = 'LockNotDurable';
  }
}

/** Owed writes are tried again after 1 s, doubling to a minute. */
const OWED_RETRY: BackoffPolicy = { baseMs: 1_000, maxMs: 60_000, jitter: 0.2 };

export interface IncidentBookDeps {
  stateDir: string;
  /** storage.path/incidents: sealed clips, one folder per incident. */
  sealedDir: string;
  nodeId: string;
  policy: WindowPolicy;
  enabledCameras(): string[];
  /** What a lock may name besides the enabled cameras, never taken by default (`calls`, CONTRACT §8). */
  namedOnly?: readonly string[];
  /** Whether disposing of an incident needs it synced first (upstream.type is not none). */
  disposeNeedsSync: boolean;
  clock: Clock;
  log: Logger;
  events: EventBus;
  audit: Pick<AuditLog, 'append'>;
  /** The audit log file, read to recover incidents when the book is lost or behind. */
  auditLogPath: string;
  /** The clock's steps (shared with the ring): a step moves the windows of locking incidents. */
  steps?: Pick<StepSource, 'check' | 'onStep' | 'bootId' | 'stepCount' | 'stepsAfter'> | undefined;
  random?: (n: number) => number;
}

export interface LockResult { incident: Incident; extended: boolean }

export class IncidentBook implements Component {
  readonly name = 'incident-book';
  private db: Low<BookData> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /** Clock entries not yet in the audit log (the windows they moved are in the book in memory). */
  private clockOwed: AuditPayloads['clock'][] = [];

  private readonly offStep: (() => void) | undefined;

  constructor(private readonly deps: IncidentBookDeps) {
    // Before start the book is not loaded: start() takes in the steps it missed. A stopped book
    // (one a pushed config replaced) takes none: the new one does.
    this.offStep = deps.steps?.onStep((deltaMs, step) => { if (this.db && !this.stopped) this.stepped(deltaMs, step.n, true); });
  }

  get path(): string {
    return join(this.deps.stateDir, 'incidents.json');
  }

  async start(): Promise<void> {
    const adapter = new DurableJsonFile<BookData>(this.path);
    const db = new Low<BookData>(adapter, { version: 1, incidents: [] });
    // The book is written before the audit log, so it is never behind it: the log is read
    // back only when the book is lost (missing or corrupt), not on every start.
    let lost = false;
    try {
      const data = await adapter.read();
      if (data === null) lost = true;
      else if (!Array.isArray(data.incidents)) throw new CorruptFileError(this.path, 'no incidents list');
      else if (!data.incidents.every(isIncident)) throw new CorruptFileError(this.path, 'an entry is not an incident');
      else db.data = { ...data, incidents: data.incidents.map(withCurrentFields) };
    } catch (err) {
      if (!(err instanceof CorruptFileError)) throw err;
      const kept = `${this.path}.corrupt-${iso(this.deps.clock.now()).replace(/[:.]/g, '')}`;
      this.deps.log.error({ err: err.message, keptAs: kept }, 'incident book is corrupt; recovering incidents from the audit log and the sealed folders');
      // Kept aside for whoever looks into it; if the dir cannot be written now, it is replaced
      // by the recovered book once it can.
      await rename(this.path, kept).catch((e: unknown) => this.deps.log.error({ err: e }, 'the corrupt book could not be kept aside'));
      lost = true;
    }
    this.db = db;
    this.stopped = false;
    const recovered = lost ? await this.recover() : 0;
    if (recovered > 0) {
      this.deps.log.warn({ recovered }, 'incidents restored into the book');
      await db.write().catch((e: unknown) => this.deps.log.error({ err: e }, 'the recovered book could not be written yet; it is kept in memory and written with the next change'));
    }
    await this.backfillManifestHashes();
    const active = this.list().filter((i) => i.state === 'active' || i.state === 'sealing').length;
    this.deps.log.info({ incidents: this.list().length, locked: active }, 'incident book loaded');
    // Steps of this boot that windows drawn in it have not taken in (a crash before the book was
    // written, a step while the agent was down): each moves them once.
    for (const step of this.deps.steps?.stepsAfter(0) ?? []) this.stepped(step.deltaMs, step.n, false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.offStep?.();
    clearTimeout(this.owedRetry);
    this.owedRetry = undefined;
    await this.queue.catch(() => {});
    if (this.owed.size > 0) await this.exclusive(async () => {});
    if (this.owed.size > 0) this.deps.log.error({ incidents: [...this.owed.keys()] }, 'locks kept in memory could not be written before stopping: they are lost');
  }

  list(): Incident[] {
    return this.db?.data.incidents ?? [];
  }

  get(id: string): Incident | undefined {
    return this.list().find((i) => i.id === id);
  }

  lockedRanges(): LockedRange[] {
    const ranges = lockedRanges(this.list());
    return this.pins.size === 0 ? ranges : [...ranges, ...this.pins];
  }

  /** Ranges held for a moment (a still being decoded): kept by the ring until unpinned. */
  private readonly pins = new Set<LockedRange>();

  /** Holds a range against the pruner until the returned function is called. */
  pin(range: LockedRange): () => void {
    const held = { ...range };
    this.pins.add(held);
    return () => { this.pins.delete(held); };
  }

  /** An id the book or the sealed folders already use (a set-aside `.damaged` one too). */
  private idTaken(id: string): boolean {
    return this.get(id) !== undefined || existsSync(join(this.deps.sealedDir, id)) || existsSync(join(this.deps.sealedDir, `${id}.damaged`));
  }

  /** The lock still collecting footage, if any (a trigger extends it; a hold never is). */
  openIncident(): Incident | undefined {
    const now = this.deps.clock.now();
    return this.list().find((i) => isExtendable(i, now));
  }

  /**
   * The time for a trigger: the clock's steps are checked first, so that a window drawn from it
   * and the open incident's window (moved by any step) are in one time base.
   */
  triggerTime(): { atMs: number; step: number } {
    this.deps.steps?.check();
    return { atMs: this.deps.clock.now(), step: this.deps.steps?.stepCount() ?? 0 };
  }

  /**
   * Locks a window, or extends the open incident. Resolves only once the book is on disk
   * (fsynced) and the lock is in the audit log.
   */
  lock(req: TriggerRequest, admit?: (candidate: Incident) => void): Promise<LockResult> {
    return this.exclusive(async () => {
      const { deps } = this;
      // A step since the last check moves the open window first (and is audited before this
      // trigger), so that the trigger, read with triggerTime(), extends it in one time base.
      if ((deps.steps?.check() ?? 0) !== 0) await this.writeClockOwed().catch(() => {});
      // A trigger read before a step taken in since (it waited in the queue) is put in the new base.
      if (req.step !== undefined) {
        for (const step of deps.steps?.stepsAfter(req.step) ?? []) req = { ...req, atMs: req.atMs + step.deltaMs };
      }
      const enabled = deps.enabledCameras();
      const unknown = (req.cameras ?? []).filter((c) => !enabled.includes(c) && !(deps.namedOnly ?? []).includes(c));
      if (unknown.length > 0) throw new BookError('bad_request', `cameras: unknown or disabled camera ${unknown.map((c) => `"${c}"`).join(', ')}`);
      const open = this.openIncident();
      const extension = open ? extendIncident(open, req, deps.policy, enabled) : undefined;
      const incident = extension?.incident
        ?? openIncident(deps.nodeId, req, deps.policy, enabled, { random: deps.random, taken: (id) => this.idTaken(id) });
      // A command may be refused for the share it would pin; a press never is (CONTRACT §6).
      if (req.via !== 'button') admit?.(incident);
      this.setBase(incident.id);
      try {
        await this.put(incident);
        // CONTRACT §4: a lock entry carries the whole incident, an extension only its change,
        // so a button line that chatters grows the log by a line per press, not an incident.
        if (extension) await deps.audit.append('extend', extension.change);
        else await deps.audit.append('lock', { incident });
      } catch (err) {
        // A press is never lost to a state dir that cannot be written (read-only, full): it is
        // kept in memory, where the ring honours it, and written as soon as it can be. A command
        // is refused instead: its requester hears so and can ask again.
        if (req.via !== 'button') throw err;
        this.keepInMemory(incident, extension?.change, err);
        throw new LockNotDurable(incident.id, err);
      }
      if (extension?.change.joined === 'cap' && incident.triggers[incident.triggers.length - 1]!.repeats === 1) {
        deps.log.warn({ incident: incident.id, triggers: incident.triggers.length }, 'incident holds the most triggers it may list; later ones are counted in the last one');
      }
      deps.log.info({ incident: incident.id, via: req.via, window: incident.window, cameras: incident.cameras, joined: extension?.change.joined }, open ? 'incident extended' : 'incident locked');
      deps.events.emit(open ? 'incident.extended' : 'incident.locked', { incident: incident.id });
      return { incident, extended: open !== undefined };
    });
  }

  /**
   * Incidents sealed by an earlier release have no manifest hash in the book: it is taken from
   * their folder or seal entry now, while the audit log still holds it (rotation takes old
   * entries off the node), so that a disclosure after a dispose can name the manifest.
   */
  private async backfillManifestHashes(): Promise<void> {
    const list = this.db!.data.incidents;
    const missing = list.filter((i) => i.manifestSha256 === undefined && i.state !== 'active' && i.state !== 'sealing');
    if (missing.length === 0) return;
    const found = new Map<string, string>();
    for (const i of missing) {
      const bytes = await readFile(join(this.deps.sealedDir, i.id, 'manifest.json')).catch(() => null);
      if (bytes) found.set(i.id, sha256Hex(bytes));
    }
    const wanted = new Set(missing.map((i) => i.id).filter((id) => !found.has(id)));
    if (wanted.size > 0) {
      const needle = Buffer.from('"type":"seal"');
      try {
        for await (const { bytes } of readRawLines(this.deps.auditLogPath)) {
          if (!bytes.includes(needle)) continue;
          try {
            const e = JSON.parse(bytes.toString('utf8')) as { incident?: unknown; manifestSha256?: unknown };
            if (typeof e.incident === 'string' && wanted.has(e.incident) && typeof e.manifestSha256 === 'string') found.set(e.incident, e.manifestSha256);
          } catch { /* not an entry */ }
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.warn({ err }, 'audit log unreadable while looking for earlier seals');
      }
    }
    if (found.size === 0) return;
    for (const [at, i] of list.entries()) {
      const sha = found.get(i.id);
      if (sha !== undefined && i.manifestSha256 === undefined) list[at] = { ...i, manifestSha256: sha };
    }
    await this.db!.write().catch((e: unknown) => this.deps.log.error({ err: e }, 'manifest hashes found for earlier incidents could not be written yet'));
  }

  /**
   * Runs `fn` with no incident changing meanwhile: the audit log's checkpoint takes every
   * incident, and must not hold a change whose own entry is appended after it.
   */
  settled<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(fn);
  }

  /** Moves an incident to a new state (the sealer, the sync). */
  setState(id: string, state: IncidentState, opts: { recordsUploaded?: number; manifestSha256?: string } = {}): Promise<Incident> {
    return this.exclusive(async () => {
      const incident = this.get(id);
      if (!incident) throw new BookError('not_found', `no incident ${id}`);
      // Disposed is final: a seal or sync finishing late must not bring the incident back.
      if (incident.state === 'disposed' && state !== 'disposed') throw new BookError('conflict', `incident ${id} was disposed of`);
      // Synced only with every note record it has: one written while the rest went up goes up too.
      if (state === 'synced' && opts.recordsUploaded !== undefined && incident.notes.filter((n) => n.record !== undefined).length > opts.recordsUploaded) return incident;
      const next = { ...incident, state, ...(opts.manifestSha256 !== undefined ? { manifestSha256: opts.manifestSha256 } : {}) };
      await this.put(next);
      return next;
    });
  }

  /** CONTRACT §4: refused before sync unless forced (or no upstream); deletes the local copy. */
  dispose(args: {
    incident: string; by: string; reason: string; force?: boolean | undefined;
    onBehalfOf?: string | undefined; signer?: TriggerSigner | null | undefined; jws?: string | undefined;
  }): Promise<Incident> {
    return this.exclusive(async () => {
      const { deps } = this;
      const incident = this.get(args.incident);
      if (!incident) throw new BookError('not_found', `no incident ${args.incident}`);
      if (incident.state === 'disposed') throw new BookError('conflict', `incident ${incident.id} is already disposed of`);
      // Even forced: the sealer is writing its clips right now (seconds); disposed of mid-seal they
      // would be left behind in <id>.sealing, outside every incident.
      if (incident.state === 'sealing') throw new BookError('conflict', `incident ${incident.id} is being sealed; dispose of it once sealed`);
      const ready = incident.state === 'synced' || (incident.state === 'sealed' && !deps.disposeNeedsSync);
      if (!ready && !args.force) {
        const why = incident.state === 'sealed' ? 'it has not been synced upstream yet' : `it is still ${incident.state}`;
        throw new BookError('conflict', `incident ${incident.id} cannot be disposed of: ${why} (force: true overrides, and is audited)`);
      }
      const disposed: Incident = { ...incident, state: 'disposed' };
      await this.put(disposed);
      // Who: the signer and the JWS itself when signed (CONTRACT §7).
      const who = {
        by: args.by,
        ...(args.onBehalfOf !== undefined ? { onBehalfOf: args.onBehalfOf } : {}),
        ...(args.signer !== undefined ? { signer: args.signer } : {}),
        ...(args.jws !== undefined ? { jws: args.jws } : {}),
      };
      // What is deleted, for the retention report: each camera's clip and its size (CONTRACT §7).
      const files = await clipSizes(join(deps.sealedDir, incident.id));
      const what = { incident: incident.id, ...who, reason: args.reason, ...(files ? { files } : {}) };
      if (ready) await deps.audit.append('dispose', what);
      else await deps.audit.append('dispose.forced', { ...what, state: incident.state });
      await rm(join(deps.sealedDir, incident.id), { recursive: true, force: true });
      deps.log.warn({ incident: incident.id, by: args.by, reason: args.reason, forced: !ready }, 'incident disposed of; local copy deleted');
      deps.events.emit('incident.disposed', { incident: incident.id });
      return disposed;
    });
  }

  /**
   * A hold (CONTRACT §6): a new incident over a range named after the fact. It is in the book in
   * memory — where the pruner reads it — before its first await; resolves once the book is on
   * disk and the hold in the audit log. `admit` may refuse it (the pinned share), inside the
   * book's queue so two holds are judged one after the other.
   */
  hold(req: HoldRequest, admit?: (candidate: Incident) => void): Promise<Incident> {
    return this.exclusive(async () => {
      const { deps } = this;
      if ((deps.steps?.check() ?? 0) !== 0) await this.writeClockOwed().catch(() => {});
      const incident = openHold(deps.nodeId, req, { random: deps.random, taken: (id) => this.idTaken(id) });
      admit?.(incident);
      this.setBase(incident.id);
      await this.put(incident);
      await deps.audit.append('hold', { incident });
      deps.log.info({ incident: incident.id, via: req.via, window: incident.window, cameras: incident.cameras }, 'footage held');
      deps.events.emit('incident.locked', { incident: incident.id });
      return incident;
    });
  }

  /**
   * A note (CONTRACT §6). On a sealed incident `record` first writes its node-signed record
   * beside the clips; a synced one is then unsynced again until the record is uploaded too.
   */
  note(args: {
    incident: string; text: string; by: string; onBehalfOf?: string | undefined; signer?: TriggerSigner | null | undefined;
  }, record: (incident: Incident, note: Note, n: number) => Promise<void>): Promise<Incident> {
    return this.exclusive(async () => {
      const { deps } = this;
      const incident = this.get(args.incident);
      if (!incident) throw new BookError('not_found', `no incident ${args.incident}`);
      if (incident.state === 'sealing') throw new BookError('conflict', `incident ${incident.id} is being sealed; add the note once it is sealed (seconds)`);
      const note: Note = { at: iso(deps.clock.now()), by: args.by, text: args.text };
      const sealed = incident.state === 'sealed' || incident.state === 'synced';
      if (sealed) await record(incident, note, incident.notes.filter((n) => n.record !== undefined).length + 1);
      const kept: Note = sealed ? { ...note, record: incident.notes.filter((n) => n.record !== undefined).length + 1 } : note;
      const next: Incident = { ...incident, notes: [...incident.notes, kept], ...(incident.state === 'synced' ? { state: 'sealed' as const } : {}) };
      await this.put(next);
      await deps.audit.append('note', {
        incident: incident.id, note: kept,
        ...(args.onBehalfOf !== undefined ? { onBehalfOf: args.onBehalfOf } : {}),
        ...(args.signer !== undefined ? { signer: args.signer } : {}),
      });
      deps.log.info({ incident: incident.id, by: args.by, record: kept.record }, 'note added');
      if (sealed) deps.events.emit('incident.grew', { incident: incident.id });
      return next;
    });
  }

  /**
   * A disclosure (CONTRACT §7), allowed once the incident is sealed — synced or disposed too: a
   * subpoena often comes after the local copy is gone. `record` writes its node-signed record
   * (beside the clips unless disposed, and queued upstream) before the book and the audit log
   * say so; `manifestSha` names the manifest it covers when the book does not know it (sealed by
   * an earlier release); `free` says whether a record number is unused on disk.
   */
  disclose(args: {
    incident: string; legalBasis: LegalBasis; reference: string; agency: string; requestedBy: string;
    by: string | null; onBehalfOf?: string | undefined; signer?: TriggerSigner | null | undefined; jws?: string | undefined;
  }, manifestSha: (incident: Incident) => Promise<string | null>, record: (incident: Incident, disclosure: Disclosure) => Promise<void>,
  free: (incident: Incident, n: number) => Promise<boolean> = async () => true): Promise<{ incident: Incident; disclosure: Disclosure }> {
    return this.exclusive(async () => {
      const { deps } = this;
      const incident = this.get(args.incident);
      if (!incident) throw new BookError('not_found', `no incident ${args.incident}`);
      if (incident.state === 'active' || incident.state === 'sealing') {
        throw new BookError('conflict', `incident ${incident.id} is ${incident.state === 'active' ? 'still recording' : 'being sealed'}: it can be disclosed once sealed (its manifest is what the record names)`);
      }
      const sha = incident.manifestSha256 ?? await manifestSha(incident);
      if (sha === null) throw new BookError('conflict', `incident ${incident.id}: the SHA-256 of its manifest is known neither from the book, its folder nor the audit log; nothing to name`);
      // A record written before a crash (or a book that could not be saved) was never
      // acknowledged, but it may be on its way upstream: its number is not used again.
      let n = (incident.disclosures?.length ?? 0) + 1;
      while (!await free(incident, n)) n++;
      const disclosure: Disclosure = {
        n,
        at: iso(deps.clock.now()),
        legalBasis: args.legalBasis, reference: args.reference, agency: args.agency, requestedBy: args.requestedBy,
        by: args.by, manifestSha256: sha,
        where: incident.state === 'disposed' ? 'upstream' : 'local+upstream',
      };
      await record(incident, disclosure);
      const next: Incident = { ...incident, manifestSha256: sha, disclosures: [...(incident.disclosures ?? []), disclosure] };
      await this.put(next);
      await deps.audit.append('disclose', {
        incident: incident.id, disclosure,
        ...(args.onBehalfOf !== undefined ? { onBehalfOf: args.onBehalfOf } : {}),
        ...(args.signer !== undefined ? { signer: args.signer } : {}),
        ...(args.jws !== undefined ? { jws: args.jws } : {}),
      });
      deps.log.warn({ incident: incident.id, n: disclosure.n, legalBasis: disclosure.legalBasis, reference: disclosure.reference, agency: disclosure.agency, by: disclosure.by }, 'incident disclosed');
      deps.events.emit('incident.disclosed', { incident: incident.id, n: disclosure.n, legalBasis: disclosure.legalBasis });
      return { incident: next, disclosure };
    });
  }

  /**
   * Locks the ring honours that are not yet durable: per incident, whether its lock entry is
   * owed (then it carries the whole incident, extensions included) or only extensions.
   */
  private readonly owed = new Map<string, { lock: boolean; changes: Extension[] }>();
  private owedRetry: NodeJS.Timeout | undefined;
  private owedAttempts = 0;

  /** Presses kept in memory because the book or the audit log could not be written. */
  undurable(): string[] {
    return [...this.owed.keys()];
  }

  private keepInMemory(incident: Incident, change: Extension | undefined, err: unknown): void {
    this.place(incident);
    const owed = this.owed.get(incident.id) ?? { lock: change === undefined, changes: [] };
    if (change && !owed.lock) owed.changes.push(change);
    this.owed.set(incident.id, owed);
    this.deps.log.error({ incident: incident.id, err }, 'lock kept in memory (the ring honours it): the state dir cannot be written; retrying');
    this.scheduleOwed();
  }

  private scheduleOwed(): void {
    if (this.owedRetry || this.stopped) return;
    const delay = backoffDelay(++this.owedAttempts, OWED_RETRY);
    this.owedRetry = setTimeout(() => {
      this.owedRetry = undefined;
      void this.exclusive(async () => {
        if (this.owed.size > 0) this.scheduleOwed();
      });
    }, delay);
    this.owedRetry.unref();
  }

  /** The book, then each owed audit entry; the events follow once they are durable. */
  private async writeOwed(): Promise<void> {
    if (this.owed.size === 0) return;
    await this.db!.write();
    for (const [id, owed] of [...this.owed]) {
      const incident = this.get(id);
      if (incident && owed.lock) {
        await this.deps.audit.append('lock', { incident });
      } else {
        while (owed.changes.length > 0) {
          await this.deps.audit.append('extend', owed.changes[0]!);
          owed.changes.shift();
        }
      }
      this.owed.delete(id);
      this.deps.log.warn({ incident: id }, 'lock kept in memory is durable now');
      if (incident) this.deps.events.emit(owed.lock ? 'incident.locked' : 'incident.extended', { incident: id });
    }
    this.owedAttempts = 0;
  }

  /**
   * A clock step (told synchronously, whoever checked): the windows of incidents still locking
   * move with it at once, in memory, so the ring's locks and its corrected footage stay in one
   * time base; the book and the audit entry follow as soon as the queue allows.
   */
  private stepped(deltaMs: number, n: number, found: boolean): void {
    const boot = this.deps.steps?.bootId() ?? '';
    const bases = this.db!.data.bases ?? {};
    const moved: AuditPayloads['clock']['incidents'] = [];
    for (const incident of this.list()) {
      if (incident.state !== 'active' && incident.state !== 'sealing') continue;
      // Only windows drawn in this boot before this step: another boot's footage is not moved.
      const base = bases[incident.id];
      if (!base || base.boot !== boot || base.step >= n) continue;
      // A lock's window was drawn on this boot's clock and moves with it; a hold names a range that
      // may lie before this boot (footage a step does not correct): it widens to cover both.
      const next = incident.kind === 'hold' ? widenWindow(incident, deltaMs) : shiftWindow(incident, deltaMs);
      this.place(next);
      bases[incident.id] = { boot, step: n };
      moved.push({ incident: next.id, ...next.window });
    }
    this.db!.data.bases = bases;
    // Audited when found, and when taken in late (after a crash) only if it moved something.
    if (!found && moved.length === 0) return;
    this.clockOwed.push({ jumpMs: deltaMs, incidents: moved });
    if (moved.length > 0) this.deps.log.warn({ stepMs: deltaMs, step: n, incidents: moved.map((m) => m.incident) }, 'clock step: the windows of open incidents moved with it');
    void this.exclusive(async () => {});
  }

  /** The incident's window is now in the current time base. */
  private setBase(id: string): void {
    const data = this.db!.data;
    data.bases = { ...(data.bases ?? {}), [id]: { boot: this.deps.steps?.bootId() ?? '', step: this.deps.steps?.stepCount() ?? 0 } };
  }

  private async writeClockOwed(): Promise<void> {
    if (this.clockOwed.some((c) => c.incidents.length > 0)) await this.db!.write();
    while (this.clockOwed.length > 0) {
      await this.deps.audit.append('clock', this.clockOwed[0]!);
      this.clockOwed.shift();
    }
  }

  /** In the book in memory, without writing it. */
  private place(incident: Incident): void {
    const list = this.db!.data.incidents;
    const at = list.findIndex((i) => i.id === incident.id);
    if (at >= 0) list[at] = incident;
    else list.push(incident);
  }

  private async put(incident: Incident): Promise<void> {
    const db = this.db!;
    const list = db.data.incidents;
    const at = list.findIndex((i) => i.id === incident.id);
    const previous = at >= 0 ? list[at] : undefined;
    if (at >= 0) list[at] = incident;
    else list.push(incident);
    try {
      await db.write();
    } catch (err) {
      // Not durable, not acknowledged: the book in memory must say what the disk says.
      if (previous) list[at] = previous;
      else list.splice(list.indexOf(incident), 1);
      throw err;
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    // Locks kept in memory go into the book and the audit log before anything that follows
    // them does: the log keeps the order things happened in.
    const job = async (): Promise<T> => {
      if (this.owed.size > 0) await this.writeOwed().catch(() => {});
      if (this.clockOwed.length > 0) await this.writeClockOwed().catch(() => {});
      return fn();
    };
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Lock and extend entries of the audit log carry the whole incident, and every sealed folder
   * holds its manifest: together they restore what a lost or stale book no longer says.
   */
  private async recover(): Promise<number> {
    const found = new Map<string, Incident>();
    const apply = (line: string): void => {
      // Only entries naming incidents (`incident`, a checkpoint's `incidents`) matter; a clock
      // entry that moved something names one too.
      if (!line.includes('"incident')) return;
      let entry: { type?: string; incident?: unknown; trigger?: unknown; end?: unknown; camerasAdded?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      // A checkpoint (CONTRACT §7) carries every incident not disposed, whole: the log before it
      // may be rotated off the node, so recovery takes them from here on.
      if (entry.type === 'checkpoint' && Array.isArray((entry as { incidents?: unknown }).incidents)) {
        for (const i of (entry as { incidents: unknown[] }).incidents) if (isIncident(i)) found.set(i.id, withCurrentFields(i));
        return;
      }
      // Lock entries, and the extend entries of earlier releases, carry the whole incident.
      if ((entry.type === 'lock' || entry.type === 'hold' || entry.type === 'extend') && isIncident(entry.incident)) found.set(entry.incident.id, withCurrentFields(entry.incident));
      const id = typeof entry.incident === 'string' ? entry.incident : undefined;
      const known = id ? found.get(id) : undefined;
      // An extend entry carries only its change: replayed on the incident as it stands.
      const type = entry.type;
      if (known && type === 'extend' && isExtension(entry)) found.set(known.id, applyExtension(known, entry));
      // A seal entry alone does not make an incident sealed: it is appended before the
      // `.sealing` folder is renamed into place, so a crash in between leaves the entry and no
      // clips. Only a sealed folder with its manifest proves the seal (the scan below); until
      // then the incident stays locked and the sealer seals it again.
      // Logs written before the rename say `release`.
      const note = (entry as { note?: Note }).note;
      if (known && type === 'note' && typeof note?.text === 'string') {
        found.set(known.id, { ...known, notes: [...known.notes, note], ...(known.state === 'synced' ? { state: 'sealed' as const } : {}) });
      }
      const disclosure = (entry as { disclosure?: Disclosure }).disclosure;
      if (known && type === 'disclose' && typeof disclosure?.n === 'number' && !(known.disclosures ?? []).some((d) => d.n === disclosure.n)) {
        found.set(known.id, { ...known, manifestSha256: disclosure.manifestSha256, disclosures: [...(known.disclosures ?? []), disclosure] });
      }
      const sealedSha = (entry as { manifestSha256?: unknown }).manifestSha256;
      if (known && type === 'seal' && typeof sealedSha === 'string') found.set(known.id, { ...known, manifestSha256: sealedSha });
      if (known && (type === 'dispose' || type === 'dispose.forced' || type === 'release' || type === 'release.forced')) found.set(known.id, { ...known, state: 'disposed' });
      // A clock step moved the windows of the incidents then locking: set them as it did.
      if (type === 'clock' && Array.isArray((entry as { incidents?: unknown }).incidents)) {
        for (const m of (entry as { incidents: { incident?: unknown; start?: unknown; end?: unknown }[] }).incidents) {
          const moved = typeof m?.incident === 'string' ? found.get(m.incident) : undefined;
          if (moved && typeof m.start === 'string' && typeof m.end === 'string') found.set(moved.id, { ...moved, window: { start: m.start, end: m.end } });
        }
      }
    };
    // Streamed: the log can be large, and only the lines naming incidents matter.
    try {
      await access(this.deps.auditLogPath);
      const input = createReadStream(this.deps.auditLogPath, 'utf8');
      const failed = new Promise<never>((_, reject) => input.once('error', reject));
      const lines = createInterface({ input, crlfDelay: Infinity });
      await Promise.race([(async () => { for await (const line of lines) apply(line); })(), failed]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.error({ err }, 'audit log unreadable during recovery');
    }
    for (const name of await readdir(this.deps.sealedDir).catch(() => [] as string[])) {
      if (!INCIDENT_ID.test(name)) continue;
      try {
        const bytes = await readFile(join(this.deps.sealedDir, name, 'manifest.json'));
        const manifest = JSON.parse(bytes.toString('utf8')) as { incident?: unknown };
        if (isIncident(manifest.incident)) {
          const seen = found.get(name);
          if (!seen || seen.state === 'active' || seen.state === 'sealing') {
            found.set(name, {
              ...withCurrentFields(manifest.incident), ...(seen ? { notes: seen.notes } : {}),
              ...(seen?.disclosures ? { disclosures: seen.disclosures } : {}),
              state: 'sealed', manifestSha256: sha256Hex(bytes),
            });
          }
        }
      } catch { /* a folder without a readable manifest was never sealed */ }
    }
    const rank: Record<IncidentState, number> = { active: 0, sealing: 1, sealed: 2, synced: 3, disposed: 4 };
    let restored = 0;
    const list = this.db!.data.incidents;
    for (const incident of found.values()) {
      const at = list.findIndex((i) => i.id === incident.id);
      const current = at >= 0 ? list[at]! : undefined;
      // Newer knowledge only: more triggers, or a later state.
      if (!current) {
        list.push(incident);
        restored++;
      } else if (incident.triggers.length > current.triggers.length && rank[current.state] <= rank.sealing) {
        list[at] = { ...incident, state: current.state };
        restored++;
      } else if (rank[incident.state] > rank[current.state] && incident.state !== 'active') {
        list[at] = { ...current, state: incident.state };
        restored++;
      } else if ((incident.disclosures?.length ?? 0) > (current.disclosures?.length ?? 0)) {
        // A disclosure whose record and audit entry were written but not the book.
        list[at] = { ...current, disclosures: incident.disclosures!, manifestSha256: incident.manifestSha256 ?? current.manifestSha256! };
        restored++;
      }
      // Sealed by an earlier release: the manifest's hash from its seal entry or folder, kept
      // before rotation takes the entry off the node (a disclosure after a dispose names it).
      const now = list.find((i) => i.id === incident.id)!;
      if (now.manifestSha256 === undefined && incident.manifestSha256 !== undefined && now.state !== 'active' && now.state !== 'sealing') {
        list[list.indexOf(now)] = { ...now, manifestSha256: incident.manifestSha256 };
        restored++;
      }
    }
    list.sort((a, b) => a.triggers[0]!.at.localeCompare(b.triggers[0]!.at));
    return restored;
  }
}


function isExtension(v: unknown): v is Extension {
  const e = v as Extension;
  return typeof e.incident === 'string' && typeof e.trigger === 'object' && e.trigger !== null && typeof e.trigger.at === 'string'
    && typeof e.end === 'string' && Array.isArray(e.camerasAdded) && e.camerasAdded.every((c) => typeof c === 'string');
}

function isIncident(v: unknown): v is Incident {
  const i = v as Incident;
  return typeof i === 'object' && i !== null && typeof i.id === 'string' && INCIDENT_ID.test(i.id)
    && Array.isArray(i.triggers) && i.triggers.length > 0 && Array.isArray(i.cameras)
    && typeof i.window?.start === 'string' && typeof i.window?.end === 'string';
}

/** Each clip of a sealed folder by camera, with its size, from its manifest; none when never sealed, undefined when unreadable. */
async function clipSizes(dir: string): Promise<{ camera: string; bytes: number }[] | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { files?: { camera?: unknown; bytes?: unknown }[] };
    const files = (manifest.files ?? []).flatMap((f) => (typeof f.camera === 'string' && Number.isSafeInteger(f.bytes) ? [{ camera: f.camera, bytes: f.bytes as number }] : []));
    return files;
  } catch (err) {
    // Never sealed (a forced dispose of an active incident): no clip is deleted.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    return undefined;
  }
}
