// Incidents (CONTRACT §4) and their window arithmetic, kept pure.
import { randomInt } from 'node:crypto';
import type { LockedRange } from '../store/eviction.js';
import { iso } from '../platform/clock.js';

export type IncidentState = 'active' | 'sealing' | 'sealed' | 'synced' | 'disposed';
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

export interface Incident {
  id: string;
  node: string;
  triggers: Trigger[];
  cameras: string[];
  window: { start: string; end: string };
  state: IncidentState;
  urgent: boolean;
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
  ids: { random?: ((n: number) => number) | undefined; taken?: (id: string) => boolean } = {},
): Incident {
  // A pre-roll longer than maxLength (asked for, or configured) would put the whole capped
  // window before T: the lock would miss the very moment it was made for.
  const pre = Math.min(req.preRollMs ?? policy.preRollMs, policy.maxLengthMs);
  const post = req.postRollMs ?? policy.postRollMs;
  const start = req.atMs - pre;
  const end = Math.min(req.atMs + post, start + policy.maxLengthMs);
  // Two incidents in one second share a stamp: a suffix already used is drawn again, so no
  // incident ever replaces another (one in 2^20 a second; the bound only stops a broken random).
  let id = incidentId(req.atMs, ids.random);
  for (let i = 0; ids.taken?.(id) && i < 1_000; i++) id = incidentId(req.atMs, ids.random);
  if (ids.taken?.(id)) throw new Error(`no free incident id for ${iso(req.atMs)}`);
  return {
    id,
    node,
    triggers: [trigger(req)],
    cameras: req.cameras && req.cameras.length > 0 ? [...new Set(req.cameras)] : [...enabledCameras],
    window: { start: iso(start), end: iso(end) },
    state: 'active',
    urgent: req.urgent ?? true,
  };
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

/** Active: its window has not yet passed. */
export function isOpen(incident: Incident, nowMs: number): boolean {
  return incident.state === 'active' && Date.parse(incident.window.end) > nowMs;
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
