// The fleet as metrics (CONTRACT §9): what the exporter keeps of each node from its retained
// status and state and its events, and the series a scrape shows. Pure: messages in, text out.
import { describe, expect, it } from 'vitest';
import { FleetModel } from '../../src/ops/metrics/model.js';
import { fleetRegistry } from '../../src/ops/metrics/registry.js';
import type { StatePayload } from '../../src/fleet/topics.js';

const T0 = Date.parse('2026-12-03T12:00:00Z');
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function state(over: Partial<StatePayload> = {}): StatePayload {
  return {
    ts: '2026-12-03T11:59:58.000Z',
    cameras: [
      { id: 'entrance', state: 'recording', lastSegmentAt: '2026-12-03T11:59:50.000Z', kbps: 2010, restarts: 0 },
      { id: 'desk', state: 'stalled', lastSegmentAt: '2026-12-03T11:50:00.000Z', kbps: null, restarts: 3 },
    ],
    storage: { quotaBytes: 190e9, usedBytes: 120e9, lockedBytes: 2.1e9, freeBytes: 60e9, oldestAt: '2026-11-01T08:00:00.000Z', retainedSeconds: 2_865_600 },
    incidents: { active: 1, held: 3, unsynced: 1, damaged: 0 },
    policy: { signage: 'overdue' },
    calls: { files: 12, bytes: 9_600_000, oldest: '2026-11-20T08:00:00.000Z', waiting: 1, rejected: 2 },
    sync: { queued: 1, bytesPending: 350e6, lastError: 'upstream: 503 Slow Down', current: null },
    health: { load: 0.4, memUsedPct: 41.5, tempC: 52.1, throttled: false, uptimeS: 86_400, clockSynced: true, faults: [{ component: 'sync', since: '2026-12-03T11:00:00.000Z', message: 'x' }] },
    ...over,
  } as StatePayload;
}

async function scrape(model: FleetModel, crl: number | null = null): Promise<string> {
  return fleetRegistry(model, { brokerConnected: () => true, subscribed: () => true, crlNextUpdateMs: () => ({ broker: crl, file: null }) }).metrics();
}

/** The value of one series in the text, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('fleet metrics', () => {
  it('shows a node\'s status, state and events as camnode_ series, each labelled with the node', async () => {
    const model = new FleetModel({ forgetAfterMs: 7 * 86_400_000 });
    model.apply('status', 'koelbel-01', json({ online: true, version: '1.2.0', since: '2026-12-01T00:00:00.000Z', configSha256: 'ab12' }), T0);
    model.apply('state', 'koelbel-01', json(state()), T0);
    model.apply('events', 'koelbel-01', json({ id: 41, type: 'camera.down', ts: '…', camera: 'desk' }), T0);
    model.apply('events', 'koelbel-01', json({ id: 42, type: 'sync.failed', ts: '…' }), T0);
    model.apply('events', 'koelbel-01', json({ id: 43, type: 'sync.failed', ts: '…' }), T0);
    model.apply('events', 'koelbel-01', json({ id: 44, type: 'something.new', ts: '…' }), T0);
    const text = await scrape(model, Date.parse('2026-12-08T00:00:00Z'));
    const n = '{node="koelbel-01"}';
    expect(value(text, `camnode_node_online${n}`)).toBe(1);
    expect(value(text, 'camnode_node_info{node="koelbel-01",version="1.2.0",config_sha256="ab12"}')).toBe(1);
    expect(value(text, `camnode_node_last_seen_timestamp_seconds${n}`)).toBe(T0 / 1000);
    expect(value(text, 'camnode_camera_recording{node="koelbel-01",camera="entrance"}')).toBe(1);
    expect(value(text, 'camnode_camera_recording{node="koelbel-01",camera="desk"}')).toBe(0);
    expect(value(text, 'camnode_camera_state{node="koelbel-01",camera="desk",state="stalled"}')).toBe(1);
    expect(value(text, 'camnode_camera_state{node="koelbel-01",camera="desk",state="recording"}')).toBe(0);
    expect(value(text, 'camnode_camera_bitrate_bytes_per_second{node="koelbel-01",camera="entrance"}')).toBe(251_250);
    expect(value(text, 'camnode_camera_bitrate_bytes_per_second{node="koelbel-01",camera="desk"}')).toBeUndefined();
    expect(value(text, 'camnode_camera_restarts_total{node="koelbel-01",camera="desk"}')).toBe(3);
    expect(value(text, `camnode_storage_quota_bytes${n}`)).toBe(190e9);
    expect(value(text, `camnode_storage_retained_seconds${n}`)).toBe(2_865_600);
    expect(value(text, 'camnode_incidents{node="koelbel-01",state="held"}')).toBe(3);
    expect(value(text, `camnode_sync_failing${n}`)).toBe(1);
    expect(value(text, `camnode_sync_pending_bytes${n}`)).toBe(350e6);
    expect(value(text, `camnode_clock_synced${n}`)).toBe(1);
    expect(value(text, `camnode_temperature_celsius${n}`)).toBe(52.1);
    expect(value(text, `camnode_throttled${n}`)).toBe(0);
    expect(value(text, `camnode_memory_used_ratio${n}`)).toBeCloseTo(0.415);
    expect(value(text, `camnode_component_faults${n}`)).toBe(1);
    expect(value(text, 'camnode_component_fault{node="koelbel-01",component="sync"}')).toBe(1);
    expect(value(text, `camnode_signage_ok${n}`)).toBe(0);
    expect(value(text, `camnode_calls_rejected${n}`)).toBe(2);
    expect(value(text, `camnode_last_event_id${n}`)).toBe(44);
    expect(value(text, 'camnode_events_total{node="koelbel-01",type="sync.failed"}')).toBe(2);
    expect(value(text, 'camnode_events_total{node="koelbel-01",type="other"}')).toBe(1);
    // Every known type from 0, so that increase() sees the first storage.full too.
    expect(value(text, 'camnode_events_total{node="koelbel-01",type="storage.full"}')).toBe(0);
    // A redelivered event (the same id) is not counted again.
    model.apply('events', 'koelbel-01', json({ id: 43, type: 'sync.failed', ts: '…' }), T0);
    expect(value(await scrape(model), 'camnode_events_total{node="koelbel-01",type="sync.failed"}')).toBe(2);
    expect(value(text, 'camnode_exporter_nodes')).toBe(1);
    expect(value(text, 'camnode_fleet_crl_next_update_timestamp_seconds{source="broker"}')).toBe(Date.parse('2026-12-08T00:00:00Z') / 1000);
    expect(text).not.toContain('source="file"');
    expect(text).toContain('# TYPE camnode_events_total counter');
    expect(text).toContain('# HELP camnode_storage_retained_seconds');
  });

  it('sync is failing only while incidents wait; a will keeps the node\'s version', async () => {
    const model = new FleetModel({ forgetAfterMs: 60_000 });
    const s = state();
    model.apply('state', 'n1', json({ ...s, sync: { ...s.sync, queued: 0, bytesPending: 0 } }), T0);
    model.apply('status', 'n1', json({ online: true, version: '1.2.0', configSha256: 'ab' }), T0);
    model.apply('status', 'n1', json({ online: false }), T0 + 1);
    const text = await scrape(model);
    expect(value(text, 'camnode_sync_failing{node="n1"}')).toBe(0);
    expect(value(text, 'camnode_node_online{node="n1"}')).toBe(0);
    expect(value(text, 'camnode_node_info{node="n1",version="1.2.0",config_sha256="ab"}')).toBe(1);
  });

  it('unknown figures are left out, not shown as 0 (no sensor, an older node)', async () => {
    const model = new FleetModel({ forgetAfterMs: 60_000 });
    const s = state();
    model.apply('state', 'n1', json({ ...s, calls: undefined, policy: undefined, health: { ...s.health, tempC: null, throttled: null } }), T0);
    const text = await scrape(model);
    expect(value(text, 'camnode_temperature_celsius{node="n1"}')).toBeUndefined();
    expect(value(text, 'camnode_throttled{node="n1"}')).toBeUndefined();
    expect(value(text, 'camnode_calls_files{node="n1"}')).toBeUndefined();
    expect(value(text, 'camnode_node_online{node="n1"}')).toBeUndefined();
    expect(text).not.toMatch(/^camnode_fleet_crl_next_update_timestamp_seconds/m);
  });

  it('a node whose will was published is offline and stays, with its last state, until --forget-after; then it goes', async () => {
    const model = new FleetModel({ forgetAfterMs: 3_600_000 });
    model.apply('status', 'n1', json({ online: true, version: '1.2.0' }), T0);
    model.apply('state', 'n1', json(state()), T0);
    // The broker publishes its will a keepalive later: that is no sign of life.
    model.apply('status', 'n1', json({ online: false }), T0 + 90_000);
    let text = await scrape(model);
    expect(value(text, 'camnode_node_online{node="n1"}')).toBe(0);
    expect(value(text, 'camnode_node_last_seen_timestamp_seconds{node="n1"}')).toBe(T0 / 1000);
    expect(value(text, 'camnode_storage_quota_bytes{node="n1"}')).toBe(190e9);
    expect(model.forget(T0 + 3_000_000)).toBe(0);
    expect(model.forget(T0 + 3_700_000)).toBe(1);
    text = await scrape(model);
    expect(text).not.toContain('node="n1"');
    expect(value(text, 'camnode_exporter_nodes')).toBe(0);
  });

  it('a retained state replayed on subscribing counts from its own time, not as a sign of life now', async () => {
    const model = new FleetModel({ forgetAfterMs: 86_400_000 });
    const old = { ...state(), ts: new Date(T0 - 3 * 86_400_000).toISOString() };
    model.apply('status', 'gone', json({ online: false }), T0, true);
    model.apply('state', 'gone', json(old), T0, true);
    // A retained online status may be one no will replaced (the node lost power while the broker was down).
    model.apply('status', 'stale', json({ online: true }), T0, true);
    model.apply('state', 'stale', json(old), T0, true);
    model.apply('status', 'live', json({ online: true }), T0, true);
    model.apply('state', 'live', json(old), T0, true);
    model.apply('state', 'live', json({ ...old, ts: new Date(T0).toISOString() }), T0);
    const seen = new Map(model.list().map((r) => [r.node, r.lastSeenMs]));
    expect(seen.get('gone')).toBe(T0 - 3 * 86_400_000);
    expect(seen.get('stale')).toBe(T0 - 3 * 86_400_000);
    expect(seen.get('live')).toBe(T0);
    expect(model.forget(T0 + 1)).toBe(2);
    expect(model.list().map((r) => r.node)).toEqual(['live']);
  });

  it('ignores garbage and ids no node can have; a cleared retained status removes the node; the node count is bounded', async () => {
    const model = new FleetModel({ forgetAfterMs: 60_000, maxNodes: 3 });
    expect(model.apply('status', 'n1', Buffer.from('{not json'), T0)).toBe(false);
    expect(model.apply('status', 'n1', json([1, 2]), T0)).toBe(false);
    expect(model.apply('status', 'n1', json({ online: 'yes' }), T0)).toBe(false);
    expect(model.apply('state', 'n1', json({ cameras: 'x' }), T0)).toBe(false);
    expect(model.apply('status', 'Bad Id', json({ online: true }), T0)).toBe(false);
    expect(model.apply('status', 'x'.repeat(65), json({ online: true }), T0)).toBe(false);
    expect(model.size).toBe(1);
    expect(model.apply('status', 'n1', Buffer.alloc(0), T0)).toBe(false);
    expect(model.size).toBe(0);
    for (let i = 0; i < 5; i++) model.apply('status', `n${i}`, json({ online: true }), T0 + i);
    expect(model.list().map((r) => r.node)).toEqual(['n2', 'n3', 'n4']);
  });
});
