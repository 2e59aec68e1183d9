// What camnode costs on top of the ffmpeg work it supervises: 4 cameras at 720p15 ~2 Mbit/s
// recorded by the agent (`camnode run`, its own process, as under systemd) versus 4 bare
// `ffmpeg -c copy -f segment` processes on the same streams, alternating camnode, bare,
// camnode, bare. CPU is user + system time from /proc over a steady-state window (after every
// camera has closed its first segment and a few seconds more); the RTSP server is not counted.
//
//   node dist/bench/agent-overhead.js [--seconds 60]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import {
  CLI, machine, machineMarkdown, mb, numberArg, peakRssBytes, processTicks, sleep, startRtspCamera, stopChild,
  ticksPerSecond, treeTicks, verdict, writeResults,
} from './lib.js';

const SECONDS = numberArg('--seconds', 60);
const CAMERAS = 4;
const SEGMENT_SECONDS = 2;
/** After the first segments, before measuring: connection set-up is not the steady state. */
const SETTLE_MS = 4_000;
const TARGET_RATIO = 1.2;
const TARGET_RSS = 80e6;
const STREAM = { pattern: 'snow', width: 1280, height: 720, fps: 15, bitrateKbps: 2000 };

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
  wallS: number;
  cpuS: number;
  /** camnode only: the agent's node process alone, and its peak RSS. */
  agentCpuS?: number;
  agentPeakRss?: number;
  segments: number;
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const countFiles = (dir: string, pattern: RegExp): number => {
  try {
    return readdirSync(dir).filter((n) => pattern.test(n)).length;
  } catch {
    return 0;
  }
};

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
  // Its own process group, as systemd runs it; info logs, the production default.
  const agent = spawn(process.execPath, [CLI, 'run', '--config', configPath], {
    env: { ...process.env, CAMNODE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'], detached: true,
  });
  liveAgents.add(agent.pid!);
  const recording = new Set<string>();
  let stderrTail = '';
  createInterface({ input: agent.stderr! }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { msg?: string; camera?: string };
      if (entry.msg === 'recording' && entry.camera) recording.add(entry.camera);
    } catch {
      stderrTail = (stderrTail + line + '\n').slice(-2000);
    }
  });
  const finished = (): number => cameraIds.reduce((n, id) => n + countFiles(join(dir, 'storage', 'segments', id), /^\d{12}_/), 0);
  try {
    await waitUntil(() => recording.size === CAMERAS || agent.exitCode !== null, 'every camera recording');
    if (agent.exitCode !== null) throw new Error(`camnode exited (${agent.exitCode}): ${stderrTail}`);
    await sleep(SETTLE_MS);
    const pid = agent.pid!;
    const t0 = performance.now();
    const c0 = treeTicks(pid);
    const s0 = finished();
    await sleep(SECONDS * 1000);
    const c1 = treeTicks(pid);
    const wallS = (performance.now() - t0) / 1000;
    const s1 = finished();
    // VmHWM is the high-water mark since the process began: read it before it exits.
    const agentPeakRss = peakRssBytes(pid) ?? NaN;
    const tck = ticksPerSecond();
    return {
      kind: 'camnode', wallS,
      cpuS: (c1.self + c1.children - c0.self - c0.children) / tck,
      agentCpuS: (c1.self - c0.self) / tck,
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
  try {
    for (let i = 0; i < CAMERAS; i++) {
      const out = join(dir, `cam-${i + 1}`);
      mkdirSync(out);
      dirs.push(out);
      // The plain recorder a person would run by hand (quiet, like the agent's ffmpeg).
      procs.push(spawn('ffmpeg', ['-hide_banner', '-nostats', '-loglevel', 'warning', '-rtsp_transport', 'tcp', '-i', url,
        '-c', 'copy', '-f', 'segment', '-segment_time', String(SEGMENT_SECONDS), '-segment_format', 'mpegts',
        join(out, 'out-%06d.ts')], { stdio: ['ignore', 'ignore', 'ignore'] }));
    }
    // A second file means the first segment closed: the same point as camnode's "recording".
    const finished = (): number => dirs.reduce((n, d) => n + Math.max(0, countFiles(d, /\.ts$/) - 1), 0);
    await waitUntil(() => dirs.every((d) => countFiles(d, /\.ts$/) >= 2) || procs.some((p) => p.exitCode !== null), 'every bare ffmpeg recording');
    if (procs.some((p) => p.exitCode !== null)) throw new Error('a bare ffmpeg exited early');
    await sleep(SETTLE_MS);
    const ticks = (): number => procs.reduce((n, p) => n + processTicks(p.pid!), 0);
    const t0 = performance.now();
    const c0 = ticks();
    const s0 = finished();
    await sleep(SECONDS * 1000);
    const c1 = ticks();
    const wallS = (performance.now() - t0) / 1000;
    return { kind: 'bare', wallS, cpuS: (c1 - c0) / ticksPerSecond(), segments: finished() - s0 };
  } finally {
    await Promise.all(procs.map((p) => stopChild(p, { signal: 'SIGINT', timeoutMs: 5_000 })));
    rmSync(dir, { recursive: true, force: true });
  }
}

const pct = (r: Run): string => `${((r.cpuS / r.wallS) * 100).toFixed(1)} %`;

async function main(): Promise<number> {
  const m = machine();
  console.log(`agent-overhead: ${CAMERAS} cameras ${STREAM.width}x${STREAM.height}@${STREAM.fps} ${STREAM.pattern} ~${STREAM.bitrateKbps} kbit/s, ${SECONDS} s per run`);
  const work = mkdtempSync(join(tmpdir(), 'camnode-bench-overhead-'));
  workDir = work;
  // One shared RTSP server (one encoder, 4 clients): 4 servers would each encode 720p snow
  // and crowd a 2-core machine, skewing what we measure. It runs through every phase.
  const camera = await startRtspCamera(STREAM);
  const runs: Run[] = [];
  try {
    for (const kind of ['camnode', 'bare', 'camnode', 'bare'] as const) {
      const run = kind === 'camnode' ? await runCamnode(camera.url, work) : await runBare(camera.url, work);
      runs.push(run);
      const extra = run.agentCpuS === undefined ? '' : ` (agent process ${run.agentCpuS.toFixed(2)} s, its ffmpegs ${(run.cpuS - run.agentCpuS).toFixed(2)} s), agent peak RSS ${mb(run.agentPeakRss!)}`;
      console.log(`  ${kind.padEnd(7)} CPU ${run.cpuS.toFixed(2)} s over ${run.wallS.toFixed(1)} s (${pct(run)} of a core)${extra}, ${run.segments} segments`);
    }
  } finally {
    await camera.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const sum = (kind: Run['kind']): number => runs.filter((r) => r.kind === kind).reduce((a, r) => a + r.cpuS / r.wallS, 0);
  const ratio = sum('camnode') / sum('bare');
  const peakRss = Math.max(...runs.filter((r) => r.agentPeakRss !== undefined).map((r) => r.agentPeakRss!));
  const ratioOk = ratio <= TARGET_RATIO;
  const rssOk = peakRss <= TARGET_RSS;
  console.log(`  CPU ratio camnode/bare ${ratio.toFixed(2)} (target <= ${TARGET_RATIO}) ${verdict(ratioOk)}`);
  console.log(`  agent peak RSS ${mb(peakRss)} (target <= ${mb(TARGET_RSS)}) ${verdict(rssOk)}`);

  const rows = runs.map((r, i) => `| ${i + 1} | ${r.kind} | ${r.wallS.toFixed(1)} | ${r.cpuS.toFixed(2)} | ${pct(r)} | ${r.agentCpuS?.toFixed(2) ?? '–'} | ${r.agentCpuS === undefined ? r.cpuS.toFixed(2) : (r.cpuS - r.agentCpuS).toFixed(2)} | ${r.agentPeakRss ? mb(r.agentPeakRss) : '–'} | ${r.segments} |`);
  const path = writeResults('agent-overhead', [
    '# Agent overhead: camnode vs bare ffmpeg',
    '',
    `Measured: total CPU (utime + stime from /proc/<pid>/stat) of 4 cameras recorded for ${SECONDS} s each run, ` +
    'by camnode (`camnode run` in its own process: the agent plus its ffmpeg children, reaped children included) and by ' +
    `4 bare \`ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time ${SEGMENT_SECONDS} -segment_format mpegts\` processes, ` +
    'alternating camnode, bare, camnode, bare. Each window starts once every camera has closed its first segment, plus ' +
    `${SETTLE_MS / 1000} s. Streams: one shared GStreamer RTSP server (test/helpers/rtsp-server.py, ${STREAM.width}x${STREAM.height}@${STREAM.fps}, ` +
    `pattern ${STREAM.pattern}, ${STREAM.bitrateKbps} kbit/s) with 4 clients; its own CPU is not counted. ` +
    'Agent peak RSS is VmHWM of the agent process (not its ffmpeg children). camnode\'s ffmpeg also carries `-timeout`, ' +
    '`-map 0:v:0 -an`, `-segment_format_options flush_packets=1` (crash safety: one write per packet) and `-segment_list pipe:1`; the bare ones do not.',
    '',
    machineMarkdown(m),
    '',
    '| run | recorder | window s | CPU s | CPU of a core | agent process CPU s | ffmpeg CPU s | agent peak RSS | segments closed |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `- CPU ratio camnode/bare (mean CPU share): **${ratio.toFixed(2)}** — target <= ${TARGET_RATIO}: **${verdict(ratioOk)}**`,
    `- Agent peak RSS (max VmHWM): **${mb(peakRss)}** — target <= ${mb(TARGET_RSS)}: **${verdict(rssOk)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ratioOk && rssOk ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
