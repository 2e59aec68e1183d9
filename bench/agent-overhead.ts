// What camnode costs on top of the ffmpeg work it supervises: 4 cameras at 720p15 ~2 Mbit/s
// recorded by the agent (`camnode run`, its own process, as under systemd) versus 4 bare
// `ffmpeg -c copy -f segment` processes on the same streams, alternating camnode, bare,
// camnode, bare. CPU over each run's first minute (start-up included) and over a steady window
// after it; the agent's own CPU exactly (schedstat), its peak RSS, and how long from spawn until
// every camera's footage is on disk. The RTSP server is not counted.
//
//   node dist/bench/agent-overhead.js [--seconds 120] [--startup-seconds 60] [--cameras 4]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import {
  CLI, machine, machineMarkdown, mb, numberArg, peakRssBytes, processCpuNs, processTicks, sleep, startRtspCamera, stopChild,
  ticksPerSecond, treeTicks, unitNodeOptions, verdict, writeResults,
} from './lib.js';

const SECONDS = numberArg('--seconds', 120);
/** The first minute, start-up included: what a restart costs beside the steady state. */
const STARTUP_S = numberArg('--startup-seconds', 60);
/** 4 is the targets' case; `--cameras 16` is the scale case (one node at four times a branch's usual). */
const CAMERAS = numberArg('--cameras', 4);
const SEGMENT_SECONDS = 2;
const TARGET_RATIO = 1.1;
const TARGET_AGENT_CPU = 0.3; // % of a core
const TARGET_RSS = 64e6;
const TARGET_START_MS = 3_000;
const STREAM = { pattern: 'snow', width: 1280, height: 720, fps: 15, bitrateKbps: 2000 };
/** What every recorder here writes after each packet: the agent's crash safety, given to the bare ones too. */
const FLUSH = ['-segment_format_options', 'flush_packets=1'];

/** Agents lead their own process groups, so a Ctrl-C here does not reach them: pass it on. */
const liveAgents = new Set<number>();
let workDir: string | undefined;
process.once('SIGINT', () => {
  for (const pid of liveAgents) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  process.exit(130);
});

interface Run {
  kind: 'camnode' | 'bare';
  /** From spawn until every camera had bytes of footage on disk, and until each had closed a segment. */
  firstBytesMs: number;
  firstSegmentMs: number;
  /** CPU seconds of the whole tree over its first STARTUP_S seconds, start-up included. */
  startupCpuS: number;
  /** The steady window after that. */
  wallS: number;
  cpuS: number;
  /** camnode only: the agent's node process alone (exact, from schedstat), and its peak RSS. */
  agentCpuS?: number;
  agentPeakRss?: number;
  segments: number;
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

const filesIn = (dir: string, pattern: RegExp): string[] => {
  try {
    return readdirSync(dir).filter((n) => pattern.test(n));
  } catch {
    return [];
  }
};
const someBytes = (dir: string, pattern: RegExp): boolean =>
  filesIn(dir, pattern).some((n) => { try { return statSync(join(dir, n)).size > 0; } catch { return false; } });

/**
 * Times the start: from `t0` until every directory holds footage bytes, then until every one
 * has a closed segment. Polled every 10 ms, so the figures are good to about that.
 */
async function timeStart(t0: number, dirs: string[], writing: RegExp, closed: (dir: string) => boolean, died: () => boolean): Promise<{ firstBytesMs: number; firstSegmentMs: number }> {
  await waitUntil(() => dirs.every((d) => someBytes(d, writing)) || died(), 'footage bytes from every camera', 60_000, 10);
  const firstBytesMs = performance.now() - t0;
  await waitUntil(() => dirs.every(closed) || died(), 'a closed segment from every camera', 60_000, 10);
  return { firstBytesMs, firstSegmentMs: performance.now() - t0 };
}

async function runCamnode(url: string, work: string): Promise<Run> {
  const dir = mkdtempSync(join(work, 'camnode-'));
  const cameraIds = Array.from({ length: CAMERAS }, (_, i) => `cam-${i + 1}`);
  const config = {
    node: { id: 'bench', stateDir: join(dir, 'state') },
    storage: { path: join(dir, 'storage'), maxBytes: '2GB' },
    recording: { segmentSeconds: SEGMENT_SECONDS },
    cameras: cameraIds.map((id) => ({ id, source: url, zone: 'entrance' })),
    button: { backend: 'none' },
    control: { socket: join(dir, 'control.sock') },
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(config));
  // Its own process group and NODE_OPTIONS, as systemd runs it; info logs, the production default.
  const t0 = performance.now();
  const agent = spawn(process.execPath, [CLI, 'run', '--config', configPath], {
    env: { ...process.env, CAMNODE_LOG_LEVEL: 'info', NODE_OPTIONS: unitNodeOptions() }, stdio: ['ignore', 'ignore', 'pipe'], detached: true,
  });
  liveAgents.add(agent.pid!);
  let stderrTail = '';
  createInterface({ input: agent.stderr! }).on('line', (line) => {
    if (!line.startsWith('{')) stderrTail = (stderrTail + line + '\n').slice(-2000);
  });
  const camDirs = cameraIds.map((id) => join(dir, 'storage', 'segments', id));
  const SEGMENT = /^\d{12}_/;
  const finished = (): number => camDirs.reduce((n, d) => n + filesIn(d, SEGMENT).length, 0);
  try {
    const start = await timeStart(t0, camDirs, /^rec-/, (d) => filesIn(d, SEGMENT).length > 0, () => agent.exitCode !== null);
    if (agent.exitCode !== null) throw new Error(`camnode exited (${agent.exitCode}): ${stderrTail}`);
    const pid = agent.pid!;
    await sleep(Math.max(0, t0 + STARTUP_S * 1000 - performance.now()));
    const c0 = treeTicks(pid);
    const a0 = processCpuNs(pid);
    const t1 = performance.now();
    const s0 = finished();
    await sleep(SECONDS * 1000);
    if (agent.exitCode !== null) throw new Error(`camnode exited during the window (${agent.exitCode}): ${stderrTail}`);
    const c1 = treeTicks(pid);
    const a1 = processCpuNs(pid);
    const wallS = (performance.now() - t1) / 1000;
    const s1 = finished();
    // VmHWM is the high-water mark since the process began: read it before it exits.
    const agentPeakRss = peakRssBytes(pid) ?? NaN;
    const tck = ticksPerSecond();
    return {
      kind: 'camnode', ...start, wallS,
      startupCpuS: (c0.self + c0.children) / tck,
      cpuS: (c1.self + c1.children - c0.self - c0.children) / tck,
      agentCpuS: (a1 - a0) / 1e9,
      agentPeakRss,
      segments: s1 - s0,
    };
  } finally {
    const code = await stopChild(agent, { group: false, timeoutMs: 20_000 });
    if (code !== 0) console.error(`camnode exited with ${code} on SIGTERM`);
    try { process.kill(-agent.pid!, 'SIGKILL'); } catch { /* the group is gone: good */ }
    liveAgents.delete(agent.pid!);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runBare(url: string, work: string): Promise<Run> {
  const dir = mkdtempSync(join(work, 'bare-'));
  const procs: ChildProcess[] = [];
  const dirs: string[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < CAMERAS; i++) {
      const out = join(dir, `cam-${i + 1}`);
      mkdirSync(out);
      dirs.push(out);
      // The plain recorder a person would run by hand (quiet, like the agent's ffmpeg), with the
      // agent's flush after each packet so that both write alike.
      procs.push(spawn('ffmpeg', ['-hide_banner', '-nostats', '-loglevel', 'warning', '-rtsp_transport', 'tcp', '-i', url,
        '-c', 'copy', '-f', 'segment', '-segment_time', String(SEGMENT_SECONDS), '-segment_format', 'mpegts', ...FLUSH,
        join(out, 'out-%06d.ts')], { stdio: ['ignore', 'ignore', 'ignore'] }));
    }
    // A second file means the first segment closed: the same point as camnode's first segment.
    const finished = (): number => dirs.reduce((n, d) => n + Math.max(0, filesIn(d, /\.ts$/).length - 1), 0);
    const died = () => procs.some((p) => p.exitCode !== null);
    const start = await timeStart(t0, dirs, /\.ts$/, (d) => filesIn(d, /\.ts$/).length >= 2, died);
    if (died()) throw new Error('a bare ffmpeg exited early');
    await sleep(Math.max(0, t0 + STARTUP_S * 1000 - performance.now()));
    const ticks = (): number => procs.reduce((n, p) => n + processTicks(p.pid!), 0);
    const c0 = ticks();
    const t1 = performance.now();
    const s0 = finished();
    await sleep(SECONDS * 1000);
    const c1 = ticks();
    const wallS = (performance.now() - t1) / 1000;
    const tck = ticksPerSecond();
    return { kind: 'bare', ...start, startupCpuS: c0 / tck, wallS, cpuS: (c1 - c0) / tck, segments: finished() - s0 };
  } finally {
    await Promise.all(procs.map((p) => stopChild(p, { signal: 'SIGINT', timeoutMs: 5_000 })));
    rmSync(dir, { recursive: true, force: true });
  }
}

const pct = (cpuS: number, wallS: number): string => `${((cpuS / wallS) * 100).toFixed(2)} %`;

async function main(): Promise<number> {
  const m = machine();
  const nodeOptions = unitNodeOptions();
  console.log(`agent-overhead: ${CAMERAS} cameras ${STREAM.width}x${STREAM.height}@${STREAM.fps} ${STREAM.pattern} ~${STREAM.bitrateKbps} kbit/s, ` +
    `${STARTUP_S} s from start then ${SECONDS} s steady per run, agent NODE_OPTIONS=${nodeOptions || '(none)'}`);
  const work = mkdtempSync(join(tmpdir(), 'camnode-bench-overhead-'));
  workDir = work;
  // One shared RTSP server (one encoder, a client per camera): a server each would each encode 720p snow
  // and crowd a 2-core machine, skewing what we measure. It runs through every phase.
  const camera = await startRtspCamera(STREAM);
  const runs: Run[] = [];
  try {
    for (const kind of ['camnode', 'bare', 'camnode', 'bare'] as const) {
      const run = kind === 'camnode' ? await runCamnode(camera.url, work) : await runBare(camera.url, work);
      runs.push(run);
      const extra = run.agentCpuS === undefined ? '' : ` (agent process ${run.agentCpuS.toFixed(3)} s = ${pct(run.agentCpuS, run.wallS)}), agent peak RSS ${mb(run.agentPeakRss!)}`;
      console.log(`  ${kind.padEnd(7)} footage on disk ${(run.firstBytesMs / 1000).toFixed(2)} s, first segments ${(run.firstSegmentMs / 1000).toFixed(2)} s; ` +
        `first ${STARTUP_S} s CPU ${run.startupCpuS.toFixed(2)} s; steady CPU ${run.cpuS.toFixed(2)} s over ${run.wallS.toFixed(1)} s (${pct(run.cpuS, run.wallS)})${extra}, ${run.segments} segments`);
    }
  } finally {
    await camera.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const of = (kind: Run['kind']) => runs.filter((r) => r.kind === kind);
  const share = (kind: Run['kind'], f: (r: Run) => number, wall: (r: Run) => number) => of(kind).reduce((a, r) => a + f(r) / wall(r), 0);
  const ratio = share('camnode', (r) => r.cpuS, (r) => r.wallS) / share('bare', (r) => r.cpuS, (r) => r.wallS);
  const startupRatio = share('camnode', (r) => r.startupCpuS, () => STARTUP_S) / share('bare', (r) => r.startupCpuS, () => STARTUP_S);
  const agentCpu = Math.max(...of('camnode').map((r) => (r.agentCpuS! / r.wallS) * 100));
  const peakRss = Math.max(...of('camnode').map((r) => r.agentPeakRss!));
  const start = Math.max(...of('camnode').map((r) => r.firstBytesMs));
  const checks = [
    { what: 'Whole tree ÷ bare ffmpeg, steady', value: ratio.toFixed(2), ok: ratio <= TARGET_RATIO, target: `<= ${TARGET_RATIO}` },
    { what: 'Agent process CPU, steady (the higher run)', value: `${agentCpu.toFixed(3)} % of a core`, ok: agentCpu <= TARGET_AGENT_CPU, target: `<= ${TARGET_AGENT_CPU} %` },
    { what: 'Agent peak RSS (max VmHWM)', value: mb(peakRss), ok: peakRss <= TARGET_RSS, target: `<= ${mb(TARGET_RSS)}` },
    { what: 'Start to every camera\'s footage on disk (the slower run)', value: `${(start / 1000).toFixed(2)} s`, ok: start <= TARGET_START_MS, target: `<= ${TARGET_START_MS / 1000} s` },
  ];
  for (const c of checks) console.log(`  ${c.what}: ${c.value} (target ${c.target}) ${verdict(c.ok)}`);
  console.log(`  whole tree ÷ bare over the first ${STARTUP_S} s, start-up included: ${startupRatio.toFixed(2)} (reported, no target)`);

  const rows = runs.map((r, i) => `| ${i + 1} | ${r.kind} | ${(r.firstBytesMs / 1000).toFixed(2)} | ${(r.firstSegmentMs / 1000).toFixed(2)} | ${r.startupCpuS.toFixed(2)} | ${r.wallS.toFixed(1)} | ${r.cpuS.toFixed(2)} | ${pct(r.cpuS, r.wallS)} | ` +
    `${r.agentCpuS === undefined ? '–' : `${r.agentCpuS.toFixed(3)} (${pct(r.agentCpuS, r.wallS)})`} | ${r.agentPeakRss ? mb(r.agentPeakRss) : '–'} | ${r.segments} |`);
  const path = writeResults(CAMERAS === 4 ? 'agent-overhead' : `agent-overhead-${CAMERAS}-cameras`, [
    '# Agent overhead: camnode vs bare ffmpeg',
    '',
    `Measured: ${CAMERAS} cameras recorded by camnode (\`camnode run\` in its own process group with the unit's \`NODE_OPTIONS=${nodeOptions}\`: ` +
    `the agent plus its ffmpeg children, reaped children included) and by ${CAMERAS} bare ` +
    `\`ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time ${SEGMENT_SECONDS} -segment_format mpegts -segment_format_options flush_packets=1\` processes, ` +
    `alternating camnode, bare, camnode, bare. Each run: its first ${STARTUP_S} s (start-up included), then a steady window of ${SECONDS} s. ` +
    'Tree CPU is utime + stime from /proc (10-ms ticks); the agent process\'s own CPU is the sum of its threads\' schedstat run time (exact). ' +
    'Start: from spawn until every camera has footage bytes in a file on disk (polled every 10 ms), and until every camera has closed a segment. ' +
    `Streams: one shared GStreamer RTSP server (test/helpers/rtsp-server.py, ${STREAM.width}x${STREAM.height}@${STREAM.fps}, ` +
    `pattern ${STREAM.pattern}, ${STREAM.bitrateKbps} kbit/s) with ${CAMERAS} clients; its own CPU is not counted. ` +
    'Agent peak RSS is VmHWM of the agent process (not its ffmpeg children). camnode\'s ffmpeg also carries `-timeout`, ' +
    '`-map 0:v:0 -an` and `-segment_list pipe:1`.',
    ...(CAMERAS === 4 ? [] : ['', `The targets are those set for 4 cameras; with ${CAMERAS} they are a guide, not a verdict.`]),
    '',
    machineMarkdown(m),
    '',
    `| run | recorder | footage on disk s | first segments s | CPU s, first ${STARTUP_S} s | steady window s | steady CPU s | steady CPU of a core | agent process CPU s | agent peak RSS | segments closed |`,
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    '| measure | value | target | |',
    '|---|---|---|---|',
    ...checks.map((c) => `| ${c.what} | **${c.value}** | ${c.target} | **${verdict(c.ok)}** |`),
    `| Whole tree ÷ bare over the first ${STARTUP_S} s, start-up included | ${startupRatio.toFixed(2)} | – | |`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return checks.every((c) => c.ok) ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
