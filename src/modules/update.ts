// Updates (CONTRACT §9 Update): the `update {version}` command. The trial of a new release and
// the fetching live in the agent's core (deploy/update.ts), which outlives a pushed config.
import { whoAsks } from '../commands/handlers.js';
import type { Updates } from '../deploy/update.js';
import type { AgentModule } from './module.js';

export function updateModule(deps: { updates: Pick<Updates, 'request'> }): AgentModule {
  return { name: 'update', components: [], commands: {
    update: async ({ version }, ctx) => deps.updates.request(version, { ...whoAsks(ctx, undefined, false), ...(ctx.jws ? { jws: ctx.jws } : {}) }),
  } };
}
