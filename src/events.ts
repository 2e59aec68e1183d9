// The agent's typed event bus (CONTRACT §3 event types). Listeners cannot throw into the
// emitter: a failing listener is logged and the others still run.
import type { Logger } from './platform/logger.js';

export interface AgentEvents {
  'camera.up': { camera: string; reason: string };
  'camera.down': { camera: string; reason: string };
  /** Room short, or (a button lock, CONTRACT §6) more pinned than incident.maxLockedPercent allows. */
  'storage.pressure': { shortfallBytes: number; quotaBytes: number; usedBytes: number; pinnedBytes?: number; maxLockedPercent?: number; incident?: string };
  'storage.full': { shortfallBytes: number; quotaBytes: number; usedBytes: number; lockedBytes: number };
  'incident.locked': { incident: string };
  'incident.extended': { incident: string };
  'incident.sealed': { incident: string };
  'incident.disposed': { incident: string };
  'incident.synced': { incident: string };
  /**
   * Footage handed over on a legal basis (CONTRACT §7); `n` numbers its record. Every viewer
   * reads events: the reference and agency stay in the record, the book and the audit log.
   */
  'incident.disclosed': { incident: string; n: number; legalBasis: string };
  'incident.damaged': { incident: string; reason: string };
  'sync.failed': { incident: string; reason: string; permanent: boolean };
  'button.pressed': { at: string };
  'component.failed': { component: string; message: string; incident?: string };
  'component.recovered': { component: string; message: string; incident?: string };
  /** A sealed incident gained files (a note's record): uploaded again, only what is new. Not forwarded. */
  'incident.grew': { incident: string };
  /** A record was queued for upload on its own (CONTRACT §7: a disclosure, a key): send it now. Not forwarded. */
  'upstream.queued': { key: string };
  /** The key history gained keys found upstream (an earlier SD card's): the status says so again. Not forwarded. */
  'keys.learned': { keys: number };
  /** A spool file that is not audio, set aside in calls/rejected/ as `name` (CONTRACT §8). */
  'calls.rejected': { file: string; reason: string; name: string };
  'segment.finished': { camera: string; seq: number; startMs: number; durationMs: number; bytes: number };
}

type Listener<T> = (payload: T) => void;

export class EventBus {
  private readonly listeners = new Map<keyof AgentEvents, Set<Listener<never>>>();
  constructor(private readonly log: Logger) {}

  on<K extends keyof AgentEvents>(type: K, listener: Listener<AgentEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof AgentEvents>(type: K, payload: AgentEvents[K]): void {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        (listener as Listener<AgentEvents[K]>)(payload);
      } catch (err) {
        this.log.error({ err, event: type }, 'event listener failed');
      }
    }
  }
}
