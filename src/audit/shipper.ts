// The audit log leaves the node (CONTRACT §7). With an upstream, the log is cut into chunks
// `audit/<log-id>/<first-seq>-<last-seq>.jsonl` (closed hourly or at 1 MB, never rewritten: each
// range is cut once, and a cut interrupted by a crash is cut again identically), and every
// `audit.headInterval` the node signs its head `{node, logId, seq, head, at}` into
// `audit/<log-id>/heads/<seq>.json`. Both go through the upstream records outbox. Once a chunk
// is stored upstream its entries may leave the SD card: when the local log has grown past
// `keepBytes`, it is rotated behind a `checkpoint` entry — so it no longer grows without bound.
// `log-id` is the first-used stamp of the key that writes the log: a new SD card, a new series.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import { iso, type Clock } from '../platform/clock.js';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { systemTimers, type Timers } from '../platform/timers.js';
import { queueRecord, UPSTREAM_CONFLICTS_DIR, UPSTREAM_DIR } from '../sync/records.js';
import { readRawLines, sha256Hex, type AuditHead } from './chain.js';
import type { NodeKey } from './keys.js';
import type { AuditLog } from './log.js';
import { signedRecordText } from '../incidents/records.js';
import { chunkName, openAuditSource } from './source.js';

export const AUDIT_UPSTREAM_FILE = 'audit-upstream.json';
const MiB = 1024 * 1024;
const ROTATE_RETRY_MS = 3_600_000;

/** The last head the node signed, as the state shows it (CONTRACT §7). */
export interface AuditHeadState { logId: string; seq: number; head: string; at: string }

interface ShipState {
  logId: string | null;
  /** The last entry cut into a chunk. */
  shipped: AuditHead | null;
  /** A cut in progress (its range), redone identically after a crash. */
  cutting: { first: number; last: number; logId: string } | null;
  /** Chunks queued and not yet known to be stored upstream, oldest first (`lastHash`: of its last entry). */
  chunks: { rel: string; first: number; last: number; lastHash: string }[];
  /** Every entry up to this one is stored upstream. */
  storedThrough: AuditHead | null;
  head: AuditHeadState | null;
}

const EMPTY: ShipState = { logId: null, shipped: null, cutting: null, chunks: [], storedThrough: null, head: null };

export interface AuditShipperDeps {
  stateDir: string;
  nodeId: string;
  audit: Pick<AuditLog, 'path' | 'head' | 'bytes'>;
  /**
   * Drops the log's entries up to `through` behind a checkpoint (AuditLog.rotate), run where no
   * incident changes meanwhile: a checkpoint must not hold a change whose entry follows it.
   */
  rotate: (through: AuditHead, opts: { minDropBytes: number }) => Promise<unknown>;
  key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>;
  /** The series: the first-used stamp of the key writing the log. */
  logId: () => string;
  headIntervalMs: number;
  /** A record was queued: send it now. */
  queued: (rel: string) => void;
  clock: Clock;
  log: Logger;
  timers?: Timers;
  /** A chunk closes at this size… */
  chunkMaxBytes?: number;
  /** …or once its oldest entry is this old. */
  chunkMaxAgeMs?: number;
  /** The local log is rotated once it is bigger than this and stored entries can go. */
  keepBytes?: number;
  /** How often it looks (default: a minute, or the head interval if shorter). */
  tickMs?: number;
}

export class AuditShipper implements Component {
  readonly name = 'audit-upstream';
  private state: ShipState = { ...EMPTY };
  private timer: unknown;
  private running: Promise<void> = Promise.resolve();
  private stopped = true;
  private warnedBreak = false;
  private rotateFailedAt: number | undefined;
  /** Where the next entry to cut begins in the file, as far as the last pass saw (not kept across restarts). */
  private resume: { seq: number; offset: number } | undefined;

  constructor(private readonly deps: AuditShipperDeps) {}

  private get statePath(): string {
    return join(this.deps.stateDir, AUDIT_UPSTREAM_FILE);
  }

  async start(): Promise<void> {
    this.state = await this.load();
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    (this.deps.timers ?? systemTimers).clearTimeout(this.timer);
    await this.running;
  }

  /** The last signed head (the state's `audit`), null before the first. */
  head(): AuditHeadState | null {
    return this.state.head;
  }

  /** One pass: cut chunks, sign the head, note what is stored, rotate. Exposed for tests and `stop`. */
  tick(): Promise<void> {
    const run = this.running.then(() => this.pass()).catch((err: unknown) => {
      this.deps.log.warn({ err }, 'audit upstream pass failed; tried again at the next');
    });
    this.running = run;
    return run;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    const timers = this.deps.timers ?? systemTimers;
    this.timer = timers.setTimeout(() => {
      void this.tick().then(() => this.schedule(this.deps.tickMs ?? Math.min(60_000, this.deps.headIntervalMs)));
    }, ms);
  }

  private async pass(): Promise<void> {
    const logId = this.deps.logId();
    if (this.state.logId !== logId) {
      if (this.state.logId !== null) this.deps.log.info({ from: this.state.logId, to: logId }, 'a new node key: a new audit series upstream');
      this.state = { ...this.state, logId, head: null };
      await this.save();
    }
    if (this.state.cutting) await this.cut(this.state.cutting.first, this.state.cutting.last, this.state.cutting.logId);
    await this.cutChunks();
    await this.signHead();
    await this.noteStored();
    await this.rotate();
  }

  /** Cuts what follows the last chunk: every full chunk, and the rest once its oldest entry is old enough. */
  private async cutChunks(): Promise<void> {
    const max = this.deps.chunkMaxBytes ?? MiB;
    const maxAge = this.deps.chunkMaxAgeMs ?? 3_600_000;
    const after = this.state.shipped?.seq ?? 0;
    // One chunk's lines at a time: a long backlog (a node upgraded with a big log) streams through.
    let group: { first: number; last: number; bytes: number; oldestMs: number; lines: Buffer[] } | null = null;
    let expectPrev = this.state.shipped?.head;
    // Where the first entry not cut yet began at the last pass: read from there (a rotation
    // moves it; then the first line there is not the one expected and the file is read whole).
    const resume = this.resume?.seq === after + 1 && this.resume.offset <= this.deps.audit.bytes() ? this.resume : undefined;
    let offset = resume?.offset ?? 0;
    let first = true;
    this.resume = undefined;
    // Only what the log has acknowledged: a line past it may be cut back and its seq reused.
    for await (const { bytes, terminated } of readRawLines(this.deps.audit.path, offset, this.deps.audit.bytes())) {
      if (!terminated) break;
      const lineStart = offset;
      offset += bytes.length + 1;
      const e = peek(bytes);
      if (first && resume && e?.seq !== resume.seq) return this.cutChunksFromStart();
      first = false;
      if (!e || e.seq <= after) continue;
      // Kept for the next pass: where the oldest line not cut yet starts.
      if (!group) this.resume = { seq: e.seq, offset: lineStart };
      if (expectPrev !== undefined && e.prev !== expectPrev && !this.warnedBreak) {
        // The log no longer continues what went upstream: cut or rewritten on this box. It is
        // shipped anyway; `audit verify` on the upstream copy shows the break.
        this.warnedBreak = true;
        this.deps.log.error({ seq: e.seq, shipped: after }, 'the audit log does not continue the chunks already upstream: it was cut or rewritten on the node');
      }
      expectPrev = undefined;
      if (group && group.bytes + bytes.length + 1 > max) {
        await this.queueChunk(group.first, group.last, group.lines, this.state.logId!);
        group = null;
        this.resume = { seq: e.seq, offset: lineStart };
      }
      group ??= { first: e.seq, last: e.seq, bytes: 0, oldestMs: Date.parse(e.ts), lines: [] };
      group.last = e.seq;
      group.bytes += bytes.length + 1;
      group.lines.push(bytes);
    }
    if (group && (group.bytes >= max || !(this.deps.clock.now() - group.oldestMs < maxAge))) {
      await this.queueChunk(group.first, group.last, group.lines, this.state.logId!);
      this.resume = { seq: group.last + 1, offset };
    } else if (!group) this.resume = { seq: after + 1, offset };
  }

  private cutChunksFromStart(): Promise<void> {
    this.resume = undefined;
    return this.cutChunks();
  }

  /** A cut a crash interrupted: the same range again, read from the log. */
  private async cut(first: number, last: number, logId: string): Promise<void> {
    const lines: Buffer[] = [];
    for await (const { bytes, terminated } of readRawLines(this.deps.audit.path, 0, this.deps.audit.bytes())) {
      if (!terminated) break;
      const e = peek(bytes);
      if (!e || e.seq < first) continue;
      if (e.seq > last) break;
      lines.push(bytes);
    }
    if (lines.length === 0) {
      // Gone from the file (rotated meanwhile): nothing to cut.
      this.state.cutting = null;
      await this.save();
      return;
    }
    await this.queueChunk(first, last, lines, logId);
  }

  /** Queues `[first, last]` as a chunk: the intent first, so a crash cuts the same range again. */
  private async queueChunk(first: number, last: number, lines: Buffer[], logId: string): Promise<void> {
    this.state.cutting = { first, last, logId };
    await this.save();
    const rel = `audit/${logId}/${chunkName(first, last)}`;
    await queueRecord(this.deps.stateDir, rel, Buffer.concat(lines.flatMap((l) => [l, NL])));
    this.state.shipped = { seq: last, head: sha256Hex(lines[lines.length - 1]!) };
    if (!this.state.chunks.some((c) => c.rel === rel)) this.state.chunks.push({ rel, first, last, lastHash: this.state.shipped.head });
    this.state.cutting = null;
    await this.save();
    this.deps.queued(rel);
  }

  /** Signs the head every headInterval while the log grows; a head is never signed twice for one seq. */
  private async signHead(): Promise<void> {
    const now = this.deps.clock.now();
    const last = this.state.head;
    if (last && now - Date.parse(last.at) < this.deps.headIntervalMs && now >= Date.parse(last.at)) return;
    const head = this.deps.audit.head();
    if (head.seq === 0 || (last && head.seq <= last.seq)) return;
    const signed: AuditHeadState = { logId: this.state.logId!, seq: head.seq, head: head.head, at: iso(now) };
    const rel = `audit/${signed.logId}/heads/${head.seq}.json`;
    await queueRecord(this.deps.stateDir, rel, signedRecordText({ node: this.deps.nodeId, ...signed }, this.deps.key).text);
    this.state.head = signed;
    await this.save();
    this.deps.queued(rel);
  }

  /** Chunks whose outbox file is gone (and not set aside as a conflict) are stored upstream. */
  private async noteStored(): Promise<void> {
    let changed = false;
    while (this.state.chunks.length > 0) {
      const c = this.state.chunks[0]!;
      if (await exists(join(this.deps.stateDir, UPSTREAM_DIR, c.rel)) || await exists(join(this.deps.stateDir, UPSTREAM_CONFLICTS_DIR, c.rel))) break;
      this.state.storedThrough = { seq: c.last, head: c.lastHash };
      this.state.chunks.shift();
      changed = true;
    }
    if (changed) await this.save();
  }

  private async rotate(): Promise<void> {
    const keep = this.deps.keepBytes ?? 2 * MiB;
    const stored = this.state.storedThrough;
    if (this.deps.audit.bytes() <= keep || !stored) return;
    // A rotation that failed (the disk full) is not tried again every pass: each try appends a checkpoint.
    if (this.rotateFailedAt !== undefined && this.deps.clock.now() - this.rotateFailedAt < ROTATE_RETRY_MS) return;
    // The file is rewritten: offsets into it no longer hold.
    this.resume = undefined;
    try {
      // Only when it frees half the allowance: a checkpoint (every incident) costs bytes too.
      await this.deps.rotate(stored, { minDropBytes: keep / 2 });
      this.rotateFailedAt = undefined;
    } catch (err) {
      this.rotateFailedAt = this.deps.clock.now();
      this.deps.log.error({ err }, 'audit log rotation failed; the log keeps its entries and it is tried again in an hour');
    }
  }

  private async load(): Promise<ShipState> {
    try {
      const doc = JSON.parse(await readFile(this.statePath, 'utf8')) as Partial<ShipState>;
      return { ...EMPTY, ...doc, chunks: Array.isArray(doc.chunks) ? doc.chunks : [] };
    } catch (err) {
      // Lost or unreadable: a rotated log says itself where what went upstream ends (its
      // checkpoint); a whole one is shipped from its start again — under new chunk names,
      // which `audit verify` of the series then shows as overlapping.
      const start = await openAuditSource(this.deps.audit.path).then((src) => src.start, () => undefined);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || start) this.deps.log.warn({ err, from: start?.seq ?? 0 }, 'audit upstream state lost or unreadable; shipping from where the local log begins');
      return { ...EMPTY, ...(start ? { shipped: start, storedThrough: start } : {}) };
    }
  }

  private async save(): Promise<void> {
    await writeFileDurable(this.statePath, `${JSON.stringify(this.state)}\n`);
  }
}

const NL = Buffer.from('\n');

function peek(bytes: Buffer): { seq: number; prev: string; ts: string } | null {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as { seq?: unknown; prev?: unknown; ts?: unknown };
    return Number.isSafeInteger(v.seq) && typeof v.prev === 'string' && typeof v.ts === 'string' ? { seq: v.seq as number, prev: v.prev, ts: v.ts } : null;
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}
