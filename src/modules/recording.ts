// Recording (essential): the ring and one recorder per enabled camera, the audit of what the
// ring deletes, and the snapshot command. Built from `storage`, `recording` and `cameras`.
import type { Config } from '../config/schema.js';
import { parseSource } from '../config/schema.js';
import { urlSecrets } from '../config/redact.js';
import type { AuditLog } from '../audit/log.js';
import { CommandError, type CommandArgs } from '../commands/protocol.js';
import type { StepSource } from '../platform/clock-steps.js';
import { iso } from '../platform/clock.js';
import { deviceModel } from '../platform/device.js';
import { diskUsage, type DiskUsageReader } from '../platform/disk.js';
import { probeDurationMs } from '../platform/ffmpeg.js';
import { buildRecorderArgs, chooseH264Encoder } from '../recorder/args.js';
import { CameraRecorder, type CameraStatus } from '../recorder/camera-recorder.js';
import { SnapshotError, takeSnapshot } from '../recorder/snapshot.js';
import type { LockedRange } from '../store/eviction.js';
import { Ring, type CallShelf } from '../store/ring.js';
import type { Component } from '../lifecycle/component.js';
import type { CameraPlan } from '../deploy/apply-plan.js';
import type { AgentModule, ModuleBase } from './module.js';

/** A synthetic camera picture (the demo keeps it small). */
export interface TestPicture { width: number; height: number; fps: number; bitrate: number }

/** What the ring must keep or leave room for, beside its own segments. */
export interface RingPins {
  lockedRanges(): readonly LockedRange[];
  /** camnode's bytes on this disk outside the ring: sealed clips. */
  heldOutsideRing(): number;
  /** Room to keep free for footage already promised to a lock. */
  promisedBytes(): number;
}

export interface RecordingDeps extends ModuleBase {
  storage: Config['storage'];
  recording: Config['recording'];
  cameras: Config['cameras'];
  pins: RingPins;
  audit: Pick<AuditLog, 'append'>;
  clockSynced(): boolean | null;
  steps: StepSource;
  disk?: DiskUsageReader | undefined;
  ffmpegPath?: string | undefined;
  deviceRoot?: string | undefined;
  testsrc?: TestPicture | undefined;
  /** How often the ring prunes (default 30 s; tests make it fast). */
  pruneIntervalMs?: number | undefined;
  /** The call recordings, pruned with the video (CONTRACT §8). */
  calls?: CallShelf | undefined;
}

/** Outages of a camera (camera.down → camera.up), the last few, in memory: why a clip has a hole. */
export class CameraOutages {
  private readonly spans = new Map<string, { startMs: number; endMs: number }[]>();
  private readonly open = new Map<string, number>();

  constructor(private readonly now: () => number, private readonly keep = 200) {}

  down(camera: string): void {
    if (!this.open.has(camera)) this.open.set(camera, this.now());
  }

  up(camera: string): void {
    const startMs = this.open.get(camera);
    if (startMs === undefined) return;
    this.open.delete(camera);
    const list = this.spans.get(camera) ?? [];
    list.push({ startMs, endMs: this.now() });
    if (list.length > this.keep) list.shift();
    this.spans.set(camera, list);
  }

  of(camera: string): { startMs: number; endMs: number }[] {
    const startMs = this.open.get(camera);
    return [...(this.spans.get(camera) ?? []), ...(startMs !== undefined ? [{ startMs, endMs: this.now() }] : [])];
  }
}

export interface RecordingModule extends AgentModule {
  readonly ring: Ring;
  readonly recorders: readonly CameraRecorder[];
  /** Every configured camera, disabled ones included. */
  cameraStatuses(): CameraStatus[];
  /** A camera's measured bitrate, or 0 when unknown. */
  kbps(camera: string): number;
  /** Whether a camera's recorder is writing a segment now. */
  writing(camera: string): boolean;
  /** When a camera was down, as far as this run saw. */
  downIntervals(camera: string): readonly { startMs: number; endMs: number }[];
  /** Carries out a pushed config's camera plan (deploy/apply-plan.ts). */
  applyCameras(plan: CameraPlan, cameras: Config['cameras']): Promise<void>;
  /** A pushed config's new ring limits. */
  setLimits(storage: Config['storage']): Promise<void>;
  /** The cameras a pushed config restarted in this run, and each one's gap once known. */
  restarted(): CameraRestart[];
  /** Cameras restarted by rebuilding the whole module (a new ring): their gaps are measured from the ring's newest segments. */
  markRestarted(cameras: readonly string[], at: string): void;
}

/** A camera restarted by a pushed config (CONTRACT §9): gapMs is null until its first new segment. */
export interface CameraRestart { camera: string; at: string; gapMs: number | null }

export async function recordingModule(deps: RecordingDeps): Promise<RecordingModule> {
  const { storage, recording, log, clock, events } = deps;
  const ffmpegPath = deps.ffmpegPath ? { ffmpegPath: deps.ffmpegPath } : {};
  const recorders = new Map<string, CameraRecorder>();
  const ring = new Ring({
    options: {
      storagePath: storage.path,
      maxUsePercent: storage.maxUsePercent,
      reserveBytes: storage.reserve,
      maxBytes: storage.maxBytes,
      maxAgeMs: storage.maxAge,
      segmentSeconds: recording.segmentSeconds,
    },
    clock,
    log: log.child({ component: 'ring' }),
    events,
    disk: deps.disk ?? diskUsage,
    locks: deps.pins,
    inProgressFiles: () => [...recorders.values()].map((r) => r.currentFile()).filter((f): f is string => f !== null),
    heldOutsideRing: () => deps.pins.heldOutsideRing(),
    promisedBytes: () => deps.pins.promisedBytes(),
    clockSynced: deps.clockSynced,
    steps: deps.steps,
    probeDurationMs: (path) => probeDurationMs(path),
    auditDeletion: async (entry) => void await deps.audit.append('delete', entry),
    pruneIntervalMs: deps.pruneIntervalMs,
    calls: deps.calls,
  });

  const encoder = chooseH264Encoder(await deviceModel(deps.deviceRoot));
  const testsrc = deps.testsrc;
  let cameras = deps.cameras;
  const recorderOf = (camera: Config['cameras'][number]): CameraRecorder => {
    const source = parseSource(camera.source);
    if (typeof source === 'string') throw new Error(`cameras.${camera.id}.source: ${source}`); // validated already
    if (source.kind === 'v4l2' || source.kind === 'testsrc') log.info({ camera: camera.id, encoder }, 'camera is encoded on this machine');
    return new CameraRecorder({
      camera: camera.id,
      buildArgs: (outputPattern) => buildRecorderArgs({
        source, outputPattern, segmentSeconds: recording.segmentSeconds, rtspTimeoutMs: 5_000, encoder,
        ...(testsrc ? { testsrc, encodeBitrate: testsrc.bitrate } : {}),
      }),
      segmentSeconds: recording.segmentSeconds,
      ring,
      clock,
      secrets: urlSecrets(camera.source),
      log: log.child({ component: 'recorder', camera: camera.id }),
      events,
      ...ffmpegPath,
    });
  };
  for (const camera of cameras) {
    if (!camera.enabled) log.info({ camera: camera.id }, 'camera disabled in config');
    else recorders.set(camera.id, recorderOf(camera));
  }
  // Started and stopped together; a pushed config adds, removes and restarts single ones.
  let recordersStarted = false;
  const recorderSet: Component = {
    name: 'recorders',
    async start() {
      for (const r of recorders.values()) await r.start();
      recordersStarted = true;
    },
    async stop() {
      recordersStarted = false;
      await Promise.allSettled([...recorders.values()].map((r) => r.stop()));
    },
  };

  // Each restarted camera's gap: from the end of its last segment before the restart to the
  // start of its first one after (CONTRACT §9: "a restarted one has a short gap, listed").
  const restarts = new Map<string, { camera: string; at: string; fromMs: number | null }>();
  const gapOf = (r: { camera: string; fromMs: number | null }): number | null => {
    if (r.fromMs === null) return null;
    const first = ring.segmentsBetween(r.camera, r.fromMs, Number.MAX_SAFE_INTEGER)[0];
    return first ? Math.max(0, first.startMs - r.fromMs) : null;
  };

  // One snapshot per camera at a time: each is an ffmpeg of its own on a Pi already recording.
  const snapshotting = new Set<string>();
  /** One JPEG from a camera's live stream (CONTRACT §3 snapshot). */
  const snapshot = async ({ camera }: CommandArgs<'snapshot'>): Promise<{ camera: string; capturedAt: string; contentType: 'image/jpeg'; jpegBase64: string }> => {
    const cam = cameras.find((c) => c.id === camera);
    if (!cam) throw new CommandError('not_found', `no camera ${camera}`);
    const source = parseSource(cam.source);
    if (typeof source === 'string') throw new CommandError('internal', source);
    if (snapshotting.has(camera)) throw new CommandError('conflict', `a snapshot of ${camera} is being taken; ask again when it is done`);
    snapshotting.add(camera);
    try {
      const shot = await takeSnapshot({ source, timeoutMs: 10_000, signal: deps.signal, ...(testsrc ? { testsrc } : {}), ...ffmpegPath });
      return { camera, capturedAt: shot.capturedAt, contentType: 'image/jpeg', jpegBase64: shot.jpeg.toString('base64') };
    } catch (err) {
      if (err instanceof SnapshotError) throw new CommandError('internal', `snapshot of ${camera}: ${err.message}`);
      throw err;
    } finally {
      snapshotting.delete(camera);
    }
  };

  const outages = new CameraOutages(() => clock.now());
  events.on('camera.down', ({ camera }) => outages.down(camera));
  events.on('camera.up', ({ camera }) => outages.up(camera));

  const statusOf = (camera: string): CameraStatus | undefined => recorders.get(camera)?.status();
  return {
    name: 'recording',
    components: [ring, recorderSet],
    commands: { snapshot },
    ring,
    get recorders() { return [...recorders.values()]; },
    cameraStatuses() {
      return cameras.map((c): CameraStatus => statusOf(c.id)
        ?? { id: c.id, state: 'disabled', lastSegmentAt: null, kbps: null, restarts: 0, lastError: null });
    },
    kbps(camera) {
      return statusOf(camera)?.kbps ?? 0;
    },
    downIntervals: (camera) => outages.of(camera),
    writing(camera) {
      const recorder = recorders.get(camera);
      return recorder !== undefined && recorder.status().state === 'recording' && recorder.currentFile() !== null;
    },
    async applyCameras(plan, next) {
      const byId = new Map(next.map((c) => [c.id, c]));
      // Stopped first, each to the end: never two recorders for one camera.
      const at = iso(clock.now());
      await Promise.allSettled([...plan.stop, ...plan.restart].map(async (id) => {
        const r = recorders.get(id);
        recorders.delete(id);
        await r?.stop();
        // Its last segment is in the ring now: the gap starts where it ends.
        if (plan.restart.includes(id)) restarts.set(id, { camera: id, at, fromMs: ring.newestEndOf(id) });
      }));
      cameras = next;
      for (const id of [...plan.restart, ...plan.start]) {
        const r = recorderOf(byId.get(id)!);
        recorders.set(id, r);
        if (recordersStarted) await r.start();
      }
      log.info({ ...plan }, 'cameras applied from the config');
    },
    setLimits(next) {
      return ring.setLimits({ maxUsePercent: next.maxUsePercent, reserveBytes: next.reserve, maxBytes: next.maxBytes, maxAgeMs: next.maxAge });
    },
    restarted: () => [...restarts.values()].map((r) => ({ camera: r.camera, at: r.at, gapMs: gapOf(r) })),
    markRestarted(ids, at) {
      for (const id of ids) restarts.set(id, { camera: id, at, fromMs: ring.newestEndOf(id) });
    },
  };
}
