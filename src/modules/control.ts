// The local control socket (supervised): on-site tools and the demo send commands over it.
// Built from `control`; a socket that cannot be opened is the `control` fault and is retried.
import type { Config } from '../config/schema.js';
import type { CommandHandlers } from '../commands/handlers.js';
import { ControlSocket } from '../control/socket.js';
import { Supervised } from '../lifecycle/supervisor.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface ControlDeps extends ModuleBase {
  control: Config['control'];
  /** Every module's commands (the socket starts after all of them are registered). */
  handlers: CommandHandlers;
}

export function controlModule(deps: ControlDeps): AgentModule {
  const { faults, log } = deps;
  const socket = new Supervised({
    name: 'control', faults, log,
    build: (fail) => new ControlSocket({ path: deps.control.socket, handlers: deps.handlers, log: log.child({ component: 'control' }), onFailure: fail }),
  });
  return { name: 'control', components: [socket] };
}
