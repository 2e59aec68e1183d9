// `camnode ctl nodes` over a simulated fleet of 200 nodes (issue 4): their retained status and
// state sit on a real Mosquitto (configured from provisioning/, as ops run it), published
// through its open plain listener; ctl reads them back as ops would — over TLS with the ops
// certificate (MQTT 5 and 3.1.1, flags and $CAMNODE_CTL_*), and over the plain listener.
// The fixtures vary every figure the table shows: offline nodes (their will), cameras down,
// disabled cameras, unknown temperature/quota/retention, incidents, nodes with only a status or
// only a state, and nodes whose retained state is garbage. Expected rows are written from the
// fixtures' own figures, not by calling the renderer.
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';

const NODES = 200;
const HOUR = 3_600_000;

interface Row {
  node: string;
  online: boolean;
  camerasUp: number;
  camerasTotal: number;
  retainedSeconds: number | null;
  diskUsedPct: number | null;
  tempC: number | null;
  activeIncidents: number;
  unsyncedIncidents: number;
  lastSeen: string | null;
  version: string | null;
  configSha256: string | null;
  problems: string[];
}

interface Fixture {
  node: string;
  /** Retained payloads exactly as published (undefined: nothing retained on that topic). */
  status?: string;
  state?: string;
  expected: Row;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * One node's fixture. Kinds by index: every 10th (i%10==3) offline through its will; i%50==7
 * status only; i%50==9 state only (never connected since the broker lost its status); i%17==5
 * one camera down (stalled, error or connecting); i%13==4 a disabled camera; node-198 a state
 * that is valid JSON of the wrong shape, node-199 a state that is not JSON at all.
 */
function fixture(i: number, nowMs: number): Fixture {
  const node = `node-${String(i).padStart(3, '0')}`;
  const since = iso(nowMs - 5 * 24 * HOUR);
  const version = `1.2.${i % 3}`;
  const offline = i % 10 === 3;
  const statusOnly = i % 50 === 7;
  const stateOnly = i % 50 === 9;
  // Every fourth node says which config it runs (CONTRACT §9 status configSha256).
  const configSha256 = i % 4 === 0 ? `${String(i).padStart(4, '0')}${'c'.repeat(60)}` : undefined;
  const status = stateOnly ? undefined : offline ? { online: false } : { online: true, version, since, publicKey: `key-${i}`, ...(configSha256 ? { configSha256 } : {}) };

  const camCount = 1 + (i % 3);
  const cameras = Array.from({ length: camCount }, (_, j) => ({ id: `cam-${j}`, state: 'recording', lastSegmentAt: iso(nowMs - 2_000), kbps: 100 + j, restarts: 0 }));
  if (i % 17 === 5) cameras[0]!.state = ['stalled', 'error', 'connecting'][i % 3]!;
  if (i % 13 === 4 && camCount > 1) cameras[camCount - 1]!.state = 'disabled';
  const tempC = i % 11 === 0 ? null : 40 + (i % 45) + 0.5;
  const quotaKnown = i % 23 !== 0;
  const tenths = (i * 37) % 1000; // disk use in tenths of a percent
  const retainedSeconds = i % 19 === 0 ? null : (i % 60) * 21_600; // quarter days
  const ts = iso(nowMs - (2 + (i % 40)) * HOUR);
  const incidents = { active: i % 7 === 0 ? 1 : 0, held: i % 4, unsynced: i % 5 };
  const state = {
    ts,
    cameras,
    storage: {
      quotaBytes: quotaKnown ? 100_000_000_000 : null,
      usedBytes: quotaKnown ? tenths * 100_000_000 : null,
      lockedBytes: 1_000_000,
      freeBytes: 5_000_000_000,
      oldestAt: retainedSeconds === null ? null : iso(nowMs - retainedSeconds * 1000),
      retainedSeconds,
    },
    incidents,
    sync: { queued: 0, bytesPending: 0, lastError: null, current: null },
    health: { load: 0.5, memUsedPct: 40, tempC, throttled: false, uptimeS: 1000, clockSynced: true },
  };

  const online = status?.online === true;
  let statePayload: string | undefined = statusOnly ? undefined : JSON.stringify(state);
  let stateUsable = !statusOnly;
  if (i === 198) { statePayload = '"garbage"'; stateUsable = false; }
  if (i === 199) { statePayload = '{"ts": "2026-11-28T1'; stateUsable = false; }

  const expected: Row = stateUsable
    ? {
      node, online,
      camerasUp: cameras.filter((c) => c.state === 'recording').length,
      camerasTotal: cameras.filter((c) => c.state !== 'disabled').length,
      retainedSeconds,
      diskUsedPct: quotaKnown ? tenths / 10 : null,
      tempC,
      activeIncidents: incidents.active,
      unsyncedIncidents: incidents.unsynced,
      lastSeen: ts,
      version: online ? version : null,
      configSha256: online ? configSha256 ?? null : null,
      problems: [
        ...(online ? [] : ['offline']),
        ...(cameras.some((c) => c.state !== 'recording' && c.state !== 'disabled') ? ['cameras down'] : []),
        ...(tempC !== null && tempC >= 75 ? ['hot'] : []),
      ],
    }
    : {
      node, online, camerasUp: 0, camerasTotal: 0, retainedSeconds: null, diskUsedPct: null, tempC: null,
      activeIncidents: 0, unsyncedIncidents: 0, lastSeen: status && 'since' in status ? since : null, version: online ? version : null,
      configSha256: online ? configSha256 ?? null : null, problems: online ? [] : ['offline'],
    };
  return {
    node,
    ...(status ? { status: JSON.stringify(status) } : {}),
    ...(statePayload !== undefined ? { state: statePayload } : {}),
    expected,
  };
}

async function publishRetained(url: string, prefix: string, fixtures: Fixture[]): Promise<void> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5_000 });
  try {
    const sent: Promise<unknown>[] = [];
    for (const f of fixtures) {
      if (f.status !== undefined) sent.push(client.publishAsync(`${prefix}/${f.node}/status`, f.status, { qos: 1, retain: true }));
      if (f.state !== undefined) sent.push(client.publishAsync(`${prefix}/${f.node}/state`, f.state, { qos: 1, retain: true }));
    }
    await Promise.all(sent);
  } finally {
    await client.endAsync();
  }
}

/** What ops must look at first: offline, then cameras down, then the rest; by id within each. */
function expectedOrder(rows: Row[]): string[] {
  const rank = (r: Row): number => (!r.online ? 0 : r.camerasUp < r.camerasTotal ? 1 : 2);
  return [...rows].sort((a, b) => rank(a) - rank(b) || (a.node < b.node ? -1 : 1)).map((r) => r.node);
}

/** The table's cells for a row, written from the fixture's figures. */
function expectedCells(r: Row): string[] {
  const retention = r.retainedSeconds === null ? '-'
    : r.retainedSeconds >= 2 * 86_400 ? `${(r.retainedSeconds / 86_400).toFixed(1)}d` : `${(r.retainedSeconds / 3600).toFixed(1)}h`;
  const hoursAgo = r.lastSeen === null ? null : Math.round((Date.now() - Date.parse(r.lastSeen)) / HOUR);
  return [
    r.node,
    r.online ? 'yes' : 'NO',
    `${r.camerasUp}/${r.camerasTotal}`,
    retention,
    r.diskUsedPct === null ? '-' : `${r.diskUsedPct.toFixed(1)}%`,
    r.tempC === null ? '-' : `${r.tempC.toFixed(1)}°C`,
    `${r.activeIncidents} active, ${r.unsyncedIncidents} unsynced`,
    r.version ?? '-',
    r.configSha256 === null ? '-' : r.configSha256.slice(0, 8),
    hoursAgo === null ? '-' : hoursAgo >= 48 ? `${Math.round(hoursAgo / 24)}d ago` : `${hoursAgo}h ago`,
  ];
}

function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`ctl exited ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  return r;
}

function checkTable(stdout: string, rows: Row[]): void {
  const lines = stdout.trimEnd().split('\n');
  expect(lines).toHaveLength(1 + rows.length + 1);
  expect(lines[0]!.split(/\s{2,}/)).toEqual(['NODE', 'ONLINE', 'CAMERAS', 'RETENTION', 'DISK', 'TEMP', 'INCIDENTS', 'VERSION', 'CONFIG', 'LAST SEEN']);
  const body = lines.slice(1, -1).map((l) => l.split(/\s{2,}/));
  expect(body.map((cells) => cells[0])).toEqual(expectedOrder(rows));
  const byNode = new Map(rows.map((r) => [r.node, r]));
  for (const cells of body) expect(cells, cells[0]).toEqual(expectedCells(byNode.get(cells[0]!)!));
  expect(lines.at(-1)).toBe(`${rows.length} node(s), ${rows.filter((r) => r.online).length} online`);
  expect(stdout).not.toContain('\x1b[');
}

describe('camnode ctl nodes over 200 simulated nodes', () => {
  let broker: Mosquitto;
  let fleet: Fixture[];
  let branch: Fixture[];
  const env = { NO_COLOR: '1', CAMNODE_CTL_BROKER: '', CAMNODE_CTL_CA: '', CAMNODE_CTL_CERT: '', CAMNODE_CTL_KEY: '' };

  beforeAll(async () => {
    broker = await startMosquitto({ nodes: [], ops: ['admin'], plain: true });
    const now = Date.now();
    fleet = Array.from({ length: NODES }, (_, i) => fixture(i, now));
    await publishRetained(broker.plainUrl!, 'camnode', fleet);
    // A second fleet under another prefix on the same broker: neither may leak into the other.
    branch = [0, 3, 5, 17].map((i) => fixture(i, now));
    await publishRetained(broker.plainUrl!, 'branch', branch);
  });

  afterAll(async () => {
    await stopAllMosquittos();
  });

  const tlsFlags = (): string[] => {
    const ops = broker.certFor('ops:admin');
    return ['--broker', broker.url, '--ca', broker.caFile, '--cert', ops.cert, '--key', ops.key];
  };

  it('the fixtures cover every kind of node', () => {
    const rows = fleet.map((f) => f.expected);
    expect(rows.filter((r) => !r.online).length).toBeGreaterThan(20);
    expect(rows.filter((r) => r.online && r.camerasUp < r.camerasTotal).length).toBeGreaterThan(5);
    expect(fleet.filter((f) => f.state === undefined).length).toBe(4);
    expect(fleet.filter((f) => f.status === undefined).length).toBe(4);
    expect(rows.filter((r) => r.tempC !== null && r.tempC >= 75).length).toBeGreaterThan(5);
    expect(new Set(rows.map((r) => r.retainedSeconds === null ? 'none' : r.retainedSeconds >= 172_800 ? 'days' : 'hours'))).toEqual(new Set(['none', 'days', 'hours']));
  });

  it('--json over TLS with the ops certificate (MQTT 5): exactly 200 rows with each node\'s figures', async () => {
    const r = ok(await runCli(['ctl', 'nodes', '--json', ...tlsFlags()], { env }));
    const rows = JSON.parse(r.stdout) as Row[];
    expect(rows).toHaveLength(NODES);
    expect(new Set(rows.map((x) => x.node)).size).toBe(NODES);
    const byNode = new Map(rows.map((x) => [x.node, x]));
    for (const f of fleet) expect(byNode.get(f.node), f.node).toEqual(f.expected);
  });

  it('the table (NO_COLOR) over TLS, MQTT 3.1.1, configured through $CAMNODE_CTL_*', async () => {
    const ops = broker.certFor('ops:admin');
    const r = ok(await runCli(['ctl', 'nodes', '--mqtt-version', '3.1.1'], {
      env: { ...env, CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: ops.cert, CAMNODE_CTL_KEY: ops.key },
    }));
    checkTable(r.stdout, fleet.map((f) => f.expected));
  });

  it('the table over the plain listener: header, 200 rows offline and cameras-down first, then by id, and the summary', async () => {
    const r = ok(await runCli(['ctl', 'nodes', '--broker', broker.plainUrl!], { env }));
    checkTable(r.stdout, fleet.map((f) => f.expected));
    const lines = r.stdout.split('\n');
    // Spot checks against the fixtures' raw figures.
    expect(lines.find((l) => l.startsWith('node-003 '))).toMatch(/^node-003\s+NO\s/);
    expect(lines.find((l) => l.startsWith('node-005 '))).toMatch(/^node-005\s+yes\s+2\/3\s/); // one camera connecting
    expect(lines.find((l) => l.startsWith('node-198 '))).toMatch(/^node-198\s+yes\s+0\/0\s+-\s+-\s+-\s+0 active, 0 unsynced\s+1\.2\.0\s+-\s+5d ago$/);
    expect(lines.find((l) => l.startsWith('node-004 '))).toMatch(/\s1\.2\.1\s+0004cccc\s+\d+h ago$/);
  });

  it('--offline and --problems: only those nodes; --problems says what', async () => {
    const offline = JSON.parse(ok(await runCli(['ctl', 'nodes', '--json', '--offline', '--broker', broker.plainUrl!], { env })).stdout) as Row[];
    expect(offline.map((r) => r.node).sort()).toEqual(fleet.filter((f) => !f.expected.online).map((f) => f.node).sort());
    const problems = JSON.parse(ok(await runCli(['ctl', 'nodes', '--json', '--problems', '--broker', broker.plainUrl!], { env })).stdout) as Row[];
    expect(problems.map((r) => r.node).sort()).toEqual(fleet.filter((f) => f.expected.problems.length > 0).map((f) => f.node).sort());
    expect(problems.length).toBeLessThan(NODES);
    const table = ok(await runCli(['ctl', 'nodes', '--problems', '--broker', broker.plainUrl!], { env })).stdout.trimEnd().split('\n');
    expect(table[0]!.split(/\s{2,}/).at(-1)).toBe('PROBLEMS');
    const byNode = new Map(fleet.map((f) => [f.node, f.expected]));
    for (const l of table.slice(1, -1)) {
      const cells = l.split(/\s{2,}/);
      expect(cells.at(-1), cells[0]).toBe(byNode.get(cells[0]!)!.problems.join(', '));
    }
    const none = ok(await runCli(['ctl', 'nodes', '--offline', '--prefix', 'branch', '--broker', broker.plainUrl!], { env }));
    expect(none.stdout).toMatch(/^(node-|NODE)/);
  });

  it('--prefix: only that prefix\'s nodes; an empty prefix says so', async () => {
    const r = ok(await runCli(['ctl', 'nodes', '--json', '--prefix', 'branch', '--broker', broker.plainUrl!], { env }));
    const rows = JSON.parse(r.stdout) as Row[];
    expect(rows.map((x) => x.node).sort()).toEqual(branch.map((f) => f.node));
    const byNode = new Map(rows.map((x) => [x.node, x]));
    for (const f of branch) expect(byNode.get(f.node)).toEqual(f.expected);

    const table = ok(await runCli(['ctl', 'nodes', '--prefix', 'branch', '--broker', broker.plainUrl!], { env }));
    checkTable(table.stdout, branch.map((f) => f.expected));

    const empty = ok(await runCli(['ctl', 'nodes', '--prefix', 'nobody', '--broker', broker.plainUrl!], { env }));
    expect(empty.stdout.trim()).toBe('no nodes have reported on this broker (check --prefix)');
  });
});
