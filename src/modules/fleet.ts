// The fleet link (supervised): events go through a durable outbox to the broker in order, state
// and status are published, commands come in on the shared handlers. Built from `mqtt`; MQTT.js
// is loaded only when a node has one. A link that cannot start (a missing certificate file,
// say) is the `fleet` fault and is retried; the broker being down is not a fault: the link
// reconnects by itself and the outbox keeps every event meanwhile.
import type { AuditLog } from '../audit/log.js';
import type { Config } from '../config/schema.js';
import type { AgentEvents } from '../events.js';
import type { CommandHandlers } from '../commands/handlers.js';
import type { Component } from '../lifecycle/component.js';
import { Supervised } from '../lifecycle/supervisor.js';
import { iso } from '../platform/clock.js';
import type { FleetLink } from '../fleet/link.js';
import { EventOutbox } from '../fleet/outbox.js';
import { RefusalTally } from '../fleet/refusals.js';
import type { EventType, StatePayload } from '../fleet/topics.js';
import { VERSION } from '../version.js';
import type { AgentModule, ModuleBase } from './module.js';

/** The agent events central ops receive (CONTRACT §3). */
export const FLEET_EVENTS = [
  'incident.locked', 'incident.extended', 'incident.sealed', 'incident.synced', 'incident.disposed', 'incident.damaged',
  'incident.disclosed', 'camera.down', 'camera.up', 'storage.full', 'sync.failed', 'button.pressed',
  'component.failed', 'component.recovered', 'calls.rejected', 'config.committed', 'config.rolledBack',
  'update.committed', 'update.rolledBack',
] as const satisfies readonly (keyof AgentEvents & EventType)[];

export interface FleetDeps extends ModuleBase {
  mqtt: NonNullable<Config['mqtt']>;
  fleet: Config['fleet'];
  node: Config['node'];
  audit: Pick<AuditLog, 'append'>;
  clockSynced(): boolean | null;
  /** Every module's commands (the link starts after all of them are registered). */
  handlers: CommandHandlers;
  state(): Promise<StatePayload>;
  publicKey: string;
  /** Every node key ever used (CONTRACT §7). */
  keys(): { publicKey: string; firstUsed: string }[];
  /** The config in force (CONTRACT §9), for the status. */
  config(): { sha256: string; source: 'file' | 'pushed' };
}

export interface FleetModule extends AgentModule {
  /** Publishes the state now (the `state` command); undefined while the link is down. */
  publishState(): Promise<StatePayload | undefined>;
  /** Whether the broker link is up now (a pushed config proves itself with it). */
  connected(): boolean;
}

export function fleetModule(deps: FleetDeps): FleetModule {
  const { mqtt, node, clock, log, events, faults } = deps;
  const outbox = new EventOutbox({ stateDir: node.stateDir, clock, log: log.child({ component: 'outbox' }) });
  const signing = mqtt.requireSignedCommands;
  const refusals = new RefusalTally({ audit: deps.audit, clock, log: log.child({ component: 'fleet' }) });
  const link = new Supervised<FleetLink>({
    name: 'fleet', faults, log,
    build: async () => {
      const { FleetLink } = await import('../fleet/link.js');
      // The fleet CA unreadable: the `fleet` fault, retried; commands are never taken unchecked.
      const trust = signing
        ? await (await import('../fleet/trust.js')).loadTrust({ nodeId: node.id, stateDir: node.stateDir, mqtt, fleet: deps.fleet, clock, clockSynced: deps.clockSynced, log: log.child({ component: 'fleet' }) })
        : undefined;
      const since = iso(clock.now());
      if (!signing) log.warn('mqtt.requireSignedCommands is false: every MQTT command is taken unsigned, with every role (test brokers only)');
      return new FleetLink({
        config: mqtt, nodeId: node.id, handlers: deps.handlers, outbox,
        state: deps.state,
        status: () => {
          const config = deps.config();
          return { version: VERSION, since, publicKey: deps.publicKey, keys: deps.keys(), ...(signing ? { commands: 'signed' as const } : {}), configSha256: config.sha256, configSource: config.source };
        },
        log: log.child({ component: 'fleet' }),
        signed: trust ? { ...trust, refused: (reason) => refusals.add(reason) } : undefined,
      });
    },
  });

  // Started with the outbox, before every other module: what they emit at start is kept.
  const offs: (() => void)[] = [];
  const forwarder: Component = {
    name: 'event-forwarder',
    async start() {
      offs.push(events.on('keys.learned', () => {
        link.current()?.publishStatus().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'status not published'));
      }));
      for (const type of FLEET_EVENTS) {
        offs.push(events.on(type, (payload) => {
          outbox.add(type, { ...payload }).catch((err: unknown) => log.error({ err, type }, 'event not queued'));
          link.current()?.stateChanged();
        }));
      }
    },
    async stop() {
      for (const off of offs.splice(0)) off();
    },
  };

  return {
    name: 'fleet',
    early: [outbox, forwarder],
    components: [refusals, link],
    publishState: async () => link.current()?.publishState(),
    connected: () => link.current()?.connected() ?? false,
  };
}
