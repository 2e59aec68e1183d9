// Incidents (CONTRACT §4) and their window arithmetic, kept pure.
import { randomInt } from 'node:crypto';
import type { LockedRange } from '../store/eviction.js';
import { iso } from '../platform/clock.js';

export type IncidentState = 'active' | 'sealing' | 'sealed' | 'synced' | 'disposed';
/** A lock drawn around a trigger, or a hold of a range named after the fact (CONTRACT §6). */
export type IncidentKind = 'lock' | 'hold';
export type TriggerVia = 'button' | 'mqtt' | 'local';

/** Who signed a command (CONTRACT §7): the principal's CN, role and certificate's SHA-256. */
export interface TriggerSigner { cn: string; role: string; certSha256: string }

export interface Trigger {
  at: string;
  via: TriggerVia;
  /** Who asked: a signed command's signer CN, else what the requester typed. */
  by?: string;
  /** A signed command's typed `by` (the person the signer acted for). */
  onBehalfOf?: string;
  /** The signer of a signed command; null for an unsigned MQTT command (signing not required). */
  signer?: TriggerSigner | null;
  reason?: string;
  /** Later presses counted in this trigger: within 1 s of it, or past the cap (CONTRACT §4). */
  repeats?: number;
}

/** Presses this close to the last trigger join it (a noisy button line, a held button). */
export const JOIN_WITHIN_MS = 1_000;
/** An incident records at most this many triggers; later ones are counted in the last one's repeats. */
export const MAX_TRIGGERS = 100;

/**
 * What an extension changed (CONTRACT §4), and all its audit entry carries: the trigger (or,
 * `joined`, the press counted in the last trigger's repeats), the new end, the cameras added,
 * and `urgent` when it turned urgent. Replaying these in order on the lock entry's incident
 * gives the incident again.
 */
export interface Extension {
  incident: string;
  trigger: Trigger;
  end: string;
  camerasAdded: string[];
  joined?: 'press' | 'cap';
  urgent?: true;
}

/** A note staff add to an incident (CONTRACT §6): who, when, what. */
export interface Note {
  at: string;
  by: string;
  text: string;
  /** The number of its node-signed record `notes/<n>.json` beside the clips (a sealed incident's note). */
  record?: number;
}

export type LegalBasis = 'subpoena' | 'court-order';
export const LEGAL_BASES: readonly LegalBasis[] = ['subpoena', 'court-order'];

/**
 * A disclosure (CONTRACT §7): footage handed to law enforcement on a subpoena or court order.
 * Its node-signed record is `disclosures/<n>.json`, beside the clips and upstream.
 */
export interface Disclosure {
  n: number;
  at: string;
  legalBasis: LegalBasis;
  reference: string;
  agency: string;
  requestedBy: string;
  /** The custodian who recorded it: the signer's CN (or, unsigned on a test broker, the typed `by`). */
  by: string | null;
  /** SHA-256 of the manifest.json the disclosure names. */
  manifestSha256: string;
  /** Where its record was written: beside the clips and upstream, or (a disposed incident) upstream only. */
  where: 'local+upstream' | 'upstream';
}

export interface Incident {
  id: string;
  node: string;
  triggers: Trigger[];
  cameras: string[];
  window: { start: string; end: string };
  state: IncidentState;
  urgent: boolean;
  kind: IncidentKind;
  notes: Note[];
  /** Present once it has one (CONTRACT §7). */
  disclosures?: Disclosure[];
  /** SHA-256 of its manifest.json, from the seal on (a disclosure names it after the local copy is gone). */
  manifestSha256?: string;
}

export interface WindowPolicy {
  preRollMs: number;
  postRollMs: number;
  maxLengthMs: number;
}

export interface TriggerRequest {
  atMs: number;
  via: TriggerVia;
  by?: string | undefined;
  onBehalfOf?: string | undefined;
  signer?: TriggerSigner | null | undefined;
  reason?: string | undefined;
  /** Cameras asked for; all enabled ones when absent or empty. */
  cameras?: string[] | undefined;
  preRollMs?: number | undefined;
  postRollMs?: number | undefined;
  urgent?: boolean | undefined;
  /** How many clock steps had been taken in when atMs was read (the book adds any since). */
  step?: number | undefined;
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** `YYYYMMDDTHHMMSSZ-xxxx`: the first trigger's UTC time and 4 random base32 characters. */
export function incidentId(atMs: number, random: (n: number) => number = randomInt): string {
  const stamp = iso(atMs).replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  let suffix = '';
  for (let i = 0; i < 4; i++) suffix += BASE32[random(32)];
  return `${stamp}-${suffix}`;
}

export interface IdChoice { random?: ((n: number) => number) | undefined; taken?: (id: string) => boolean }

/**
 * An id no incident uses yet. Two incidents in one second share a stamp: a suffix already used
 * is drawn again, so no incident ever replaces another (one in 2^20 a second; the bound only
 * stops a broken random).
 */
function freeIncidentId(atMs: number, ids: IdChoice): string {
  let id = incidentId(atMs, ids.random);
  for (let i = 0; ids.taken?.(id) && i < 1_000; i++) id = incidentId(atMs, ids.random);
  if (ids.taken?.(id)) throw new Error(`no free incident id for ${iso(atMs)}`);
  return id;
}

export const INCIDENT_ID = /^\d{8}T\d{6}Z-[a-z2-7]{4}$/;

function trigger(req: TriggerRequest): Trigger {
  return {
    at: iso(req.atMs), via: req.via,
    ...(req.by !== undefined ? { by: req.by } : {}),
    ...(req.onBehalfOf !== undefined ? { onBehalfOf: req.onBehalfOf } : {}),
    ...(req.signer !== undefined ? { signer: req.signer } : {}),
    ...(req.reason !== undefined ? { reason: req.reason } : {}),
  };
}

/** A trigger at T opens [T − preRoll, T + postRoll] (postRoll itself capped at maxLength). */
export function openIncident(
  node: string, req: TriggerRequest, policy: WindowPolicy, enabledCameras: readonly string[],
  ids: IdChoice = {},
): Incident {
  // A pre-roll longer than maxLength (asked for, or configured) would put the whole capped
  // window before T: the lock would miss the very moment it was made for.
  const pre = Math.min(req.preRollMs ?? policy.preRollMs, policy.maxLengthMs);
  const post = req.postRollMs ?? policy.postRollMs;
  const start = req.atMs - pre;
  const end = Math.min(req.atMs + post, start + policy.maxLengthMs);
  return {
    id: freeIncidentId(req.atMs, ids),
    node,
    triggers: [trigger(req)],
    cameras: req.cameras && req.cameras.length > 0 ? [...new Set(req.cameras)] : [...enabledCameras],
    window: { start: iso(start), end: iso(end) },
    state: 'active',
    urgent: req.urgent ?? true,
    kind: 'lock',
    notes: [],
  };
}

/** A hold asked for (CONTRACT §6): a range on the wall clock, and who asks. */
export interface HoldRequest {
  fromMs: number;
  toMs: number;
  /** When it was asked (its trigger's time). */
  atMs: number;
  via: TriggerVia;
  by?: string | undefined;
  onBehalfOf?: string | undefined;
  signer?: TriggerSigner | null | undefined;
  reason: string;
  cameras: readonly string[];
}

/**
 * CONTRACT §6 refusals of a hold's range (bad_request), or null. Pure: `from ≥ to`,
 * `from > now`, `to − from > maxHold`.
 */
export function holdRangeProblem(fromMs: number, toMs: number, nowMs: number, maxHoldMs: number): string | null {
  if (fromMs >= toMs) return `from: must be before to (${iso(fromMs)} is not before ${iso(toMs)})`;
  if (fromMs > nowMs) return `from: ${iso(fromMs)} is in the future; footage that does not exist yet cannot be held (lock it when it happens)`;
  if (toMs - fromMs > maxHoldMs) return `to: the range is ${formatSpan(toMs - fromMs)}, longer than incident.maxHold (${formatSpan(maxHoldMs)}); hold it in parts`;
  return null;
}

function formatSpan(ms: number): string {
  const s = Math.round(ms / 1000);
  const parts = [[Math.floor(s / 3600), 'h'], [Math.floor((s % 3600) / 60), 'm'], [s % 60, 's']] as const;
  return parts.filter(([n]) => n > 0).map(([n, unit]) => `${n}${unit}`).join('') || '0s';
}

/**
 * A hold is an incident of its own: the range as asked, never extended, never an extension of
 * the open lock. Its window is exactly [from, to]; the sealer takes the segments straddling the
 * edges whole and the manifest states the real span. Pure.
 */
export function openHold(node: string, req: HoldRequest, ids: IdChoice = {}): Incident {
  return {
    id: freeIncidentId(req.atMs, ids),
    node,
    triggers: [trigger({ atMs: req.atMs, via: req.via, by: req.by, onBehalfOf: req.onBehalfOf, signer: req.signer, reason: req.reason })],
    cameras: [...new Set(req.cameras)],
    window: { start: iso(req.fromMs), end: iso(req.toMs) },
    state: 'active',
    urgent: true,
    kind: 'hold',
    notes: [],
  };
}

/** An incident of an earlier release, without kind or notes (or saying `released`), as it reads now. */
export function withCurrentFields(incident: Incident): Incident {
  const state = (incident.state as string) === 'released' ? 'disposed' : incident.state;
  if (incident.kind !== undefined && Array.isArray(incident.notes) && state === incident.state) return incident;
  return { ...incident, state, kind: incident.kind ?? 'lock', notes: Array.isArray(incident.notes) ? incident.notes : [] };
}

/**
 * A later trigger at T2 while active: end = max(end, T2 + postRoll), capped at start +
 * maxLength; its cameras are added. A press within 1 s of the last trigger, or any trigger past
 * the cap, is counted in the last trigger's `repeats` instead of listed. Returns the new
 * incident and the change (its audit entry). Pure.
 */
export function extendIncident(incident: Incident, req: TriggerRequest, policy: WindowPolicy, enabledCameras: readonly string[]): { incident: Incident; change: Extension } {
  const start = Date.parse(incident.window.start);
  const end = Date.parse(incident.window.end);
  const post = req.postRollMs ?? policy.postRollMs;
  const newEnd = Math.max(end, Math.min(req.atMs + post, start + policy.maxLengthMs));
  const asked = req.cameras && req.cameras.length > 0 ? req.cameras : enabledCameras;
  const camerasAdded = [...new Set(asked)].filter((c) => !incident.cameras.includes(c));
  const last = incident.triggers[incident.triggers.length - 1]!;
  const t = trigger(req);
  const joined = req.via === 'button' && last.via === 'button' && Math.abs(req.atMs - Date.parse(last.at)) < JOIN_WITHIN_MS ? 'press'
    : incident.triggers.length >= MAX_TRIGGERS ? 'cap' : undefined;
  // An urgent trigger makes the incident urgent; a non-urgent one never demotes it.
  const urgent = incident.urgent || (req.urgent ?? true);
  const change: Extension = {
    incident: incident.id, trigger: t, end: iso(newEnd), camerasAdded,
    ...(joined ? { joined } : {}), ...(urgent && !incident.urgent ? { urgent: true as const } : {}),
  };
  return { incident: applyExtension(incident, change), change };
}

/** An extension applied to the incident it was made on (recovery replays them). Pure. */
export function applyExtension(incident: Incident, change: Extension): Incident {
  const triggers = [...incident.triggers];
  if (change.joined) {
    const last = triggers[triggers.length - 1]!;
    triggers[triggers.length - 1] = { ...last, repeats: (last.repeats ?? 0) + 1 };
  } else {
    triggers.push(change.trigger);
  }
  return {
    ...incident,
    triggers,
    cameras: [...incident.cameras, ...change.camerasAdded.filter((c) => !incident.cameras.includes(c))],
    window: { start: incident.window.start, end: change.end > incident.window.end ? change.end : incident.window.end },
    urgent: incident.urgent || change.urgent === true,
  };
}

/**
 * A clock step of `deltaMs` moves a locking incident's window with the footage it covers: both
 * were drawn on the wall clock before the step. Its triggers keep the times they were stamped
 * with. Pure.
 */
export function shiftWindow(incident: Incident, deltaMs: number): Incident {
  return {
    ...incident,
    window: { start: iso(Date.parse(incident.window.start) + deltaMs), end: iso(Date.parse(incident.window.end) + deltaMs) },
  };
}

/**
 * A clock step of `deltaMs` and a hold: its range may cover footage of an earlier boot (whose
 * stamps the step leaves alone) and of this one (corrected by it), so it widens to keep both. Pure.
 */
export function widenWindow(incident: Incident, deltaMs: number): Incident {
  const start = Date.parse(incident.window.start);
  const end = Date.parse(incident.window.end);
  return { ...incident, window: { start: iso(Math.min(start, start + deltaMs)), end: iso(Math.max(end, end + deltaMs)) } };
}

/** Active: its window has not yet passed. */
export function isOpen(incident: Incident, nowMs: number): boolean {
  return incident.state === 'active' && Date.parse(incident.window.end) > nowMs;
}

/** The lock a trigger extends: open, and drawn around triggers (a hold is never extended). */
export function isExtendable(incident: Incident, nowMs: number): boolean {
  return incident.kind !== 'hold' && isOpen(incident, nowMs);
}

/** The ranges the ring must keep: every incident not yet sealed. */
export function lockedRanges(incidents: readonly Incident[]): LockedRange[] {
  const ranges: LockedRange[] = [];
  for (const i of incidents) {
    if (i.state !== 'active' && i.state !== 'sealing') continue;
    const startMs = Date.parse(i.window.start);
    const endMs = Date.parse(i.window.end);
    for (const camera of i.cameras) ranges.push({ camera, startMs, endMs });
  }
  return ranges;
}

/** When an incident may be sealed: its window has passed and the segment covering its end has closed. */
export function sealDueAt(incident: Incident, segmentSeconds: number): number {
  return Date.parse(incident.window.end) + segmentSeconds * 2000 + 2000;
}
