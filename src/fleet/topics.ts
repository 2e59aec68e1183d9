// The MQTT topic map (CONTRACT §3), shared by the node and `camnode ctl`: one place says which
// topic carries which payload.
import type { Incident } from '../incidents/incident.js';
import type { CommandName } from '../commands/protocol.js';
import type { Fault } from '../lifecycle/faults.js';

export interface StatusPayload {
  online: boolean;
  version?: string;
  since?: string;
  publicKey?: string;
  /** Every node key ever used, oldest first (CONTRACT §7): old manifests verify after an SD card swap. */
  keys?: { publicKey: string; firstUsed: string }[];
  /** "signed": commands must be signed (CONTRACT §7); absent: the node takes them unsigned. */
  commands?: 'signed';
  /** The config in force (CONTRACT §9): its sha256 and whether it is the file or a push. */
  configSha256?: string;
  configSource?: 'file' | 'pushed';
}

export interface CameraState {
  id: string;
  state: 'recording' | 'connecting' | 'stalled' | 'disabled' | 'error';
  lastSegmentAt: string | null;
  kbps: number | null;
  restarts: number;
}

export interface SyncProgress {
  incident: string;
  bytesSent: number;
  bytesTotal: number;
  rateBps: number;
  etaS: number | null;
}

export interface StatePayload {
  ts: string;
  /** The last audit head the node signed upstream (CONTRACT §7); only on a node with an upstream, null before its first. */
  audit?: { logId: string; seq: number; head: string; at: string } | null;
  cameras: CameraState[];
  storage: {
    quotaBytes: number | null;
    usedBytes: number | null;
    lockedBytes: number | null;
    freeBytes: number | null;
    oldestAt: string | null;
    retainedSeconds: number | null;
  };
  incidents: { active: number; held: number; unsynced: number; damaged: number };
  /** The policy's attestations (CONTRACT §7); absent from nodes of earlier releases. */
  policy?: { signage: 'ok' | 'missing' | 'overdue' };
  /** Whether the config in force is the file or a push (CONTRACT §9); absent from earlier releases. */
  configSource?: 'file' | 'pushed';
  /** A pushed config (or a reset) on trial now (CONTRACT §9): its sha256 and when it is rolled back unless proven. */
  configTrial?: { sha256: string; until: string };
  /** A new release on trial (CONTRACT §9 Update): committed once proven, else the launcher switches back to `previous`. */
  updateTrial?: { version: string; previous: string };
  /** Cameras a pushed config restarted in this run, and each one's gap (null until its first new segment). */
  restartedCameras?: { camera: string; at: string; gapMs: number | null }[];
  /** The call recordings in the ring (CONTRACT §8); only on a node with `calls` configured. */
  calls?: { files: number; bytes: number; oldest: string | null; waiting: number; rejected: number };
  sync: { queued: number; bytesPending: number; lastError: string | null; current: SyncProgress | null };
  health: {
    load: number | null;
    memUsedPct: number | null;
    tempC: number | null;
    throttled: boolean | null;
    uptimeS: number | null;
    clockSynced: boolean | null;
    /** Parts of the agent failing now (CONTRACT §5). */
    faults: Fault[];
  };
}

export type EventType =
  | 'incident.locked' | 'incident.extended' | 'incident.sealed' | 'incident.synced' | 'incident.disposed' | 'incident.damaged' | 'incident.disclosed'
  | 'camera.down' | 'camera.up' | 'storage.pressure' | 'storage.full' | 'sync.failed' | 'button.pressed'
  | 'component.failed' | 'component.recovered' | 'calls.rejected' | 'config.committed' | 'config.rolledBack'
  | 'update.committed' | 'update.rolledBack';

export interface EventPayload {
  id: number;
  type: EventType;
  ts: string;
  [field: string]: unknown;
}

export type ReplyPayload = { ok: true; data: unknown } | { ok: false; error: { code: string; message: string } };

/** The 3.1.1 form of a reply carries the request's id. */
export type ReplyWithId = ReplyPayload & { id?: unknown };

export type { Incident };

export class Topics {
  constructor(readonly prefix: string) {}

  node(node: string): string { return `${this.prefix}/${node}`; }
  status(node: string): string { return `${this.prefix}/${node}/status`; }
  state(node: string): string { return `${this.prefix}/${node}/state`; }
  events(node: string): string { return `${this.prefix}/${node}/events`; }
  command(node: string, name: CommandName | '+'): string { return `${this.prefix}/${node}/cmd/${name}`; }
  /** Requesters pick reply topics here: a broker's ACL confines a node to its own subtree. */
  replyBase(node: string): string { return `${this.prefix}/${node}/reply`; }

  /** Where a principal's replies go (only it may read them): `<prefix>/<node>/reply/<CN>`. */
  principalReplyBase(node: string, cn: string): string { return `${this.replyBase(node)}/${cn}`; }
  /** The fleet's own subtree: the retained CRL, written by admins, read by all. */
  fleetCrl(): string { return `${this.prefix}/_fleet/crl`; }
  /** ctl's markers, each principal under its own CN. */
  ctlBase(cn: string): string { return `${this.prefix}/_ctl/${cn}`; }

  allStatus(): string { return `${this.prefix}/+/status`; }
  allState(): string { return `${this.prefix}/+/state`; }
  allEvents(): string { return `${this.prefix}/+/events`; }

  /** `{node, kind, rest}` of a topic under the prefix, or null. */
  parse(topic: string): { node: string; kind: string; rest: string[] } | null {
    if (!topic.startsWith(`${this.prefix}/`)) return null;
    const parts = topic.slice(this.prefix.length + 1).split('/');
    if (parts.length < 2 || !parts[0] || !parts[1]) return null;
    return { node: parts[0], kind: parts[1], rest: parts.slice(2) };
  }

  /** A reply topic for a principal's signed command: under reply/<CN>/, one level or more below it. */
  isPrincipalReplyTopic(node: string, cn: string, topic: string): boolean {
    return this.isOwnReplyTopic(node, topic) && topic.startsWith(`${this.principalReplyBase(node, cn)}/`) && topic.length > this.principalReplyBase(node, cn).length + 1;
  }

  /** A reply topic a node may publish to: under its own reply subtree, no wildcards. */
  isOwnReplyTopic(node: string, topic: string): boolean {
    const base = `${this.replyBase(node)}/`;
    return topic.startsWith(base) && topic.length > base.length && !topic.includes("+") && !topic.includes("#") && !topic.includes(String.fromCharCode(0));
  }
}
