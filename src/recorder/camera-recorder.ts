// One camera's recorder: ffmpeg spawned and supervised directly (not through fluent-ffmpeg,
// whose kill() is a SIGKILL that corrupts what is open). Restarts on every exit — ffmpeg
// exits 0 when a camera goes away — and on a stall (no finished segment for about two
// segment lengths: a hung camera), with capped exponential backoff and jitter.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Clock } from '../platform/clock.js';
import { iso } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import { scrub } from '../config/redact.js';
import { inProgressFileName, inProgressPattern, type Segment } from '../store/segment.js';
import { parseSegmentListLine } from './args.js';

export type CameraState = 'recording' | 'connecting' | 'stalled' | 'disabled' | 'error';

/** What the fleet publishes per camera (CONTRACT §3 state.cameras[]). */
export interface CameraStatus {
  id: string;
  state: CameraState;
  lastSegmentAt: string | null;
  kbps: number | null;
  restarts: number;
  lastError: string | null;
}

/** The part of the ring a recorder needs. */
export interface RecorderRing {
  cameraDir(camera: string): Promise<string>;
  finish(camera: string, file: string, durationMs: number): Promise<Segment>;
  adopt(camera: string, file: string): Promise<Segment | null>;
}

export interface CameraRecorderDeps {
  camera: string;
  /** ffmpeg arguments for a run writing to this output pattern. */
  buildArgs(outputPattern: string): string[];
  segmentSeconds: number;
  ring: RecorderRing;
  clock: Clock;
  log: Logger;
  events: EventBus;
  ffmpegPath?: string;
  /** This camera's password in every form it may appear in ffmpeg's output (config/redact). */
  secrets?: readonly string[];
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Grace for the first segment of a run (connecting, probing the stream). */
  connectGraceMs?: number;
  /** How long a graceful stop may take before SIGKILL. */
  stopTimeoutMs?: number;
  /** A run this long with segments resets the backoff. */
  stableAfterMs?: number;
  /** Consecutive failed runs after which the camera is reported in error. */
  errorAfterFailures?: number;
}

const STDERR_LINES = 20;

export class CameraRecorder implements Component {
  readonly name: string;
  private child: ChildProcessWithoutNullStreams | undefined;
  private exited: Promise<void> | undefined;
  private stopping = false;
  /** Per process, not per recorder: a camera restarted by a pushed config never reuses a run's file names. */
  private static runCounter = 0;
  private run = '';
  private dir = '';
  private nextIndex = 0;
  private failures = 0;
  private restarts = 0;
  private runStartedMono = 0;
  private runSegments = 0;
  private lastSegmentMono = 0;
  private lastSegmentAt: number | null = null;
  private longestSegmentMs = 0;
  private recent: { bytes: number; durationMs: number }[] = [];
  private state: CameraState = 'connecting';
  private lastError: string | null = null;
  private stderrTail: string[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private finishing: Promise<unknown> = Promise.resolve();
  private down = false;

  /** ffmpeg's words about this camera with its password blanked (they go to logs and events). */
  private redact(text: string): string {
    return scrub(text, this.deps.secrets ?? []);
  }

  constructor(private readonly deps: CameraRecorderDeps) {
    this.name = `recorder:${deps.camera}`;
  }

  async start(): Promise<void> {
    this.dir = await this.deps.ring.cameraDir(this.deps.camera);
    this.stopping = false;
    this.spawnRun();
    this.stallTimer = setInterval(() => this.checkStall(), 500);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.stallTimer);
    await this.stopChild();
    await this.finishing;
  }

  status(): CameraStatus {
    let kbps: number | null = null;
    const bytes = this.recent.reduce((a, r) => a + r.bytes, 0);
    const ms = this.recent.reduce((a, r) => a + r.durationMs, 0);
    if (ms > 0) kbps = Math.round((bytes * 8) / ms);
    return {
      id: this.deps.camera,
      state: this.state,
      lastSegmentAt: this.lastSegmentAt === null ? null : iso(this.lastSegmentAt),
      kbps,
      restarts: this.restarts,
      lastError: this.lastError,
    };
  }

  /** The file ffmpeg is writing now, if any (its bytes count against the quota). */
  currentFile(): string | null {
    return this.child ? join(this.dir, inProgressFileName(this.run, this.nextIndex)) : null;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  private spawnRun(): void {
    const { log, clock } = this.deps;
    this.run = `${process.pid.toString(36)}${(CameraRecorder.runCounter++).toString(36)}`;
    this.nextIndex = 0;
    this.runSegments = 0;
    this.runStartedMono = clock.monotonic();
    this.stderrTail = [];
    if (this.state !== 'error') this.state = 'connecting';
    const args = this.deps.buildArgs(join(this.dir, inProgressPattern(this.run)));
    log.info({ args: args.map((a) => this.redact(a)), run: this.run }, 'starting ffmpeg');
    const child = spawn(this.deps.ffmpegPath ?? 'ffmpeg', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdin.on('error', () => {}); // 'q' to an ffmpeg that already left
    createInterface({ input: child.stdout }).on('line', (line) => this.onSegmentLine(line));
    createInterface({ input: child.stderr }).on('line', (line) => {
      const clean = this.redact(line);
      this.stderrTail.push(clean);
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
      log.debug({ ffmpeg: clean }, 'ffmpeg');
    });
    this.exited = new Promise((resolve) => {
      child.on('error', (err) => {
        this.lastError = `cannot start ffmpeg: ${err.message}`;
        log.error({ err }, 'cannot start ffmpeg');
      });
      child.on('close', (code, signal) => {
        this.child = undefined;
        void this.onExit(code, signal).finally(resolve);
      });
    });
  }

  private onSegmentLine(line: string): void {
    const entry = parseSegmentListLine(line);
    if (!entry) {
      this.deps.log.warn({ line }, 'unexpected line in the segment list');
      return;
    }
    const durationMs = Math.round((entry.endSeconds - entry.startSeconds) * 1000);
    const index = Number(/-(\d+)\.ts$/.exec(entry.file)?.[1] ?? this.nextIndex);
    this.nextIndex = index + 1;
    this.lastSegmentMono = this.deps.clock.monotonic();
    this.runSegments++;
    this.longestSegmentMs = Math.max(this.longestSegmentMs * 0.9, durationMs);
    // A stalled run told to quit still closes (and reports) its last segment on the way out:
    // that is footage to keep, not a recovery, and the stall stays the reason it went down.
    if (this.state !== 'recording' && this.state !== 'stalled') {
      this.state = 'recording';
      this.lastError = null;
      this.deps.log.info('recording');
      if (this.down || this.restarts === 0) this.deps.events.emit('camera.up', { camera: this.deps.camera, reason: this.restarts === 0 ? 'started' : 'recovered' });
      this.down = false;
    }
    const file = join(this.dir, entry.file);
    // Segments are named into the ring one at a time, in the order ffmpeg closed them.
    this.finishing = this.finishing.then(async () => {
      try {
        const segment = await this.deps.ring.finish(this.deps.camera, file, durationMs);
        this.lastSegmentAt = segment.startMs + segment.durationMs;
        this.recent.push({ bytes: segment.bytes, durationMs: segment.durationMs });
        if (this.recent.length > 12) this.recent.shift();
      } catch (err) {
        this.deps.log.error({ err, file }, 'could not add finished segment to the ring');
      }
    });
  }

  private async onExit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const { log, clock } = this.deps;
    // Whatever the run was writing when it ended plays up to the cut: keep it.
    const partial = join(this.dir, inProgressFileName(this.run, this.nextIndex));
    this.finishing = this.finishing.then(() => this.deps.ring.adopt(this.deps.camera, partial).catch((err: unknown) => {
      log.error({ err, file: partial }, 'could not adopt partial segment');
    }));
    await this.finishing;
    if (this.stopping) {
      log.info({ code, signal }, 'ffmpeg stopped');
      return;
    }
    const ranMs = clock.monotonic() - this.runStartedMono;
    if (this.runSegments > 0 && ranMs >= (this.deps.stableAfterMs ?? 120_000)) this.failures = 0;
    this.failures++;
    this.restarts++;
    const tail = this.stderrTail.slice(-3).join(' | ');
    const reason = this.state === 'stalled' ? 'stalled' : `ffmpeg exited (${signal ?? `code ${code}`})${tail ? `: ${tail}` : ''}`;
    if (this.state !== 'stalled') this.lastError = reason;
    if (this.failures >= (this.deps.errorAfterFailures ?? 5)) this.state = 'error';
    else if (this.state !== 'stalled') this.state = 'connecting';
    if (!this.down) {
      this.down = true;
      this.deps.events.emit('camera.down', { camera: this.deps.camera, reason });
    }
    const delay = backoffDelay(this.failures, this.deps.backoff ?? DEFAULT_BACKOFF, this.deps.random);
    log.warn({ code, signal, reason, restartInMs: delay, failures: this.failures }, 'recorder down; restarting');
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.spawnRun();
    }, delay);
  }

  private checkStall(): void {
    if (!this.child || this.stopping || this.state === 'stalled') return;
    const now = this.deps.clock.monotonic();
    const segMs = Math.max(this.deps.segmentSeconds * 1000, this.longestSegmentMs);
    const limit = this.runSegments === 0
      ? segMs * 2 + (this.deps.connectGraceMs ?? 15_000)
      : segMs * 2 + 1_000;
    const since = this.runSegments === 0 ? this.runStartedMono : this.lastSegmentMono;
    if (now - since > limit) {
      this.state = 'stalled';
      this.lastError = `no segment for ${Math.round((now - since) / 1000)} s`;
      this.deps.log.warn({ sinceMs: Math.round(now - since) }, 'recorder stalled; restarting ffmpeg');
      void this.stopChild();
    }
  }

  /** Graceful: 'q' on stdin, SIGINT after a moment, SIGKILL after the timeout. */
  private async stopChild(): Promise<void> {
    const child = this.child;
    if (!child) return this.exited;
    const timeoutMs = this.deps.stopTimeoutMs ?? 5_000;
    child.stdin.end('q');
    const sigint = setTimeout(() => child.kill('SIGINT'), Math.min(1_500, timeoutMs / 2));
    const sigkill = setTimeout(() => {
      this.deps.log.warn('ffmpeg did not stop in time; killing it');
      child.kill('SIGKILL');
    }, timeoutMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(sigint);
      clearTimeout(sigkill);
    }
  }
}
