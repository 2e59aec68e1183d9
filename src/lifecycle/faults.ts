// What is wrong with the agent right now (CONTRACT §5): each part that fails is listed in the
// state's `health.faults` and announced once by `component.failed`, and `component.recovered`
// says when it works again. A fault names a fixed component (`sync`, `fleet`, `sealer`, …) and,
// for an incident that cannot seal, the incident.
import type { EventBus } from '../events.js';
import { iso, type Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';

export interface Fault {
  component: string;
  since: string;
  message: string;
  incident?: string;
}

/** Messages longer than this are cut: a fault travels in every state document. */
const MAX_MESSAGE = 500;

export function faultMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message;
}

export class Faults {
  private readonly open = new Map<string, Fault>();

  constructor(private readonly deps: { clock: Clock; events: EventBus; log: Logger }) {}

  /** The part is failing. Said once; a later report only updates the message. */
  report(component: string, err: unknown, incident?: string): void {
    const key = incident ? `${component}/${incident}` : component;
    const message = faultMessage(err);
    const known = this.open.get(key);
    if (known) {
      known.message = message;
      return;
    }
    this.open.set(key, { component, since: iso(this.deps.clock.now()), message, ...(incident ? { incident } : {}) });
    this.deps.log.error({ component, incident, reason: message }, 'component failed');
    this.deps.events.emit('component.failed', { component, message, ...(incident ? { incident } : {}) });
  }

  /** The part works again (nothing happens if it was not failing). */
  clear(component: string, incident?: string): void {
    const key = incident ? `${component}/${incident}` : component;
    const known = this.open.get(key);
    if (!known) return;
    this.open.delete(key);
    const message = `working again after: ${known.message}`;
    this.deps.log.info({ component, incident, since: known.since }, 'component recovered');
    this.deps.events.emit('component.recovered', { component, message, ...(incident ? { incident } : {}) });
  }

  /** Whether the part (any of its incidents, for the sealer) is failing now. */
  failing(component: string): Fault | undefined {
    for (const f of this.open.values()) if (f.component === component) return f;
    return undefined;
  }

  list(): Fault[] {
    return [...this.open.values()].map((f) => ({ ...f }));
  }
}
