// What the metrics exporter knows of the fleet (CONTRACT §9 Metrics): each node's last retained
// status and state, when it was last heard, its last event id and how many events of each type
// it sent while the exporter watched. Fed from MQTT messages, read at each scrape. A node that
// goes silent stays (offline) until `forgetAfterMs`, so an alert on it keeps firing; then it goes.
// Memory is bounded: a node costs its last status and state (a few kB) and a counter per event
// type, and event types outside the contract's list are counted as `other`.
import type { EventType, StatePayload, StatusPayload } from '../../fleet/topics.js';

/** Event types counted by name (CONTRACT §3); any other is `other`. */
export const EVENT_TYPES: readonly (EventType | 'config.committed' | 'config.rolledBack' | 'update.committed' | 'update.rolledBack')[] = [
  'incident.locked', 'incident.extended', 'incident.sealed', 'incident.synced', 'incident.disposed', 'incident.damaged', 'incident.disclosed',
  'camera.down', 'camera.up', 'storage.pressure', 'storage.full', 'sync.failed', 'button.pressed',
  'component.failed', 'component.recovered', 'calls.rejected',
  'config.committed', 'config.rolledBack', 'update.committed', 'update.rolledBack',
];
const KNOWN_EVENTS = new Set<string>(EVENT_TYPES);

export interface NodeRecord {
  node: string;
  status?: StatusPayload;
  state?: StatePayload;
  /** When anything was last heard from it (epoch ms, the exporter's clock). */
  lastSeenMs: number;
  lastEventId: number | null;
  events: Map<string, number>;
  /** Created by this message: its first sign of life sets lastSeenMs, later ones only raise it. */
  fresh: boolean;
}

/** The most nodes kept (about 20 MB at 1,000); beyond it the longest silent goes first (a broker flooded with ids). */
export const MAX_NODES = 5_000;
/** Node ids as the fleet names them; anything else on the topics is ignored. */
const NODE_ID = /^[a-z0-9-]{1,64}$/;

export class FleetModel {
  private readonly nodes = new Map<string, NodeRecord>();

  constructor(private readonly opts: { forgetAfterMs: number; maxNodes?: number }) {}

  /**
   * One status or state, or one event, as it arrived. `retained`: replayed by the broker on
   * subscribing, so not a sign of life now — a retained state counts from its own `ts`, and a
   * retained status not at all (a node that lost power while the broker was down leaves an
   * `online: true` behind with no will to replace it). Returns false for what it ignored.
   */
  apply(kind: 'status' | 'state' | 'events', node: string, payload: Buffer, nowMs: number, retained = false): boolean {
    if (!NODE_ID.test(node)) return false;
    // A retained message cleared (an empty payload): the node was removed from the broker.
    if (payload.length === 0) {
      if (kind === 'status') this.nodes.delete(node);
      return false;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(payload.toString('utf8'));
    } catch {
      return false;
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
    const rec = this.record(node, nowMs);
    if (kind === 'status') {
      const status = doc as StatusPayload;
      if (typeof status.online !== 'boolean') return false;
      // A will says only {"online": false}: the node's version and config stay as they were.
      rec.status = status.online ? status : { ...rec.status, ...status };
    } else if (kind === 'state') {
      if (!Array.isArray((doc as StatePayload).cameras)) return false;
      rec.state = doc as StatePayload;
    } else {
      const e = doc as { id?: unknown; type?: unknown };
      if (typeof e.type !== 'string') return false;
      if (Number.isSafeInteger(e.id)) {
        // Ids rise by one per event (CONTRACT §3): a redelivery or an outbox resend is not counted again.
        if (rec.lastEventId !== null && (e.id as number) <= rec.lastEventId) return false;
        rec.lastEventId = e.id as number;
      }
      const type = KNOWN_EVENTS.has(e.type) ? e.type : 'other';
      rec.events.set(type, (rec.events.get(type) ?? 0) + 1);
    }
    // A will ({"online": false}) is the broker speaking for a node gone: not a sign of life.
    if (kind === 'status' && (rec.status?.online === false || retained)) return true;
    let seenMs = nowMs;
    if (retained && kind === 'state') {
      const ts = Date.parse(rec.state?.ts ?? '');
      seenMs = Number.isNaN(ts) ? rec.lastSeenMs : Math.min(ts, nowMs);
    }
    if (rec.fresh) {
      rec.lastSeenMs = seenMs;
      rec.fresh = false;
    } else {
      rec.lastSeenMs = Math.max(rec.lastSeenMs, seenMs);
    }
    return true;
  }

  private record(node: string, nowMs: number): NodeRecord {
    let rec = this.nodes.get(node);
    if (!rec) {
      // Every known event type from 0: an alert on increase() sees the first one too.
      rec = { node, lastSeenMs: nowMs, lastEventId: null, events: new Map(EVENT_TYPES.map((t) => [t, 0])), fresh: true };
      this.nodes.set(node, rec);
      const max = this.opts.maxNodes ?? MAX_NODES;
      if (this.nodes.size > max) {
        let oldest: NodeRecord | undefined;
        for (const r of this.nodes.values()) if (r !== rec && (!oldest || r.lastSeenMs < oldest.lastSeenMs)) oldest = r;
        if (oldest) this.nodes.delete(oldest.node);
      }
    }
    return rec;
  }

  /** Drops the nodes silent for longer than `forgetAfterMs`; returns how many went. */
  forget(nowMs: number): number {
    let n = 0;
    for (const [node, rec] of this.nodes) {
      if (nowMs - rec.lastSeenMs > this.opts.forgetAfterMs) {
        this.nodes.delete(node);
        n++;
      }
    }
    return n;
  }

  list(): readonly NodeRecord[] {
    return [...this.nodes.values()];
  }

  get size(): number {
    return this.nodes.size;
  }
}
