// Sync (supervised): sealed incidents go upstream. Built from `upstream`; a target that cannot
// be built at start (an unreadable credentials file, say) is the `sync` fault, retried with
// backoff and at once by the `sync` command, while everything else runs.
import type { Config } from '../config/schema.js';
import { CommandError } from '../commands/protocol.js';
import { Supervised } from '../lifecycle/supervisor.js';
import type { IncidentBook } from '../incidents/book.js';
import type { DamagedIncidents } from '../incidents/damaged.js';
import { EMPTY_SYNC } from '../fleet/state.js';
import type { StatePayload } from '../fleet/topics.js';
import { Syncer } from '../sync/syncer.js';
import { createStore } from '../sync/target.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface SyncDeps extends ModuleBase {
  config: Pick<Config, 'upstream' | 'node'>;
  book: IncidentBook;
  damaged: Pick<DamagedIncidents, 'has' | 'setAside'>;
  /** storage.path/incidents */
  sealedDir: string;
}

export interface SyncModule extends AgentModule {
  status(): StatePayload['sync'];
}

export function syncModule(deps: SyncDeps): SyncModule {
  const { config, log, clock, events, faults } = deps;
  const upstream = config.upstream;
  if (upstream.type === 'none') {
    return { name: 'sync', components: [], commands: { sync: async () => ({ queued: 0 }) }, status: () => EMPTY_SYNC };
  }
  const syncLog = log.child({ component: 'sync' });
  const openStore = async (): Promise<NonNullable<Awaited<ReturnType<typeof createStore>>>['store']> => (await createStore(config))!.store;
  const syncer = new Supervised({
    name: 'sync', faults, log,
    build: (fail) => new Syncer({
      openStore, keyPrefix: `${upstream.prefix}/${config.node.id}`, book: deps.book, damaged: deps.damaged, sealedDir: deps.sealedDir, stateDir: config.node.stateDir,
      maxRateBps: upstream.maxRate, window: upstream.window,
      clock, log: syncLog, events, onFailure: fail,
    }),
  });
  syncLog.info({ upstream: upstream.type === 'dir' ? upstream.path : `s3://${upstream.bucket}`, maxRate: upstream.maxRate ?? null, window: upstream.window ?? null }, 'upstream sync');
  return {
    name: 'sync',
    components: [syncer],
    commands: {
      // Retry now: a failing target is built again (a fixed credentials file needs no restart).
      sync: async () => {
        await syncer.retryNow();
        const running = syncer.current();
        if (!running) throw new CommandError('internal', `sync cannot start: ${faults.failing('sync')?.message ?? 'unknown error'}`);
        return { queued: await running.retryNow() };
      },
    },
    status: () => {
      const running = syncer.current();
      if (running) return running.status();
      return { ...EMPTY_SYNC, lastError: faults.failing('sync')?.message ?? null };
    },
  };
}
