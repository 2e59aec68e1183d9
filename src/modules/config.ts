// The config in force, to central ops (CONTRACT §9 Config push): `config {get}` shows it with
// its secrets as `***`, where it came from and its sha256; `config {compare}` names the paths at
// which a candidate differs, validated exactly as a push would be; `config {yaml}` and
// `config {reset}` start a trial (deploy/config-trial.ts) and answer at once.
import { CommandError } from '../commands/protocol.js';
import { whoAsks, type CommandTable } from '../commands/handlers.js';
import { ConfigError } from '../config/load.js';
import { configSha256, redactConfig, type ConfigInForce, type ConfigSource } from '../config/identity.js';
import { differingPaths, preparePush } from '../config/push.js';
import type { AgentModule, ModuleBase } from './module.js';
import type { ConfigTrial } from '../deploy/config-trial.js';

export interface ConfigModuleDeps extends ModuleBase {
  /** The config in force now (a push changes it). */
  inForce(): ConfigInForce;
  /** Where pushes and resets are tried (deploy/config-trial.ts). */
  trial: Pick<ConfigTrial, 'push' | 'reset'>;
  /** The node-local key of the config's sha256 (config/identity.ts). */
  hashKey: Uint8Array;
}

export interface ConfigIdentity { sha256: string; source: ConfigSource }

export interface ConfigModule extends AgentModule {
  identity(): ConfigIdentity;
}

/** A config that failed validation: bad_request with one `<path>: <message>` per line. */
function refused(err: unknown): never {
  if (err instanceof ConfigError) throw new CommandError('bad_request', err.problems.join('\n'));
  throw err;
}

export function configModule(deps: ConfigModuleDeps): ConfigModule {
  const { hashKey, trial } = deps;
  // Its sha256, once per config in force (every status carries it).
  let known: { inForce: ConfigInForce; sha256: string } | undefined;
  const identity = (): ConfigIdentity => {
    const inForce = deps.inForce();
    if (known?.inForce !== inForce) known = { inForce, sha256: configSha256(inForce.config, hashKey) };
    return { sha256: known.sha256, source: inForce.source };
  };
  const commands: CommandTable = {
    config: async (a, ctx) => {
      const inForce = deps.inForce();
      const { sha256 } = identity();
      if (a.get) return { config: redactConfig(inForce.document), source: inForce.source, sha256 };
      if (a.compare !== undefined) {
        let candidate;
        try {
          candidate = preparePush(a.compare, inForce);
        } catch (err) {
          refused(err);
        }
        return { differs: differingPaths(inForce.config, candidate.config), sha256, candidateSha256: configSha256(candidate.config, hashKey) };
      }
      try {
        const who = { ...whoAsks(ctx, undefined, false), ...(ctx.jws ? { jws: ctx.jws } : {}) };
        return a.reset ? await trial.reset(who) : await trial.push(a.yaml ?? '', who);
      } catch (err) {
        refused(err);
      }
    },
  };
  return { name: 'config', components: [], commands, identity };
}
