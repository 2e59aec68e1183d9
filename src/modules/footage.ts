// Footage on request (CONTRACT §6): what the ring holds (`footage`), and a still from it
// (`still`), for incidents reported after the fact. Both read the ring's in-memory index; a
// still decodes one frame from the segment that holds it, pinned against the pruner meanwhile.
import { CommandError } from '../commands/protocol.js';
import { whoAsks, type CommandTable } from '../commands/handlers.js';
import type { AuditLog } from '../audit/log.js';
import type { IncidentBook } from '../incidents/book.js';
import { iso } from '../platform/clock.js';
import { extractStill, StillError } from '../recorder/still.js';
import { footageOf, seamToleranceMs, type CameraFootage, type IncidentSpan } from '../store/footage.js';
import { CALLS_CAMERA, type Ring } from '../store/ring.js';
import { segmentEndMs, type Segment } from '../store/segment.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface FootageDeps extends ModuleBase {
  ring: Pick<Ring, 'allSegments' | 'calls' | 'segmentsBetween' | 'pathOf' | 'cameraIds' | 'unlinkSettled'>;
  /** Whether `calls` is configured: the call recordings are listed as camera `calls` (CONTRACT §8). */
  calls?: boolean;
  book: Pick<IncidentBook, 'list' | 'pin'>;
  /** Incidents set aside as damaged: no longer kept as clips. */
  damaged: { has(id: string): boolean };
  audit: Pick<AuditLog, 'append'>;
  /** Every configured camera, disabled ones too, in config order. */
  configuredCameras: readonly string[];
  segmentSeconds: number;
  /** Whether a camera's recorder is writing a segment now. */
  writing(camera: string): boolean;
  ffmpegPath?: string | undefined;
}

/** Decoding one frame of a 1080p segment takes a second or two on a Pi. */
const STILL_TIMEOUT_MS = 30_000;
/**
 * A still must fit a reply through the district broker (max_packet_size 4 MiB) once base64
 * makes it a third larger; a 1080p JPEG is a few hundred kB.
 */
const STILL_MAX_BYTES = 2_500_000;

export interface FootageModule extends AgentModule {
  /** What the ring holds now, per camera (the configured ones first): the `footage` reply without bounds. */
  footage(): CameraFootage[];
}

export function footageModule(deps: FootageDeps): FootageModule {
  const { clock, log } = deps;

  const spans = (): { locked: IncidentSpan[]; kept: IncidentSpan[] } => {
    const locked: IncidentSpan[] = [];
    const kept: IncidentSpan[] = [];
    for (const i of deps.book.list()) {
      const span = { incident: i.id, cameras: i.cameras, startMs: Date.parse(i.window.start), endMs: Date.parse(i.window.end) };
      if (i.state === 'active' || i.state === 'sealing') locked.push(span);
      else if ((i.state === 'sealed' || i.state === 'synced') && !deps.damaged.has(i.id)) kept.push(span);
    }
    return { locked, kept };
  };

  const knows = (camera: string): boolean => deps.configuredCameras.includes(camera) || deps.ring.cameraIds().includes(camera) || (deps.calls === true && camera === CALLS_CAMERA);

  // One still per camera at a time: each is an ffmpeg of its own on a Pi already recording.
  const decoding = new Set<string>();

  const view = (a: { camera?: string | undefined; from?: number | undefined; to?: number | undefined }): { cameras: CameraFootage[] } => {
    const held = spans();
    const video = footageOf({
      segments: deps.ring.allSegments(), cameras: deps.configuredCameras, camera: a.camera, fromMs: a.from, toMs: a.to,
      joinWithinMs: deps.segmentSeconds * 1500, ...held,
    }).cameras.filter((c) => c.id !== CALLS_CAMERA);
    if (deps.calls !== true || (a.camera !== undefined && a.camera !== CALLS_CAMERA)) return { cameras: video };
    // Calls last, each call a range of its own: the time between two calls is no hole.
    const calls = footageOf({
      segments: deps.ring.calls(), cameras: [CALLS_CAMERA], camera: CALLS_CAMERA, fromMs: a.from, toMs: a.to, joinWithinMs: 0, ...held,
    }).cameras;
    return { cameras: [...video, ...calls] };
  };

  const commands: CommandTable = {
    footage: async (a) => {
      if (a.from !== undefined && a.to !== undefined && a.from >= a.to) throw new CommandError('bad_request', `from: must be before to (${iso(a.from)} is not before ${iso(a.to)})`);
      if (a.camera !== undefined && !knows(a.camera)) throw new CommandError('not_found', `no camera ${a.camera} on this node, and no footage of it`);
      return view(a);
    },

    still: async (a, ctx) => {
      const who = whoAsks(ctx, a.by, true);
      if (a.camera === CALLS_CAMERA) throw new CommandError('bad_request', 'camera: calls are audio recordings; a still needs a camera');
      if (!knows(a.camera)) throw new CommandError('not_found', `no camera ${a.camera} on this node, and no footage of it`);
      if (decoding.has(a.camera)) throw new CommandError('conflict', `a still of ${a.camera} is being made; ask again when it is done`);
      decoding.add(a.camera);
      try {
        const segment = holding(a.camera, a.at);
        // Held against the pruner while it is decoded.
        const unpin = deps.book.pin({ camera: a.camera, startMs: segment.startMs, endMs: segmentEndMs(segment) });
        // An unlink begun before the pin cannot be called back: wait for it, then look again.
        await deps.ring.unlinkSettled();
        if (!deps.ring.segmentsBetween(a.camera, segment.startMs, segmentEndMs(segment)).includes(segment)) {
          unpin();
          throw new CommandError('not_found', `the footage of ${a.camera} at ${iso(a.at)} was deleted by the ring just now`);
        }
        let frameOffsetMs: number;
        let jpeg: Buffer;
        const extract = (offsetMs: number) => extractStill({
          path: deps.ring.pathOf(segment), offsetMs, timeoutMs: STILL_TIMEOUT_MS, signal: deps.signal, maxBytes: STILL_MAX_BYTES,
          ...(deps.ffmpegPath ? { ffmpegPath: deps.ffmpegPath } : {}),
        });
        const offsetMs = Math.min(a.at - segment.startMs, segment.durationMs - 1);
        try {
          try {
            ({ frameOffsetMs, jpeg } = await extract(offsetMs));
          } catch (err) {
            // A segment's stamp can run past its last frame by a little: that frame is the last one at or before `at`.
            if (!(err instanceof StillError && err.code === 'no_frame' && err.nearestOffsetMs !== undefined && err.nearestOffsetMs <= offsetMs)) throw err;
            ({ frameOffsetMs, jpeg } = await extract(err.nearestOffsetMs));
          }
        } catch (err) {
          if (!(err instanceof StillError)) throw err;
          if (err.code === 'no_frame') {
            const nearest = err.nearestOffsetMs !== undefined ? ` (nearest frame: ${iso(segment.startMs + err.nearestOffsetMs)})` : '';
            throw new CommandError('not_found', `no frame of ${a.camera} at or before ${iso(a.at)} in its segment${nearest}`);
          }
          throw new CommandError('internal', `still of ${a.camera}: ${err.message}`);
        } finally {
          unpin();
        }
        const frameAt = iso(segment.startMs + frameOffsetMs);
        // On the record before anyone sees it (CONTRACT §6): no image without its entry.
        await deps.audit.append('still', { camera: a.camera, at: iso(a.at), frameAt, purpose: a.purpose, reason: a.reason, ...who, by: who.by! });
        log.info({ camera: a.camera, at: iso(a.at), frameAt, purpose: a.purpose, by: who.by, bytes: jpeg.length }, 'still made from recorded footage');
        return { camera: a.camera, at: iso(a.at), frameAt, contentType: 'image/jpeg' as const, jpegBase64: jpeg.toString('base64') };
      } finally {
        decoding.delete(a.camera);
      }
    },
  };

  /** The finished segment holding `atMs`, or not_found naming the nearest time there is footage. */
  function holding(camera: string, atMs: number): Segment {
    const found = deps.ring.segmentsBetween(camera, atMs, atMs + 1).filter((s) => s.startMs <= atMs);
    if (found.length > 0) return found.reduce((a, b) => (b.startMs > a.startMs ? b : a));
    const all = deps.ring.segmentsBetween(camera, -Infinity, Infinity);
    let before: Segment | undefined;
    let after: Segment | undefined;
    for (const s of all) {
      if (segmentEndMs(s) <= atMs && (!before || segmentEndMs(s) > segmentEndMs(before))) before = s;
      if (s.startMs > atMs && (!after || s.startMs < after.startMs)) after = s;
    }
    // The seam between two segments (each stamped when it closed) is not a hole: the frame at or
    // before `at` is the last of the segment before it — as `footage` shows one range there.
    if (before && after && after.startMs - segmentEndMs(before) <= seamToleranceMs(deps.segmentSeconds)) return before;
    const nearest = [before ? `${iso(segmentEndMs(before) - 1)} (the last frame before)` : '', after ? `${iso(after.startMs)} (the first after)` : ''].filter(Boolean).join(' or ');
    const available = nearest ? `; nearest footage: ${nearest}` : '; the ring holds no footage of this camera';
    const now = clock.now();
    if (atMs > now) throw new CommandError('not_found', `${iso(atMs)} is in the future${available}`);
    if (!after && deps.writing(camera)) throw new CommandError('not_found', `the segment holding ${iso(atMs)} on ${camera} is still being written; ask again in ${deps.segmentSeconds} s${available}`);
    throw new CommandError('not_found', `no footage of ${camera} at ${iso(atMs)} (a hole in the recording, or deleted by the ring)${available}`);
  }

  return { name: 'footage', components: [], commands, footage: () => view({}).cameras };
}
