// The config in force, to central ops (CONTRACT §9 Config push): `config {get}` shows it with
// its secrets as `***`, where it came from and its sha256; `config {compare}` names the paths at
// which a candidate differs, validated exactly as a push would be. Pushing (`yaml`) and `reset`
// are answered as not available here until the trial that applies them exists.
import { CommandError } from '../commands/protocol.js';
import type { CommandTable } from '../commands/handlers.js';
import { ConfigError } from '../config/load.js';
import { configSha256, redactConfig, type ConfigInForce, type ConfigSource } from '../config/identity.js';
import { differingPaths, preparePush } from '../config/push.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface ConfigModuleDeps extends ModuleBase {
  inForce: ConfigInForce;
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
  const { inForce, hashKey } = deps;
  const sha256 = configSha256(inForce.config, hashKey);
  const identity = (): ConfigIdentity => ({ sha256, source: inForce.source });
  const commands: CommandTable = {
    config: async (a) => {
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
      throw new CommandError('bad_request', 'config: pushing a config and reset are not available on this node yet (get and compare are)');
    },
  };
  return { name: 'config', components: [], commands, identity };
}
