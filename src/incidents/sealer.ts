// Sealing: once an incident's window has passed, one MP4 per camera from its locked segments
// (no re-encoding), each hashed, listed in a signed manifest anchored in the audit log.
// The clips are assembled in <id>.sealing/ and renamed into place only when complete, so a
// crash mid-seal leaves the incident `sealing` and the next start seals it again.
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { copyDurable } from '../calls/ingest.js';
import { CALLS_CAMERA } from '../store/ring.js';
import { CALLS_DIR } from './records.js';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Clock } from '../platform/clock.js';
import { clipClock, type StampClock } from '../store/stamps.js';
import { writeFileDurable, fsyncDir } from '../platform/durable.js';
import { faultPoint } from '../platform/fault.js';
import type { Logger } from '../platform/logger.js';
import type { EventBus } from '../events.js';
import type { Faults } from '../lifecycle/faults.js';
import type { AuditLog } from '../audit/log.js';
import type { NodeKey } from '../audit/keys.js';
import { manifestSha256, serializeManifest, signManifest, type ManifestFile } from '../audit/manifest.js';
import { assembleClip, explainGaps, findGaps, sha256File, UnreadableSegments } from './clip.js';
import { probeDurationMs } from '../platform/ffmpeg.js';
import { encryptFile } from '../platform/age.js';
import { segmentEndMs, type Segment } from '../store/segment.js';
import type { IncidentBook } from './book.js';
import { INCIDENT_ID, sealDueAt, type Incident } from './incident.js';

export interface SealerDeps {
  book: IncidentBook;
  ring: { segmentsBetween(camera: string, startMs: number, endMs: number): Segment[]; pathOf(s: Segment): string; clockOf(s: Segment): StampClock };
  sealedDir: string;
  segmentSeconds: number;
  clock: Clock;
  log: Logger;
  events: EventBus;
  /** An incident that cannot seal is a fault of its own (CONTRACT §5). */
  faults: Pick<Faults, 'report' | 'clear'>;
  audit: Pick<AuditLog, 'appendAnchored'>;
  key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>;
  clockSynced(): Promise<boolean | null>;
  version: string;
  ffmpegPath?: string;
  checkIntervalMs?: number;
  /** When each camera is known to have been down (camera.down to camera.up), for gap reasons. */
  downIntervals?(camera: string): readonly { startMs: number; endMs: number }[];
  backoff?: BackoffPolicy;
  /** age recipients (CONTRACT §7): each clip is sealed encrypted to them; empty, in plaintext. */
  encryptTo?: readonly string[];
  /** How long a segment plays, or null when it does not decode (ffprobe by default). */
  probeDurationMs?(path: string): Promise<number | null>;
  /**
   * The call recordings (CONTRACT §8): whether every spool file that can hold part of a window is
   * in the ring. An incident naming `calls` waits for that, at most `maxWaitMs` past its due time.
   */
  calls?: { settledFor(startMs: number, endMs: number): boolean; maxWaitMs: number };
}


/** An incident that failed to seal is tried again after 5 s, doubling to 10 min. */
const SEAL_RETRY: BackoffPolicy = { baseMs: 5_000, maxMs: 600_000, jitter: 0.2 };

export class Sealer implements Component {
  readonly name = 'sealer';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private heldBytes = 0;
  /** Incidents that failed to seal: when to try again (monotonic). */
  private readonly retries = new Map<string, { attempts: number; atMs: number }>();
  private stopped = false;

  constructor(private readonly deps: SealerDeps) {}

  async start(): Promise<void> {
    this.stopped = false;
    await mkdir(this.deps.sealedDir, { recursive: true });
    await this.measureHeld();
    this.timer = setInterval(() => void this.tick(), this.deps.checkIntervalMs ?? 1_000);
    this.timer.unref();
    // Not awaited: after a crash a due seal can take minutes (an hour on four cameras), and the
    // components started after this one (the button, the control socket) must take locks meanwhile.
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** Bytes of sealed clips under storage (they count against the ring's quota). */
  sealedBytes(): number {
    return this.heldBytes + this.reserving;
  }

  /**
   * What the seal in progress will write, counted with the sealed clips from its start (CONTRACT §6).
   * In the quota it counts as camnode's own bytes, so it makes room only where maxBytes binds.
   */
  private reserving = 0;

  /** Seals whatever is due; one pass at a time. */
  tick(): Promise<void> {
    this.running ??= this.sealDue().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async sealDue(): Promise<void> {
    const now = this.deps.clock.now();
    // An incident that failed to seal and was then disposed of: nothing more to try or report.
    for (const id of this.retries.keys()) {
      const state = this.deps.book.get(id)?.state;
      if (state === 'active' || state === 'sealing') continue;
      this.retries.delete(id);
      this.deps.faults.clear('sealer', id);
    }
    for (const incident of this.deps.book.list()) {
      if (this.stopped) return;
      const dueAt = sealDueAt(incident, this.deps.segmentSeconds);
      const due = incident.state === 'sealing' || (incident.state === 'active' && dueAt <= now);
      if (!due) continue;
      if (this.waitsForCalls(incident, dueAt, now)) continue;
      const retry = this.retries.get(incident.id);
      if (retry && retry.atMs > this.deps.clock.monotonic()) continue;
      try {
        await this.seal(incident);
        this.retries.delete(incident.id);
        this.deps.faults.clear('sealer', incident.id);
      } catch (err) {
        const attempts = (retry?.attempts ?? 0) + 1;
        const delayMs = backoffDelay(attempts, this.deps.backoff ?? SEAL_RETRY);
        this.retries.set(incident.id, { attempts, atMs: this.deps.clock.monotonic() + delayMs });
        this.deps.log.error({ err, incident: incident.id, attempt: attempts, retryInMs: delayMs }, 'sealing failed; will retry');
        this.deps.faults.report('sealer', `cannot seal ${incident.id}: ${(err as Error).message}`, incident.id);
      }
    }
  }

  /** A call still in the spool that may belong to the window: wait for it, up to the limit. */
  private readonly waitingLogged = new Set<string>();
  private waitsForCalls(incident: Incident, dueAt: number, now: number): boolean {
    const calls = this.deps.calls;
    if (!calls || !incident.cameras.includes(CALLS_CAMERA)) return false;
    if (calls.settledFor(Date.parse(incident.window.start), Date.parse(incident.window.end))) return false;
    if (now - dueAt >= calls.maxWaitMs) {
      this.deps.log.warn({ incident: incident.id, waitedMs: now - dueAt }, 'call recordings of the window are still not all in the ring: sealed with those that are');
      return false;
    }
    if (!this.waitingLogged.has(incident.id)) {
      this.waitingLogged.add(incident.id);
      this.deps.log.info({ incident: incident.id }, 'waiting for call recordings of the window still in the spool before sealing');
    }
    return true;
  }

  private async seal(incident: Incident): Promise<void> {
    const { deps } = this;
    const log = deps.log.child({ incident: incident.id });
    const finalDir = join(deps.sealedDir, incident.id);
    // A crash after the rename but before the book said so: the folder is complete.
    if (await this.isComplete(finalDir)) {
      await deps.book.setState(incident.id, 'sealed', { manifestSha256: manifestSha256(await readFile(join(finalDir, 'manifest.json'))) });
      log.info('sealed folder found complete; incident marked sealed');
      return;
    }
    // The incident as the book has it now (a note may have come since it was listed).
    if (incident.state !== 'sealing') incident = await deps.book.setState(incident.id, 'sealing');
    log.info({ window: incident.window, cameras: incident.cameras }, 'sealing');
    const workDir = join(deps.sealedDir, `${incident.id}.sealing`);
    await rm(workDir, { recursive: true, force: true });
    await mkdir(workDir, { recursive: true });

    const startMs = Date.parse(incident.window.start);
    const endMs = Date.parse(incident.window.end);
    // A seal reserves its bytes before it starts (CONTRACT §6): the clips copy the segments (and
    // while a clip is encrypted, it is there twice).
    const copies = this.encrypting() ? 2 : 1;
    this.reserving = copies * incident.cameras.reduce((n, c) => n + deps.ring.segmentsBetween(c, startMs, endMs).reduce((m, seg) => m + seg.bytes, 0), 0);
    try {
      await this.sealWindow(incident, workDir, finalDir, startMs, endMs, log);
    } finally {
      this.reserving = 0;
    }
  }

  private async sealWindow(incident: Incident, workDir: string, finalDir: string, startMs: number, endMs: number, log: Logger): Promise<void> {
    const { deps } = this;
    // Each clip is hashed while ffmpeg assembles the next one: on two cores that hides most
    // of the hashing.
    const pending: Promise<ManifestFile>[] = [];
    for (const camera of incident.cameras) {
      const segments = deps.ring.segmentsBetween(camera, startMs, endMs);
      if (camera === CALLS_CAMERA) {
        // Each call whole, as it was taken: audio is not cut to the window. One at a time (a day's
        // hold on a busy line names hundreds; each is small).
        for (const call of segments) pending.push(Promise.resolve(await this.sealCall(call, workDir)));
        continue;
      }
      if (segments.length === 0) {
        log.warn({ camera }, 'no footage in the window for this camera; no clip');
        continue;
      }
      const name = `${camera}.mp4`;
      const { kept, unreadable } = await this.assemble(camera, segments, workDir, name);
      if (kept.length === 0) {
        log.error({ camera, unreadable: unreadable.length }, 'no segment of this camera in the window decodes; no clip');
        continue;
      }
      const first = kept[0]!;
      const last = kept[kept.length - 1]!;
      const gaps = explainGaps(
        findGaps(kept, startMs, endMs, Math.max(1_500, deps.segmentSeconds * 500)),
        unreadable.map((u) => ({ startMs: Math.max(u.startMs, startMs), endMs: Math.min(segmentEndMs(u), endMs) })),
        deps.downIntervals?.(camera) ?? [],
      );
      const described = {
        camera,
        start: new Date(first.startMs).toISOString(),
        end: new Date(last.startMs + last.durationMs).toISOString(),
        gaps,
        clock: clipClock(kept.map((s) => deps.ring.clockOf(s))),
      };
      const clip: Promise<ManifestFile> = this.encrypting()
        // Encrypted (CONTRACT §7): one pass hashes the plaintext and writes the ciphertext durably.
        ? encryptFile(join(workDir, name), join(workDir, `${name}.age`), deps.encryptTo!).then(({ plaintext, ciphertext }) => ({
          name: `${name}.age`, bytes: ciphertext.bytes, sha256: ciphertext.sha256, plaintext: { name, ...plaintext }, ...described,
        }))
        : sha256File(join(workDir, name)).then(({ sha256, bytes }) => ({ name, bytes, sha256, ...described }));
      // Awaited with the others below; handled now, so a failure while the next camera is
      // assembled is this seal's failure, not an unhandled rejection.
      clip.catch(() => {});
      pending.push(clip);
      faultPoint('seal.mid');
    }
    const files = await Promise.all(pending);
    if (this.encrypting()) faultPoint('seal.encrypted');
    const synced = (await deps.clockSynced()) === true;
    let sealedSha = '';
    // The manifest names the audit log's last entry, and the seal entry follows it directly.
    await deps.audit.appendAnchored('seal', async (anchor) => {
      const manifest = signManifest({
        incident: { ...incident, state: 'sealed' },
        files,
        clock: { synced },
        audit: anchor,
        agent: { version: deps.version },
      }, deps.key);
      const text = serializeManifest(manifest);
      await writeFileDurable(join(workDir, 'manifest.json'), text);
      sealedSha = manifestSha256(text);
      return { incident: incident.id, manifestSha256: sealedSha };
    });
    // The order of CONTRACT §7: ciphertext durable, manifest, then the plaintext removed. All of
    // it is in the work folder, so a crash anywhere before the rename seals again from the ring.
    // Whatever the manifest does not list goes too: a clip ffmpeg began for a camera none of whose
    // footage decoded would otherwise be sealed unlisted (and, encrypting, in plaintext).
    if (this.encrypting()) faultPoint('seal.manifest');
    const listed = new Set([...files.map((f) => f.name), 'manifest.json']);
    const unlisted = [
      ...(await readdir(workDir)).filter((n) => n !== CALLS_DIR || !files.some((f) => f.camera === CALLS_CAMERA)),
      ...(await readdir(join(workDir, CALLS_DIR)).catch(() => [] as string[])).map((n) => `${CALLS_DIR}/${n}`),
    ].filter((n) => !listed.has(n));
    for (const name of unlisted) await rm(join(workDir, name), { recursive: true, force: true });
    if (unlisted.length > 0) await fsyncDir(workDir);
    if (this.encrypting()) faultPoint('seal.plaintext-removed');
    faultPoint('seal.before-rename');
    await rm(finalDir, { recursive: true, force: true });
    await rename(workDir, finalDir);
    await fsyncDir(deps.sealedDir);
    await deps.book.setState(incident.id, 'sealed', { manifestSha256: sealedSha });
    await this.measureHeld();
    log.info({ files: files.length, bytes: files.reduce((a, f) => a + f.bytes, 0), dir: finalDir }, 'incident sealed');
    deps.events.emit('incident.sealed', { incident: incident.id });
  }

  /**
   * One camera's clip. A segment that does not decode (a disk fault, a cut-off write) makes the
   * whole concat fail; then each segment is probed, those that are not video are left out and
   * named as gaps, and the rest is assembled. Only a clip that still cannot be made fails the seal.
   */
  private async assemble(camera: string, segments: Segment[], workDir: string, name: string): Promise<{ kept: Segment[]; unreadable: Segment[] }> {
    const { deps } = this;
    const listPath = join(workDir, `${camera}.concat.txt`);
    const build = (list: Segment[]) => assembleClip(list.map((s) => ({ path: deps.ring.pathOf(s), durationMs: s.durationMs })), listPath, join(workDir, name), deps.ffmpegPath);
    let kept = segments;
    const unreadable: Segment[] = [];
    try {
      // Each round leaves out what ffmpeg could not open; it names one file per run, as it stops there.
      for (;;) {
        try {
          if (kept.length > 0) await build(kept);
          return { kept, unreadable };
        } catch (err) {
          if (!(err instanceof UnreadableSegments)) throw err;
          // ffmpeg names only the first file it stops at. Rather than one concat per bad file,
          // every segment is probed once (a damaged disk rarely damages just one); what the
          // probe passes but ffmpeg still cannot open is found on the next round.
          const bad = new Set(err.paths);
          if (unreadable.length === 0) {
            const probe = deps.probeDurationMs ?? probeDurationMs;
            for (const s of kept) if (!bad.has(deps.ring.pathOf(s)) && (await probe(deps.ring.pathOf(s))) === null) bad.add(deps.ring.pathOf(s));
          }
          const out = kept.filter((s) => bad.has(deps.ring.pathOf(s)));
          if (out.length === 0) throw err;
          deps.log.warn({ camera, unreadable: err.paths }, 'segments that do not decode are left out of the clip (listed as gaps)');
          unreadable.push(...out);
          kept = kept.filter((s) => !bad.has(deps.ring.pathOf(s)));
        }
      }
    } finally {
      await rm(listPath, { force: true });
    }
  }

  /** One call of the window, copied (or encrypted) into `calls/` and hashed: `kind: "call"`. */
  private async sealCall(call: Segment, workDir: string): Promise<ManifestFile> {
    const { deps } = this;
    const source = deps.ring.pathOf(call);
    const name = `${CALLS_DIR}/${basename(source)}`;
    await mkdir(join(workDir, CALLS_DIR), { recursive: true });
    const described = {
      camera: CALLS_CAMERA, kind: 'call' as const,
      start: new Date(call.startMs).toISOString(), end: new Date(segmentEndMs(call)).toISOString(), gaps: [],
    };
    if (this.encrypting()) {
      const { plaintext, ciphertext } = await encryptFile(source, join(workDir, `${name}.age`), deps.encryptTo!);
      return { name: `${name}.age`, bytes: ciphertext.bytes, sha256: ciphertext.sha256, plaintext: { name, ...plaintext }, ...described };
    }
    const st = await stat(source);
    const { bytes, sha256 } = await copyDurable(source, join(workDir, name), { size: st.size, mtimeMs: st.mtimeMs });
    return { name, bytes, sha256, ...described };
  }

  private encrypting(): boolean {
    return (this.deps.encryptTo?.length ?? 0) > 0;
  }

  private async isComplete(dir: string): Promise<boolean> {
    try {
      const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { signature?: unknown };
      return manifest.signature !== undefined;
    } catch {
      return false;
    }
  }

  /** Re-measures the sealed clips (after a seal or a dispose). */
  async measureHeld(): Promise<void> {
    let total = 0;
    for (const name of await readdir(this.deps.sealedDir).catch(() => [] as string[])) {
      if (!INCIDENT_ID.test(name.replace(/\.sealing$/, ''))) continue;
      const dir = join(this.deps.sealedDir, name);
      const files = [
        ...await readdir(dir).catch(() => [] as string[]),
        ...(await readdir(join(dir, CALLS_DIR)).catch(() => [] as string[])).map((n) => join(CALLS_DIR, n)),
      ];
      for (const file of files) total += await stat(join(dir, file)).then((s) => (s.isFile() ? s.size : 0), () => 0);
    }
    this.heldBytes = total;
  }
}
