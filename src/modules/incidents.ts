// Incidents: the book of locks (essential: the ring must know every lock before it prunes), the
// sealer, and what a press of the panic button does (lock without any network; the button and
// its LED are the panel's, modules/panel.ts). Built from `incident` and the node's identity; the
// sealer is supervised, so a failing one is reported and retried while the cameras keep recording.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { AUDIT_LOG_FILE, type AuditLog } from '../audit/log.js';
import type { NodeKey } from '../audit/keys.js';
import type { Panel } from './panel.js';
import type { Component } from '../lifecycle/component.js';
import { whoAsks, type RequestContext } from '../commands/handlers.js';
import { CommandError } from '../commands/protocol.js';
import { BookError, IncidentBook } from '../incidents/book.js';
import { DamagedIncidents } from '../incidents/damaged.js';
import { holdRangeProblem, isOpen, type Incident } from '../incidents/incident.js';
import { DISCLOSURES_DIR, disclosureRecord, recordName, signedRecordText, writeIncidentRecord, writeNoteRecord } from '../incidents/records.js';
import { queueRecord, UPSTREAM_CONFLICTS_DIR, UPSTREAM_DIR } from '../sync/records.js';
import { manifestSha256 as sha256OfManifest } from '../audit/manifest.js';
import { findSealEntry } from '../audit/chain.js';
import { leafCertificateOf } from '../commands/envelope.js';
import { formatBytes } from '../config/units.js';
import { iso } from '../platform/clock.js';
import type { LockedRange } from '../store/eviction.js';
import { holesIn, mergeSpans, seamToleranceMs, type Span } from '../store/footage.js';
import { segmentEndMs } from '../store/segment.js';
import { Sealer } from '../incidents/sealer.js';
import type { StepSource } from '../platform/clock-steps.js';
import { faultPoint } from '../platform/fault.js';
import { Supervised } from '../lifecycle/supervisor.js';
import { CALLS_CAMERA, type Ring } from '../store/ring.js';
import { VERSION } from '../version.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface IncidentsDeps extends ModuleBase {
  node: Config['node'];
  incident: Config['incident'];
  /** The panic button and its LED (they outlive this module: presses wait while it is rebuilt). */
  panel: Panel;
  /** Cameras a lock takes by default. */
  enabledCameras: readonly string[];
  /** storage.path/incidents */
  sealedDir: string;
  /** recording.segmentSeconds: a window seals once its last segment has closed. */
  segmentSeconds: number;
  /** Whether disposing of an incident needs it synced first (an upstream is configured). */
  disposeNeedsSync: boolean;
  ring: Pick<Ring, 'segmentsBetween' | 'pathOf' | 'clockOf' | 'unlinkSettled' | 'cameraIds' | 'newestEndOf' | 'bytesLockedBy' | 'stats'>;
  /** Every configured camera, disabled ones too (a hold may name them). */
  configuredCameras: readonly string[];
  /** The call recordings, when `calls` is configured: a hold or lock may name them (CONTRACT §8). */
  calls?: { settledFor(startMs: number, endMs: number): boolean } | undefined;
  /** Whether a camera's recorder is writing a segment now (its footage reaches the present). */
  writing(camera: string): boolean;
  audit: AuditLog;
  key: NodeKey;
  steps: StepSource;
  clockSynced(): boolean | null;
  /** A camera's measured bitrate (0 when unknown), for the footage an open lock still takes. */
  kbps(camera: string): number;
  /** When a camera was down, for the reasons of a clip's gaps. */
  downIntervals(camera: string): readonly { startMs: number; endMs: number }[];
  ffmpegPath?: string | undefined;
  /** upstream.encryptTo: age recipients the sealed clips are encrypted to. */
  encryptTo?: readonly string[];
  /** `<upstream.prefix>/<node>` where the upstream holds this node's incidents; null without an upstream. */
  upstreamPrefix: string | null;
}

/** The reply to a disclose (CONTRACT §7): what was recorded and where an examiner's copy is. */
export interface DiscloseReply {
  incident: string;
  n: number;
  record: string;
  manifestSha256: string;
  where: 'local+upstream' | 'upstream';
  /** `<prefix>/<node>/<incident>/` upstream; null when the node has no upstream (the record waits on it). */
  upstream: string | null;
  /** The node key that signed the manifest's records now; the manifest's own key is in the key history. */
  publicKey: string;
}

/** The camera id of the telephone system's call recordings (CONTRACT §8): held only when named. */
const CALLS = CALLS_CAMERA;

interface CameraSpan { camera: string; start: string; end: string }
function cameraSpan(camera: string, s: Span): CameraSpan {
  return { camera, start: iso(s.startMs), end: iso(s.endMs) };
}

/** The reply to a hold (CONTRACT §6). */
export interface HoldReply { incident: string; extended: false; missing: CameraSpan[]; uncertain: CameraSpan[] }

/**
 * CONTRACT §6: locks and holds together may not pin more than `incident.maxLockedPercent` of
 * the quota. Pinned = the ring's segments any lock or hold keeps + sealed clips (and the bytes
 * a seal in progress reserved) + what open windows will still record.
 */
export function pinnedShare(deps: {
  maxLockedPercent: number;
  quotaBytes(): number | undefined;
  lockedRanges(): readonly LockedRange[];
  bytesLockedBy(ranges: readonly LockedRange[]): number;
  sealedBytes(): number;
  kbps(camera: string): number;
  now(): number;
}): { figures(extra?: Incident): PinnedFigures | undefined; admit(candidate: Incident): void } {
  const figures = (extra?: Incident): PinnedFigures | undefined => {
    const quota = deps.quotaBytes();
    if (quota === undefined || quota <= 0) return undefined;
    const ranges = [...deps.lockedRanges()];
    if (extra) for (const camera of extra.cameras) ranges.push({ camera, startMs: Date.parse(extra.window.start), endMs: Date.parse(extra.window.end) });
    // Each camera's footage still to come inside a window, counted once per camera.
    const now = deps.now();
    const until = new Map<string, number>();
    for (const r of ranges) if (r.endMs > now) until.set(r.camera, Math.max(until.get(r.camera) ?? now, r.endMs));
    let future = 0;
    for (const [camera, endMs] of until) future += (deps.kbps(camera) * 125) * ((endMs - now) / 1000);
    const pinnedBytes = Math.round(deps.bytesLockedBy(ranges) + deps.sealedBytes() + future);
    return { pinnedBytes, quotaBytes: quota, limitBytes: Math.floor((quota * deps.maxLockedPercent) / 100), maxLockedPercent: deps.maxLockedPercent };
  };
  return {
    figures,
    admit(candidate) {
      const f = figures(candidate);
      if (!f || f.pinnedBytes <= f.limitBytes) return;
      throw new BookError('conflict', `locks, holds and kept clips would pin ${formatBytes(f.pinnedBytes)} (${Math.round((f.pinnedBytes / f.quotaBytes) * 100)}%) of the ${formatBytes(f.quotaBytes)} quota, over incident.maxLockedPercent (${f.maxLockedPercent}%, ${formatBytes(f.limitBytes)}); dispose of synced incidents or hold a shorter range`);
    },
  };
}

export interface PinnedFigures { pinnedBytes: number; quotaBytes: number; limitBytes: number; maxLockedPercent: number }

export interface IncidentCounts { active: number; held: number; unsynced: number; damaged: number }

/**
 * CONTRACT §3, §5: active = window open, held = sealed or synced and not disposed, unsynced =
 * sealed, damaged = set aside (no longer held or waiting to sync).
 */
export function countIncidents(incidents: readonly Incident[], nowMs: number, damaged: { has(id: string): boolean; count(): number } = NONE_DAMAGED): IncidentCounts {
  let active = 0;
  let held = 0;
  let unsynced = 0;
  for (const i of incidents) {
    if (isOpen(i, nowMs)) active++;
    if (damaged.has(i.id)) continue;
    if (i.state === 'sealed' || i.state === 'synced') held++;
    if (i.state === 'sealed') unsynced++;
  }
  return { active, held, unsynced, damaged: damaged.count() };
}

const NONE_DAMAGED = { has: () => false, count: () => 0 };

export interface IncidentsModule extends AgentModule {
  readonly book: IncidentBook;
  readonly damaged: DamagedIncidents;
  counts(): IncidentCounts;
  /** Bytes of sealed clips on the media disk (0 while the sealer is down). */
  sealedBytes(): number;
  /** Bytes the open incident will still lock: its cameras' bitrates over the rest of its window. */
  promisedBytes(): number;
}

export async function incidentsModule(deps: IncidentsDeps): Promise<IncidentsModule> {
  const { node, incident, clock, log, events, faults, audit } = deps;
  const book = new IncidentBook({
    stateDir: node.stateDir,
    sealedDir: deps.sealedDir,
    nodeId: node.id,
    policy: { preRollMs: incident.preRoll, postRollMs: incident.postRoll, maxLengthMs: incident.maxLength },
    enabledCameras: () => [...deps.enabledCameras],
    ...(deps.calls ? { namedOnly: [CALLS] } : {}),
    disposeNeedsSync: deps.disposeNeedsSync,
    clock,
    log: log.child({ component: 'incidents' }),
    events,
    audit,
    auditLogPath: join(node.stateDir, AUDIT_LOG_FILE),
    steps: deps.steps,
  });

  const damaged = new DamagedIncidents({ sealedDir: deps.sealedDir, audit, events, clock, log: log.child({ component: 'incidents' }) });

  const sealer = new Supervised({
    name: 'sealer', faults, log,
    build: () => new Sealer({
      book, ring: deps.ring, sealedDir: deps.sealedDir,
      segmentSeconds: deps.segmentSeconds,
      clock,
      log: log.child({ component: 'sealer' }),
      events, faults, audit, key: deps.key,
      clockSynced: async () => deps.clockSynced(),
      version: VERSION,
      downIntervals: deps.downIntervals,
      ...(deps.calls ? { calls: { settledFor: deps.calls.settledFor, maxWaitMs: incident.maxLength } } : {}),
      ...(deps.encryptTo ? { encryptTo: deps.encryptTo } : {}),
      ...(deps.ffmpegPath ? { ffmpegPath: deps.ffmpegPath } : {}),
    }),
  });
  events.on('incident.disposed', () => void sealer.current()?.measureHeld());

  const { panel } = deps;
  // A press locks at once, on this machine only: nothing here waits on a network. The LED is
  // solid until the lock is durable, then confirms — or flashes the error if it could not be.
  const onPress = ({ atMs, step }: { atMs: number; step: number }): void => {
    events.emit('button.pressed', { at: new Date(atMs).toISOString() });
    panel.led.during(async () => {
      const made = await book.lock({ atMs, step, via: 'button' });
      // An unlink the pruner had already begun cannot be called back: confirm only after it.
      await deps.ring.unlinkSettled();
      return made;
    }).then(
      ({ incident: locked, extended }) => {
        log.info({ incident: locked.id, extended }, 'panic button: lock durable');
        // A press always locks; past the pinned share it says so instead (CONTRACT §6).
        const f = pinned.figures();
        if (f && f.pinnedBytes > f.limitBytes) {
          log.warn({ incident: locked.id, ...f }, 'storage pressure: locks, holds and kept clips pin more than incident.maxLockedPercent of the quota');
          events.emit('storage.pressure', { shortfallBytes: f.pinnedBytes - f.limitBytes, quotaBytes: f.quotaBytes, usedBytes: f.pinnedBytes, pinnedBytes: f.pinnedBytes, maxLockedPercent: f.maxLockedPercent, incident: locked.id });
        }
      },
      (err: unknown) => log.error({ err }, 'panic button: the lock could NOT be made durable'),
    );
  };
  // Listening once the book is loaded and the sealer up; presses meanwhile wait in the panel.
  let detach: (() => void) | undefined;
  const presses: Component = {
    name: 'presses',
    async start() { detach = panel.presses.attach(onPress); },
    async stop() { detach?.(); },
  };

  const pinned = pinnedShare({
    maxLockedPercent: incident.maxLockedPercent,
    quotaBytes: () => deps.ring.stats()?.quotaBytes,
    lockedRanges: () => book.lockedRanges(),
    bytesLockedBy: (ranges) => deps.ring.bytesLockedBy(ranges),
    sealedBytes: () => sealer.current()?.sealedBytes() ?? 0,
    kbps: deps.kbps,
    now: () => clock.now(),
  });

  /** CONTRACT §6 hold: keeps a range named after the fact, and says what of it is gone. */
  const hold = async (a: { from: number; to: number; cameras?: string[] | undefined; reason: string; by?: string | undefined }, ctx: RequestContext): Promise<HoldReply> => {
    const who = whoAsks(ctx, a.by, true);
    const { atMs } = book.triggerTime();
    const problem = holdRangeProblem(a.from, a.to, atMs, incident.maxHold);
    if (problem) throw new CommandError('bad_request', problem);
    const pastEnd = Math.min(a.to, atMs);
    const withFootage = deps.ring.cameraIds().filter((c) => deps.ring.segmentsBetween(c, a.from, pastEnd).length > 0);
    let cameras: string[];
    if (a.cameras && a.cameras.length > 0) {
      const known = new Set([...deps.configuredCameras, ...withFootage, ...(deps.calls ? [CALLS] : [])]);
      const unknown = a.cameras.filter((c) => !known.has(c));
      if (unknown.length > 0) throw new CommandError('bad_request', `cameras: no camera ${unknown.map((c) => `"${c}"`).join(', ')} on this node, and no footage of it in the range`);
      cameras = [...new Set(a.cameras)];
    } else {
      // Every camera with footage in the range, disabled or removed ones too; the call
      // recordings only when named; and, for a range reaching into the future, the cameras recording.
      cameras = withFootage.filter((c) => c !== CALLS);
      if (a.to > atMs) for (const c of deps.enabledCameras) if (!cameras.includes(c)) cameras.push(c);
    }
    // Nothing left is refused only for a range that is over (CONTRACT §6); one reaching into the
    // future keeps what its cameras record until `to`, even while they reconnect.
    const left = cameras.some((c) => deps.ring.segmentsBetween(c, a.from, pastEnd).length > 0);
    if (cameras.length === 0 || (!left && a.to <= atMs)) {
      throw new CommandError('not_found', `no footage left between ${iso(a.from)} and ${iso(pastEnd)}${a.cameras?.length ? ` on ${cameras.join(', ')}` : ''}: the ring has deleted it, or nothing was recorded`);
    }
    const held = await book.hold({
      fromMs: a.from, toMs: a.to, atMs, via: ctx.via, ...who, reason: a.reason, cameras,
    }, (candidate) => pinned.admit(candidate));
    // An unlink the pruner had begun cannot be called back: what is missing is read after it.
    await deps.ring.unlinkSettled();
    faultPoint('hold.settled');
    return { incident: held.id, extended: false, ...whatIsLeft(held, clock.now()) };
  };

  /** Of a hold just made: the parts of [from, min(to, now)] no file holds, and the footage whose stamps a clock step corrected. */
  const whatIsLeft = (held: Incident, nowMs: number): Pick<HoldReply, 'missing' | 'uncertain'> => {
    const fromMs = Date.parse(held.window.start);
    const toMs = Math.min(Date.parse(held.window.end), nowMs);
    // Seams between consecutive segments (each stamped when it closed) are not holes.
    const tolerance = seamToleranceMs(deps.segmentSeconds);
    const missing: CameraSpan[] = [];
    const uncertain: CameraSpan[] = [];
    // Calls are not a continuous recording: the time between two is no hole.
    for (const camera of held.cameras.filter((c) => c !== CALLS)) {
      const segments = [...deps.ring.segmentsBetween(camera, fromMs, toMs)].sort((x, y) => x.startMs - y.startMs);
      const covered: { startMs: number; durationMs: number }[] = segments;
      // The segment being written is a file too: it holds the footage since the last one closed.
      if (deps.writing(camera)) {
        const last = deps.ring.newestEndOf(camera);
        if (last !== null && last < nowMs) covered.push({ startMs: last, durationMs: nowMs - last });
      }
      if (fromMs < toMs) for (const h of holesIn(covered, fromMs, toMs, tolerance)) missing.push(cameraSpan(camera, h));
      const stepped = segments.filter((seg) => deps.ring.clockOf(seg) === 'stepped').map((seg): Span => ({ startMs: seg.startMs, endMs: segmentEndMs(seg) }));
      for (const u of mergeSpans(stepped)) uncertain.push(cameraSpan(camera, u));
    }
    return { missing, uncertain };
  };

  return {
    name: 'incidents',
    // The book starts early: the ring's first prune pass must already see every lock.
    early: [book, damaged],
    components: [sealer, presses],
    commands: {
      lock: async (a, ctx) => {
        // With a range it is a hold (CONTRACT §6), the same thing.
        if (a.from !== undefined && a.to !== undefined) return hold({ from: a.from, to: a.to, cameras: a.cameras, reason: a.reason!, by: a.by }, ctx);
        const { incident: locked, extended } = await book.lock({
          ...book.triggerTime(), via: ctx.via, ...whoAsks(ctx, a.by, false), reason: a.reason, cameras: a.cameras,
          preRollMs: a.preRoll, postRollMs: a.postRoll, urgent: a.urgent,
        }, (candidate) => pinned.admit(candidate));
        // From the reply on, every segment in the window is kept: none is mid-unlink.
        await deps.ring.unlinkSettled();
        faultPoint('lock.returned');
        return { incident: locked.id, extended };
      },
      hold,
      note: async (a, ctx) => {
        const who = whoAsks(ctx, a.by, true);
        if (damaged.has(a.incident)) throw new CommandError('conflict', `incident ${a.incident} was set aside as damaged; its folder is kept as found`);
        return book.note({ incident: a.incident, text: a.text, by: who.by!, onBehalfOf: who.onBehalfOf, signer: who.signer }, async (incident, note, n) => {
          await writeNoteRecord({
            incidentDir: join(deps.sealedDir, incident.id), incident, note, n, version: VERSION, key: deps.key,
            onBehalfOf: who.onBehalfOf, signer: who.signer,
          });
        });
      },
      disclose: async (a, ctx): Promise<DiscloseReply> => {
        const who = whoAsks(ctx, a.by, false);
        if (damaged.has(a.incident)) throw new CommandError('conflict', `incident ${a.incident} was set aside as damaged; its folder is kept as found for a person to look at`);
        const incidentDir = (id: string): string => join(deps.sealedDir, id);
        const { incident: disclosed, disclosure } = await book.disclose({
          incident: a.incident, legalBasis: a.legalBasis, reference: a.reference, agency: a.agency, requestedBy: a.requestedBy,
          by: who.by ?? null, onBehalfOf: who.onBehalfOf, signer: who.signer, jws: ctx.jws,
        }, async (i) => await readFile(join(incidentDir(i.id), 'manifest.json')).then(sha256OfManifest, () => null)
          ?? (await findSealEntry(join(node.stateDir, AUDIT_LOG_FILE), i.id))?.manifestSha256
          ?? null,
        async (i, d) => {
          const { text } = signedRecordText(disclosureRecord(i, d, {
            signer: who.signer, certificate: ctx.jws !== undefined ? leafCertificateOf(ctx.jws) : undefined, onBehalfOf: who.onBehalfOf, version: VERSION,
          }), deps.key);
          // Beside the clips while the node holds them; upstream always (a disposed incident's only copy is there).
          if (i.state !== 'disposed') await writeIncidentRecord(incidentDir(i.id), DISCLOSURES_DIR, d.n, text);
          await queueRecord(node.stateDir, `${i.id}/${recordName(DISCLOSURES_DIR, d.n)}`, text);
        }, async (i, n) => {
          const rel = `${i.id}/${recordName(DISCLOSURES_DIR, n)}`;
          const taken = await Promise.all([join(incidentDir(i.id), recordName(DISCLOSURES_DIR, n)), join(node.stateDir, UPSTREAM_DIR, rel), join(node.stateDir, UPSTREAM_CONFLICTS_DIR, rel)]
            .map((p) => access(p).then(() => true, () => false)));
          return !taken.some(Boolean);
        });
        events.emit('upstream.queued', { key: `${disclosed.id}/${recordName(DISCLOSURES_DIR, disclosure.n)}` });
        return {
          incident: disclosed.id, n: disclosure.n, record: recordName(DISCLOSURES_DIR, disclosure.n), manifestSha256: disclosure.manifestSha256,
          where: disclosure.where, upstream: deps.upstreamPrefix === null ? null : `${deps.upstreamPrefix}/${disclosed.id}/`, publicKey: deps.key.publicKeyBase64,
        };
      },
      dispose: async (a, ctx) => {
        const who = whoAsks(ctx, a.by, true);
        return { incident: (await book.dispose({ ...a, by: who.by!, ...who, ...(ctx.jws ? { jws: ctx.jws } : {}) })).id };
      },
      incidents: async () => ({ incidents: book.list() }),
      incident: async (a) => {
        const found = book.get(a.incident);
        if (!found) throw new CommandError('not_found', `no incident ${a.incident}`);
        return found;
      },
    },
    book,
    damaged,
    counts: () => countIncidents(book.list(), clock.now(), damaged),
    sealedBytes: () => sealer.current()?.sealedBytes() ?? 0,
    promisedBytes: () => {
      // Each camera's footage still to come inside an open lock or hold, counted once.
      const now = clock.now();
      const until = new Map<string, number>();
      for (const i of book.list()) {
        if (!isOpen(i, now)) continue;
        for (const camera of i.cameras) until.set(camera, Math.max(until.get(camera) ?? now, Date.parse(i.window.end)));
      }
      let bytes = 0;
      for (const [camera, endMs] of until) bytes += (deps.kbps(camera) * 125) * ((endMs - now) / 1000);
      return Math.round(bytes);
    },
  };
}
