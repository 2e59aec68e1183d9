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
import { keyStamp, type KeyHistory } from '../audit/key-history.js';
import type { AuditLog } from '../audit/log.js';
import type { NodeKey } from '../audit/keys.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface SyncDeps extends ModuleBase {
  config: Pick<Config, 'upstream' | 'node' | 'audit'>;
  book: IncidentBook;
  damaged: Pick<DamagedIncidents, 'has' | 'setAside'>;
  /** storage.path/incidents */
  sealedDir: string;
  /** Learns the keys published upstream (an earlier SD card's) once the node's own records are up. */
  keyHistory: Pick<KeyHistory, 'learnFrom' | 'list' | 'own'>;
  /** The audit log goes upstream too (CONTRACT §7), signed with the node's key. */
  audit: AuditLog;
  key: Pick<NodeKey, 'publicKeyBase64' | 'sign'>;
}

export interface SyncModule extends AgentModule {
  status(): StatePayload['sync'];
  /** The last audit head signed upstream; undefined without an upstream. */
  auditHead(): StatePayload['audit'];
}

export function syncModule(deps: SyncDeps): SyncModule {
  const { config, log, clock, events, faults } = deps;
  const upstream = config.upstream;
  if (upstream.type === 'none') {
    return { name: 'sync', components: [], commands: { sync: async () => ({ queued: 0 }) }, status: () => EMPTY_SYNC, auditHead: () => undefined };
  }
  const syncLog = log.child({ component: 'sync' });
  const keyPrefix = `${upstream.prefix}/${config.node.id}`;
  const openStore = async (): Promise<NonNullable<Awaited<ReturnType<typeof createStore>>>['store']> => (await createStore(config))!.store;
  const syncer = new Supervised({
    name: 'sync', faults, log,
    build: (fail) => new Syncer({
      openStore, keyPrefix, book: deps.book, damaged: deps.damaged, sealedDir: deps.sealedDir, stateDir: config.node.stateDir,
      maxRateBps: upstream.maxRate, window: upstream.window,
      clock, log: syncLog, events, onFailure: fail,
    }),
  });
  // Loaded only on a node with an upstream: an agent without one carries none of this code.
  const records = new Supervised({
    name: 'records', faults, log,
    build: async () => new (await import('../sync/records.js')).RecordPublisher({
      stateDir: config.node.stateDir, keyPrefix, openStore, log: log.child({ component: 'records' }),
      onceDrained: async (store) => {
        if (await deps.keyHistory.learnFrom(store, keyPrefix)) events.emit('keys.learned', { keys: deps.keyHistory.list().length });
      },
    }),
  });
  events.on('upstream.queued', () => records.current()?.poke());
  const shipper = new Supervised({
    name: 'audit-upstream', faults, log,
    build: async () => new (await import('../audit/shipper.js')).AuditShipper({
      stateDir: config.node.stateDir, nodeId: config.node.id, audit: deps.audit, key: deps.key,
      logId: () => keyStamp(deps.keyHistory.own().firstUsed),
      headIntervalMs: config.audit?.headInterval ?? 5 * 60_000,
      rotate: (through, opts) => deps.book.settled(() => deps.audit.rotate(through, () => deps.book.list().filter((i) => i.state !== 'disposed'), opts)),
      queued: () => records.current()?.poke(),
      clock, log: log.child({ component: 'audit-upstream' }),
    }),
  });
  syncLog.info({ upstream: upstream.type === 'dir' ? upstream.path : `s3://${upstream.bucket}`, maxRate: upstream.maxRate ?? null, window: upstream.window ?? null }, 'upstream sync');
  return {
    name: 'sync',
    components: [syncer, records, shipper],
    auditHead: () => shipper.current()?.head() ?? null,
    commands: {
      // Retry now: a failing target is built again (a fixed credentials file needs no restart).
      sync: async () => {
        records.current()?.poke();
        await syncer.retryNow();
        const running = syncer.current();
        if (!running) throw new CommandError('internal', `sync cannot start: ${faults.failing('sync')?.message ?? 'unknown error'}`);
        return { queued: await running.retryNow() };
      },
    },
    status: () => {
      const running = syncer.current();
      // The records' own failures are logged, not shown here: `lastError` speaks of queued
      // incidents, and an upstream that fails them fails the next incident too.
      if (running) return running.status();
      return { ...EMPTY_SYNC, lastError: faults.failing('sync')?.message ?? null };
    },
  };
}
