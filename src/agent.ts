// The composition root: checks the environment, builds the core every module shares (events,
// faults, the audit log, the node's key, the clock's status), lists the modules, and starts
// what they built in order — stopping it in reverse. Each module reads only its slice of the
// config.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { unbuiltSettings, type Config } from './config/schema.js';
import { EventBus, type EventScope } from './events.js';
import { ComponentGroup } from './lifecycle/component.js';
import { Faults } from './lifecycle/faults.js';
import { iso, systemClock, type Clock } from './platform/clock.js';
import { ClockStatus } from './platform/clock-status.js';
import { ClockSteps } from './platform/clock-steps.js';
import type { DiskUsageReader } from './platform/disk.js';
import { ffmpegVersion, MIN_FFMPEG, MissingToolError, versionAtLeast } from './platform/ffmpeg.js';
import type { Logger } from './platform/logger.js';
import { acquireAgentLock, listProcesses, orphanRecorders, stopProcesses } from './platform/processes.js';
import { probeWritable } from './platform/storage.js';
import type { CameraStatus } from './recorder/camera-recorder.js';
import type { LockSource, RingStats } from './store/ring.js';
import { AuditLog } from './audit/log.js';
import { KeyHistory } from './audit/key-history.js';
import { loadOrCreateNodeKey } from './audit/keys.js';
import { CommandHandlers } from './commands/handlers.js';
import { CommandError } from './commands/protocol.js';
import type { Incident } from './incidents/incident.js';
import { buildState, EMPTY_SYNC, UNKNOWN_HEALTH } from './fleet/state.js';
import { Health } from './fleet/health.js';
import type { StatePayload } from './fleet/topics.js';
import { VERSION } from './version.js';
import type { AgentModule, ModuleBase } from './modules/module.js';
import { recordingModule, type RecordingModule, type TestPicture } from './modules/recording.js';
import { signageView } from './custody/signage.js';
import { narrowDirs, privateDirs } from './platform/private-dirs.js';
import { incidentsModule, type IncidentCounts, type IncidentsModule } from './modules/incidents.js';
import { syncModule, type SyncModule } from './modules/sync.js';
import { footageModule } from './modules/footage.js';
import { reportModule } from './modules/report.js';
import { AUDIT_LOG_FILE } from './audit/log.js';
import { fleetModule, type FleetModule } from './modules/fleet.js';
import { controlModule } from './modules/control.js';
import { callsModule, type CallsModule } from './modules/calls.js';
import { configModule, type ConfigModule } from './modules/config.js';
import { loadOrCreateHashKey, type ConfigInForce, type ConfigSource } from './config/identity.js';
import { PushedConfigs } from './config/store.js';
import { planApply } from './deploy/apply-plan.js';
import { ConfigTrial } from './deploy/config-trial.js';
import { Updates } from './deploy/update.js';
import { updateModule } from './modules/update.js';
import { panelModule, type PanelModule } from './modules/panel.js';
import { createStore } from './sync/target.js';

export { countIncidents, type IncidentCounts } from './modules/incidents.js';

/** A prune pass takes seconds even on a million segments; one running this long is stuck. */
const WEDGED_PRUNE_MS = 120_000;

export interface AgentDeps {
  config: Config;
  /** The config as written (for `config get`); the parsed config stands in when not given. */
  configDocument?: unknown;
  /** Whence the config: the file (the default) or a committed push (CONTRACT §9). */
  configSource?: ConfigSource;
  log: Logger;
  clock?: Clock;
  disk?: DiskUsageReader;
  /** More ranges the ring must keep, beside the incident book's. */
  locks?: LockSource;
  ffmpegPath?: string;
  procRoot?: string;
  deviceRoot?: string;
  /** Synthetic camera picture (the demo keeps it small). */
  testsrc?: TestPicture;
  /** How often the ring prunes when space is not short (default 30 s). */
  pruneIntervalMs?: number | undefined;
  /** The node's config file, read again for `config reset` (absent: reset is refused). */
  loadFile?: () => ConfigInForce;
  /** A failure that leaves no working config in this process (a rollback that failed): exit, systemd restarts. */
  onFatal?: (err: unknown) => void;
  /** A new release that did not prove itself in time: stop and exit, the launcher rolls back (CONTRACT §9). */
  onUpdateMissed?: (reason: string) => void;
}

export interface AgentStatus {
  cameras: CameraStatus[];
  storage: RingStats | undefined;
  incidents: IncidentCounts;
}

/** What every config shares and keeps across pushes: the node's identity, clock, health, audit log. */
interface Core {
  key: Awaited<ReturnType<typeof loadOrCreateNodeKey>>;
  keyHistory: KeyHistory;
  clockStatus: ClockStatus;
  steps: ClockSteps;
  health: Health;
  audit: AuditLog;
  hashKey: Uint8Array;
  trial: ConfigTrial;
  updates: Updates;
  ffmpeg: string;
}

/** The ring, the recorders and the call recordings: rebuilt only when the disk, the segment length or the calls change. */
interface Media {
  recording: RecordingModule;
  calls: CallsModule | undefined;
  scope: EventScope;
  early: ComponentGroup;
  main: ComponentGroup;
}

/** Every other module, with the command table and the transports: rebuilt when their settings change. */
interface Services {
  incidents: IncidentsModule;
  sync: SyncModule;
  fleet: FleetModule | undefined;
  config: ConfigModule;
  modules: AgentModule[];
  scope: EventScope;
  early: ComponentGroup;
  main: ComponentGroup;
}

export class Agent {
  readonly events: EventBus;
  private readonly faults: Faults;
  private core: Core | undefined;
  private coreGroup: ComponentGroup | undefined;
  /** The audit log and the config's trial: after the early modules, before the rest. */
  private auditGroup: ComponentGroup | undefined;
  private media: Media | undefined;
  private services: Services | undefined;
  /** The panic button and its LED: kept across pushes that leave `button` as it is. */
  private panel: { module: PanelModule; group: ComponentGroup } | undefined;
  /** The config in force: the one started with, then each applied push. */
  private inForceNow: ConfigInForce;
  /** An apply that failed half-way: the next one rebuilds everything. */
  private broken = false;
  /** Set by stop(): no apply starts any more (a trial's rollback waits for the next start). */
  private stopping = false;
  private applying: Promise<void> = Promise.resolve();
  private releaseLock: (() => Promise<void>) | undefined;
  private stopped: Promise<void> | undefined;
  private signal: AbortSignal | undefined;
  private readonly clock: Clock;

  constructor(private readonly deps: AgentDeps) {
    this.clock = deps.clock ?? systemClock;
    this.events = new EventBus(deps.log.child({ component: 'events' }));
    this.faults = new Faults({ clock: this.clock, events: this.events, log: deps.log.child({ component: 'faults' }) });
    this.inForceNow = { config: deps.config, document: deps.configDocument ?? deps.config, source: deps.configSource ?? 'file' };
  }

  private get config(): Config {
    return this.inForceNow.config;
  }

  async start(signal: AbortSignal): Promise<void> {
    const { log } = this.deps;
    const config = this.config;
    const clock = this.clock;
    this.signal = signal;
    const version = await ffmpegVersion(this.deps.ffmpegPath);
    if (!versionAtLeast(version, MIN_FFMPEG)) throw new MissingToolError('ffmpeg', `ffmpeg ${version} is too old; camnode needs ${MIN_FFMPEG.join('.')} or newer`);
    // Read-only or forbidden storage stops the start; a full one does not: the ring's first
    // prune pass frees the oldest footage (its own only), and recording goes on.
    if (await probeWritable(config.storage.path) === 'full') log.warn({ path: config.storage.path }, 'storage is full at start: the ring frees its oldest footage first');
    // Nor does a state dir that cannot take writes now: the audit log says so (the `audit`
    // fault), presses are kept in memory until they can be written, commands are refused.
    const stateDir = await probeWritable(config.node.stateDir, 'node.stateDir').catch((err: unknown) => (err as Error).message);
    if (stateDir !== 'ok') log.error({ path: config.node.stateDir, reason: stateDir }, 'node.stateDir cannot be written now: recording goes on; locks wait in memory');
    const segmentsRoot = join(config.storage.path, 'segments');
    await probeWritable(segmentsRoot);
    const lockFile = join(segmentsRoot, 'agent.pid');
    let lockLater = false;
    try {
      this.releaseLock = await acquireAgentLock(lockFile, this.deps.procRoot);
    } catch (err) {
      // The disk is full: the pid file waits until the ring's first pass has made room.
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      lockLater = true;
    }
    await this.stopOrphans(segmentsRoot);
    for (const d of await narrowDirs(privateDirs(config.storage.path, config.node.stateDir))) {
      log.warn({ path: d.path, from: d.from.toString(8), to: d.to.toString(8) }, 'folder was open to other users: narrowed to camnode\'s user and group');
    }
    const unbuilt = unbuiltSettings(config);
    if (unbuilt.length > 0) log.info({ keys: unbuilt }, 'config keys accepted but their features are not built yet: ignored');

    // The core every module shares, kept across pushed configs (node.stateDir cannot change).
    const key = await loadOrCreateNodeKey(config.node.stateDir, log.child({ component: 'keys' }));
    const keyHistory = new KeyHistory({ stateDir: config.node.stateDir, key, now: () => clock.now(), log: log.child({ component: 'keys' }) });
    await keyHistory.open();
    const clockStatus = new ClockStatus();
    // One watcher of the clock's steps for the ring and the book: both correct by the same step.
    const steps = new ClockSteps({ clock, stateDir: config.node.stateDir, log: log.child({ component: 'clock' }), procRoot: this.deps.procRoot });
    const health = new Health({ clockSynced: () => clockStatus.synced(), log: log.child({ component: 'health' }) });
    const audit = new AuditLog({
      stateDir: config.node.stateDir, log: log.child({ component: 'audit' }), clock,
      onWritable: (writable, err) => (writable ? this.faults.clear('audit') : this.faults.report('audit', err ?? 'cannot be written')),
    });
    // A state dir that cannot be written now: a key for this run only (the sha256 then
    // changes at the next start, as it would with any new key).
    const hashKey = await loadOrCreateHashKey(config.node.stateDir).catch((err: unknown) => {
      log.error({ err }, 'the config hash key cannot be kept in node.stateDir: one for this run only');
      return randomBytes(32);
    });
    const loadFile = this.deps.loadFile;
    const trial = new ConfigTrial({
      store: new PushedConfigs(config.node.stateDir), audit, hashKey, clock, events: this.events, log: log.child({ component: 'config' }),
      target: { inForce: () => this.inForceNow, apply: (next) => this.apply(next), unproven: () => this.unproven() },
      loadFile: () => {
        if (!loadFile) throw new CommandError('bad_request', 'config reset: this agent was not started from a config file');
        return loadFile();
      },
      onFatal: (err) => {
        log.fatal({ err }, 'the previous config could not be applied again');
        if (this.deps.onFatal) this.deps.onFatal(err);
        else this.reportFault('config', err);
      },
    });
    const updates = new Updates({
      stateDir: config.node.stateDir, version: VERSION, config: () => this.config, audit, clock, events: this.events, log: log.child({ component: 'update' }),
      store: async (c) => (await createStore(c))?.store ?? null,
      unproven: () => this.unproven(),
      onMissed: (reason) => {
        if (this.deps.onUpdateMissed) this.deps.onUpdateMissed(reason);
        else this.reportFault('update', reason);
      },
    });
    this.core = { key, keyHistory, clockStatus, steps, health, audit, hashKey, trial, updates, ffmpeg: version };

    const media = await this.buildMedia(config);
    this.media = media;
    this.panel = await this.buildPanel(config);
    const services = await this.buildServices(config, media);
    this.services = services;
    // The early ones (the event outbox, the incident book) before the audit log: a state dir
    // found unwritable is reported by the audit log's start, and that fault must reach the fleet.
    // The trial after them: a trial left unfinished is reported as rolled back.
    this.coreGroup = new ComponentGroup([clockStatus, steps, health], log);
    await this.coreGroup.start(signal);
    await services.early.start(signal);
    await media.early.start(signal);
    this.auditGroup = new ComponentGroup([audit, trial, updates], log);
    await this.auditGroup.start(signal);
    await media.main.start(signal);
    await this.panel.group.start(signal);
    await services.main.start(signal);
    if (lockLater) {
      // Another agent that took the storage meanwhile wins (thrown: this one stops).
      this.releaseLock = await acquireAgentLock(lockFile, this.deps.procRoot).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        log.error({ err, lockFile }, 'the disk is still full: running without the agent lock file');
        return undefined;
      });
    }
    log.info({ cameras: media.recording.recorders.length, modules: [...this.mediaModules(media), ...services.modules].map((m) => m.name), storage: config.storage.path, ffmpeg: version, publicKey: key.publicKeyBase64 }, 'agent started');
  }

  private mediaModules(media: Media): AgentModule[] {
    return [media.recording, ...(media.calls ? [media.calls] : [])];
  }

  /** The panic button and its LED, from `button`. */
  private async buildPanel(config: Config): Promise<{ module: PanelModule; group: ComponentGroup }> {
    const steps = this.core!.steps;
    const module = await panelModule({
      ...this.base(this.events), button: config.button,
      healthy: () => this.wedged() === null && (this.media?.recording.cameraStatuses().some((c) => c.state === 'recording') ?? false),
      triggerTime: () => {
        steps.check();
        return { atMs: this.clock.now(), step: steps.stepCount() };
      },
    });
    return { module, group: new ComponentGroup([...module.components], this.deps.log) };
  }

  /** The ring and the recorders (and the calls, which the ring prunes with the video). */
  private async buildMedia(config: Config): Promise<Media> {
    const core = this.core!;
    const scope = this.events.scope();
    const base = this.base(scope);
    // The ring learns the incidents' locks through closures, from whichever book is in force:
    // the book is loaded (it starts early) before the ring's first prune pass, and a rebuilt
    // book replaces the old one only once loaded.
    const extraLocks = this.deps.locks;
    const calls = config.calls ? callsModule({ ...base, calls: config.calls, storagePath: config.storage.path }) : undefined;
    const recording = await recordingModule({
      ...base,
      storage: config.storage, recording: config.recording, cameras: config.cameras,
      pins: {
        lockedRanges: () => {
          const book = this.services!.incidents.book.lockedRanges();
          return extraLocks ? [...book, ...extraLocks.lockedRanges()] : book;
        },
        heldOutsideRing: () => this.services!.incidents.sealedBytes() + (calls?.rejectedBytes() ?? 0),
        promisedBytes: () => this.services!.incidents.promisedBytes(),
      },
      audit: core.audit,
      clockSynced: () => core.clockStatus.synced(),
      steps: core.steps,
      disk: this.deps.disk, ffmpegPath: this.deps.ffmpegPath, deviceRoot: this.deps.deviceRoot, testsrc: this.deps.testsrc,
      pruneIntervalMs: this.deps.pruneIntervalMs,
      calls: calls?.index.shelf(),
    });
    const modules = [recording, ...(calls ? [calls] : [])];
    return {
      recording, calls, scope,
      early: new ComponentGroup(modules.flatMap((m) => [...(m.early ?? [])]), this.deps.log),
      main: new ComponentGroup(modules.flatMap((m) => [...m.components]), this.deps.log),
    };
  }

  /** Every module but recording, each from its slice of the config, with its own event scope. */
  private async buildServices(config: Config, media: Media): Promise<Services> {
    const core = this.core!;
    const { log } = this.deps;
    const scope = this.events.scope();
    const base = this.base(scope);
    const { recording, calls } = media;
    const { audit, key, keyHistory, clockStatus, steps } = core;
    const sealedDir = join(config.storage.path, 'incidents');
    // Every module's commands are registered before any transport starts.
    const handlers = new CommandHandlers({ log: log.child({ component: 'commands' }) });
    const incidents: IncidentsModule = await incidentsModule({
      ...base,
      node: config.node, incident: config.incident, panel: this.panel!.module,
      enabledCameras: config.cameras.filter((c) => c.enabled).map((c) => c.id),
      configuredCameras: config.cameras.map((c) => c.id),
      calls,
      writing: (camera) => recording.writing(camera),
      sealedDir, segmentSeconds: config.recording.segmentSeconds,
      disposeNeedsSync: config.upstream.type !== 'none',
      ring: recording.ring, audit, key, steps,
      clockSynced: () => clockStatus.synced(),
      kbps: (camera) => recording.kbps(camera),
      downIntervals: (camera) => recording.downIntervals(camera),
      ffmpegPath: this.deps.ffmpegPath,
      encryptTo: config.upstream.encryptTo,
      upstreamPrefix: config.upstream.type === 'none' ? null : `${config.upstream.prefix}/${config.node.id}`,
    });
    const footage = footageModule({
      ...base, ring: recording.ring, book: incidents.book, damaged: incidents.damaged, audit,
      configuredCameras: config.cameras.map((c) => c.id), segmentSeconds: config.recording.segmentSeconds, calls: calls !== undefined,
      writing: (camera) => recording.writing(camera), ffmpegPath: this.deps.ffmpegPath,
    });
    const configs = configModule({ ...base, inForce: () => this.inForceNow, hashKey: core.hashKey, trial: core.trial });
    const sync = syncModule({ ...base, config, book: incidents.book, damaged: incidents.damaged, sealedDir, keyHistory, audit, key });
    const fleet = config.mqtt
      ? fleetModule({
        ...base, mqtt: config.mqtt, fleet: config.fleet, node: config.node, handlers, state: () => this.state(), publicKey: key.publicKeyBase64, keys: () => keyHistory.list(),
        config: () => configs.identity(),
        audit, clockSynced: () => clockStatus.synced(),
      })
      : undefined;
    const control = controlModule({ ...base, control: config.control, handlers });
    const report = reportModule({
      ...base, node: config.node, policy: config.policy, upstream: config.upstream.type, footage: () => footage.footage(), book: incidents.book,
      auditLogPath: join(config.node.stateDir, AUDIT_LOG_FILE), clockSynced: () => clockStatus.synced(), segmentSeconds: config.recording.segmentSeconds,
    });
    const modules: AgentModule[] = [incidents, footage, report, configs, updateModule({ updates: core.updates }), sync, ...(fleet ? [fleet] : []), control];
    handlers.register({
      ping: async () => ({ version: VERSION }),
      state: async () => (await this.services?.fleet?.publishState()) ?? this.state(),
    });
    for (const m of [...this.mediaModules(media), ...modules]) handlers.register(m.commands ?? {});
    return {
      incidents, sync, fleet, config: configs, modules, scope,
      early: new ComponentGroup(modules.flatMap((m) => [...(m.early ?? [])]), log),
      main: new ComponentGroup(modules.flatMap((m) => [...m.components]), log),
    };
  }

  private base(events: EventBus): ModuleBase {
    return { clock: this.clock, log: this.deps.log, events, faults: this.faults, signal: this.signal! };
  }

  /**
   * Applies a config (a push on trial, or the previous one again), module by module
   * (deploy/apply-plan.ts): unchanged cameras keep recording; the services are rebuilt when
   * their settings changed; the ring and every recorder only when the disk, the segment length
   * or the calls did. One apply at a time.
   */
  apply(next: ConfigInForce): Promise<void> {
    const run = this.applying.then(() => this.applyNow(next));
    this.applying = run.catch(() => {});
    return run;
  }

  private async applyNow(next: ConfigInForce): Promise<void> {
    if (this.stopping) throw new Error('the agent is stopping');
    const signal = this.signal!;
    const plan = planApply(this.config, next.config);
    if (this.broken) Object.assign(plan, { media: true, services: true });
    // Locks the book holds in memory only (node.stateDir cannot be written now) live in that
    // book alone: a rebuild would drop them. Such a config waits (its trial rolls back, saying why).
    const unwritten = this.services?.incidents.book.undurable() ?? [];
    if ((plan.services || plan.media) && unwritten.length > 0) {
      throw new Error(`incident(s) ${unwritten.join(', ')} are locked in memory only (node.stateDir cannot be written): a config that rebuilds the incident book waits until they are written`);
    }
    this.deps.log.info({ changed: plan.changed, media: plan.media, services: plan.services, cameras: plan.cameras }, 'applying a config');
    this.inForceNow = next;
    this.broken = true;
    let media = this.media!;
    const old = this.services!;
    let services = old;
    try {
      if (plan.services) await old.main.stop();
      const panelChanged = plan.changed.includes('button');
      if (panelChanged) await this.panel!.group.stop();
      if (plan.media) {
        await media.main.stop();
        await media.early.stop();
        media.scope.close();
      }
      if (plan.services) {
        // From here until the new services listen, what is emitted is held for them (the old
        // event forwarder stops listening in this very tick, so nothing goes to both).
        this.events.hold();
        await old.early.stop();
        old.scope.close();
      }
      if (plan.media) {
        media = await this.buildMedia(next.config);
        this.media = media;
      } else {
        await media.recording.applyCameras(plan.cameras, next.config.cameras);
        if (plan.ringLimits) await media.recording.setLimits(next.config.storage);
      }
      if (panelChanged) this.panel = await this.buildPanel(next.config);
      if (plan.services) {
        services = await this.buildServices(next.config, media);
        await services.early.start(signal);
        // The new book is loaded: from now on the ring's locks are its.
        this.services = services;
      }
      if (plan.media) {
        await media.early.start(signal);
        const at = iso(this.clock.now());
        await media.main.start(signal);
        // The new ring has read the old segments (same disk): each gap starts at its camera's newest.
        media.recording.markRestarted(plan.cameras.restart, at);
      }
      if (panelChanged) await this.panel!.group.start(signal);
      if (plan.services) {
        await services.main.start(signal);
        // Every listener of the new services exists now: each gets what it missed.
        this.events.release(services.scope);
      }
      this.broken = false;
    } catch (err) {
      // Half-built services leave no listener behind; what was held waits for the next build
      // (the trial's rollback rebuilds everything).
      if (services !== old) services.scope.close();
      throw err;
    }
  }

  /**
   * Whether the config in force has proved itself (CONTRACT §9): every enabled camera records
   * and the broker link is up. Null when it has; else what is missing.
   */
  unproven(): string | null {
    const media = this.media;
    if (!media) return 'not started';
    const down = media.recording.cameraStatuses().filter((c) => c.state !== 'disabled' && c.state !== 'recording');
    const missing = down.map((c) => `camera ${c.id} is ${c.state}${c.lastError ? ` (${c.lastError})` : ''}`);
    const fleet = this.services?.fleet;
    if (fleet && !fleet.connected()) missing.push('the broker link is down');
    return missing.length > 0 ? missing.join('; ') : null;
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      // No trial acts any more; one left unfinished is rolled back at the next start.
      await this.core?.trial.stop();
      await this.core?.updates.stop();
      let applying: Promise<void> | undefined;
      while (applying !== this.applying) {
        applying = this.applying;
        await applying;
      }
      await this.services?.main.stop();
      await this.panel?.group.stop();
      await this.media?.main.stop();
      await this.auditGroup?.stop();
      await this.media?.early.stop();
      await this.services?.early.stop();
      await this.coreGroup?.stop();
      await this.releaseLock?.();
      this.deps.log.info('agent stopped');
    })();
    return this.stopped;
  }

  /**
   * After an error the process cannot contain: the recorders alone stop, gracefully, so each
   * camera's last segment stays playable; the rest of the state is not trusted any more.
   */
  async stopRecorders(): Promise<void> {
    await Promise.allSettled((this.media?.recording.recorders ?? []).map((r) => r.stop()));
  }

  /**
   * An essential part that is stuck while the event loop turns, for the systemd watchdog
   * (CONTRACT §9): a prune pass running far longer than any should (a hung disk). A recorder
   * restarting a dead camera is healthy. Null: healthy.
   */
  wedged(): string | null {
    const ring = this.media?.recording.ring;
    const pruneMs = ring?.pruneRunningForMs() ?? 0;
    return pruneMs > WEDGED_PRUNE_MS ? `ring: a prune pass has run for ${Math.round(pruneMs / 1000)} s (the media disk does not answer?)` : null;
  }

  /** A fault found outside every component (an unhandled rejection: a bug). */
  reportFault(component: string, err: unknown): void {
    this.faults.report(component, err);
  }

  status(): AgentStatus {
    const media = this.media;
    if (!media || !this.services) return { cameras: [], storage: undefined, incidents: { active: 0, held: 0, unsynced: 0, damaged: 0 } };
    return { cameras: media.recording.cameraStatuses(), storage: media.recording.ring.stats(), incidents: this.services.incidents.counts() };
  }

  incidents(): Incident[] {
    return this.services?.incidents.book.list() ?? [];
  }

  publicKey(): string | undefined {
    return this.core?.key.publicKeyBase64;
  }

  syncStatus(): StatePayload['sync'] {
    return this.services?.sync.status() ?? EMPTY_SYNC;
  }

  /** The state document of CONTRACT §3. */
  async state(): Promise<StatePayload> {
    const health = this.core ? await this.core.health.read() : UNKNOWN_HEALTH;
    const now = this.clock.now();
    const state = buildState(now, this.status(), { ...health, faults: this.faults.list() }, this.syncStatus(), this.services?.sync.auditHead(),
      { signage: signageView(this.config.policy?.signage, now).status }, this.media?.calls?.state());
    if (!this.core) return state;
    const trial = this.core.trial.current();
    const update = this.core.updates.current();
    const restarted = this.media?.recording.restarted() ?? [];
    return {
      ...state,
      configSource: this.inForceNow.source,
      ...(update ? { updateTrial: update } : {}),
      ...(trial ? { configTrial: trial } : {}),
      ...(restarted.length > 0 ? { restartedCameras: restarted } : {}),
    };
  }

  /** The fake backend's button (demo: Enter; `run` with button.backend fake: a line on stdin). */
  fakeButton(): { press(): boolean } | null {
    // The panel may be rebuilt by a push that changes `button`: a press goes to the one in force.
    return this.panel?.module.fake ? { press: () => this.panel?.module.fake?.press() ?? false } : null;
  }

  /** Whether the status LED is lit now (the demo draws it). */
  ledLit(): boolean {
    return this.panel?.module.led.isOn() ?? false;
  }

  private async stopOrphans(segmentsRoot: string): Promise<void> {
    const orphans = orphanRecorders(await listProcesses(this.deps.procRoot), segmentsRoot, new Set([process.pid]));
    if (orphans.length === 0) return;
    this.deps.log.warn({ pids: orphans.map((o) => o.pid) }, 'stopping recorders left by a previous agent');
    await stopProcesses(orphans.map((o) => o.pid));
  }
}
