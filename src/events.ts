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
  /** A pushed config (or `config reset`) proved itself within its trial: in force from now on (CONTRACT §9). */
  'config.committed': { sha256: string; source: 'file' | 'pushed' };
  /** A pushed config (or reset) did not prove itself: the previous one is back in force (CONTRACT §9). */
  'config.rolledBack': { sha256: string; reason: string };
  /** A new release proved itself (CONTRACT §9 Update): it stays. */
  'update.committed': { version: string; previous: string };
  /** A new release did not prove itself (or did not start): the launcher switched back (CONTRACT §9). */
  'update.rolledBack': { version: string; reason: string };
}

type Listener<T> = (payload: T) => void;

interface Held { seq: number; type: keyof AgentEvents; payload: unknown }

/** Events held while a pushed config rebuilds the services (seconds): far more than that ever emits. */
const MAX_HELD = 10_000;

export class EventBus {
  private readonly listeners = new Map<keyof AgentEvents, Set<Listener<never>>>();
  /** Every emit's number: a scope replays what was emitted before its listeners existed. */
  private seq = 0;
  private held: Held[] | null = null;

  constructor(private readonly log: Logger) {}

  on<K extends keyof AgentEvents>(type: K, listener: Listener<AgentEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof AgentEvents>(type: K, payload: AgentEvents[K]): void {
    this.seq += 1;
    if (this.held) {
      // Bounded: a rebuild that never completes must not hold the process's memory.
      if (this.held.length >= MAX_HELD) this.held.shift();
      this.held.push({ seq: this.seq, type, payload });
    }
    for (const listener of this.listeners.get(type) ?? []) this.deliver(type, listener as Listener<AgentEvents[K]>, payload);
  }

  /**
   * Listeners that go together (a set of modules rebuilt when a pushed config is applied):
   * `close()` removes them all. Events emitted while the bus was held and before a listener of
   * the scope existed are replayed to it by `release(scope)` — none is lost in the rebuild.
   */
  scope(): EventScope {
    return new EventScope(this, this.log);
  }

  /** From now on, every emit is kept for the next scope (see `release`). */
  hold(): void {
    this.held ??= [];
  }

  /** Ends the hold: each kept event goes to the scope's listeners that did not exist when it was emitted. */
  release(scope: EventScope): void {
    const held = this.held ?? [];
    this.held = null;
    for (const e of held) scope.replay(e.seq, e.type, e.payload);
  }

  /** The number of the last emit. */
  lastSeq(): number {
    return this.seq;
  }

  deliver<K extends keyof AgentEvents>(type: K, listener: Listener<AgentEvents[K]>, payload: AgentEvents[K]): void {
    try {
      listener(payload);
    } catch (err) {
      this.log.error({ err, event: type }, 'event listener failed');
    }
  }
}

/** A bus for a set of modules: emits go to the whole bus, listeners are removed together. */
export class EventScope extends EventBus {
  private readonly mine: { type: keyof AgentEvents; listener: Listener<never>; since: number; off: () => void }[] = [];

  constructor(private readonly root: EventBus, log: Logger) {
    super(log);
  }

  override on<K extends keyof AgentEvents>(type: K, listener: Listener<AgentEvents[K]>): () => void {
    const off = this.root.on(type, listener);
    const entry = { type, listener: listener as Listener<never>, since: this.root.lastSeq(), off };
    this.mine.push(entry);
    return () => {
      off();
      const i = this.mine.indexOf(entry);
      if (i >= 0) this.mine.splice(i, 1);
    };
  }

  override emit<K extends keyof AgentEvents>(type: K, payload: AgentEvents[K]): void {
    this.root.emit(type, payload);
  }

  /** Delivers a held event to each listener of this scope registered after it was emitted. */
  replay(seq: number, type: keyof AgentEvents, payload: unknown): void {
    for (const m of this.mine) {
      if (m.type === type && m.since >= seq) this.root.deliver(type, m.listener as Listener<unknown>, payload as never);
    }
  }

  close(): void {
    for (const m of this.mine.splice(0)) m.off();
  }
}
