// Replay protection for signed commands (CONTRACT §7): every nonce is seen once, and `iat` is
// checked against the clock (±5 min) when it is synced, else against the highest `iat` accepted
// (not more than 10 min below it). Both persist in node.stateDir, in a journal appended and
// fdatasynced before the command runs (one sync per command: a rewrite would cost a file and a
// folder sync), so neither a restart nor a crash lets a captured command be sent again. The
// journal is compacted to the nonces still needed when it has grown well past them.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';

export const SEEN_FILE = 'commands-seen.jsonl';
export const IAT_SKEW_S = 5 * 60;
export const IAT_BELOW_HIGH_WATER_S = 10 * 60;
/** Nonces are kept while a command with their iat could still pass the checks above. */
const KEEP_S = IAT_SKEW_S + IAT_BELOW_HIGH_WATER_S;
export const NONCE = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_NONCES = 10_000;

interface Seen { highWaterIat: number; nonces: Record<string, number> }

/** Why an `iat` and nonce are refused, or null. Pure. */
export function replayRefusal(seen: Readonly<Seen>, iat: number, nonce: string, nowS: number, clockSynced: boolean): string | null {
  if (!Number.isSafeInteger(iat) || iat < 0) return 'iat is not a NumericDate (whole seconds)';
  if (!NONCE.test(nonce)) return 'nonce is not 16–64 base64url characters';
  if (clockSynced) {
    if (Math.abs(nowS - iat) > IAT_SKEW_S) return `iat is ${iat - nowS} s from this node's clock (allowed ±${IAT_SKEW_S} s)`;
  } else if (iat < seen.highWaterIat - IAT_BELOW_HIGH_WATER_S) {
    return `iat is more than ${IAT_BELOW_HIGH_WATER_S} s below the newest command accepted, and this node's clock is not synced`;
  }
  if (Object.prototype.hasOwnProperty.call(seen.nonces, nonce)) return 'nonce already used (a replayed command)';
  return null;
}

export class ReplayGuard {
  private seen: Seen = { highWaterIat: 0, nonces: {} };
  private writing: Promise<void> = Promise.resolve();
  private journal: FileHandle | undefined;
  /** Lines in the journal now (compaction when they are well past the nonces kept). */
  private lines = 0;

  constructor(private readonly deps: { stateDir: string; log: Logger }) {}

  get path(): string {
    return join(this.deps.stateDir, SEEN_FILE);
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Unreadable: refusing every command would lock ops out; forgetting the nonces would let
      // a replay within 15 min through. The clock check still holds; say it loudly.
      this.deps.log.error({ err, path: this.path }, 'seen-commands journal unreadable; replays of commands from the last 15 minutes cannot be recognised');
      return;
    }
    const nonces: Record<string, number> = {};
    let highWaterIat = 0;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      this.lines++;
      try {
        // A torn last line (a crash mid-append) was never acknowledged: skipped.
        const e = JSON.parse(line) as { n?: unknown; iat?: unknown; hw?: unknown };
        if (typeof e.n === 'string' && NONCE.test(e.n) && Number.isSafeInteger(e.iat)) nonces[e.n] = e.iat as number;
        if (Number.isSafeInteger(e.hw)) highWaterIat = Math.max(highWaterIat, e.hw as number);
      } catch { /* skipped */ }
    }
    this.seen = { highWaterIat, nonces };
  }

  /**
   * Checks and, when it passes, records the nonce durably before resolving: a command refused
   * by a later check is spent too, so it cannot run when sent again once that check would pass.
   * Serialised: two copies of one command racing each other cannot both pass.
   */
  accept(iat: number, nonce: string, nowS: number, clockSynced: boolean): Promise<string | null> {
    return this.serially(async () => {
      const refusal = replayRefusal(this.seen, iat, nonce, nowS, clockSynced);
      if (refusal) return refusal;
      await this.append(nonce, iat, nowS);
      return null;
    });
  }

  /**
   * A command passed every check: the high-water mark rises to its iat — by at most 5 minutes
   * past the mark (or the clock, when synced), so one command from a clock far ahead cannot
   * lock every later one out of a node whose own clock is not synced (CONTRACT §7: the highest
   * iat *accepted*).
   */
  confirm(iat: number, nowS: number, clockSynced: boolean): Promise<void> {
    return this.serially(async () => {
      const cap = (clockSynced ? Math.max(this.seen.highWaterIat, nowS) : this.seen.highWaterIat || iat) + IAT_SKEW_S;
      // In memory now, on disk with the next nonce: the mark is a lower bound, and one lost
      // with a crash only lets the 10-minute check be a little looser until the next command.
      this.seen = { ...this.seen, highWaterIat: Math.max(this.seen.highWaterIat, Math.min(iat, cap)) };
    });
  }

  async close(): Promise<void> {
    await this.writing.catch(() => {});
    await this.journal?.close().catch(() => {});
    this.journal = undefined;
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writing.catch(() => {}).then(fn);
    this.writing = run.then(() => {}, () => {});
    return run;
  }

  private async append(nonce: string, iat: number, nowS: number): Promise<void> {
    // Kept while either check could still let its command through: the clock's (now − 5 min)
    // and the high-water mark's (− 10 min). A clock years behind keeps many: the newest
    // MAX_NONCES then, a bound on the journal and on memory.
    const hw = this.seen.highWaterIat;
    const horizon = (hw > 0 ? Math.min(hw, nowS) : nowS) - KEEP_S;
    const kept = Object.entries(this.seen.nonces).filter(([, t]) => t >= horizon);
    if (kept.length !== Object.keys(this.seen.nonces).length || kept.length >= MAX_NONCES) {
      kept.sort((a, b) => b[1] - a[1]);
      this.seen = { highWaterIat: hw, nonces: Object.fromEntries(kept.slice(0, MAX_NONCES - 1)) };
    }
    const live = Object.keys(this.seen.nonces).length;
    if (this.lines > 2 * live + 1_000) await this.compact();
    if (!this.journal) {
      this.journal = await open(this.path, 'a', 0o600);
      await fsyncDir(this.deps.stateDir); // the journal's own name is durable before it counts
    }
    await this.journal.write(`${JSON.stringify({ n: nonce, iat, hw })}\n`);
    await this.journal.datasync();
    this.lines++;
    this.seen.nonces[nonce] = iat;
  }

  /** Rewrites the journal with what is still needed (temp file, fsync, rename, folder fsync). */
  private async compact(): Promise<void> {
    await this.journal?.close().catch(() => {});
    this.journal = undefined;
    const entries = Object.entries(this.seen.nonces).map(([n, iat]) => JSON.stringify({ n, iat, hw: this.seen.highWaterIat }));
    await writeFileDurable(this.path, entries.length > 0 ? `${entries.join('\n')}\n` : '');
    this.lines = entries.length;
  }
}
