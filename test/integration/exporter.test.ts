// `camnode ctl exporter` (CONTRACT §9 Metrics) against a real fleet: a TLS Mosquitto configured
// from provisioning/, two real agents recording a test picture, and 200 simulated nodes whose
// retained status and state (and events) are published through the broker's plain listener.
// The exporter connects over TLS as a viewer principal. /metrics passes Debian's
// `promtool check metrics`; its values equal the retained states; a real agent killed shows
// offline within its keepalive and stays listed; a real Prometheus scrapes the exporter and
// its query API returns the node's series.
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { baseConfig, CLI, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';

const exec = promisify(execFile);
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

const SIMULATED = 200;
const REAL = ['branch-a', 'branch-b'];
const iso = (ms: number): string => new Date(ms).toISOString();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Simulated node i: every 10th offline (its will), every 17th with a camera stalled, every 11th without a temperature sensor. */
function simulated(i: number, nowMs: number): { node: string; status: Record<string, unknown>; state: Record<string, unknown> } {
  const node = `sim-${String(i).padStart(3, '0')}`;
  const cameras = Array.from({ length: 1 + (i % 3) }, (_, j) => ({ id: `cam-${j}`, state: j === 0 && i % 17 === 5 ? 'stalled' : 'recording', lastSegmentAt: iso(nowMs - 2_000), kbps: 1000 + i, restarts: i % 4 }));
  return {
    node,
    status: i % 10 === 3 ? { online: false } : { online: true, version: `1.2.${i % 3}`, since: iso(nowMs - 86_400_000) },
    state: {
      ts: iso(nowMs), cameras,
      storage: { quotaBytes: 1e9 * (100 + i), usedBytes: 1e9 * (50 + i), lockedBytes: 1e6 * i, freeBytes: 1e9 * 40, oldestAt: iso(nowMs - 86_400_000 * (1 + (i % 30))), retainedSeconds: 86_400 * (1 + (i % 30)) },
      incidents: { active: i % 2, held: i % 5, unsynced: i % 3, damaged: 0 },
      sync: { queued: i % 3, bytesPending: 1000 * (i % 3), lastError: i % 9 === 0 ? 'upstream: 503' : null, current: null },
      health: { load: 0.5, memUsedPct: 40, tempC: i % 11 === 0 ? null : 40 + (i % 40), throttled: i % 23 === 0, uptimeS: 3_600 + i, clockSynced: i % 19 !== 0, faults: i % 29 === 0 ? [{ component: 'sync', since: iso(nowMs), message: 'x' }] : [] },
    },
  };
}

/** The value of one series in exposition text, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describeRoot('metrics exporter over a real fleet', () => {
  let broker: Mosquitto;
  const agents = new Map<string, RunningAgent>();
  const dirs: string[] = [];
  let exporter: ChildProcess;
  let exporterLog = '';
  let metricsUrl = '';
  const fleet = Array.from({ length: SIMULATED }, (_, i) => simulated(i, Date.now()));
  const scrape = async (): Promise<string> => (await fetch(metricsUrl)).text();

  beforeAll(async () => {
    broker = await startMosquitto({ nodes: REAL, ops: ['exporter:viewer'], plain: true });
    const sim = await mqtt.connectAsync(broker.plainUrl!, { clientId: 'fleet-sim' });
    for (const f of fleet) {
      await sim.publishAsync(`camnode/${f.node}/status`, JSON.stringify(f.status), { retain: true, qos: 1 });
      await sim.publishAsync(`camnode/${f.node}/state`, JSON.stringify(f.state), { retain: true, qos: 1 });
    }
    await sim.endAsync();
    for (const node of REAL) {
      const dir = await tempDir(`camnode-exporter-${node}-`);
      dirs.push(dir);
      const files = broker.certFor(node);
      const config = baseConfig(dir, [{ id: 'cam', source: 'testsrc', zone: 'entrance' }], {
        node: { id: node },
        mqtt: { url: broker.url, ca: broker.caFile, cert: files.cert, key: files.key, keepalive: '2s', stateInterval: '5s' },
      });
      const agent = RunningAgent.start(await writeConfig(dir, config));
      agents.set(node, agent);
      await agent.waitForLog((l) => l.msg === 'agent started', `${node} started`);
    }
    const port = await freePort();
    const viewer = broker.certFor('ops:exporter');
    exporter = spawn(process.execPath, [CLI, 'ctl', 'exporter', '--broker', broker.url, '--ca', broker.caFile, '--cert', viewer.cert, '--key', viewer.key, '--listen', `127.0.0.1:${port}`, '--forget-after', '1h', '--crl', join(broker.caDir, 'crl.pem')], { stdio: ['ignore', 'pipe', 'pipe'] });
    exporter.stderr!.on('data', (d: Buffer) => { exporterLog += d.toString(); });
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    await waitFor(() => exporterLog.includes('fleet exporter serving /metrics'), `the exporter listening\n${exporterLog}`, 20_000);
  }, 120_000);

  afterAll(async () => {
    exporter?.kill('SIGTERM');
    for (const a of agents.values()) a.killGroup();
    await Promise.all([...agents.values()].map((a) => a.exited));
    await stopAllMosquittos();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('serves every node, real and simulated, in text promtool accepts; values equal the retained states', async () => {
    const text = await waitFor(async () => {
      const t = await scrape();
      return value(t, 'camnode_exporter_nodes') === SIMULATED + REAL.length && value(t, 'camnode_exporter_subscribed') === 1 && REAL.every((n) => value(t, `camnode_camera_recording{node="${n}",camera="cam"}`) === 1) && t;
    }, 'all nodes in /metrics, the real cameras recording', 60_000, 500);
    const lint = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('promtool', ['check', 'metrics']);
      let out = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      p.on('close', (code) => resolve({ code, out }));
      p.stdin.end(text);
    });
    expect(lint, lint.out).toMatchObject({ code: 0 });
    for (const [i, f] of fleet.entries()) {
      const n = `node="${f.node}"`;
      const st = f.state as { storage: { quotaBytes: number; retainedSeconds: number }; cameras: { id: string; state: string; kbps: number }[]; health: { tempC: number | null; throttled: boolean; clockSynced: boolean; faults: unknown[] }; sync: { lastError: string | null; queued: number }; incidents: { held: number } };
      expect(value(text, `camnode_node_online{${n}}`), f.node).toBe(i % 10 === 3 ? 0 : 1);
      expect(value(text, `camnode_storage_quota_bytes{${n}}`), f.node).toBe(st.storage.quotaBytes);
      expect(value(text, `camnode_storage_retained_seconds{${n}}`), f.node).toBe(st.storage.retainedSeconds);
      expect(value(text, `camnode_temperature_celsius{${n}}`), f.node).toBe(st.health.tempC ?? undefined);
      expect(value(text, `camnode_throttled{${n}}`), f.node).toBe(st.health.throttled ? 1 : 0);
      expect(value(text, `camnode_clock_synced{${n}}`), f.node).toBe(st.health.clockSynced ? 1 : 0);
      expect(value(text, `camnode_sync_failing{${n}}`), f.node).toBe(st.sync.lastError && st.sync.queued > 0 ? 1 : 0);
      expect(value(text, `camnode_component_faults{${n}}`), f.node).toBe(st.health.faults.length);
      expect(value(text, `camnode_incidents{${n},state="held"}`), f.node).toBe(st.incidents.held);
      for (const c of st.cameras) {
        expect(value(text, `camnode_camera_recording{${n},camera="${c.id}"}`), `${f.node} ${c.id}`).toBe(c.state === 'recording' ? 1 : 0);
        expect(value(text, `camnode_camera_bitrate_bytes_per_second{${n},camera="${c.id}"}`), `${f.node} ${c.id}`).toBe(c.kbps * 125);
      }
      if (i % 10 !== 3) expect(value(text, `camnode_node_info{${n},version="1.2.${i % 3}",config_sha256=""}`), f.node).toBe(1);
    }
    for (const node of REAL) {
      expect(value(text, `camnode_node_online{node="${node}"}`)).toBe(1);
      // A real node says which config it runs (CONTRACT §9 configSha256).
      expect(text).toMatch(new RegExp(`^camnode_node_info\\{node="${node}",version="${VERSION.replace(/\./g, '\\.')}",config_sha256="[0-9a-f]{64}"\\} 1$`, 'm'));
      expect(value(text, `camnode_storage_quota_bytes{node="${node}"}`)).toBeGreaterThan(0);
    }
  }, 90_000);

  it('counts events as they come, by type, and the last id', async () => {
    const sim = await mqtt.connectAsync(broker.plainUrl!, { clientId: 'fleet-sim-events' });
    for (let id = 1; id <= 3; id++) await sim.publishAsync('camnode/sim-001/events', JSON.stringify({ id, type: 'sync.failed', ts: iso(Date.now()), incident: 'x', reason: 'y', permanent: false }), { qos: 1 });
    await sim.publishAsync('camnode/sim-001/events', JSON.stringify({ id: 4, type: 'camera.down', ts: iso(Date.now()), camera: 'cam-0', reason: 'timeout' }), { qos: 1 });
    await sim.endAsync();
    const text = await waitFor(async () => { const t = await scrape(); return value(t, 'camnode_last_event_id{node="sim-001"}') === 4 && t; }, 'the events counted', 20_000, 250);
    expect(value(text, 'camnode_events_total{node="sim-001",type="sync.failed"}')).toBe(3);
    expect(value(text, 'camnode_events_total{node="sim-001",type="camera.down"}')).toBe(1);
  }, 30_000);

  it('the fleet CRL\'s nextUpdate, from the file and from the copy retained on the broker', async () => {
    const crl = join(broker.caDir, 'crl.pem');
    const { stdout } = await exec('openssl', ['crl', '-in', crl, '-noout', '-nextupdate']);
    const next = Date.parse(stdout.trim().replace(/^nextUpdate=/, '')) / 1000;
    expect(next).toBeGreaterThan(Date.now() / 1000);
    let text = await scrape();
    expect(value(text, 'camnode_fleet_crl_next_update_timestamp_seconds{source="file"}')).toBe(next);
    // The admin publishes it retained (fleet-ca.sh crl --publish); the exporter reads it there too.
    const admin = await mqtt.connectAsync(broker.plainUrl!, { clientId: 'crl-publisher' });
    await admin.publishAsync('camnode/_fleet/crl', await readFile(crl), { retain: true, qos: 1 });
    await admin.endAsync();
    text = await waitFor(async () => { const t = await scrape(); return value(t, 'camnode_fleet_crl_next_update_timestamp_seconds{source="broker"}') !== undefined && t; }, 'the broker\'s CRL read', 20_000, 250);
    expect(value(text, 'camnode_fleet_crl_next_update_timestamp_seconds{source="broker"}')).toBe(next);
  }, 30_000);

  it('a real agent that hangs shows offline within its keepalive, and stays listed with its last state', async () => {
    const node = REAL[1]!;
    // Frozen, not killed: its socket stays open, so only the keepalive can tell the broker.
    process.kill(-agents.get(node)!.pid, 'SIGSTOP');
    const t0 = Date.now();
    const text = await waitFor(async () => { const t = await scrape(); return value(t, `camnode_node_online{node="${node}"}`) === 0 && t; }, `${node} offline`, 20_000, 250);
    // keepalive 2 s: Mosquitto gives up after 1.5 keepalives (3 s) and publishes the will.
    const took = Date.now() - t0;
    expect(took).toBeGreaterThan(1_500);
    expect(took).toBeLessThan(10_000);
    agents.get(node)!.killGroup();
    expect(value(text, `camnode_storage_quota_bytes{node="${node}"}`)).toBeGreaterThan(0);
    expect(value(text, 'camnode_exporter_nodes')).toBe(SIMULATED + REAL.length);
  }, 30_000);

  it('a real Prometheus scrapes the exporter; its query API returns the node\'s series', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'camnode-prometheus-'));
    dirs.push(dir);
    const port = await freePort();
    await writeFile(join(dir, 'prometheus.yml'), [
      'global: {scrape_interval: 1s, evaluation_interval: 1s}',
      'scrape_configs:',
      '  - job_name: camnode',
      `    static_configs: [{targets: ["${new URL(metricsUrl).host}"]}]`,
      '',
    ].join('\n'));
    await exec('promtool', ['check', 'config', join(dir, 'prometheus.yml')]);
    const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
    try {
      const q = encodeURIComponent(`camnode_node_online{node="${REAL[0]}"}`);
      const result = await waitFor(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${q}`).then((x) => x.json() as Promise<{ data?: { result: { metric: Record<string, string>; value: [number, string] }[] } }>, () => null);
        return r?.data?.result.length ? r.data.result : null;
      }, 'Prometheus has the series', 60_000, 500);
      expect(result[0]!.metric).toMatchObject({ __name__: 'camnode_node_online', node: REAL[0], job: 'camnode' });
      expect(result[0]!.value[1]).toBe('1');
    } finally {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('close', r));
    }
  }, 90_000);
});
