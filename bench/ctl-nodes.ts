// `camnode ctl nodes` over 1,000 nodes' retained status and state on a local Mosquitto: the
// whole ops command (a new node process, connect, the retained messages, the table) timed from
// spawn to exit, as an operator waits for it. Each run's table is checked: 1,000 rows, every
// node once, the summary line's counts. `--json` is timed and checked the same way; so are
// `camnode --version` (what node start-up and module loading cost) and `ctl nodes` on a prefix
// with no nodes (start-up + connect + the end-of-retained marker, without the messages).
//
//   node dist/bench/ctl-nodes.js [--nodes 1000] [--runs 5]
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import mqtt from 'mqtt';
import type { StatePayload, StatusPayload } from '../src/fleet/topics.js';
import type { NodeRow } from '../src/ops/render.js';
import { startBroker } from './fleet-lib.js';
import { CLI, machine, machineMarkdown, median, numberArg, verdict, writeResults } from './lib.js';

const NODES = numberArg('--nodes', 1_000);
const RUNS = numberArg('--runs', 5);
const TARGET_S = 2;
const PREFIX = 'camnode';

/** A small deterministic generator: the same fleet every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Fleet { status: Map<string, StatusPayload>; state: Map<string, StatePayload>; online: number }

/**
 * A plausible fleet: 2–6 cameras per branch, a few cameras down or reconnecting, some offline
 * nodes (their will's `{"online":false}` over the last state they published), Pis with a
 * temperature and x86 boxes without, disks mostly full (the ring keeps them so), an upload in
 * progress here and there.
 */
function makeFleet(n: number): Fleet {
  const r = rng(42);
  const now = Date.now();
  const iso = (ms: number): string => new Date(ms).toISOString();
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const status = new Map<string, StatusPayload>();
  const state = new Map<string, StatePayload>();
  let online = 0;
  for (let i = 1; i <= n; i++) {
    const node = `branch-${String(i).padStart(4, '0')}`;
    const isOnline = r() > 0.03;
    if (isOnline) online++;
    const seen = isOnline ? now - Math.floor(r() * 60_000) : now - Math.floor((1 + r() * 72) * 3_600_000);
    status.set(node, isOnline
      ? { online: true, version: pick(['1.2.0', '1.2.0', '1.2.0', '1.1.3']), since: iso(seen - Math.floor(r() * 30 * 86_400_000)), publicKey: Buffer.from(Array.from({ length: 32 }, () => Math.floor(r() * 256))).toString('base64') }
      : { online: false });
    const cameras = Array.from({ length: 2 + Math.floor(r() * 5) }, (_, c) => {
      const roll = r();
      const camState = roll < 0.02 ? 'stalled' : roll < 0.04 ? 'connecting' : roll < 0.05 ? 'disabled' : 'recording';
      return {
        id: pick(['entrance', 'collections', 'seating', 'service-desk', 'delivery', 'parking']) + `-${c + 1}`,
        state: camState,
        lastSegmentAt: camState === 'disabled' ? null : iso(seen - Math.floor(r() * (camState === 'recording' ? 10_000 : 600_000))),
        kbps: camState === 'recording' ? 1500 + Math.floor(r() * 1500) : null,
        restarts: camState === 'recording' ? Math.floor(r() * r() * 5) : 1 + Math.floor(r() * 40),
      } as StatePayload['cameras'][number];
    });
    const quota = Math.round((100 + r() * 900) * 1e9);
    const used = Math.round(quota * (0.85 + r() * 0.14));
    const retained = Math.round((5 + r() * 30) * 86_400);
    const uploading = r() < 0.05;
    const pi = r() < 0.7;
    state.set(node, {
      ts: iso(seen),
      cameras,
      storage: {
        quotaBytes: quota, usedBytes: used, lockedBytes: Math.round(r() * 5e9), freeBytes: Math.round(quota * 0.1 + r() * 50e9),
        oldestAt: iso(seen - retained * 1000), retainedSeconds: retained,
      },
      incidents: { active: r() < 0.02 ? 1 : 0, held: Math.floor(r() * 4), unsynced: uploading ? 1 : 0, damaged: 0 },
      sync: uploading
        ? { queued: 1, bytesPending: 470_000_000, lastError: null, current: { incident: '20261128T165500Z-7kq2', bytesSent: Math.round(r() * 470e6), bytesTotal: 470_000_000, rateBps: 500_000, etaS: Math.round(r() * 900) } }
        : { queued: 0, bytesPending: 0, lastError: null, current: null },
      health: {
        load: Math.round(r() * 200) / 100, memUsedPct: Math.round((25 + r() * 50) * 10) / 10,
        tempC: pi ? Math.round((42 + r() * 30) * 10) / 10 : null, throttled: pi ? r() < 0.01 : null,
        uptimeS: Math.floor(r() * 90 * 86_400), clockSynced: r() > 0.005, faults: [],
      },
    });
  }
  return { status, state, online };
}

async function publishFleet(url: string, fleet: Fleet): Promise<{ messages: number; bytes: number; seconds: number }> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, clean: true, reconnectPeriod: 0 });
  const t0 = performance.now();
  let bytes = 0;
  const jobs: [string, string][] = [];
  for (const [node, s] of fleet.state) jobs.push([`${PREFIX}/${node}/state`, JSON.stringify(s)]);
  for (const [node, s] of fleet.status) jobs.push([`${PREFIX}/${node}/status`, JSON.stringify(s)]);
  try {
    // QoS 1 and retained, as nodes publish them; 100 in flight at a time.
    for (let i = 0; i < jobs.length; i += 100) {
      await Promise.all(jobs.slice(i, i + 100).map(([topic, payload]) => {
        bytes += Buffer.byteLength(payload);
        return client.publishAsync(topic, payload, { qos: 1, retain: true });
      }));
    }
  } finally {
    await client.endAsync();
  }
  return { messages: jobs.length, bytes, seconds: (performance.now() - t0) / 1000 };
}

interface Timed { seconds: number; code: number | null; stdout: string; stderr: string }

/** `node CLI ARGS…`; with `bare`, node on its own (`node -e 0`). */
function timeCli(args: string[], bare = false): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    // stdout is a pipe, as in `ctl nodes | less`: no colours, the plain table.
    const child = spawn(process.execPath, bare ? ['-e', '0'] : [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.once('error', reject);
    // 'close': the process has exited and its output is all read.
    child.once('close', (code) => resolve({ seconds: (performance.now() - t0) / 1000, code, stdout, stderr }));
  });
}

/** Throws unless the table lists every node of the fleet exactly once with the right totals. */
function checkTable(out: string, fleet: Fleet): void {
  const lines = out.trimEnd().split('\n');
  if (!/^NODE\s+ONLINE\s+CAMERAS/.test(lines[0] ?? '')) throw new Error(`no table header: ${lines[0]}`);
  const summary = lines[lines.length - 1] ?? '';
  const expected = `${fleet.state.size} node(s), ${fleet.online} online`;
  if (summary !== expected) throw new Error(`summary line "${summary}", expected "${expected}"`);
  const rows = lines.slice(1, -1);
  const seen = new Set(rows.map((l) => l.split(/\s+/)[0]));
  if (rows.length !== fleet.state.size || seen.size !== fleet.state.size || [...fleet.state.keys()].some((n) => !seen.has(n))) {
    throw new Error(`table has ${rows.length} rows for ${seen.size} distinct nodes; expected ${fleet.state.size}`);
  }
}

function checkJson(out: string, fleet: Fleet): void {
  const rows = JSON.parse(out) as NodeRow[];
  if (!Array.isArray(rows) || rows.length !== fleet.state.size) throw new Error(`--json gave ${Array.isArray(rows) ? rows.length : 'no'} rows; expected ${fleet.state.size}`);
  for (const row of rows) {
    const s = fleet.state.get(row.node);
    if (!s) throw new Error(`--json lists an unknown node ${row.node}`);
    const up = s.cameras.filter((c) => c.state === 'recording').length;
    if (row.camerasUp !== up || row.retainedSeconds !== s.storage.retainedSeconds || row.lastSeen !== s.ts || row.online !== fleet.status.get(row.node)!.online) {
      throw new Error(`--json row for ${row.node} does not match what it published: ${JSON.stringify(row)}`);
    }
  }
}

const fmt = (s: number): string => s.toFixed(3);

async function main(): Promise<number> {
  const m = machine();
  console.log(`ctl-nodes: \`camnode ctl nodes\` over ${NODES} nodes' retained status + state, ${RUNS} runs each`);
  const broker = await startBroker();
  const fleet = makeFleet(NODES);
  const bare: number[] = [];
  const version: number[] = [];
  const empty: number[] = [];
  const table: number[] = [];
  const json: number[] = [];
  let published: Awaited<ReturnType<typeof publishFleet>>;
  try {
    published = await publishFleet(broker.url, fleet);
    console.log(`  published ${published.messages} retained messages (${(published.bytes / 1e6).toFixed(2)} MB of payload) in ${published.seconds.toFixed(2)} s`);
    const must = async (args: string[], check?: (out: string) => void, bareNode = false): Promise<number> => {
      const r = await timeCli(args, bareNode);
      if (r.code !== 0) throw new Error(`camnode ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      check?.(r.stdout);
      return r.seconds;
    };
    const base = ['ctl', 'nodes', '--broker', broker.url];
    // One unmeasured run of each first: the page cache holds node and the modules afterwards,
    // as it does for an operator who has used the tool before.
    await must(['--version']);
    await must([...base], (o) => checkTable(o, fleet));
    for (let i = 0; i < RUNS; i++) {
      bare.push(await must([], undefined, true));
      version.push(await must(['--version']));
      empty.push(await must([...base, '--prefix', 'bench-empty']));
      table.push(await must(base, (o) => checkTable(o, fleet)));
      json.push(await must([...base, '--json'], (o) => checkJson(o, fleet)));
      console.log(`  run ${i + 1}: table ${fmt(table[i]!)} s, --json ${fmt(json[i]!)} s, empty prefix ${fmt(empty[i]!)} s, --version ${fmt(version[i]!)} s, node -e 0 ${fmt(bare[i]!)} s`);
    }
  } finally {
    await broker.stop();
  }
  const med = median(table);
  const ok = med <= TARGET_S;
  console.log(`  medians: table ${fmt(med)} s, --json ${fmt(median(json))} s, empty prefix ${fmt(median(empty))} s, --version ${fmt(median(version))} s, node -e 0 ${fmt(median(bare))} s`);
  console.log(`  table median ${fmt(med)} s (target <= ${TARGET_S} s) ${verdict(ok)}`);

  const row = (name: string, xs: number[]): string => `| ${name} | ${xs.map(fmt).join(' | ')} | **${fmt(median(xs))}** |`;
  const path = writeResults('ctl-nodes', [
    '# `camnode ctl nodes` over 1,000 nodes',
    '',
    `Measured: wall time of \`node dist/src/main.js ctl nodes --broker ${broker.url.replace(/:\d+$/, ':PORT')}\`, from spawn to exit with all its output read ` +
    `(stdout a pipe: the plain table), against a private Mosquitto ${/mosquitto version (\S+)/.exec(broker.log())?.[1] ?? ''} on 127.0.0.1 ` +
    `(plain listener, \`max_queued_messages 100000\`, no persistence) holding the retained \`status\` and \`state\` of ${NODES} nodes: ` +
    `${published.messages} messages, ${(published.bytes / 1e6).toFixed(2)} MB of JSON, published beforehand at QoS 1 by one MQTT.js client. ` +
    'The fleet is generated (fixed seed) to look real: 2–6 cameras per node, ~5 % of cameras not recording, ~3 % of nodes offline ' +
    '(their will over their last state), a temperature on ~70 % (Pis), an upload in progress on ~5 %; the state documents have every member of CONTRACT §3. ' +
    `Every run's output is checked: the table has one row for each of the ${NODES} nodes and the summary line's counts; the \`--json\` rows match what each node published. ` +
    `One unmeasured run first (warm page cache), then ${RUNS} rounds of: \`node -e 0\` (node alone), \`--version\` (node start-up and loading camnode's modules), ` +
    '`ctl nodes --prefix bench-empty` (start-up, connect, subscribe and the end-of-retained marker, with no nodes), the table, and `--json`.',
    '',
    `${machineMarkdown(m)} Load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}: these are wall times, so other work on the machine shows in them.`,
    '',
    `| command | ${table.map((_, i) => `run ${i + 1} s`).join(' | ')} | median s |`,
    `|---|${table.map(() => '---|').join('')}---|`,
    row('`ctl nodes` (table)', table),
    row('`ctl nodes --json`', json),
    row('`ctl nodes` on an empty prefix', empty),
    row('`camnode --version`', version),
    row('`node -e 0`', bare),
    '',
    `Of the table's median ${fmt(med)} s, node start-up and module loading (\`--version\`) take ${fmt(median(version))} s ` +
    `(node alone, \`node -e 0\`: ${fmt(median(bare))} s; the rest is loading camnode's modules: main.js imports every subcommand's code), ` +
    `connecting and the round trip that ends the retained burst another ${fmt(Math.max(0, median(empty) - median(version)))} s, ` +
    `and receiving, parsing and rendering the ${published.messages} retained messages the remaining ${fmt(Math.max(0, med - median(empty)))} s.`,
    '',
    `- \`ctl nodes\` over ${NODES} nodes, median time to a complete table: **${fmt(med)} s** (slowest ${fmt(Math.max(...table))} s) — target <= ${TARGET_S} s: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
