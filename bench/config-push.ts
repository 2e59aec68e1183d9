// Config push to committed (CONTRACT §9 Config push) on a 4-camera node: `camnode run` (its own
// process, info logs) recording 4 RTSP cameras (a GStreamer server each, `-c copy`, 2 s segments);
// config pushes sent as `ctl config --set` sends them (`config {yaml}` over MQTT, through a
// private Mosquitto; unsigned: the node takes unsigned commands with mqtt.requireSignedCommands
// false, which measures the push and not the signature), each timed from publishing the request
// to the agent's `config committed` log line (the commit waits for the broker link too),
// in five kinds, ROUNDS of each, alternating between two values so that every push changes
// something:
//   - one camera's settings (its zone): that camera restarts, the other three go on;
//   - the ring's limits (storage.maxAge): applied in place, no camera restarts;
//   - an incident setting (incident.preRoll): the services are rebuilt, no camera restarts;
//   - a fifth camera added, then removed again: the services are rebuilt, it starts / stops;
//   - the segment length (recording.segmentSeconds 2 ↔ 3): the ring and all four recorders rebuilt.
// For each restarted camera the gap it had (the state's restartedCameras[].gapMs, read once its
// first new segment is in), and for each push whether a camera that should have gone on had its
// ffmpeg replaced (it must not).
//
//   node dist/bench/config-push.js [--rounds 5]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { FleetClient } from '../src/ops/client.js';
import { ControlClient, RunningBenchAgent } from './control-lib.js';
import { startBroker } from './fleet-lib.js';
import { machine, machineMarkdown, median, numberArg, sleep, startRtspCamera, verdict, writeResults } from './lib.js';

const ROUNDS = Math.max(1, Math.floor(numberArg('--rounds', 5)));
// One server per camera (a camera that reconnects must not disturb the others' streams), small
// enough that five encode on this machine beside the agent.
const STREAM = { pattern: 'ball', width: 640, height: 360, fps: 10, bitrateKbps: 800 };
const CAMERAS = ['cam-1', 'cam-2', 'cam-3', 'cam-4'];
/** Goals: a camera change proven within two segments and a connect; its gap within two segments. */
const TARGET_COMMIT_S = 6;
const TARGET_GAP_S = 4;

type Kind = 'camera' | 'ring' | 'services' | 'add' | 'remove' | 'segment-length';
interface Push { kind: Kind; commitS: number; gapsMs: number[]; replaced: string[] }

/** The ffmpeg of each camera now (its output names the camera's folder). */
async function recorders(storage: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const args = (await readFile(join('/proc', name, 'cmdline'), 'utf8').catch(() => '')).split('\0');
    if (!/(^|\/)ffmpeg$/.test(args[0] ?? '')) continue;
    const m = args.map((a) => new RegExp(`^${join(storage, 'segments')}/([^/]+)/`).exec(a)).find((x) => x);
    if (m) out.set(m[1]!, Number(name));
  }
  return out;
}

async function main(): Promise<number> {
  const m = machine();
  const dir = mkdtempSync(join(tmpdir(), 'camnode-bench-push-'));
  const servers = await Promise.all([...CAMERAS, 'cam-5'].map(() => startRtspCamera(STREAM)));
  const urlOf = (i: number): string => servers[i]!.url;
  const broker = await startBroker();
  const storage = join(dir, 'storage');
  const socket = join(dir, 'control.sock');
  const doc = {
    node: { id: 'bench', stateDir: join(dir, 'state') },
    storage: { path: storage, maxBytes: '2GB', maxAge: '30d' },
    recording: { segmentSeconds: 2 },
    cameras: CAMERAS.map((id, i) => ({ id, source: urlOf(i), zone: 'entrance' })),
    incident: { preRoll: '2m' },
    button: { backend: 'none' },
    control: { socket },
    mqtt: { url: broker.url, requireSignedCommands: false },
    fleet: { rollbackAfter: '2m' },
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(doc));
  console.log(`config-push: ${ROUNDS} rounds of 6 kinds of push to camnode run recording ${CAMERAS.length} RTSP cameras (${STREAM.width}x${STREAM.height}@${STREAM.fps}, copy, 2 s segments)`);
  const agent = await RunningBenchAgent.start(configPath, dir, CAMERAS.length, 60_000);
  // A fresh connection per question: a push that rebuilds the services re-opens the socket.
  const state = async <T>(): Promise<T> => {
    const client = await ControlClient.open(socket);
    try {
      return (await client.request('state', {})).reply.data as T;
    } finally {
      client.close();
    }
  };
  const fleet = await FleetClient.connect({ url: broker.url, protocolVersion: 5, prefix: 'camnode', timeoutMs: 30_000 });
  const pushes: Push[] = [];
  try {
    await sleep(5_000);
    const current = structuredClone(doc) as typeof doc & { cameras: { id: string; source: string; zone: string }[] };
    const edits: [Kind, (round: number) => void, string[]][] = [
      ['camera', (r) => { current.cameras[0]!.zone = r % 2 === 0 ? 'collections' : 'entrance'; }, ['cam-1']],
      ['ring', (r) => { current.storage.maxAge = r % 2 === 0 ? '20d' : '30d'; }, []],
      ['services', (r) => { current.incident.preRoll = r % 2 === 0 ? '3m' : '2m'; }, []],
      ['add', () => { current.cameras.push({ id: 'cam-5', source: urlOf(4), zone: 'seating' }); }, []],
      ['remove', () => { current.cameras.pop(); }, []],
      ['segment-length', (r) => { current.recording.segmentSeconds = r % 2 === 0 ? 3 : 2; }, CAMERAS],
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [kind, edit, restarting] of edits) {
        const before = await recorders(storage);
        const restartsBefore = new Map<string, string>();
        const state0 = await state<{ restartedCameras?: { camera: string; at: string }[] }>();
        for (const r of state0.restartedCameras ?? []) restartsBefore.set(r.camera, r.at);
        edit(round);
        const committed = agent.waitForLog((e) => e['msg'] === 'config committed' || e['msg'] === 'config rolled back', 'config committed', 150_000);
        const t0 = performance.now();
        const reply = await fleet.request('bench', 'config', { yaml: stringify(current) });
        if (!reply.ok) throw new Error(`push refused: ${JSON.stringify(reply.error)}`);
        const { entry, at } = await committed;
        if (entry['msg'] !== 'config committed') throw new Error(`rolled back: ${String(entry['reason'])}`);
        const commitS = (at - t0) / 1000;
        // Each restarted camera's gap, once its first new segment is in.
        const gapsMs: number[] = [];
        for (const id of restarting) {
          for (let i = 0; i < 100; i++) {
            const s = await state<{ restartedCameras?: { camera: string; at: string; gapMs: number | null }[] }>();
            const r = s.restartedCameras?.find((x) => x.camera === id && x.at !== restartsBefore.get(id));
            if (r && r.gapMs !== null) { gapsMs.push(r.gapMs); break; }
            await sleep(200);
          }
        }
        const after = await recorders(storage);
        const replaced = [...before].filter(([id, pid]) => !restarting.includes(id) && after.has(id) && after.get(id) !== pid).map(([id]) => id);
        pushes.push({ kind, commitS, gapsMs, replaced });
        console.log(`  round ${round + 1} ${kind}: committed in ${commitS.toFixed(2)} s${gapsMs.length ? `, gaps ${gapsMs.join(', ')} ms` : ''}${replaced.length ? `, REPLACED ${replaced.join(', ')}` : ''}`);
        await sleep(2_000);
      }
    }
  } finally {
    await fleet.close();
    await agent.stop(30_000);
    for (const server of servers) await server.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const kinds: Kind[] = ['camera', 'ring', 'services', 'add', 'remove', 'segment-length'];
  const rows = kinds.map((kind) => {
    const ps = pushes.filter((p) => p.kind === kind);
    const commits = ps.map((p) => p.commitS);
    const gaps = ps.flatMap((p) => p.gapsMs);
    return { kind, n: ps.length, p50: median(commits), max: Math.max(...commits), gapP50: gaps.length ? median(gaps) : null, gapMax: gaps.length ? Math.max(...gaps) : null, replaced: ps.flatMap((p) => p.replaced).length };
  });
  const cam = rows.find((r) => r.kind === 'camera')!;
  const replaced = rows.reduce((n, r) => n + r.replaced, 0);
  const ok = cam.max <= TARGET_COMMIT_S && (cam.gapMax ?? Infinity) <= TARGET_GAP_S * 1000 && replaced === 0;
  const what: Record<Kind, string> = {
    camera: 'one camera\'s zone (it restarts)',
    ring: 'storage.maxAge (in place)',
    services: 'incident.preRoll (services rebuilt)',
    add: 'a fifth camera added (services rebuilt; it must record)',
    remove: 'the fifth camera removed (services rebuilt)',
    'segment-length': 'recording.segmentSeconds 2 ↔ 3 (ring and all 4 recorders rebuilt)',
  };
  const table = [
    '| push | n | to committed p50 s | max s | gap per restarted camera p50 ms | max ms | unchanged cameras whose ffmpeg was replaced |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${what[r.kind]} | ${r.n} | ${r.p50.toFixed(2)} | ${r.max.toFixed(2)} | ${r.gapP50 ?? '–'} | ${r.gapMax ?? '–'} | ${r.replaced} |`),
  ];
  for (const line of table) console.log(`  ${line}`);
  console.log(`  camera change committed within ${TARGET_COMMIT_S} s, its gap within ${TARGET_GAP_S} s, no unchanged camera restarted: ${verdict(ok)}`);
  const path = writeResults('config-push', [
    '# Config push to committed, on a 4-camera node',
    '',
    `Measured: \`camnode run\` (its own process, info logs) recording ${CAMERAS.length} cameras, each from a GStreamer RTSP server of its own ` +
    `(${STREAM.width}x${STREAM.height}@${STREAM.fps} ${STREAM.pattern}, ${STREAM.bitrateKbps} kbit/s, \`-c copy\`, 2 s segments). ` +
    'Pushes sent as `config {yaml}` over MQTT through a private Mosquitto on this machine (unsigned: `mqtt.requireSignedCommands: false`), ' +
    'each timed from publishing the request to the agent\'s `config committed` log line (the commit: every enabled camera records — ' +
    'a restarted camera once its first new segment is closed — and the broker link is up: a push that rebuilds the services reconnects it). ' +
    `${ROUNDS} rounds of each kind, 2 s apart, values alternating. The gap of a restarted camera is the state's ` +
    '`restartedCameras[].gapMs`: from the end of its last segment before the restart to the start of its first after. ' +
    'Cameras that should have gone on were checked by their ffmpeg\'s pid before and after each push.',
    '',
    `${machineMarkdown(m)}`,
    '',
    ...table,
    '',
    `- A camera's change committed in at most **${cam.max.toFixed(2)} s** (p50 ${cam.p50.toFixed(2)} s; goal ≤ ${TARGET_COMMIT_S} s), its gap at most ` +
    `**${cam.gapMax ?? '–'} ms** (goal ≤ ${TARGET_GAP_S * 1000} ms); unchanged cameras' ffmpeg replaced: **${replaced}** — **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
