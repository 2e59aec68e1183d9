// The composition root: builds every component from the config, starts them in order and
// stops them in reverse. Nothing else reads the whole config.
import { join } from 'node:path';
import type { Config } from './config/schema.js';
import { parseSource } from './config/schema.js';
import { EventBus } from './events.js';
import { ComponentGroup, type Component } from './lifecycle/component.js';
import type { Clock } from './platform/clock.js';
import { systemClock } from './platform/clock.js';
import { ClockStatus } from './platform/clock-status.js';
import { diskUsage, type DiskUsageReader } from './platform/disk.js';
import { deviceModel } from './platform/device.js';
import { ffmpegVersion, MIN_FFMPEG, MissingToolError, probeDurationMs, versionAtLeast } from './platform/ffmpeg.js';
import type { Logger } from './platform/logger.js';
import { acquireAgentLock, listProcesses, orphanRecorders, stopProcesses } from './platform/processes.js';
import { probeWritable } from './platform/storage.js';
import { buildRecorderArgs, chooseH264Encoder } from './recorder/args.js';
import { CameraRecorder, type CameraStatus } from './recorder/camera-recorder.js';
import { Ring, type LockSource, type RingStats } from './store/ring.js';
import { AuditLog, AUDIT_LOG_FILE } from './audit/log.js';
import { loadOrCreateNodeKey, type NodeKey } from './audit/keys.js';
import { DeletionAudit } from './audit/deletions.js';
import { IncidentBook } from './incidents/book.js';
import { isOpen, type Incident } from './incidents/incident.js';
import { Sealer } from './incidents/sealer.js';
import { CommandHandlers } from './commands/handlers.js';
import { ControlSocket } from './control/socket.js';
import { VERSION } from './version.js';
import { createButton, type ButtonDescription, type ButtonSetup } from './button/index.js';
import { EventOutbox } from './fleet/outbox.js';
import type { FleetLink } from './fleet/link.js';
import { buildState, EMPTY_SYNC } from './fleet/state.js';
import { Health } from './fleet/health.js';
import { SnapshotError, takeSnapshot } from './recorder/snapshot.js';
import { CommandError, parseArgs } from './commands/protocol.js';
import { createStore, UpstreamConfigError } from './sync/target.js';
import { Syncer } from './sync/syncer.js';
import { StorageError } from './platform/storage.js';
import type { EventType, StatePayload } from './fleet/topics.js';
import type { AgentEvents } from './events.js';

export interface AgentDeps {
  config: Config;
  log: Logger;
  clock?: Clock;
  disk?: DiskUsageReader;
  /** More ranges the ring must keep, beside the incident book's. */
  locks?: LockSource;
  ffmpegPath?: string;
  procRoot?: string;
  deviceRoot?: string;
  /** Synthetic camera picture (the demo keeps it small). */
  testsrc?: { width: number; height: number; fps: number; bitrate: number };
}

export interface IncidentCounts { active: number; held: number; unsynced: number }

export interface AgentStatus {
  cameras: CameraStatus[];
  storage: RingStats | undefined;
  incidents: IncidentCounts;
}

/** CONTRACT §3: active = window open, held = sealed or synced and not released, unsynced = sealed. */
export function countIncidents(incidents: readonly Incident[], nowMs: number): IncidentCounts {
  let active = 0;
  let held = 0;
  let unsynced = 0;
  for (const i of incidents) {
    if (isOpen(i, nowMs)) active++;
    if (i.state === 'sealed' || i.state === 'synced') held++;
    if (i.state === 'sealed') unsynced++;
  }
  return { active, held, unsynced };
}

export class Agent {
  readonly events: EventBus;
  private ring: Ring | undefined;
  private recorders: CameraRecorder[] = [];
  private book: IncidentBook | undefined;
  private sealer: Sealer | undefined;
  private commandHandlers: CommandHandlers | undefined;
  private nodeKey: NodeKey | undefined;
  private buttonSetup: ButtonSetup | undefined;
  private link: FleetLink | undefined;
  private health: Health | undefined;
  private syncer: Syncer | undefined;
  private group: ComponentGroup | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private stopped: Promise<void> | undefined;
  private readonly clock: Clock;

  constructor(private readonly deps: AgentDeps) {
    this.events = new EventBus(deps.log.child({ component: 'events' }));
    this.clock = deps.clock ?? systemClock;
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, log } = this.deps;
    const clock = this.clock;
    const version = await ffmpegVersion(this.deps.ffmpegPath);
    if (!versionAtLeast(version, MIN_FFMPEG)) throw new MissingToolError('ffmpeg', `ffmpeg ${version} is too old; camnode needs ${MIN_FFMPEG.join('.')} or newer`);
    await probeWritable(config.storage.path);
    await probeWritable(config.node.stateDir, 'node.stateDir');

    const segmentsRoot = join(config.storage.path, 'segments');
    const sealedDir = join(config.storage.path, 'incidents');
    await probeWritable(segmentsRoot);
    this.releaseLock = await acquireAgentLock(join(segmentsRoot, 'agent.pid'), this.deps.procRoot);
    await this.stopOrphans(segmentsRoot);
    this.nodeKey = await loadOrCreateNodeKey(config.node.stateDir, log.child({ component: 'keys' }));

    const clockStatus = new ClockStatus();
    const health = new Health({ clockSynced: () => clockStatus.synced(), log: log.child({ component: 'health' }) });
    this.health = health;
    const audit = new AuditLog({ stateDir: config.node.stateDir, log: log.child({ component: 'audit' }), clock });
    const enabled = config.cameras.filter((c) => c.enabled).map((c) => c.id);
    const book = new IncidentBook({
      stateDir: config.node.stateDir,
      sealedDir,
      nodeId: config.node.id,
      policy: { preRollMs: config.incident.preRoll, postRollMs: config.incident.postRoll, maxLengthMs: config.incident.maxLength },
      enabledCameras: () => enabled,
      releaseNeedsSync: config.upstream.type !== 'none',
      clock,
      log: log.child({ component: 'incidents' }),
      events: this.events,
      audit,
      auditLogPath: join(config.node.stateDir, AUDIT_LOG_FILE),
    });
    this.book = book;

    const encoder = chooseH264Encoder(await deviceModel(this.deps.deviceRoot));
    const ring = new Ring({
      options: {
        storagePath: config.storage.path,
        maxUsePercent: config.storage.maxUsePercent,
        reserveBytes: config.storage.reserve,
        maxBytes: config.storage.maxBytes,
        maxAgeMs: config.storage.maxAge,
        segmentSeconds: config.recording.segmentSeconds,
      },
      clock,
      log: log.child({ component: 'ring' }),
      events: this.events,
      disk: this.deps.disk ?? diskUsage,
      locks: this.deps.locks ? { lockedRanges: () => [...book.lockedRanges(), ...this.deps.locks!.lockedRanges()] } : book,
      inProgressFiles: () => this.recorders.map((r) => r.currentFile()).filter((f): f is string => f !== null),
      heldOutsideRing: () => this.sealer?.sealedBytes() ?? 0,
      promisedBytes: () => this.promisedBytes(),
      clockSynced: () => clockStatus.synced(),
      probeDurationMs: (path) => probeDurationMs(path),
    });
    this.ring = ring;
    const testsrc = this.deps.testsrc;
    this.recorders = config.cameras.filter((c) => c.enabled).map((camera) => {
      const source = parseSource(camera.source);
      if (typeof source === 'string') throw new Error(`cameras.${camera.id}.source: ${source}`); // validated already
      if (source.kind === 'v4l2' || source.kind === 'testsrc') log.info({ camera: camera.id, encoder }, 'camera is encoded on this machine');
      return new CameraRecorder({
        camera: camera.id,
        buildArgs: (outputPattern) => buildRecorderArgs({
          source, outputPattern, segmentSeconds: config.recording.segmentSeconds, rtspTimeoutMs: 5_000, encoder,
          ...(testsrc ? { testsrc, encodeBitrate: testsrc.bitrate } : {}),
        }),
        segmentSeconds: config.recording.segmentSeconds,
        ring,
        clock,
        log: log.child({ component: 'recorder', camera: camera.id }),
        events: this.events,
        ...(this.deps.ffmpegPath ? { ffmpegPath: this.deps.ffmpegPath } : {}),
      });
    });
    for (const camera of config.cameras.filter((c) => !c.enabled)) log.info({ camera: camera.id }, 'camera disabled in config');

    const sealer = new Sealer({
      book, ring, sealedDir,
      segmentSeconds: config.recording.segmentSeconds,
      clock,
      log: log.child({ component: 'sealer' }),
      events: this.events,
      audit,
      key: this.nodeKey,
      clockSynced: async () => clockStatus.synced(),
      version: VERSION,
      ...(this.deps.ffmpegPath ? { ffmpegPath: this.deps.ffmpegPath } : {}),
    });
    this.sealer = sealer;
    this.events.on('incident.released', () => void sealer.measureHeld());

    let target;
    try {
      target = await createStore(config);
    } catch (err) {
      if (err instanceof UpstreamConfigError) throw new StorageError(err.message);
      throw err;
    }
    const syncer = target ? new Syncer({
      store: target.store, keyPrefix: target.keyPrefix, book, sealedDir, stateDir: config.node.stateDir,
      reloadStore: async () => (await createStore(config))!.store,
      maxRateBps: config.upstream.maxRate, window: config.upstream.window,
      clock, log: log.child({ component: 'sync' }), events: this.events,
    }) : undefined;
    this.syncer = syncer;
    if (target) log.info({ upstream: target.store.describe(), maxRate: config.upstream.maxRate ?? null, window: config.upstream.window ?? null }, 'upstream sync');

    const buttonSetup = await createButton(config.button, { log, clock });
    this.buttonSetup = buttonSetup;
    buttonSetup.button.onPress(() => void this.onButtonPress(book, buttonSetup));

    const handlers = new CommandHandlers({
      book, clock, log: log.child({ component: 'commands' }), version: VERSION,
      extra: {
        state: async () => (await this.link?.publishState()) ?? this.state(),
        sync: async () => ({ queued: (await this.syncer?.retryNow()) ?? 0 }),
        snapshot: async (args) => this.snapshot(parseArgs('snapshot', args).camera, signal),
      },
    });
    this.commandHandlers = handlers;
    const control = new ControlSocket({ path: config.control.socket, handlers, log: log.child({ component: 'control' }) });

    // The outbox starts before anything that emits events; the link after the rest is up.
    const early: Component[] = [];
    const fleet: Component[] = [];
    if (config.mqtt) {
      const outbox = new EventOutbox({ stateDir: config.node.stateDir, clock, log: log.child({ component: 'outbox' }) });
      // MQTT.js is loaded only when the node has a fleet link.
      const { FleetLink } = await import('./fleet/link.js');
      const link = new FleetLink({
        config: config.mqtt, nodeId: config.node.id, handlers, outbox,
        state: async () => this.state(),
        status: { version: VERSION, since: new Date(clock.now()).toISOString(), publicKey: this.nodeKey.publicKeyBase64 },
        log: log.child({ component: 'fleet' }),
      });
      this.link = link;
      this.forwardEvents(outbox, link);
      early.push(outbox);
      fleet.push(link);
    }

    const components: Component[] = [
      clockStatus, health, audit, ...early, book, ring, ...this.recorders, sealer,
      ...(syncer ? [syncer] : []),
      new DeletionAudit({ events: this.events, audit, log: log.child({ component: 'audit' }) }),
      ...fleet,
      buttonSetup.led, buttonSetup.button,
      control,
    ];
    this.group = new ComponentGroup(components, log);
    await this.group.start(signal);
    log.info({ cameras: this.recorders.length, storage: config.storage.path, ffmpeg: version, publicKey: this.nodeKey.publicKeyBase64 }, 'agent started');
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.group?.stop();
      await this.releaseLock?.();
      this.deps.log.info('agent stopped');
    })();
    return this.stopped;
  }

  status(): AgentStatus {
    const { config } = this.deps;
    const recording = new Map(this.recorders.map((r) => [r.status().id, r.status()]));
    const cameras = config.cameras.map((c): CameraStatus => recording.get(c.id)
      ?? { id: c.id, state: 'disabled', lastSegmentAt: null, kbps: null, restarts: 0, lastError: null });
    return { cameras, storage: this.ring?.stats(), incidents: countIncidents(this.book?.list() ?? [], this.clock.now()) };
  }

  /** The command handlers (shared by the control socket and, later, MQTT). */
  handlers(): CommandHandlers | undefined {
    return this.commandHandlers;
  }

  incidents(): Incident[] {
    return this.book?.list() ?? [];
  }

  publicKey(): string | undefined {
    return this.nodeKey?.publicKeyBase64;
  }

  syncStatus(): StatePayload['sync'] {
    return this.syncer?.status() ?? EMPTY_SYNC;
  }

  /** The state document of CONTRACT §3. */
  async state(): Promise<StatePayload> {
    const health = await this.health!.read();
    return buildState(this.clock.now(), this.status(), health, this.syncer?.status() ?? EMPTY_SYNC);
  }

  /** One JPEG from a camera's live stream (CONTRACT §3 snapshot). */
  private async snapshot(camera: string, signal: AbortSignal): Promise<{ camera: string; capturedAt: string; contentType: 'image/jpeg'; jpegBase64: string }> {
    const cam = this.deps.config.cameras.find((c) => c.id === camera);
    if (!cam) throw new CommandError('not_found', `no camera ${camera}`);
    const source = parseSource(cam.source);
    if (typeof source === 'string') throw new CommandError('internal', source);
    try {
      const shot = await takeSnapshot({
        source, timeoutMs: 10_000, signal,
        ...(this.deps.testsrc ? { testsrc: this.deps.testsrc } : {}),
        ...(this.deps.ffmpegPath ? { ffmpegPath: this.deps.ffmpegPath } : {}),
      });
      return { camera, capturedAt: shot.capturedAt, contentType: 'image/jpeg', jpegBase64: shot.jpeg.toString('base64') };
    } catch (err) {
      if (err instanceof SnapshotError) throw new CommandError('internal', `snapshot of ${camera}: ${err.message}`);
      throw err;
    }
  }

  /** Agent events that concern central ops go to the outbox (and prompt a state update). */
  private forwardEvents(outbox: EventOutbox, link: FleetLink): void {
    const forward = <K extends keyof AgentEvents & EventType>(type: K): void => {
      this.events.on(type, (payload) => {
        outbox.add(type, { ...payload }).catch((err: unknown) => this.deps.log.error({ err, type }, 'event not queued'));
        link.stateChanged();
      });
    };
    for (const type of ['incident.locked', 'incident.extended', 'incident.sealed', 'incident.synced', 'incident.released', 'camera.down', 'camera.up', 'storage.full', 'sync.failed', 'button.pressed'] as const) forward(type);
  }

  /** The fake backend's button (demo: Enter; `run` with button.backend fake: a line on stdin). */
  fakeButton(): { press(): boolean } | null {
    return this.buttonSetup?.fake ?? null;
  }

  /** Whether the status LED is lit now (the demo draws it). */
  ledLit(): boolean {
    return this.buttonSetup?.led.isOn() ?? false;
  }

  buttonDescription(): ButtonDescription | undefined {
    return this.buttonSetup?.describe();
  }

  /**
   * A press locks at once, on this machine only: nothing here waits on a network. The LED is
   * solid until the lock is durable, then confirms — or flashes the error if it could not be.
   */
  private async onButtonPress(book: IncidentBook, setup: ButtonSetup): Promise<void> {
    const atMs = this.clock.now();
    this.events.emit('button.pressed', { at: new Date(atMs).toISOString() });
    try {
      const { incident, extended } = await setup.led.during(() => book.lock({ atMs, via: 'button' }));
      this.deps.log.info({ incident: incident.id, extended }, 'panic button: lock durable');
    } catch (err) {
      this.deps.log.error({ err }, 'panic button: the lock could NOT be made durable');
    }
  }

  /** Bytes the open incident will still lock: its cameras' bitrates over the rest of its window. */
  private promisedBytes(): number {
    const incident = this.book?.openIncident();
    if (!incident) return 0;
    const remainingMs = Math.max(0, Date.parse(incident.window.end) - this.clock.now());
    let bytes = 0;
    for (const r of this.recorders) {
      const s = r.status();
      if (incident.cameras.includes(s.id)) bytes += ((s.kbps ?? 0) * 1000 / 8) * (remainingMs / 1000);
    }
    return Math.round(bytes);
  }

  private async stopOrphans(segmentsRoot: string): Promise<void> {
    const orphans = orphanRecorders(await listProcesses(this.deps.procRoot), segmentsRoot, new Set([process.pid]));
    if (orphans.length === 0) return;
    this.deps.log.warn({ pids: orphans.map((o) => o.pid) }, 'stopping recorders left by a previous agent');
    await stopProcesses(orphans.map((o) => o.pid));
  }

}
