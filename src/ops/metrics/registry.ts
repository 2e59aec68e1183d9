// The fleet as Prometheus metrics (CONTRACT §9 Metrics): every gauge is filled at scrape time
// from the FleetModel, so a scrape shows what the retained messages say now and a forgotten
// node's series go with it. Names are prefixed `camnode_`; every node series carries `node`.
import { Counter, Gauge, Registry } from 'prom-client';
import type { FleetModel, NodeRecord } from './model.js';

const CAMERA_STATES = ['recording', 'connecting', 'stalled', 'disabled', 'error'] as const;
const INCIDENT_STATES = ['active', 'held', 'unsynced', 'damaged'] as const;

export interface ExporterFacts {
  /** Whether the exporter is connected to the broker now. */
  brokerConnected(): boolean;
  /** Whether its subscriptions were taken on the current connection. */
  subscribed(): boolean;
  /** The fleet CRL's nextUpdate (epoch ms) by where it was read: the broker's retained one, the file. */
  crlNextUpdateMs(): { broker: number | null; file: number | null };
}

const seconds = (iso: string | null | undefined): number | null => {
  if (typeof iso !== 'string') return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms / 1000;
};
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const bool = (v: unknown): number | null => (typeof v === 'boolean' ? (v ? 1 : 0) : null);

/** One gauge per node figure: `read` gives the value (null: no sample for that node). */
interface NodeGauge { name: string; help: string; read(r: NodeRecord): number | null }

const NODE_GAUGES: NodeGauge[] = [
  { name: 'node_online', help: 'Whether the node is online (its retained status; the broker publishes its will when it drops).', read: (r) => (r.status ? (r.status.online ? 1 : 0) : null) },
  { name: 'node_last_seen_timestamp_seconds', help: 'When the exporter last heard from the node.', read: (r) => r.lastSeenMs / 1000 },
  { name: 'state_timestamp_seconds', help: 'The time of the node\'s last published state.', read: (r) => seconds(r.state?.ts) },
  { name: 'storage_quota_bytes', help: 'What camnode may use of the media disk.', read: (r) => num(r.state?.storage.quotaBytes) },
  { name: 'storage_used_bytes', help: 'What camnode uses of its quota.', read: (r) => num(r.state?.storage.usedBytes) },
  { name: 'storage_locked_bytes', help: 'Footage locked by incidents and holds.', read: (r) => num(r.state?.storage.lockedBytes) },
  { name: 'storage_free_bytes', help: 'Free space on the media disk.', read: (r) => num(r.state?.storage.freeBytes) },
  { name: 'storage_retained_seconds', help: 'How far back the ring reaches (the retention promised to the public).', read: (r) => num(r.state?.storage.retainedSeconds) },
  { name: 'storage_oldest_timestamp_seconds', help: 'The oldest footage in the ring.', read: (r) => seconds(r.state?.storage.oldestAt) },
  { name: 'sync_queued_incidents', help: 'Incidents waiting to be uploaded.', read: (r) => num(r.state?.sync.queued) },
  { name: 'sync_pending_bytes', help: 'Bytes waiting to be uploaded.', read: (r) => num(r.state?.sync.bytesPending) },
  { name: 'sync_failing', help: 'Whether uploads are failing: the last attempt failed and incidents still wait.', read: (r) => (r.state ? (r.state.sync.lastError && r.state.sync.queued > 0 ? 1 : 0) : null) },
  { name: 'clock_synced', help: 'Whether the node\'s clock is synchronised (NTP).', read: (r) => bool(r.state?.health.clockSynced) },
  { name: 'temperature_celsius', help: 'SoC temperature.', read: (r) => num(r.state?.health.tempC) },
  { name: 'throttled', help: 'Whether the Pi is throttled or under-voltage now.', read: (r) => bool(r.state?.health.throttled) },
  { name: 'load1', help: 'One-minute load average.', read: (r) => num(r.state?.health.load) },
  { name: 'memory_used_ratio', help: 'Memory in use, 0 to 1.', read: (r) => { const p = num(r.state?.health.memUsedPct); return p === null ? null : p / 100; } },
  { name: 'uptime_seconds', help: 'Node uptime.', read: (r) => num(r.state?.health.uptimeS) },
  { name: 'component_faults', help: 'Parts of the agent failing now (health.faults).', read: (r) => (r.state ? (r.state.health.faults ?? []).length : null) },
  { name: 'last_event_id', help: 'The id of the last event received from the node.', read: (r) => r.lastEventId },
  { name: 'signage_ok', help: 'Whether the signage attestation is current (policy.signage).', read: (r) => (r.state?.policy ? (r.state.policy.signage === 'ok' ? 1 : 0) : null) },
  { name: 'calls_files', help: 'Call recordings in the ring.', read: (r) => num(r.state?.calls?.files) },
  { name: 'calls_bytes', help: 'Bytes of call recordings in the ring.', read: (r) => num(r.state?.calls?.bytes) },
  { name: 'calls_waiting', help: 'Call recordings in the spool not yet taken.', read: (r) => num(r.state?.calls?.waiting) },
  { name: 'calls_rejected', help: 'Spool files set aside as not audio.', read: (r) => num(r.state?.calls?.rejected) },
];

/** A registry whose metrics are read from `model` at each scrape. */
export function fleetRegistry(model: FleetModel, facts: ExporterFacts): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge) => void): void => {
    new Gauge({ name: `camnode_${name}`, help, labelNames, registers: [registry], collect() { this.reset(); fill(this); } });
  };

  for (const m of NODE_GAUGES) {
    gauge(m.name, m.help, ['node'], (g) => {
      for (const r of model.list()) {
        const v = m.read(r);
        if (v !== null) g.set({ node: r.node }, v);
      }
    });
  }
  gauge('node_info', 'The node\'s version and config hash (value 1).', ['node', 'version', 'config_sha256'], (g) => {
    for (const r of model.list()) {
      if (r.status) g.set({ node: r.node, version: r.status.version ?? '', config_sha256: (r.status as { configSha256?: string }).configSha256 ?? '' }, 1);
    }
  });
  gauge('camera_recording', 'Whether the camera is recording.', ['node', 'camera'], (g) => {
    for (const r of model.list()) for (const c of r.state?.cameras ?? []) g.set({ node: r.node, camera: c.id }, c.state === 'recording' ? 1 : 0);
  });
  gauge('camera_state', 'The camera\'s state: 1 for the one it is in.', ['node', 'camera', 'state'], (g) => {
    for (const r of model.list()) {
      for (const c of r.state?.cameras ?? []) for (const s of CAMERA_STATES) g.set({ node: r.node, camera: c.id, state: s }, c.state === s ? 1 : 0);
    }
  });
  gauge('camera_bitrate_bytes_per_second', 'The camera\'s measured bitrate, in bytes per second.', ['node', 'camera'], (g) => {
    for (const r of model.list()) for (const c of r.state?.cameras ?? []) if (num(c.kbps) !== null) g.set({ node: r.node, camera: c.id }, c.kbps! * 125);
  });
  gauge('camera_last_segment_timestamp_seconds', 'When the camera\'s last segment was finished.', ['node', 'camera'], (g) => {
    for (const r of model.list()) for (const c of r.state?.cameras ?? []) { const t = seconds(c.lastSegmentAt); if (t !== null) g.set({ node: r.node, camera: c.id }, t); }
  });
  gauge('incidents', 'Incidents by state: active (window open), held (kept as clips), unsynced, damaged.', ['node', 'state'], (g) => {
    for (const r of model.list()) {
      const i = r.state?.incidents as Record<string, unknown> | undefined;
      if (i) for (const s of INCIDENT_STATES) { const v = num(i[s]); if (v !== null) g.set({ node: r.node, state: s }, v); }
    }
  });
  gauge('component_fault', 'A part of the agent failing now (1), by component.', ['node', 'component'], (g) => {
    for (const r of model.list()) for (const f of r.state?.health.faults ?? []) g.set({ node: r.node, component: f.component }, 1);
  });
  gauge('exporter_nodes', 'Nodes the exporter knows (online or not).', [], (g) => g.set(model.size));
  gauge('exporter_broker_connected', 'Whether the exporter is connected to the broker.', [], (g) => g.set(facts.brokerConnected() ? 1 : 0));
  gauge('exporter_subscribed', 'Whether the broker took the exporter\'s subscriptions (a refusal means its ACL lacks the viewer principal).', [], (g) => g.set(facts.subscribed() ? 1 : 0));
  gauge('fleet_crl_next_update_timestamp_seconds', 'When the fleet CRL must be renewed (its nextUpdate), by source (the broker\'s retained CRL, the --crl file): an expired CRL takes the fleet off the broker.', ['source'], (g) => {
    for (const [source, ms] of Object.entries(facts.crlNextUpdateMs())) if (ms !== null) g.set({ source }, ms / 1000);
  });
  new Counter({
    name: 'camnode_camera_restarts_total', help: 'Recorder restarts of the camera since the agent started.', labelNames: ['node', 'camera'], registers: [registry],
    collect() {
      this.reset();
      for (const r of model.list()) for (const c of r.state?.cameras ?? []) if (num(c.restarts) !== null) this.inc({ node: r.node, camera: c.id }, c.restarts);
    },
  });
  new Counter({
    name: 'camnode_events_total', help: 'Events received from the node since the exporter started, by type.', labelNames: ['node', 'type'], registers: [registry],
    collect() {
      this.reset();
      for (const r of model.list()) for (const [type, n] of r.events) this.inc({ node: r.node, type }, n);
    },
  });
  return registry;
}
