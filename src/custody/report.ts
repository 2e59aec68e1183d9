// The retention report (CONTRACT §7): what a node kept, what it deleted and why, for an auditor.
// Footage figures come from the ring's index (what is on disk now), incidents from the book, and
// everything that happened — deletions by reason, stills, clock steps — from the audit log, the
// node's proof of deletion. The log on the node may begin later than the period asked for (its
// older entries rotated upstream): `coveredFrom` says where its figures begin.
//
// Building the report is pure (`buildReport`); reading the log (`readAuditFacts`) streams it and
// parses only the entries inside the period.
import { readRawLines } from '../audit/chain.js';
import { iso } from '../platform/clock.js';
import type { CameraFootage, IncidentRange, TimeRange } from '../store/footage.js';
import type { Incident, IncidentKind, IncidentState } from '../incidents/incident.js';
import type { SignageView } from './signage.js';

export type DeletionReason = 'quota' | 'age' | 'dispose' | 'damaged';
export const DELETION_REASONS: readonly DeletionReason[] = ['quota', 'age', 'dispose', 'damaged'];

export interface DeletedRange { from: string; to: string; incident?: string }
export interface Deleted {
  count: number;
  /** Bytes deleted; null when the log does not say (an incident set aside as damaged, a dispose by an earlier release). */
  bytes: number | null;
  ranges: DeletedRange[];
}

export interface ReportCamera {
  id: string;
  /** The oldest footage the ring holds now. */
  oldest: string | null;
  newest: string | null;
  retainedSeconds: number;
  deleted: Record<DeletionReason, Deleted>;
  /** What the ring holds in the period (for the timeline): recorded ranges, locked and kept incidents. */
  recorded: TimeRange[];
  locked: IncidentRange[];
  kept: IncidentRange[];
}

export interface ReportIncident {
  id: string;
  kind: IncidentKind;
  /** Seconds since its first trigger. */
  age: number;
  at: string;
  window: { start: string; end: string };
  cameras: string[];
  by: string | null;
  via: string;
  reason: string | null;
  state: IncidentState;
  synced: boolean;
  disclosures: { n: number; at: string; legalBasis: string; reference: string; agency: string; by: string | null }[];
}

export interface ReportStill { camera: string; at: string; frameAt: string | null; purpose: string; by: string; reason: string | null; madeAt: string }
export interface ClockStep { at: string; jumpMs: number }

export interface Report {
  node: string;
  site: string;
  timeZone: string;
  from: string;
  to: string;
  /** The first entry of the audit log the node holds: deletions, stills and steps before it are not in the figures. */
  coveredFrom: string | null;
  /** Whether that is the node's first start, or where older entries were rotated off to upstream. */
  auditStart: 'first-start' | 'rotated' | null;
  /** The upstream the node syncs to ('none': incidents are kept only on the node). */
  upstream: 'none' | 's3' | 'dir';
  cameras: ReportCamera[];
  incidents: ReportIncident[];
  stills: ReportStill[];
  signage: SignageView;
  clock: { synced: boolean | null; steps: ClockStep[] };
}

export interface DeletionRuns { reason: 'quota' | 'age'; camera: string; segments: number; bytes: number; ranges: DeletedRange[] }

/** What the audit log says happened in the period. */
export interface AuditFacts {
  coveredFrom: string | null;
  /** How the log the node holds begins: at the node's first start, or where older entries were rotated off (upstream). */
  auditStart: 'first-start' | 'rotated' | null;
  /** Per reason and camera: what was deleted, its runs merged as they are read (a month of a busy node is 350,000 runs). */
  deletions: DeletionRuns[];
  disposed: { incident: string; at: string; files?: { camera: string; bytes: number }[] }[];
  damaged: { incident: string; at: string }[];
  stills: ReportStill[];
  steps: ClockStep[];
}

/** Facts of a node with no audit log (yet). */
export function noAuditFacts(): AuditFacts {
  return { coveredFrom: null, auditStart: null, deletions: [], disposed: [], damaged: [], stills: [], steps: [] };
}

const TS = /"ts":"([^"]{10,40})"/;
const SEQ = /"seq":(\d+)/;

/**
 * Streams the node's audit log and gathers the facts of [fromMs, toMs]. Only the lines whose
 * `ts` falls in the period are parsed; the log's first entry gives `coveredFrom`. Deleted runs closer
 * than `joinMs` are merged as they come.
 */
export async function readAuditFacts(path: string, fromMs: number, toMs: number, joinMs = 0): Promise<AuditFacts> {
  const facts = noAuditFacts();
  for await (const { bytes, terminated } of readRawLines(path)) {
    if (!terminated) break;
    const head = TS.exec(bytes.subarray(0, 200).toString('latin1'));
    if (!head) continue;
    if (facts.coveredFrom === null) {
      facts.coveredFrom = head[1]!;
      facts.auditStart = Number(SEQ.exec(bytes.subarray(0, 40).toString('latin1'))?.[1] ?? 0) <= 1 ? 'first-start' : 'rotated';
    }
    const atMs = Date.parse(head[1]!);
    if (!(atMs >= fromMs && atMs <= toMs)) continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    } catch {
      continue;
    }
    foldEntry(facts, e, joinMs);
  }
  return facts;
}

/** One entry into the facts (exported for tests of the shapes of earlier releases). */
export function foldEntry(facts: AuditFacts, e: Record<string, unknown>, joinMs = 0): void {
  const at = String(e['ts']);
  switch (e['type']) {
    case 'delete': {
      const reason = e['reason'];
      if (reason !== 'quota' && reason !== 'age') return;
      for (const [camera, runs] of Object.entries((e['cameras'] ?? {}) as Record<string, { from: string; to: string; segments: number; bytes: number }[]>)) {
        let d = facts.deletions.find((x) => x.camera === camera && x.reason === reason);
        if (!d) facts.deletions.push((d = { reason, camera, segments: 0, bytes: 0, ranges: [] }));
        for (const r of runs) {
          d.segments += r.segments;
          d.bytes += r.bytes;
          // Pruning deletes oldest first: a run mostly continues the last one.
          const last = d.ranges[d.ranges.length - 1];
          if (last && r.from >= last.from && Date.parse(r.from) - Date.parse(last.to) <= joinMs) {
            if (r.to > last.to) last.to = r.to;
          } else {
            d.ranges.push({ from: r.from, to: r.to });
          }
        }
      }
      return;
    }
    case 'dispose': case 'dispose.forced': case 'release': case 'release.forced': {
      const files = e['files'] as { camera: string; bytes: number }[] | undefined;
      facts.disposed.push({ incident: String(e['incident']), at, ...(Array.isArray(files) ? { files } : {}) });
      return;
    }
    case 'damaged':
      facts.damaged.push({ incident: String(e['incident']), at });
      return;
    case 'still':
      facts.stills.push({
        camera: String(e['camera']), at: String(e['at']), frameAt: typeof e['frameAt'] === 'string' ? e['frameAt'] : null,
        purpose: String(e['purpose']), by: String(e['by']), reason: typeof e['reason'] === 'string' ? e['reason'] : null, madeAt: at,
      });
      return;
    case 'clock':
      facts.steps.push({ at, jumpMs: Number(e['jumpMs']) });
      return;
    default:
  }
}

/** Ranges in time order, those that touch or overlap (within `joinMs`) merged. Pure. */
export function mergeRanges(ranges: readonly DeletedRange[], joinMs: number): DeletedRange[] {
  const sorted = [...ranges].sort((a, b) => a.from.localeCompare(b.from));
  const out: DeletedRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.incident === undefined && r.incident === undefined && Date.parse(r.from) - Date.parse(last.to) <= joinMs) {
      if (r.to > last.to) last.to = r.to;
      continue;
    }
    out.push({ ...r });
  }
  return out;
}

export interface ReportInput {
  node: string;
  site: string;
  timeZone: string;
  fromMs: number;
  toMs: number;
  /** The ring's footage per camera (configured cameras first), over the whole ring. */
  footage: readonly CameraFootage[];
  incidents: readonly Incident[];
  facts: AuditFacts;
  upstream: 'none' | 's3' | 'dir';
  signage: SignageView;
  clockSynced: boolean | null;
  /** Deleted runs closer than this are shown as one range (a few segment lengths). */
  joinMs: number;
}

const emptyDeleted = (): Record<DeletionReason, Deleted> => ({
  quota: { count: 0, bytes: 0, ranges: [] }, age: { count: 0, bytes: 0, ranges: [] },
  dispose: { count: 0, bytes: 0, ranges: [] }, damaged: { count: 0, bytes: null, ranges: [] },
});

const clip = (r: { start: string; end: string }, fromMs: number, toMs: number): boolean => Date.parse(r.end) > fromMs && Date.parse(r.start) < toMs;

/** The report (CONTRACT §7). Pure. */
export function buildReport(input: ReportInput): Report {
  const { fromMs, toMs, facts } = input;
  const byId = new Map(input.incidents.map((i) => [i.id, i]));
  const cameras = new Map<string, ReportCamera>();
  const camera = (id: string): ReportCamera => {
    let c = cameras.get(id);
    if (!c) cameras.set(id, (c = { id, oldest: null, newest: null, retainedSeconds: 0, deleted: emptyDeleted(), recorded: [], locked: [], kept: [] }));
    return c;
  };
  for (const f of input.footage) {
    const c = camera(f.id);
    c.oldest = f.oldest;
    c.newest = f.newest;
    c.retainedSeconds = f.oldest && f.newest ? Math.round((Date.parse(f.newest) - Date.parse(f.oldest)) / 1000) : 0;
    c.recorded = f.ranges.filter((r) => clip(r, fromMs, toMs));
    c.locked = f.locked.filter((r) => clip(r, fromMs, toMs));
    c.kept = f.kept.filter((r) => clip(r, fromMs, toMs));
  }
  for (const d of facts.deletions) {
    camera(d.camera).deleted[d.reason] = { count: d.segments, bytes: d.bytes, ranges: mergeRanges(d.ranges, input.joinMs) };
  }
  // A disposed or damaged incident: the clips its entry lists (a release that listed none: one per
  // camera the incident covered), its window the range.
  const incidentGone = (reason: 'dispose' | 'damaged', id: string, files?: { camera: string; bytes: number }[]): void => {
    const incident = byId.get(id);
    const cams = files?.map((f) => f.camera) ?? incident?.cameras ?? [];
    for (const cam of cams) {
      const del = camera(cam).deleted[reason];
      del.count += 1;
      const bytes = files?.find((f) => f.camera === cam)?.bytes;
      del.bytes = bytes === undefined || del.bytes === null ? null : del.bytes + bytes;
      del.ranges.push({ from: incident?.window.start ?? '', to: incident?.window.end ?? '', incident: id });
    }
  };
  for (const d of facts.disposed) incidentGone('dispose', d.incident, d.files);
  for (const d of facts.damaged) incidentGone('damaged', d.incident);

  const incidents: ReportIncident[] = input.incidents
    .filter((i) => i.state !== 'disposed')
    .map((i) => {
      const first = i.triggers[0];
      const atMs = Date.parse(first?.at ?? i.window.start);
      return {
        id: i.id, kind: i.kind, age: Math.max(0, Math.round((toMs - atMs) / 1000)), at: iso(atMs), window: i.window, cameras: i.cameras,
        by: first?.by ?? null, via: first?.via ?? 'unknown', reason: first?.reason ?? null, state: i.state, synced: i.state === 'synced',
        disclosures: (i.disclosures ?? []).map((d) => ({ n: d.n, at: d.at, legalBasis: d.legalBasis, reference: d.reference, agency: d.agency, by: d.by })),
      };
    })
    .sort((a, b) => a.at.localeCompare(b.at));

  return {
    node: input.node,
    site: input.site,
    timeZone: input.timeZone,
    from: iso(fromMs),
    to: iso(toMs),
    coveredFrom: facts.coveredFrom,
    auditStart: facts.auditStart,
    upstream: input.upstream,
    cameras: [...cameras.values()],
    incidents,
    stills: facts.stills,
    signage: input.signage,
    clock: { synced: input.clockSynced, steps: facts.steps },
  };
}
