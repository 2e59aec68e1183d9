// The composition root: builds every component from the config, starts them in order and
// stops them in reverse. Nothing else reads the whole config.
import { join } from 'node:path';
import type { Config } from './config/schema.js';
import { parseSource } from './config/schema.js';
import { EventBus } from './events.js';
import { ComponentGroup, type Component } from './lifecycle/component.js';
import type { Clock } from './platform/clock.js';
import { systemClock } from './platform/clock.js';
import { diskUsage, type DiskUsageReader } from './platform/disk.js';
import { deviceModel } from './platform/device.js';
import { ffmpegVersion, MIN_FFMPEG, MissingToolError, probeDurationMs, versionAtLeast } from './platform/ffmpeg.js';
import type { Logger } from './platform/logger.js';
import { acquireAgentLock, listProcesses, orphanRecorders, stopProcesses } from './platform/processes.js';
import { probeWritable } from './platform/storage.js';
import { buildRecorderArgs, chooseH264Encoder } from './recorder/args.js';
import { CameraRecorder, type CameraStatus } from './recorder/camera-recorder.js';
import { Ring, type LockSource, type RingStats } from './store/ring.js';

export interface AgentDeps {
  config: Config;
  log: Logger;
  clock?: Clock;
  disk?: DiskUsageReader;
  /** Ranges the ring must keep (the incident book, once built). */
  locks?: LockSource;
  ffmpegPath?: string;
  procRoot?: string;
  deviceRoot?: string;
  /** Synthetic camera picture (the demo keeps it small). */
  testsrc?: { width: number; height: number; fps: number; bitrate: number };
}

export interface AgentStatus {
  cameras: CameraStatus[];
  storage: RingStats | undefined;
}

const NO_LOCKS: LockSource = { lockedRanges: () => [] };

export class Agent {
  readonly events: EventBus;
  private ring: Ring | undefined;
  private recorders: CameraRecorder[] = [];
  private group: ComponentGroup | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private stopped: Promise<void> | undefined;

  constructor(private readonly deps: AgentDeps) {
    this.events = new EventBus(deps.log.child({ component: 'events' }));
  }

  async start(signal: AbortSignal): Promise<void> {
    const { config, log } = this.deps;
    const clock = this.deps.clock ?? systemClock;
    const version = await ffmpegVersion(this.deps.ffmpegPath);
    if (!versionAtLeast(version, MIN_FFMPEG)) throw new MissingToolError('ffmpeg', `ffmpeg ${version} is too old; camnode needs ${MIN_FFMPEG.join('.')} or newer`);
    await probeWritable(config.storage.path);
    this.logIgnoredSections();

    const segmentsRoot = join(config.storage.path, 'segments');
    await probeWritable(segmentsRoot);
    this.releaseLock = await acquireAgentLock(join(segmentsRoot, 'agent.pid'), this.deps.procRoot);
    await this.stopOrphans(segmentsRoot);

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
      locks: this.deps.locks ?? NO_LOCKS,
      inProgressFiles: () => this.recorders.map((r) => r.currentFile()).filter((f): f is string => f !== null),
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
    const components: Component[] = [ring, ...this.recorders];
    this.group = new ComponentGroup(components, log);
    await this.group.start(signal);
    log.info({ cameras: this.recorders.length, storage: config.storage.path, ffmpeg: version }, 'agent started');
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
    return { cameras, storage: this.ring?.stats() };
  }

  private async stopOrphans(segmentsRoot: string): Promise<void> {
    const orphans = orphanRecorders(await listProcesses(this.deps.procRoot), segmentsRoot, new Set([process.pid]));
    if (orphans.length === 0) return;
    this.deps.log.warn({ pids: orphans.map((o) => o.pid) }, 'stopping recorders left by a previous agent');
    await stopProcesses(orphans.map((o) => o.pid));
  }

  private logIgnoredSections(): void {
    const { config, log } = this.deps;
    const later = 'not built in this release; section validated and ignored';
    if (config.mqtt) log.info({ section: 'mqtt' }, `fleet link ${later}`);
    if (config.upstream.type !== 'none') log.info({ section: 'upstream' }, `upstream sync ${later}`);
    if (config.button.backend !== 'none') log.info({ section: 'button' }, `panic button ${later}`);
    log.info({ section: 'incident' }, `incident locks ${later}`);
  }
}
