// The node's state document (CONTRACT §3), assembled from what the components report. Pure.
import type { AgentStatus } from '../agent.js';
import { iso } from '../platform/clock.js';
import type { StatePayload } from './topics.js';

export const EMPTY_SYNC: StatePayload['sync'] = { queued: 0, bytesPending: 0, lastError: null, current: null };

export const UNKNOWN_HEALTH: StatePayload['health'] = {
  load: null, memUsedPct: null, tempC: null, throttled: null, uptimeS: null, clockSynced: null, faults: [],
};

export function buildState(nowMs: number, status: AgentStatus, health: StatePayload['health'], sync: StatePayload['sync'] = EMPTY_SYNC, audit?: StatePayload['audit'], policy: StatePayload['policy'] = { signage: 'missing' }, calls?: StatePayload['calls']): StatePayload {
  const s = status.storage;
  return {
    ts: iso(nowMs),
    ...(audit !== undefined ? { audit } : {}),
    cameras: status.cameras.map((c) => ({ id: c.id, state: c.state, lastSegmentAt: c.lastSegmentAt, kbps: c.kbps, restarts: c.restarts })),
    storage: {
      quotaBytes: s?.quotaBytes ?? null,
      usedBytes: s?.usedBytes ?? null,
      lockedBytes: s?.lockedBytes ?? null,
      freeBytes: s?.freeBytes ?? null,
      oldestAt: s?.oldestAt ?? null,
      retainedSeconds: s?.retainedSeconds ?? null,
    },
    incidents: status.incidents,
    ...(calls !== undefined ? { calls } : {}),
    policy,
    sync,
    health,
  };
}
