// Replay protection for signed commands (CONTRACT §7): every nonce is seen once, and `iat` is
// checked against the clock (±5 min) when it is synced, else against the highest `iat` accepted
// (not more than 10 min below it). Both persist in node.stateDir, written durably before the
// command runs, so neither a restart nor a crash lets a captured command be sent again.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';

export const SEEN_FILE = 'commands-seen.json';
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

  constructor(private readonly deps: { stateDir: string; log: Logger }) {}

  get path(): string {
    return join(this.deps.stateDir, SEEN_FILE);
  }

  async load(): Promise<void> {
    try {
      const parsed = JSON.parse(await readFile(this.path, 'utf8')) as Partial<Seen>;
      const nonces: Record<string, number> = {};
      if (parsed.nonces && typeof parsed.nonces === 'object') {
        for (const [n, iat] of Object.entries(parsed.nonces)) if (NONCE.test(n) && Number.isSafeInteger(iat)) nonces[n] = iat;
      }
      this.seen = { highWaterIat: Number.isSafeInteger(parsed.highWaterIat) ? parsed.highWaterIat! : 0, nonces };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Unreadable: refusing every command would lock ops out; forgetting the nonces would let
      // a replay within 15 min through. The clock check still holds; say it loudly.
      this.deps.log.error({ err, path: this.path }, 'seen-commands file unreadable; replays of commands from the last 15 minutes cannot be recognised');
    }
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
      await this.write(this.seen.highWaterIat, nonce, iat, nowS);
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
      const highWaterIat = Math.max(this.seen.highWaterIat, Math.min(iat, cap));
      if (highWaterIat !== this.seen.highWaterIat) await this.write(highWaterIat, undefined, iat, nowS);
    });
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writing.catch(() => {}).then(fn);
    this.writing = run.then(() => {}, () => {});
    return run;
  }

  private async write(highWaterIat: number, nonce: string | undefined, iat: number, nowS: number): Promise<void> {
    // Kept while either check could still let its command through: the clock's (now − 5 min)
    // and the high-water mark's (− 10 min). A clock years behind keeps many: the newest
    // MAX_NONCES then, a bound on the file and on memory.
    const horizon = (highWaterIat > 0 ? Math.min(highWaterIat, nowS) : nowS) - KEEP_S;
    const kept = Object.entries(this.seen.nonces).filter(([, t]) => t >= horizon).sort((a, b) => b[1] - a[1]).slice(0, MAX_NONCES - 1);
    const nonces: Record<string, number> = Object.fromEntries(kept);
    if (nonce !== undefined) nonces[nonce] = iat;
    const next = { highWaterIat, nonces };
    await writeFileDurable(this.path, `${JSON.stringify(next)}\n`);
    this.seen = next;
  }
}
