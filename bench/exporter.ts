// The fleet exporter at 1,000 nodes (CONTRACT §9 Metrics): every node's retained status and
// state (4 cameras each) and a stream of events applied as they arrive from MQTT, then scraped
// as Prometheus would. Timed: one scrape (collect + the exposition text), median of 20. Memory:
// heap retained by the model and the registry after a full collection, and the process's peak RSS.
//
//   node dist/bench/exporter.js [--nodes 1000]
import { FleetModel } from '../src/ops/metrics/model.js';
import { fleetRegistry } from '../src/ops/metrics/registry.js';
import { gc, machine, machineMarkdown, median, numberArg, verdict, writeResults } from './lib.js';

const NODES = numberArg('--nodes', 1000);
const SCRAPES = 20;
const EVENTS_PER_NODE = 50;
/** A scrape every 30 s: well under a second leaves Prometheus's default timeout (10 s) far away. */
const TARGET_SCRAPE_MS = 1_000;
const TARGET_HEAP_MB = 100;

function state(i: number, nowMs: number): Buffer {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return Buffer.from(JSON.stringify({
    ts: iso(nowMs),
    cameras: Array.from({ length: 4 }, (_, j) => ({ id: `camera-${j}`, state: j === 0 && i % 50 === 0 ? 'stalled' : 'recording', lastSegmentAt: iso(nowMs - 2_000), kbps: 2000 + j, restarts: i % 3 })),
    storage: { quotaBytes: 190e9, usedBytes: 120e9, lockedBytes: 2.1e9, freeBytes: 60e9, oldestAt: iso(nowMs - 30 * 86_400_000), retainedSeconds: 30 * 86_400 },
    incidents: { active: i % 2, held: 3, unsynced: 1, damaged: 0 },
    policy: { signage: 'ok' },
    sync: { queued: 1, bytesPending: 350e6, lastError: null, current: null },
    health: { load: 0.4, memUsedPct: 41.5, tempC: 52.1, throttled: false, uptimeS: 86_400, clockSynced: true, faults: i % 40 === 0 ? [{ component: 'sync', since: iso(nowMs), message: 'x' }] : [] },
  }));
}

async function main(): Promise<number> {
  const m = machine();
  const now = Date.now();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const model = new FleetModel({ forgetAfterMs: 7 * 86_400_000 });
  const registry = fleetRegistry(model, { brokerConnected: () => true, subscribed: () => true, crlNextUpdateMs: () => ({ broker: now + 20 * 86_400_000, file: null }) });
  const types = ['camera.down', 'camera.up', 'incident.locked', 'incident.sealed', 'incident.synced', 'sync.failed', 'button.pressed'];
  let t = performance.now();
  for (let i = 0; i < NODES; i++) {
    const node = `branch-${String(i).padStart(4, '0')}`;
    model.apply('status', node, Buffer.from(JSON.stringify({ online: i % 25 !== 0, version: '1.2.0', since: new Date(now).toISOString(), configSha256: 'c'.repeat(64) })), now);
    model.apply('state', node, state(i, now), now);
    for (let e = 0; e < EVENTS_PER_NODE; e++) model.apply('events', node, Buffer.from(JSON.stringify({ id: e + 1, type: types[e % types.length], ts: new Date(now).toISOString() })), now);
  }
  const applyMs = performance.now() - t;
  const scrapes: number[] = [];
  let text = '';
  for (let s = 0; s < SCRAPES; s++) {
    // A state change between scrapes, as a live fleet sends them.
    model.apply('state', `branch-${String(s % NODES).padStart(4, '0')}`, state(s, now + s), now + s);
    t = performance.now();
    text = await registry.metrics();
    scrapes.push(performance.now() - t);
  }
  gc();
  const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 1e6;
  const rssMb = process.resourceUsage().maxRSS / 1024;
  const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  const scrapeMs = median(scrapes);
  const ok = scrapeMs <= TARGET_SCRAPE_MS && heapMb <= TARGET_HEAP_MB;
  console.log(`exporter: ${NODES} nodes, ${series} series, ${(text.length / 1e6).toFixed(1)} MB of text; applying ${NODES * (2 + EVENTS_PER_NODE)} messages ${applyMs.toFixed(0)} ms`);
  console.log(`  scrape median ${scrapeMs.toFixed(0)} ms (max ${Math.max(...scrapes).toFixed(0)}; target <= ${TARGET_SCRAPE_MS}); heap retained ${heapMb.toFixed(1)} MB (target <= ${TARGET_HEAP_MB}); peak RSS ${rssMb.toFixed(0)} MiB: ${verdict(ok)}`);
  const out = writeResults('exporter', [
    '# The fleet exporter at 1,000 nodes',
    '',
    `Measured: ${NODES} nodes in the exporter's model, each with a retained status, a state of 4 cameras (health, storage, incidents, sync, a fault on every 40th) and ${EVENTS_PER_NODE} events, applied as MQTT messages through \`FleetModel.apply\` (JSON parsed as it arrives); then ${SCRAPES} scrapes of the prom-client registry (\`registry.metrics()\`: every gauge collected from the model and the exposition text written), a state changed between scrapes. In this process; heap retained after a full collection over a baseline taken before the model existed.`,
    '',
    machineMarkdown(m),
    '',
    '| what | figure |',
    '|---|---|',
    `| series in a scrape | ${series} (${(text.length / 1e6).toFixed(1)} MB of text) |`,
    `| apply ${NODES * (2 + EVENTS_PER_NODE)} messages | ${applyMs.toFixed(0)} ms |`,
    `| scrape, median of ${SCRAPES} | ${scrapeMs.toFixed(0)} ms |`,
    `| scrape, max | ${Math.max(...scrapes).toFixed(0)} ms |`,
    `| heap retained (model + registry) | ${heapMb.toFixed(1)} MB |`,
    `| peak RSS of the process | ${rssMb.toFixed(0)} MiB |`,
    '',
    `- Targets: a scrape <= ${TARGET_SCRAPE_MS} ms and <= ${TARGET_HEAP_MB} MB retained at ${NODES} nodes: **${verdict(ok)}**.`,
  ].join('\n'));
  console.log(`  results: ${out}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
