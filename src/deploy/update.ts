// Updates (CONTRACT §9 Update), the agent's part. `update {version}` fetches
// `<prefix>/releases/camnode-<version>-<arch>.tgz` and its `.sig` from the upstream store into
// `node.stateDir/updates/`, checks the signature with `fleet.releaseKey`, and leaves a request
// for the root helper (a path unit: device/camnode-update-helper), which verifies again, unpacks
// into root-owned `/opt/camnode/releases/<version>`, writes `node.stateDir/update.json` (the
// trial) and switches `current`. The launcher (ExecStartPre=+) counts the starts in update.json
// and switches back after two failed ones or a missed deadline. The agent of the new release
// commits once it has proved itself (every enabled camera records, the broker link up) — else,
// at the deadline, it exits so that the launcher rolls back — and reports the outcome as
// `update.committed` / `update.rolledBack`.
//
// update.json is one line of JSON with fixed keys (the launcher reads it with bash, as root,
// and trusts nothing in it it has not matched): version, previous, state (trial | committed |
// rolledBack), attempts, deadline (epoch seconds, set at the first start), reason, reported.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError } from '../commands/protocol.js';
import type { Config } from '../config/schema.js';
import type { AuditLog, AuditPayloads } from '../audit/log.js';
import type { EventBus } from '../events.js';
import type { Component } from '../lifecycle/component.js';
import { iso, type Clock } from '../platform/clock.js';
import { mkdirsDurable, writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import type { ObjectStore } from '../sync/store.js';
import { releaseKeys, releaseSignatureValid, VERSION_RE, type ReleaseArch } from './release-keys.js';
import { proveWithin } from './prove.js';

export const UPDATES_DIR = 'updates';
/** The request to the root helper: KEY=VALUE lines it matches one by one. */
export const UPDATE_REQUEST = 'request.env';
export const UPDATE_RECORD = 'update.json';

export type UpdateState = 'trial' | 'committed' | 'rolledBack';
export interface UpdateRecord {
  version: string;
  previous: string;
  state: UpdateState;
  attempts: number;
  /** Epoch seconds; 0 until the launcher's first start of the new release sets it. */
  deadline: number;
  /** fleet.rollbackAfter when the update was asked for, in seconds (the launcher sets the deadline from it). */
  rollbackAfterS: number;
  reason: string;
  reported: boolean;
}

/** Node's arch as Debian names it (the bundles' names). */
export function debianArch(arch: string = process.arch): ReleaseArch | null {
  return arch === 'arm64' ? 'arm64' : arch === 'arm' ? 'armhf' : arch === 'x64' ? 'amd64' : null;
}

/** update.json as the launcher and the helper write it; null when absent or not one. Pure. */
export function parseUpdateRecord(text: string): UpdateRecord | null {
  let raw: Partial<UpdateRecord>;
  try {
    raw = JSON.parse(text) as Partial<UpdateRecord>;
  } catch {
    return null;
  }
  if (typeof raw.version !== 'string' || !VERSION_RE.test(raw.version) || typeof raw.previous !== 'string' || !VERSION_RE.test(raw.previous)) return null;
  if (raw.state !== 'trial' && raw.state !== 'committed' && raw.state !== 'rolledBack') return null;
  return {
    version: raw.version, previous: raw.previous, state: raw.state,
    attempts: Number.isInteger(raw.attempts) ? raw.attempts! : 0,
    deadline: Number.isInteger(raw.deadline) ? raw.deadline! : 0,
    rollbackAfterS: Number.isInteger(raw.rollbackAfterS) ? raw.rollbackAfterS! : 120,
    reason: typeof raw.reason === 'string' ? raw.reason : '',
    reported: raw.reported === true,
  };
}

/** One line, fixed key order (the launcher matches it). Pure. */
export function formatUpdateRecord(r: UpdateRecord): string {
  return `${JSON.stringify({ version: r.version, previous: r.previous, state: r.state, attempts: r.attempts, deadline: r.deadline, rollbackAfterS: r.rollbackAfterS, reason: r.reason, reported: r.reported })}\n`;
}

export interface UpdatesDeps {
  stateDir: string;
  /** Each update asked for, committed and rolled back is an audit entry. */
  audit: Pick<AuditLog, 'append'>;
  /** The release this agent runs. */
  version: string;
  /** The config in force now (its upstream, fleet.releaseKey and rollbackAfter). */
  config(): Config;
  /** The upstream store, made on demand (null: no upstream). */
  store(config: Config): Promise<ObjectStore | null>;
  /** Null once this release has proved itself; else what is missing. */
  unproven(): string | null;
  /** The deadline passed unproven: the agent must exit, so that the launcher rolls back. */
  onMissed(reason: string): void;
  clock: Clock;
  events: EventBus;
  log: Logger;
  checkEveryMs?: number;
  arch?: ReleaseArch | null;
}

export interface UpdateStaged { version: string; from: string; bytes: number; sha256: string }

export class Updates implements Component {
  readonly name = 'updates';
  private cancelWatch: (() => void) | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private helperTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private trial: UpdateRecord | undefined;
  private fetching = false;

  constructor(private readonly deps: UpdatesDeps) {}

  private get dir(): string {
    return join(this.deps.stateDir, UPDATES_DIR);
  }

  private get recordFile(): string {
    return join(this.deps.stateDir, UPDATE_RECORD);
  }

  async start(): Promise<void> {
    const record = await this.read();
    if (!record || await this.reportRollback(record)) return;
    if (record.state === 'committed' && !record.reported && record.version === this.deps.version) {
      await this.reportCommit(record);
      return;
    }
    const { log, version } = this.deps;
    if (record.state !== 'trial') return;
    if (record.version !== version) {
      // The launcher did not switch (yet): nothing of the new release runs. It decides at the next start.
      log.warn({ version: record.version, running: version }, 'an update is on trial but this is not its release');
      return;
    }
    this.trial = record;
    const deadlineMs = record.deadline > 0 ? record.deadline * 1000 : this.deps.clock.now() + (this.deps.config().fleet?.rollbackAfter ?? 120_000);
    log.info({ version, previous: record.previous, deadline: iso(deadlineMs), attempt: record.attempts }, 'update on trial');
    this.watch(record, deadlineMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelWatch?.();
    clearTimeout(this.retryTimer);
    clearTimeout(this.helperTimer);
  }

  private async read(): Promise<UpdateRecord | null> {
    const text = await readFile(this.recordFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (text === null) return null;
    const record = parseUpdateRecord(text);
    if (!record) this.deps.log.warn({ file: this.recordFile }, 'update.json is not an update record: ignored');
    return record;
  }

  /** A rollback (by the launcher, or the helper's refusal) not reported yet: `update.rolledBack`, once. */
  private async reportRollback(record: UpdateRecord): Promise<boolean> {
    if (record.state !== 'rolledBack' || record.reported) return false;
    this.deps.log.warn({ version: record.version, reason: record.reason, running: this.deps.version }, 'update rolled back');
    const reason = record.reason || 'rolled back by the launcher';
    this.audit({ step: 'rolledBack', version: record.version, previous: record.previous, reason });
    this.deps.events.emit('update.rolledBack', { version: record.version, reason });
    await this.write({ ...record, reported: true });
    return true;
  }

  /** Until the root helper took the request: a refusal of its is reported (an install restarts the agent). */
  private awaitHelper(): void {
    if (this.stopped) return;
    this.helperTimer = setTimeout(() => {
      void (async () => {
        if (await exists(join(this.dir, UPDATE_REQUEST))) return this.awaitHelper();
        const record = await this.read().catch(() => null);
        if (record) await this.reportRollback(record).catch((err: unknown) => this.deps.log.warn({ err }, 'update.json cannot be written'));
      })();
    }, this.deps.checkEveryMs ?? 2_000);
  }

  /** The update on trial in this run, for the state. */
  current(): { version: string; previous: string } | null {
    return this.trial ? { version: this.trial.version, previous: this.trial.previous } : null;
  }

  private watch(record: UpdateRecord, deadlineMs: number): void {
    this.cancelWatch = proveWithin({
      clock: this.deps.clock, unproven: this.deps.unproven, deadlineMs, everyMs: this.deps.checkEveryMs ?? 1_000,
      onProven: () => void this.commit(record),
      onMissed: (missing) => {
        this.deps.log.error({ version: record.version, missing }, 'the update did not prove itself within fleet.rollbackAfter: exiting, the launcher rolls back');
        this.deps.onMissed(`not proven within fleet.rollbackAfter: ${missing}`);
      },
    });
  }

  private async commit(record: UpdateRecord): Promise<void> {
    const committed: UpdateRecord = { ...record, state: 'committed', reported: false };
    try {
      await this.write(committed);
    } catch (err) {
      // Not committed: the launcher will count this start as failed; say why.
      this.deps.log.error({ err }, 'the update proved itself but update.json cannot be written');
      this.retryTimer = setTimeout(() => void this.commit(record), 5_000);
      return;
    }
    this.trial = undefined;
    await this.reportCommit(committed);
  }

  /** A commit not reported yet (a stop may come between the two writes): `update.committed`, once. */
  private async reportCommit(record: UpdateRecord): Promise<void> {
    this.deps.log.info({ version: record.version, previous: record.previous }, 'update committed');
    this.audit({ step: 'committed', version: record.version, previous: record.previous });
    this.deps.events.emit('update.committed', { version: record.version, previous: record.previous });
    await this.write({ ...record, reported: true }).catch((err: unknown) => this.deps.log.warn({ err }, 'update.json cannot be written'));
  }

  private audit(entry: AuditPayloads['update']): void {
    this.deps.audit.append('update', entry).catch((err: unknown) => this.deps.log.error({ err }, 'the audit entry of the update cannot be written'));
  }

  private async write(record: UpdateRecord): Promise<void> {
    await writeFileDurable(this.recordFile, formatUpdateRecord(record));
  }

  /**
   * `update {version}`: fetches the release and its signature, checks it, and asks the root
   * helper to install it. Nothing is written unless the signature holds.
   */
  async request(version: string, who: Pick<AuditPayloads['update'], 'by' | 'onBehalfOf' | 'signer' | 'jws'> = {}): Promise<UpdateStaged> {
    const { deps } = this;
    if (!VERSION_RE.test(version)) throw new CommandError('bad_request', `version: "${version}" is not a version (e.g. 1.2.0)`);
    if (version === deps.version) throw new CommandError('bad_request', `version: ${version} is the release running now`);
    const config = deps.config();
    const releaseKey = config.fleet?.releaseKey;
    if (!releaseKey) throw new CommandError('bad_request', 'fleet.releaseKey is not set on this node: it runs no release it cannot check (docs/fleet-ops.md)');
    const arch = deps.arch === undefined ? debianArch() : deps.arch;
    if (!arch) throw new CommandError('bad_request', `this machine's arch (${process.arch}) has no camnode releases`);
    if (this.trial) throw new CommandError('conflict', `update to ${this.trial.version} is on trial; ask again once it is committed or rolled back`);
    if (this.fetching || await exists(join(this.dir, UPDATE_REQUEST))) throw new CommandError('conflict', 'an update is being fetched or waits for the root helper; ask again when it is done');
    this.fetching = true;
    try {
      const store = await deps.store(config);
      if (!store || config.upstream.type === 'none') throw new CommandError('bad_request', 'upstream: none: there is no store to fetch releases from');
      const file = `camnode-${version}-${arch}.tgz`;
      const keys = releaseKeys(config.upstream.prefix, file);
      deps.log.info({ version, key: keys.bundle, from: store.describe() }, 'fetching a release');
      const signature = await store.get(keys.signature);
      const bundle = signature ? await store.get(keys.bundle) : null;
      if (!signature || !bundle) throw new CommandError('not_found', `no release ${file} (with its .sig) under ${config.upstream.prefix}/releases/ in ${store.describe()}`);
      if (!releaseSignatureValid(bundle, signature, releaseKey)) {
        deps.log.error({ version, file }, 'release refused: its signature does not verify with fleet.releaseKey');
        throw new CommandError('bad_request', `${file}: its signature does not verify with fleet.releaseKey: refused, nothing installed`);
      }
      const sha256 = createHash('sha256').update(bundle).digest('hex');
      // On the record before the helper is asked (an update that cannot be audited is refused).
      await deps.audit.append('update', { step: 'requested', version, previous: deps.version, sha256, ...who });
      await mkdirsDurable(this.dir);
      await writeFileDurable(join(this.dir, file), bundle);
      await writeFileDurable(join(this.dir, `${file}.sig`), signature);
      const rollbackAfterS = Math.max(1, Math.round((config.fleet?.rollbackAfter ?? 120_000) / 1000));
      // Last: the path unit fires on it.
      await writeFileDurable(join(this.dir, UPDATE_REQUEST), `version=${version}\nfile=${file}\nprevious=${deps.version}\nrollback_after_s=${rollbackAfterS}\n`);
      this.awaitHelper();
      deps.log.info({ version, bytes: bundle.length, sha256 }, 'release fetched and verified: the root helper installs it');
      return { version, from: deps.version, bytes: bundle.length, sha256 };
    } finally {
      this.fetching = false;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}
