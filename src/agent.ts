// The composition root: checks the environment, builds the core every module shares (events,
// faults, the audit log, the node's key, the clock's status), lists the modules, and starts
// what they built in order — stopping it in reverse. Each module reads only its slice of the
// config.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { unbuiltSettings, type Config } from './config/schema.js';
import { EventBus } from './events.js';
import { ComponentGroup, type Component } from './lifecycle/component.js';
import { Faults } from './lifecycle/faults.js';
import { systemClock, type Clock } from './platform/clock.js';
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
import { loadOrCreateHashKey, type ConfigSource } from './config/identity.js';

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
}

export interface AgentStatus {
  cameras: CameraStatus[];
  storage: RingStats | undefined;
  incidents: IncidentCounts;
}

interface Built {
  health: Health;
  recording: RecordingModule;
  incidents: IncidentsModule;
  sync: SyncModule;
  fleet: FleetModule | undefined;
  calls: CallsModule | undefined;
  config: ConfigModule;
  publicKey: string;
}

export class Agent {
  readonly events: EventBus;
  private readonly faults: Faults;
  private built: Built | undefined;
  private group: ComponentGroup | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private stopped: Promise<void> | undefined;
  private readonly clock: Clock;

  constructor(private readonly deps: AgentDeps) {
    this.clock = deps.clock ?? systemClock;
    this.events = new EventBus(deps.log.child({ component: 'events' }));
    this.faults = new Faults({ clock: this.clock, events: this.events, log: deps.log.child({ component: 'faults' }) });
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, log } = this.deps;
    const clock = this.clock;
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
    const sealedDir = join(config.storage.path, 'incidents');
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

    // The core every module shares.
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
    const base: ModuleBase = { clock, log, events: this.events, faults: this.faults, signal };
    // Every module's commands are registered before any transport starts.
    const handlers = new CommandHandlers({ log: log.child({ component: 'commands' }) });

    // The modules. The ring learns the incidents' locks through closures: the book is loaded
    // (it starts early) before the ring's first prune pass.
    const extraLocks = this.deps.locks;
    const calls = config.calls ? callsModule({ ...base, calls: config.calls, storagePath: config.storage.path }) : undefined;
    const recording: RecordingModule = await recordingModule({
      ...base,
      storage: config.storage, recording: config.recording, cameras: config.cameras,
      pins: {
        lockedRanges: () => (extraLocks ? [...incidents.book.lockedRanges(), ...extraLocks.lockedRanges()] : incidents.book.lockedRanges()),
        heldOutsideRing: () => incidents.sealedBytes() + (calls?.rejectedBytes() ?? 0),
        promisedBytes: () => incidents.promisedBytes(),
      },
      audit,
      clockSynced: () => clockStatus.synced(),
      steps,
      disk: this.deps.disk, ffmpegPath: this.deps.ffmpegPath, deviceRoot: this.deps.deviceRoot, testsrc: this.deps.testsrc,
      pruneIntervalMs: this.deps.pruneIntervalMs,
      calls: calls?.index.shelf(),
    });
    const incidents: IncidentsModule = await incidentsModule({
      ...base,
      node: config.node, incident: config.incident, button: config.button,
      enabledCameras: config.cameras.filter((c) => c.enabled).map((c) => c.id),
      configuredCameras: config.cameras.map((c) => c.id),
      calls,
      healthy: () => this.wedged() === null && recording.cameraStatuses().some((c) => c.state === 'recording'),
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
    const configs = configModule({
      ...base,
      inForce: { config, document: this.deps.configDocument ?? config, source: this.deps.configSource ?? 'file' },
      // A state dir that cannot be written now: a key for this run only (the sha256 then
      // changes at the next start, as it would with any new key).
      hashKey: await loadOrCreateHashKey(config.node.stateDir).catch((err: unknown) => {
        log.error({ err }, 'the config hash key cannot be kept in node.stateDir: one for this run only');
        return randomBytes(32);
      }),
    });
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
    const modules: AgentModule[] = [recording, incidents, ...(calls ? [calls] : []), footage, report, configs, sync, ...(fleet ? [fleet] : []), control];

    handlers.register({
      ping: async () => ({ version: VERSION }),
      state: async () => (await fleet?.publishState()) ?? this.state(),
    });
    for (const m of modules) handlers.register(m.commands ?? {});
    this.built = { health, recording, incidents, sync, fleet, calls, config: configs, publicKey: key.publicKeyBase64 };

    // The early ones (the event outbox, the incident book) before the audit log: a state dir
    // found unwritable is reported by the audit log's start, and that fault must reach the fleet.
    const components: Component[] = [
      clockStatus, steps, health,
      ...modules.flatMap((m) => m.early ?? []),
      audit,
      ...modules.flatMap((m) => m.components),
    ];
    this.group = new ComponentGroup(components, log);
    await this.group.start(signal);
    if (lockLater) {
      // Another agent that took the storage meanwhile wins (thrown: this one stops).
      this.releaseLock = await acquireAgentLock(lockFile, this.deps.procRoot).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        log.error({ err, lockFile }, 'the disk is still full: running without the agent lock file');
        return undefined;
      });
    }
    log.info({ cameras: recording.recorders.length, modules: modules.map((m) => m.name), storage: config.storage.path, ffmpeg: version, publicKey: key.publicKeyBase64 }, 'agent started');
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.group?.stop();
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
    await Promise.allSettled((this.built?.recording.recorders ?? []).map((r) => r.stop()));
  }

  /**
   * An essential part that is stuck while the event loop turns, for the systemd watchdog
   * (CONTRACT §9): a prune pass running far longer than any should (a hung disk). A recorder
   * restarting a dead camera is healthy. Null: healthy.
   */
  wedged(): string | null {
    const ring = this.built?.recording.ring;
    const pruneMs = ring?.pruneRunningForMs() ?? 0;
    return pruneMs > WEDGED_PRUNE_MS ? `ring: a prune pass has run for ${Math.round(pruneMs / 1000)} s (the media disk does not answer?)` : null;
  }

  /** A fault found outside every component (an unhandled rejection: a bug). */
  reportFault(component: string, err: unknown): void {
    this.faults.report(component, err);
  }

  status(): AgentStatus {
    const b = this.built;
    if (!b) return { cameras: [], storage: undefined, incidents: { active: 0, held: 0, unsynced: 0, damaged: 0 } };
    return { cameras: b.recording.cameraStatuses(), storage: b.recording.ring.stats(), incidents: b.incidents.counts() };
  }

  incidents(): Incident[] {
    return this.built?.incidents.book.list() ?? [];
  }

  publicKey(): string | undefined {
    return this.built?.publicKey;
  }

  syncStatus(): StatePayload['sync'] {
    return this.built?.sync.status() ?? EMPTY_SYNC;
  }

  /** The state document of CONTRACT §3. */
  async state(): Promise<StatePayload> {
    const health = this.built ? await this.built.health.read() : UNKNOWN_HEALTH;
    const now = this.clock.now();
    const state = buildState(now, this.status(), { ...health, faults: this.faults.list() }, this.syncStatus(), this.built?.sync.auditHead(),
      { signage: signageView(this.deps.config.policy?.signage, now).status }, this.built?.calls?.state());
    const config = this.built?.config.identity();
    return config ? { ...state, configSource: config.source } : state;
  }

  /** The fake backend's button (demo: Enter; `run` with button.backend fake: a line on stdin). */
  fakeButton(): { press(): boolean } | null {
    return this.built?.incidents.fakeButton() ?? null;
  }

  /** Whether the status LED is lit now (the demo draws it). */
  ledLit(): boolean {
    return this.built?.incidents.ledLit() ?? false;
  }

  private async stopOrphans(segmentsRoot: string): Promise<void> {
    const orphans = orphanRecorders(await listProcesses(this.deps.procRoot), segmentsRoot, new Set([process.pid]));
    if (orphans.length === 0) return;
    this.deps.log.warn({ pids: orphans.map((o) => o.pid) }, 'stopping recorders left by a previous agent');
    await stopProcesses(orphans.map((o) => o.pid));
  }
}
