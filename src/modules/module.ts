// One module per domain (recording, incidents, sync, fleet, control; custody, calls and deploy
// as they come), in the spirit of Zigbee2MQTT's extensions: each builds its components from its
// slice of the config with one typed deps object, and says which commands it answers. The agent
// only lists the modules and starts what they built, in order.
import type { EventBus } from '../events.js';
import type { CommandTable } from '../commands/handlers.js';
import type { Component } from '../lifecycle/component.js';
import type { Faults } from '../lifecycle/faults.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';

/** What every module is given besides its own slice of the config. */
export interface ModuleBase {
  clock: Clock;
  log: Logger;
  events: EventBus;
  faults: Faults;
  /** Aborted when the agent stops. */
  signal: AbortSignal;
}

export interface AgentModule {
  readonly name: string;
  /**
   * Started before every module's `components`: what must hear the others from their first
   * moment (the fleet's event outbox: a fault reported at start is still delivered).
   */
  readonly early?: readonly Component[];
  /** In start order; stopped in reverse. */
  readonly components: readonly Component[];
  /** The commands this module answers (CONTRACT §3). */
  readonly commands?: CommandTable;
}
