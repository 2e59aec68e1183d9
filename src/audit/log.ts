// The node's append-only audit log (CONTRACT §4): hash-chained JSON lines in
// `<node.stateDir>/audit.log`. Every lock and extension (with the whole incident), seal (with
// the manifest's SHA-256), dispose, forced dispose and every deletion of footage by the ring.
// An append resolves only once its line is on disk (fdatasync), so what is acknowledged is kept.
// Entry line: {"seq":N,"prev":"<hex>","ts":"<ISO ms>","type":"…",…payload} — chain rules in chain.ts.
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeletedRun, DeleteReason } from '../store/eviction.js';
import type { TriggerSigner } from '../incidents/incident.js';
import type { Component } from '../lifecycle/component.js';
import { iso, systemClock, type Clock } from '../platform/clock.js';
import { fsyncDir } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { EMPTY_HEAD, FIRST_SEQ, GENESIS_PREV, readRawLines, sha256Hex, type AuditHead } from './chain.js';

export const AUDIT_LOG_FILE = 'audit.log';

/** What an audit entry needs of an incident: its id; lock and extend entries carry all of it. */
export interface AuditIncident { readonly id: string }

/** A clip deleted with its incident (from its manifest; absent in entries of earlier releases). */
export interface DisposedFile { camera: string; bytes: number }

/** Payload per entry type (the members after seq/prev/ts/type). */
export interface AuditPayloads {
  /** A new incident, whole, as it was made durable. */
  lock: { incident: AuditIncident };
  /**
   * A later trigger: only the change (CONTRACT §4) — `{incident: id, trigger, end,
   * camerasAdded, joined?, urgent?}`. Earlier releases wrote the whole incident here; recovery
   * reads both.
   */
  extend: { incident: string; trigger: object; end: string; camerasAdded: string[]; joined?: 'press' | 'cap'; urgent?: true };
  /** A hold of footage named after the fact (CONTRACT §6), whole, as it was made durable. */
  hold: { incident: AuditIncident };
  /** A note added to an incident; `record` numbers its signed record beside a sealed incident's clips. */
  note: { incident: string; note: { at: string; by: string; text: string; record?: number }; onBehalfOf?: string; signer?: TriggerSigner | null };
  /** A still made from recorded footage: which frame, who, for what purpose and why (CONTRACT §6). */
  still: { camera: string; at: string; frameAt: string; purpose: string; reason: string; by: string; onBehalfOf?: string; signer?: TriggerSigner | null };
  /** Sealed: the SHA-256 hex of manifest.json's exact bytes. Follows the manifest's audit anchor directly. */
  seal: { incident: string; manifestSha256: string };
  /** The node's copy disposed of (deleted), who and why. Logs of earlier releases say `release`. */
  dispose: { incident: string; by: string; onBehalfOf?: string; signer?: TriggerSigner | null; jws?: string; reason: string; files?: DisposedFile[] };
  /** Disposed of before sync (`force`): who, why, and the state it was in. Earlier: `release.forced`. */
  'dispose.forced': { incident: string; by: string; onBehalfOf?: string; signer?: TriggerSigner | null; jws?: string; reason: string; state: string; files?: DisposedFile[] };
  /**
   * Footage disclosed to law enforcement (CONTRACT §7): the disclosure (legal basis, reference,
   * agency, requester, the manifest's SHA-256) and, signed, the custodian and the JWS itself.
   */
  disclose: { incident: string; disclosure: object; onBehalfOf?: string; signer?: TriggerSigner | null; jws?: string };
  /**
   * Entries up to `dropped` (shipped upstream and stored there) are about to be rotated off the
   * node (CONTRACT §7): every incident not disposed, whole, so that recovery of the book starts
   * here; `dropped` is the last entry removed, where this file's chain now begins.
   */
  checkpoint: { dropped: { seq: number; hash: string }; incidents: AuditIncident[] };
  /** Signed commands refused in one minute (CONTRACT §7): how many, and why (the most common reasons). */
  refused: { from: string; to: string; count: number; reasons: Record<string, number> };
  /** Footage a prune pass deletes, written before its unlinks: one entry per reason, contiguous runs per camera. */
  delete: { reason: DeleteReason; cameras: Record<string, DeletedRun[]> };
  /** A pushed config (or a reset) put on trial, then committed or rolled back (CONTRACT §9): paths only, never values. */
  config: { step: 'trial' | 'committed' | 'rolledBack'; sha256: string; source: 'file' | 'pushed'; previousSha256?: string; differs?: string[]; reason?: string; by?: string; onBehalfOf?: string; signer?: TriggerSigner | null; jws?: string };
  /** A release asked for (fetched and verified), then committed or rolled back (CONTRACT §9). */
  update: { step: 'requested' | 'committed' | 'rolledBack'; version: string; previous?: string; sha256?: string; reason?: string; by?: string; onBehalfOf?: string; signer?: TriggerSigner | null; jws?: string };
  /**
   * A wall-clock step seen by the agent (NTP's first sync after boot, an operator's date), and
   * the windows of the incidents still locking, moved into the new time base (recovery sets them).
   */
  clock: { jumpMs: number; incidents: { incident: string; start: string; end: string }[] };
  /** The log itself was repaired at start: a torn last line (never acknowledged) was cut off. */
  repair: { truncatedBytes: number; reason: string };
  /** A sealed incident found damaged (manifest missing or unreadable, clips not matching): set aside, never deleted. */
  damaged: { incident: string; reason: string; keptAt: string };
}
export type AuditEntryType = keyof AuditPayloads;

export interface AuditAppendResult { seq: number; hash: string }

export interface AuditLogDeps {
  stateDir: string;
  log: Logger;
  clock?: Clock;
  /** Told when the log stops or starts being writable (the agent reports it as the `audit` fault). */
  onWritable?(writable: boolean, err?: unknown): void;
}

/** Errors of a state dir that cannot take writes now, and may again later. */
const UNWRITABLE = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

const RESERVED = new Set(['seq', 'prev', 'ts', 'type']);
const TAIL_CHUNK = 64 * 1024;

export class AuditLog implements Component {
  readonly name = 'audit';
  readonly path: string;
  private handle: FileHandle | undefined;
  private last: AuditHead = EMPTY_HEAD;
  /** Bytes known to be whole lines; after a failed write the file is cut back to this. */
  private size = 0;
  private dirty = false;
  /** The last write failed for want of a writable dir (said once, and once when it is over). */
  private unwritable = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: AuditLogDeps) {
    this.path = join(deps.stateDir, AUDIT_LOG_FILE);
  }

  async start(): Promise<void> {
    if (this.handle) return;
    try {
      await this.openForAppend();
    } catch (err) {
      if (!UNWRITABLE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      // A state dir that cannot be written (read-only, full) does not stop the recording: the
      // chain's head is read so that it continues correctly, and appends are tried again each
      // time (they fail, and are retried by their callers, until the dir can be written).
      await this.readHeadOnly();
      this.unwritable = true;
      this.deps.onWritable?.(false, err);
      this.deps.log.error({ err, path: this.path }, 'audit log cannot be written; continuing without it until it can');
    }
  }

  private async openForAppend(): Promise<void> {
    await mkdir(this.deps.stateDir, { recursive: true });
    // A rotation cut short by a crash: the log itself was not touched until the rename.
    await unlink(this.rotateTemp()).catch(() => {});
    // O_APPEND: every write lands at the end whatever else happened to the file.
    const handle = await open(this.path, 'a+', 0o640);
    try {
      const { size } = await handle.stat();
      if (size === 0) await fsyncDir(this.deps.stateDir); // a new file: make its directory entry durable
      this.handle = handle;
      await this.recover(size);
    } catch (err) {
      this.handle = undefined;
      await handle.close();
      throw err;
    }
  }

  async stop(): Promise<void> {
    const handle = this.handle;
    if (!handle) return;
    await this.queue.catch(() => {});
    this.handle = undefined;
    await handle.close();
  }

  /** The last entry (seq 0 and 64 zeros while the log is empty). */
  head(): AuditHead {
    return { ...this.last };
  }

  /** Appends one entry; resolves once it is on disk. Concurrent appends are written in call order. */
  append<K extends AuditEntryType>(type: K, payload: AuditPayloads[K]): Promise<AuditAppendResult> {
    return this.enqueue(() => this.write(type, payload));
  }

  /**
   * Appends an entry directly after the current head, with nothing in between: `build` gets
   * that head (the manifest's audit anchor), may take its time (sign and write the manifest),
   * and returns the payload; other appends wait meanwhile. If `build` throws, nothing is appended.
   */
  appendAnchored<K extends AuditEntryType>(type: K, build: (anchor: AuditHead) => Promise<AuditPayloads[K]>): Promise<AuditAppendResult & { anchor: AuditHead }> {
    return this.enqueue(async () => {
      const anchor = this.head();
      const payload = await build(anchor);
      return { ...(await this.write(type, payload)), anchor };
    });
  }

  /**
   * Rotates the entries up to `through` off the node (CONTRACT §7), once they are stored
   * upstream: first a `checkpoint` entry naming the last entry dropped and carrying `incidents`
   * (every one not disposed), then the rest of the file — from the entry after it, checkpoint
   * included — written to a new file that replaces the log by rename. A crash before the rename
   * leaves the whole log with its checkpoint; after it, the shorter one. Appends wait meanwhile.
   * Resolves with what was dropped, or null when `through` is not an entry of the file (seq and
   * hash) or dropping up to it would free less than `minDropBytes`.
   */
  rotate(through: AuditHead, incidents: () => AuditIncident[], opts: { minDropBytes?: number } = {}): Promise<{ dropped: AuditHead; bytesBefore: number; bytesAfter: number } | null> {
    return this.enqueue(async () => {
      if (!this.handle || this.unwritable) return null;
      const throughSeq = through.seq;
      let offset = 0;
      let found: { hash: string; end: number } | null = null;
      for await (const { bytes, terminated } of readRawLines(this.path, 0, this.size)) {
        offset += bytes.length + 1;
        if (!terminated) break;
        const seq = parseSeq(bytes);
        if (seq === throughSeq) {
          found = { hash: sha256Hex(bytes), end: offset };
          break;
        }
        if (seq !== null && seq > throughSeq) break;
      }
      // Only the very entry that was stored (a log replaced meanwhile has other entries under its
      // seq), and only when that frees enough to be worth a checkpoint.
      if (!found || found.hash !== through.head || found.end > this.size || found.end < (opts.minDropBytes ?? 0)) return null;
      await this.write('checkpoint', { dropped: { seq: throughSeq, hash: found.hash }, incidents: incidents() });
      const bytesBefore = this.size;
      const temp = this.rotateTemp();
      // Opened for append: after the rename this very handle is the log's, so no append can go
      // to the old file once it is replaced.
      await unlink(temp).catch(() => {});
      let renamed = false;
      try {
        const out = await open(temp, 'a+', 0o640);
        try {
          for (let from = found.end; from < this.size; from += TAIL_CHUNK * 16) {
            const chunk = await this.readRange(from, Math.min(this.size, from + TAIL_CHUNK * 16));
            for (let off = 0; off < chunk.length;) off += (await out.write(chunk, off, chunk.length - off)).bytesWritten;
          }
          await out.sync();
          await rename(temp, this.path);
          renamed = true;
        } catch (err) {
          await out.close();
          throw err;
        }
        const old = this.handle;
        this.handle = out;
        this.size = bytesBefore - found.end;
        await old.close().catch(() => {});
      } finally {
        if (!renamed) await unlink(temp).catch(() => {});
      }
      // The rename's directory entry: a failure here is logged, the log goes on in the new file.
      await fsyncDir(this.deps.stateDir).catch((err: unknown) => this.deps.log.error({ err }, 'audit log rotated, but its folder could not be synced'));
      this.deps.log.info({ droppedThrough: throughSeq, bytesBefore, bytesAfter: this.size }, 'audit log rotated: entries stored upstream dropped behind a checkpoint');
      return { dropped: { seq: throughSeq, head: found.hash }, bytesBefore, bytesAfter: this.size };
    });
  }

  /** Bytes of the log on disk (whole lines). */
  bytes(): number {
    return this.size;
  }

  private rotateTemp(): string {
    return join(this.deps.stateDir, `.${AUDIT_LOG_FILE}.rotate.tmp`);
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => {});
    return run;
  }

  /** The head of a log that cannot be opened for writing, read without touching it. */
  private async readHeadOnly(): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    this.handle = handle;
    try {
      const { size } = await handle.stat();
      // A torn last line is cut off once the log can be written again (openForAppend).
      this.size = size > 0 ? (await this.findNewlineBefore(size)) + 1 : 0;
      await this.recoverHead();
    } finally {
      this.handle = undefined;
      await handle.close();
    }
  }

  private async write<K extends AuditEntryType>(type: K, payload: AuditPayloads[K]): Promise<AuditAppendResult> {
    if (!this.handle) {
      try {
        await this.openForAppend();
      } catch (err) {
        throw new Error(`audit log ${this.path} cannot be written: ${(err as Error).message}`);
      }
    }
    const handle = this.handle!;
    for (const key of Object.keys(payload)) {
      if (RESERVED.has(key)) throw new Error(`audit payload may not set "${key}"`);
    }
    const seq = this.last.seq + 1;
    const line = JSON.stringify({ seq, prev: this.last.head, ts: iso((this.deps.clock ?? systemClock).now()), type, ...payload });
    const bytes = Buffer.from(line, 'utf8');
    const data = Buffer.concat([bytes, Buffer.from('\n')]);
    try {
      // A write that failed part-way (ENOSPC) left a torn line: cut it off before chaining on.
      if (this.dirty) {
        await handle.truncate(this.size);
        this.dirty = false;
      }
      this.dirty = true;
      for (let off = 0; off < data.length;) off += (await handle.write(data, off, data.length - off)).bytesWritten;
      await handle.datasync();
      this.dirty = false;
    } catch (err) {
      this.deps.log.error({ err, type, seq }, 'audit entry could not be written');
      if (UNWRITABLE.has((err as NodeJS.ErrnoException).code ?? '')) {
        this.unwritable = true;
        this.deps.onWritable?.(false, err);
      }
      throw err;
    }
    if (this.unwritable) {
      this.unwritable = false;
      this.deps.onWritable?.(true);
      this.deps.log.info({ path: this.path }, 'audit log can be written again');
    }
    this.size += data.length;
    const hash = sha256Hex(bytes);
    this.last = { seq, head: hash };
    return { seq, hash };
  }

  /**
   * Continues the chain from the last line. A last line without its newline was being written
   * when the agent died: it was never acknowledged, so it is cut off (and that is audited).
   * Damage further up is not "fixed": it is logged, appending continues after the last line
   * (so the chain from there on stays checkable), and `audit verify` reports it.
   */
  private async recover(size: number): Promise<void> {
    const handle = this.handle!;
    this.size = size;
    if (size === 0) return;
    const lastNewline = await this.findNewlineBefore(size);
    if (lastNewline !== size - 1) {
      const keep = lastNewline + 1;
      const torn = size - keep;
      this.deps.log.warn({ path: this.path, truncatedBytes: torn }, 'audit log ended in a torn line (a write cut short by a crash); truncating it');
      await handle.truncate(keep);
      await handle.sync();
      this.size = keep;
      await this.recoverHead();
      await this.write('repair', { truncatedBytes: torn, reason: 'torn last line' });
      return;
    }
    await this.recoverHead();
  }

  /** seq and hash of the last (whole) line. */
  private async recoverHead(): Promise<void> {
    if (this.size === 0) {
      this.last = EMPTY_HEAD;
      return;
    }
    const end = this.size - 1; // the last line's newline
    const start = (await this.findNewlineBefore(end)) + 1;
    const bytes = await this.readRange(start, end);
    const seq = parseSeq(bytes);
    if (seq !== null) {
      this.last = { seq, head: sha256Hex(bytes) };
      return;
    }
    // The last line is not an entry: chain on to its bytes anyway, numbered after the nearest entry above.
    const counted = await this.seqFromEarlierLines(start);
    this.deps.log.error({ path: this.path, seq: counted + 1 }, 'audit log\'s last line is not a valid entry; appending after it (`camnode audit verify` reports the break)');
    this.last = { seq: counted + 1, head: sha256Hex(bytes) };
  }

  /** The seq of the nearest parseable line above `before`, plus the lines between; line count if none parses. */
  private async seqFromEarlierLines(before: number): Promise<number> {
    let end = before - 1;
    let skipped = 0;
    while (end >= 0) {
      const start = (await this.findNewlineBefore(end)) + 1;
      const seq = parseSeq(await this.readRange(start, end));
      if (seq !== null) return seq + skipped;
      skipped++;
      end = start - 1;
    }
    return FIRST_SEQ - 1 + skipped;
  }

  /** Offset of the last '\n' strictly before `end`, or -1. */
  private async findNewlineBefore(end: number): Promise<number> {
    let to = end;
    while (to > 0) {
      const from = Math.max(0, to - TAIL_CHUNK);
      const chunk = await this.readRange(from, to);
      const i = chunk.lastIndexOf(0x0a);
      if (i >= 0) return from + i;
      to = from;
    }
    return -1;
  }

  private async readRange(from: number, to: number): Promise<Buffer> {
    const buf = Buffer.alloc(to - from);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await this.handle!.read(buf, off, buf.length - off, from + off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  }
}

function parseSeq(bytes: Buffer): number | null {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as { seq?: unknown; prev?: unknown };
    return Number.isSafeInteger(v.seq) && typeof v.prev === 'string' ? (v.seq as number) : null;
  } catch {
    return null;
  }
}

export { GENESIS_PREV, type AuditHead };
