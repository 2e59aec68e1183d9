// A pushed config's trial (CONTRACT §9 Config push): stored, applied, and committed only once
// every enabled camera records and the broker link is up within `fleet.rollbackAfter` — else
// the previous config is applied again. `camnode config reset` (back to the file) goes through
// the same trial. One trial at a time: a push during one is a conflict.
//
// The trial is written to `node.stateDir/config/trial.json` before anything is applied: an agent
// that stops or crashes during it starts again on the previous config (nothing was committed),
// and says so with `config.rolledBack` at its next start.
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError } from '../commands/protocol.js';
import { configSha256, type ConfigInForce } from '../config/identity.js';
import { differingPaths, preparePush } from '../config/push.js';
import type { AuditLog, AuditPayloads } from '../audit/log.js';
import type { PushedConfigs } from '../config/store.js';
import type { EventBus } from '../events.js';
import type { Component } from '../lifecycle/component.js';
import { iso, type Clock } from '../platform/clock.js';
import { proveWithin } from './prove.js';
import { fsyncDir, mkdirsDurable, writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';

export const TRIAL_FILE = 'trial.json';

/** What the trial changes and watches: the agent. */
export interface TrialTarget {
  inForce(): ConfigInForce;
  apply(next: ConfigInForce): Promise<void>;
  /** Null once the config in force proves itself; else what is still missing. */
  unproven(): string | null;
}

/** Who asked, for the audit entry (CONTRACT §7 Who): a signer's CN, a typed name, the JWS. */
export type Asker = Pick<AuditPayloads['config'], 'by' | 'onBehalfOf' | 'signer' | 'jws'>;

export interface ConfigTrialDeps {
  store: PushedConfigs;
  /** Each trial, commit and rollback is an audit entry: what changed retention is on the record. */
  audit: Pick<AuditLog, 'append'>;
  target: TrialTarget;
  hashKey: Uint8Array;
  /** The node's config file, parsed (for `config reset`); throws a ConfigError when it does not validate. */
  loadFile(): ConfigInForce;
  clock: Clock;
  events: EventBus;
  log: Logger;
  /** How often the trial looks (default 1 s). */
  checkEveryMs?: number;
  /** A rollback that failed leaves no config known to work in this process: the agent must restart. */
  onFatal(err: unknown): void;
}

/** The reply to a push or a reset: the trial's end, or null when nothing changes. */
export interface TrialStarted { sha256: string; trialUntil: string | null; unchanged?: true }

interface Running { sha256: string; until: number; previous: ConfigInForce; next: ConfigInForce; commit: () => Promise<void> }

const quietly = (p: Promise<unknown>, log: Logger): void => void p.catch((err: unknown) => log.error({ err }, 'the audit entry of the config cannot be written'));

interface TrialRecord { sha256: string; previousSha256: string; until: string }

export class ConfigTrial implements Component {
  readonly name = 'config-trial';
  private running: Running | undefined;
  private cancelWatch: (() => void) | undefined;
  private stopped = false;
  private preparing = false;

  constructor(private readonly deps: ConfigTrialDeps) {}

  private get file(): string {
    return join(this.deps.store.dir, TRIAL_FILE);
  }

  /** A trial the last run left unfinished was not committed: its config is not in force now. */
  async start(): Promise<void> {
    let left: Partial<TrialRecord>;
    try {
      left = JSON.parse(await readFile(this.file, 'utf8')) as Partial<TrialRecord>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      left = {};
    }
    const sha256 = typeof left.sha256 === 'string' ? left.sha256 : 'unknown';
    const inForce = this.deps.target.inForce();
    if (sha256 === configSha256(inForce.config, this.deps.hashKey)) {
      // Committed just before a stop: the file naming the trial was not removed yet.
      this.deps.log.info({ sha256, source: inForce.source }, 'config committed');
      quietly(this.deps.audit.append('config', { step: 'committed', sha256, source: inForce.source }), this.deps.log);
      this.deps.events.emit('config.committed', { sha256, source: inForce.source });
      await this.forget();
      return;
    }
    const reason = 'the agent stopped during the trial: the previous config is in force';
    this.deps.log.warn({ sha256, reason }, 'config rolled back');
    quietly(this.deps.audit.append('config', { step: 'rolledBack', sha256, source: this.deps.target.inForce().source, reason }), this.deps.log);
    this.deps.events.emit('config.rolledBack', { sha256, reason });
    await this.forget();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelWatch?.();
  }

  /** The trial under way, for the state. */
  current(): { sha256: string; until: string } | null {
    return this.running ? { sha256: this.running.sha256, until: iso(this.running.until) } : null;
  }

  /** `config {yaml}`: validated exactly as `camnode run` would (a ConfigError when not), then tried. */
  async push(yaml: string, who: Asker = {}): Promise<TrialStarted> {
    return this.claimed(async () => {
      const inForce = this.deps.target.inForce();
      const candidate = preparePush(yaml, inForce);
      const sha256 = configSha256(candidate.config, this.deps.hashKey);
      if (sha256 === configSha256(inForce.config, this.deps.hashKey)) return { sha256, trialUntil: null, unchanged: true };
      await this.deps.store.save(candidate.document, sha256);
      return this.begin({ ...candidate, source: 'pushed' }, sha256, () => this.deps.store.commit(sha256, this.deps.clock.now()), who);
    });
  }

  /** `config reset`: back to the file, through the same trial. */
  async reset(who: Asker = {}): Promise<TrialStarted> {
    return this.claimed(async () => {
      const inForce = this.deps.target.inForce();
      if (inForce.source === 'file') return { sha256: configSha256(inForce.config, this.deps.hashKey), trialUntil: null, unchanged: true };
      const file = this.deps.loadFile();
      return this.begin(file, configSha256(file.config, this.deps.hashKey), () => this.deps.store.reset(), who);
    });
  }

  /** One push or reset at a time, claimed before the first await: a second one is a conflict. */
  private async claimed(work: () => Promise<TrialStarted>): Promise<TrialStarted> {
    const r = this.running;
    if (r) throw new CommandError('conflict', `config ${r.sha256.slice(0, 12)} is on trial until ${iso(r.until)}; push again once it is committed or rolled back`);
    if (this.preparing) throw new CommandError('conflict', 'another config is being pushed now; push again once it is on trial');
    this.preparing = true;
    try {
      return await work();
    } finally {
      this.preparing = false;
    }
  }

  private async begin(next: ConfigInForce, sha256: string, commit: () => Promise<void>, who: Asker): Promise<TrialStarted> {
    const previous = this.deps.target.inForce();
    const previousSha256 = configSha256(previous.config, this.deps.hashKey);
    const until = this.deps.clock.now() + (previous.config.fleet?.rollbackAfter ?? 120_000);
    const running: Running = { sha256, until, previous, next, commit };
    this.running = running;
    try {
      // On the record before anything changes (a push that cannot be audited is refused).
      await this.deps.audit.append('config', { step: 'trial', sha256, source: next.source, previousSha256, differs: differingPaths(previous.config, next.config), ...who });
      await mkdirsDurable(this.deps.store.dir);
      const record: TrialRecord = { sha256, previousSha256, until: iso(until) };
      await writeFileDurable(this.file, `${JSON.stringify(record)}\n`);
    } catch (err) {
      this.running = undefined;
      throw err;
    }
    this.deps.log.info({ sha256, until: iso(until), source: next.source }, 'config on trial');
    // Applied once the reply is on its way: the link that carries it may be rebuilt.
    setImmediate(() => void this.run(running));
    return { sha256, trialUntil: iso(until) };
  }

  private async run(r: Running): Promise<void> {
    if (this.stopped) return;
    try {
      await this.deps.target.apply(r.next);
    } catch (err) {
      this.deps.log.error({ err, sha256: r.sha256 }, 'applying the config failed');
      await this.rollBack(r, `applying it failed: ${(err as Error).message}`);
      return;
    }
    this.watch(r);
  }

  private watch(r: Running): void {
    if (this.stopped) return;
    this.cancelWatch = proveWithin({
      clock: this.deps.clock, unproven: () => this.deps.target.unproven(), deadlineMs: r.until, everyMs: this.deps.checkEveryMs ?? 1_000,
      onProven: () => void this.commit(r),
      onMissed: (missing) => void this.rollBack(r, `not proven within fleet.rollbackAfter: ${missing}`),
    });
  }

  private async commit(r: Running): Promise<void> {
    try {
      await r.commit();
    } catch (err) {
      // Not committed: at the next start the previous config is in force again, and said.
      this.deps.log.error({ err, sha256: r.sha256 }, 'the config proved itself but its commitment cannot be written');
      await this.rollBack(r, `its commitment cannot be written: ${(err as Error).message}`);
      return;
    }
    await this.forget();
    this.running = undefined;
    this.deps.log.info({ sha256: r.sha256, source: r.next.source }, 'config committed');
    quietly(this.deps.audit.append('config', { step: 'committed', sha256: r.sha256, source: r.next.source }), this.deps.log);
    this.deps.events.emit('config.committed', { sha256: r.sha256, source: r.next.source });
  }

  private async rollBack(r: Running, reason: string): Promise<void> {
    // Stopping: the trial file stays, and the next start (on the committed config) reports it.
    if (this.stopped) return;
    this.deps.log.warn({ sha256: r.sha256, reason }, 'config rolled back');
    try {
      await this.deps.target.apply(r.previous);
    } catch (err) {
      if (!this.stopped) this.deps.onFatal(err);
      return;
    }
    await this.forget();
    this.running = undefined;
    quietly(this.deps.audit.append('config', { step: 'rolledBack', sha256: r.sha256, source: r.previous.source, reason }), this.deps.log);
    this.deps.events.emit('config.rolledBack', { sha256: r.sha256, reason });
  }

  private async forget(): Promise<void> {
    await unlink(this.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') this.deps.log.warn({ err }, 'the trial file cannot be removed');
    });
    await fsyncDir(this.deps.store.dir).catch(() => {});
  }
}
