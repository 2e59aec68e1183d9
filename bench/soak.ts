// Soak, accelerated: 8 cameras with 1-s segments (five times the files of a 5-s default), a lock
// a minute sealed and synced to a real S3 protocol server (s3rver) and disposed of once synced
// (as ops would: else the kept clips fill the quota and locks are refused), for up to 2 hours. Every
// 10 s: the agent's RSS (tagged steady or syncing), its live heap after V8's last full GC
// (--trace-gc, as the agent prints it), open file descriptors, CPU, and the control socket's
// ping round trips (a stand-in for event-loop lag: the handler is trivial, so a slow reply is a
// busy loop). After a warm-up, each series' slope per hour against a stated bound; and the state
// it keeps — book, outbox, upload queue, audit log — at start and end beside the work done.
//
// The ring's quota is sized so that it wraps within the warm-up: after it, the index holds a
// steady number of segments and any growth is the agent's own.
//
//   node dist/bench/soak.js [--minutes 120] [--cameras 8] [--warmup-minutes 10] [--dir DIR]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { ControlClient } from './control-lib.js';
import {
  CLI, machine, machineMarkdown, mb, numberArg, percentile, processTicks, sleep, stopChild, ticksPerSecond, unitNodeOptions, verdict, writeResults,
} from './lib.js';

const MINUTES = numberArg('--minutes', 120);
const CAMERAS = numberArg('--cameras', 8);
const WARMUP_MIN = numberArg('--warmup-minutes', Math.min(10, MINUTES / 4));
const SAMPLE_MS = 10_000;
/** Where storage and state live (default the OS temp dir, which may be tmpfs: give a disk). */
const DIR = (() => { const i = process.argv.indexOf('--dir'); return i >= 0 ? process.argv[i + 1] : undefined; })();
/** Full GCs after warm-up below this: the heap series is not measured. */
const MIN_FULL_GCS = 5;
const LOCK_EVERY_MS = 60_000;
const PINGS_PER_SAMPLE = 20;
/** Bounds on the slopes after warm-up, per hour. */
const BOUNDS = { rssMbPerH: 2, heapMbPerH: 1, fdsPerH: 1, cpuPctPerH: 0.1, lagP99MsPerH: 2 };
const PYTHON = '/usr/bin/python3';
const RTSP_SCRIPT = join(CLI, '..', '..', '..', 'test', 'helpers', 'rtsp-server.py');

interface Sample { tMin: number; rssMb: number; syncing: boolean; heapMb: number | null; fullGcs: number; fds: number; cpuPct: number; lagP50: number; lagP99: number }

/** Whether the local audit log was rotated (its first entry is no longer seq 1), read from the file. */
function auditRotation(path: string): string {
  try {
    const first = readFileSync(path, 'utf8').split('\n', 1)[0]!;
    const seq = (JSON.parse(first) as { seq?: unknown }).seq;
    return typeof seq === 'number' && seq > 1 ? `rotated (the local log now begins at seq ${seq})` : 'not rotated (under its 2 MiB rotation point)';
  } catch {
    return 'not read';
  }
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

function startChildReady(cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4096); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready after 20 s: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (ready.test(line)) {
        clearTimeout(timer);
        resolve({ child, line });
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${cmd} exited (${code}): ${stderr}`)); });
  });
}

const dirBytes = (path: string): { files: number; bytes: number } => {
  let files = 0;
  let bytes = 0;
  const walk = (p: string): void => {
    let names: string[];
    try { names = readdirSync(p); } catch { return; }
    for (const n of names) {
      const full = join(p, n);
      const st = statSync(full, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(full);
      else { files++; bytes += st.size; }
    }
  };
  walk(path);
  return { files, bytes };
};
const fileBytes = (path: string): number => statSync(path, { throwIfNoEntry: false })?.size ?? 0;
const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

async function main(): Promise<number> {
  const m = machine();
  const work = mkdtempSync(join(DIR ?? tmpdir(), 'camnode-bench-soak-'));
  const children: ChildProcess[] = [];
  process.once('SIGINT', () => {
    for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { c.kill('SIGKILL'); } }
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  });
  console.log(`soak: ${CAMERAS} cameras, 1-s segments, a lock a minute synced to s3rver, ${MINUTES} min (warm-up ${WARMUP_MIN} min)`);
  try {
    // One pre-encoded file (no encoder per camera); a camera restarts at its end, as they do.
    const file = join(work, 'camera.mkv');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=10', '-t', String(Math.min(MINUTES * 60 + 300, 3600)),
      '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '10', '-bf', '0', '-pix_fmt', 'yuv420p', '-b:v', '400k', file]);
    const urls: string[] = [];
    for (let i = 0; i < CAMERAS; i++) {
      const { child, line } = await startChildReady(PYTHON, [RTSP_SCRIPT, '--port', '0', '--file', file, '--exit-on-stdin-eof'], /^READY /);
      children.push(child);
      urls.push(line.split(' ')[1]!);
    }
    // s3rver, the real S3 protocol, in its own process.
    const s3dir = join(work, 's3');
    mkdirSync(s3dir);
    const s3port = 20_000 + Math.floor(Math.random() * 20_000);
    const s3rverMain = createRequire(import.meta.url).resolve('s3rver');
    const s3 = await startChildReady(process.execPath, ['-e', `
      const S3rver = require(process.env.S3RVER_MAIN);
      new S3rver(JSON.parse(process.env.S3RVER_OPTS)).run().then(() => process.stdout.write('S3RVER READY\\n'));`], /S3RVER READY/,
    { ...process.env, S3RVER_MAIN: s3rverMain, S3RVER_OPTS: JSON.stringify({ port: s3port, address: '127.0.0.1', silent: true, directory: s3dir, configureBuckets: [{ name: 'footage' }] }) });
    children.push(s3.child);
    const credentials = join(work, 's3.env');
    writeFileSync(credentials, 'AWS_ACCESS_KEY_ID=S3RVER\nAWS_SECRET_ACCESS_KEY=S3RVER\n', { mode: 0o600 });

    const stateDir = join(work, 'state');
    const storage = join(work, 'storage');
    const socket = join(work, 'control.sock');
    const configPath = join(work, 'config.yaml');
    // ~400 kbit/s a camera: the ring wraps after about half the warm-up.
    const quotaMb = Math.max(100, Math.round((CAMERAS * 50_000 * WARMUP_MIN * 60 * 0.5) / 1e6));
    writeFileSync(configPath, stringify({
      node: { id: 'soak', stateDir },
      storage: { path: storage, maxBytes: `${quotaMb}MB` },
      recording: { segmentSeconds: 1 },
      cameras: urls.map((source, i) => ({ id: `cam-${i + 1}`, source, zone: 'entrance' })),
      incident: { preRoll: '5s', postRoll: '5s' },
      button: { backend: 'none' },
      control: { socket },
      upstream: { type: 's3', endpoint: `http://127.0.0.1:${s3port}`, region: 'us-east-1', bucket: 'footage', credentials },
    }));
    // As the unit runs it, plus --trace-gc: V8 prints each GC's heap after it on stdout.
    const agent = spawn(process.execPath, ['--trace-gc', CLI, 'run', '--config', configPath], {
      env: { ...process.env, CAMNODE_LOG_LEVEL: 'info', NODE_OPTIONS: unitNodeOptions() }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    children.push(agent);
    // The live heap is what a full GC leaves; a scavenge's figure still holds old garbage.
    let heapAfterFullGc: number | null = null;
    let fullGcs = 0;
    createInterface({ input: agent.stdout! }).on('line', (line) => {
      const g = /Mark-Compact[^\d]*[\d.]+ \([\d.]+\) -> ([\d.]+) \(/.exec(line);
      if (!g) return;
      heapAfterFullGc = Number(g[1]);
      fullGcs++;
    });
    let syncing = 0;
    /** Sync work seen since the last sample: an upload short enough to start and end between two samples still counts. */
    let syncSeen = false;
    const recording = new Set<string>();
    let synced = 0;
    /** Synced incidents to dispose of, in the main loop between pings. */
    const toDispose: string[] = [];
    let logBytes = 0;
    let tail = '';
    createInterface({ input: agent.stderr! }).on('line', (line) => {
      logBytes += line.length + 1;
      tail = (tail + line + '\n').slice(-3000);
      try {
        const e = JSON.parse(line) as { msg?: string; camera?: string };
        if (e.msg === 'recording' && e.camera) recording.add(e.camera);
        if (e.msg === 'queued for upload') { syncing++; syncSeen = true; }
        if (e.msg === 'incident synced') {
          syncing = Math.max(0, syncing - 1);
          synced++;
          syncSeen = true;
          if (typeof (e as { incident?: unknown }).incident === 'string') toDispose.push((e as { incident: string }).incident);
        }
      } catch { /* not JSON */ }
    });
    const t0 = Date.now();
    while (recording.size < CAMERAS) {
      if (agent.exitCode !== null) throw new Error(`camnode exited: ${tail}`);
      if (Date.now() - t0 > 60_000) throw new Error(`cameras not all recording after 60 s: ${tail}`);
      await sleep(200);
    }
    const pid = agent.pid!;
    const client = await ControlClient.open(socket);
    const kept = () => ({
      book: fileBytes(join(stateDir, 'incidents.json')), audit: fileBytes(join(stateDir, 'audit.log')), outbox: fileBytes(join(stateDir, 'events-outbox.jsonl')),
      queue: fileBytes(join(stateDir, 'sync-queue.json')), records: dirBytes(join(stateDir, 'upstream')), state: dirBytes(stateDir),
    });
    const before = kept();

    const samples: Sample[] = [];
    let locks = 0;
    let disposed = 0;
    const lockRefusals: string[] = [];
    let nextLock = Date.now() + 5_000;
    let lastTicks = processTicks(pid);
    let lastAt = Date.now();
    const tck = ticksPerSecond();
    const endAt = t0 + MINUTES * 60_000;
    let nextPrint = Date.now() + 5 * 60_000;
    while (Date.now() < endAt) {
      if (agent.exitCode !== null) throw new Error(`camnode exited during the soak: ${tail}`);
      const sampleEnd = Date.now() + SAMPLE_MS;
      const lags: number[] = [];
      while (Date.now() < sampleEnd) {
        if (Date.now() >= nextLock) {
          nextLock += LOCK_EVERY_MS;
          const { reply } = await client.request('lock', { reason: 'soak', by: 'soak' });
          if (reply.ok) locks++;
          else lockRefusals.push(JSON.stringify(reply.error));
        }
        while (toDispose.length > 0) {
          const { reply } = await client.request('dispose', { incident: toDispose.shift(), by: 'soak', reason: 'soak: synced' });
          if (reply.ok) disposed++;
        }
        if (lags.length < PINGS_PER_SAMPLE) lags.push((await client.request('ping', {})).ms);
        await sleep(SAMPLE_MS / PINGS_PER_SAMPLE);
      }
      const ticks = processTicks(pid);
      const now = Date.now();
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rssKib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      lags.sort((a, b) => a - b);
      samples.push({
        tMin: (now - t0) / 60_000, rssMb: (rssKib * 1024) / 1e6, syncing: syncing > 0 || syncSeen,
        heapMb: heapAfterFullGc, fullGcs, fds: readdirSync(`/proc/${pid}/fd`).length,
        cpuPct: ((ticks - lastTicks) / tck / ((now - lastAt) / 1000)) * 100, lagP50: percentile(lags, 50), lagP99: percentile(lags, 99),
      });
      lastTicks = ticks;
      lastAt = now;
      syncSeen = false;
      if (now > nextPrint) {
        nextPrint += 5 * 60_000;
        const s = samples.at(-1)!;
        console.log(`  ${s.tMin.toFixed(0)} min: RSS ${s.rssMb.toFixed(1)} MB, heap ${s.heapMb?.toFixed(1)} MB, fds ${s.fds}, CPU ${s.cpuPct.toFixed(2)} %, ping p99 ${s.lagP99.toFixed(1)} ms, ${locks} locks, ${synced} synced`);
      }
    }
    // Let the last incidents sync, then read what the node keeps.
    const drainUntil = Date.now() + 120_000;
    while (synced < locks && Date.now() < drainUntil) await sleep(1_000);
    const after = kept();
    const book = (await client.request('incidents', {})).reply.data as { incidents: { state: string }[] };
    client.close();
    const peakRss = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
    await stopChild(agent, { group: false, timeoutMs: 30_000 });

    const warm = samples.filter((s) => s.tMin >= WARMUP_MIN);
    const x = (ss: Sample[]) => ss.map((s) => s.tMin / 60);
    const steady = warm.filter((s) => !s.syncing);
    const during = warm.filter((s) => s.syncing);
    const withHeap = warm.filter((s) => s.heapMb !== null);
    const fullGcsAfterWarmup = warm.length ? warm.at(-1)!.fullGcs - (samples.find((s) => s.tMin >= WARMUP_MIN)?.fullGcs ?? 0) : 0;
    const heapMeasured = fullGcsAfterWarmup >= MIN_FULL_GCS;
    const mean = (ys: number[]) => ys.reduce((a, b) => a + b, 0) / Math.max(1, ys.length);
    const rows = [
      { what: 'RSS, steady (MB/h)', value: slope(x(steady), steady.map((s) => s.rssMb)), bound: BOUNDS.rssMbPerH, level: `mean ${mean(steady.map((s) => s.rssMb)).toFixed(1)} MB` },
      { what: 'RSS, during sync (MB/h)', value: slope(x(during), during.map((s) => s.rssMb)), bound: BOUNDS.rssMbPerH, level: `mean ${mean(during.map((s) => s.rssMb)).toFixed(1)} MB, ${during.length} samples` },
      { what: 'live heap after a full GC (MB/h)', value: heapMeasured ? slope(x(withHeap), withHeap.map((s) => s.heapMb!)) : NaN, bound: BOUNDS.heapMbPerH,
        level: heapMeasured ? `mean ${mean(withHeap.map((s) => s.heapMb!)).toFixed(1)} MB over ${fullGcsAfterWarmup} full GCs` : `not measured: ${fullGcsAfterWarmup} full GCs after warm-up (< ${MIN_FULL_GCS})` },
      { what: 'open file descriptors (per h)', value: slope(x(warm), warm.map((s) => s.fds)), bound: BOUNDS.fdsPerH, level: `${Math.min(...warm.map((s) => s.fds))}–${Math.max(...warm.map((s) => s.fds))}` },
      { what: 'agent CPU (% of a core, per h)', value: slope(x(warm), warm.map((s) => s.cpuPct)), bound: BOUNDS.cpuPctPerH, level: `mean ${mean(warm.map((s) => s.cpuPct)).toFixed(2)} % = ${(mean(warm.map((s) => s.cpuPct)) * 36).toFixed(0)} CPU-s per hour` },
      { what: 'ping p99, event-loop lag stand-in (ms/h)', value: slope(x(warm), warm.map((s) => s.lagP99)), bound: BOUNDS.lagP99MsPerH, level: `p99 of p99s ${percentile(warm.map((s) => s.lagP99).sort((a, b) => a - b), 99).toFixed(1)} ms` },
    ];
    const ok = rows.map((r) => Number.isFinite(r.value) && r.value <= r.bound);
    for (const [i, r] of rows.entries()) console.log(`  ${r.what}: ${r.value.toFixed(3)} (bound ${r.bound}; ${r.level}) ${verdict(ok[i]!)}`);
    const states = new Map<string, number>();
    for (const i of book.incidents) states.set(i.state, (states.get(i.state) ?? 0) + 1);
    const stateLines = [
      `| book (incidents.json) | ${kb(before.book)} | ${kb(after.book)} | ${book.incidents.length} incidents (${[...states].map(([k, v]) => `${v} ${k}`).join(', ')}) for ${locks} locks (${lockRefusals.length} refused), ${disposed} disposed of once synced |`,
      `| audit log | ${kb(before.audit)} | ${kb(after.audit)} | an entry per lock, seal, sync and pruning pass; shipped upstream, ${auditRotation(join(stateDir, 'audit.log'))} |`,
      `| events outbox (events-outbox.jsonl) | ${kb(before.outbox)} | ${kb(after.outbox)} | no broker configured here |`,
      `| upload queue (sync-queue.json) | ${kb(before.queue)} | ${kb(after.queue)} | ${synced} of ${locks} synced |`,
      `| records outbox (upstream/: audit chunks, heads) | ${before.records.files} files | ${after.records.files} files, ${kb(after.records.bytes)} | sent as they come |`,
      `| whole state dir | ${before.state.files} files, ${kb(before.state.bytes)} | ${after.state.files} files, ${kb(after.state.bytes)} | |`,
    ];
    const path = writeResults(`soak-${MINUTES}min`, [
      `# Soak: ${MINUTES} minutes, ${CAMERAS} cameras, 1-s segments`,
      '',
      `${CAMERAS} RTSP cameras playing a pre-encoded 640x360@10 file (~400 kbit/s), \`recording.segmentSeconds: 1\`, storage.maxBytes ${quotaMb} MB (the ring wraps within the warm-up), a lock a minute over the control ` +
      'socket (pre- and post-roll 5 s) sealed and synced to s3rver. The agent runs as the unit runs it (`NODE_OPTIONS` from device/camnode.service), with ' +
      `\`--trace-gc\` for the heap. Sampled every ${SAMPLE_MS / 1000} s; slopes are least squares over the samples after a ${WARMUP_MIN}-minute warm-up. ` +
      '"During sync" are the samples whose 10 s saw an incident queued, uploading or synced. Lag is the control socket\'s ping round trip (20 per sample).',
      '',
      machineMarkdown(m),
      '',
      '| series | slope after warm-up | bound | level | |',
      '|---|---|---|---|---|',
      ...rows.map((r, i) => `| ${r.what} | ${r.value.toFixed(3)} | ≤ ${r.bound} | ${r.level} | **${verdict(ok[i]!)}** |`),
      '',
      `Agent peak RSS (VmHWM) over the run: ${mb(peakRss)}. Log written: ${mb(logBytes)} (${mb((logBytes / (MINUTES / 60)) * 24)} a day at this pace).`,
      '',
      '| kept state | start | end | explained by |',
      '|---|---|---|---|',
      ...stateLines,
      '',
      '| minute | RSS MB | syncing | heap MB | fds | CPU % | ping p50 ms | ping p99 ms |',
      '|---|---|---|---|---|---|---|---|',
      ...samples.filter((_, i) => i % 30 === 0 || i === samples.length - 1).map((s) =>
        `| ${s.tMin.toFixed(1)} | ${s.rssMb.toFixed(1)} | ${s.syncing ? 'yes' : ''} | ${s.heapMb?.toFixed(1) ?? '–'} | ${s.fds} | ${s.cpuPct.toFixed(2)} | ${s.lagP50.toFixed(2)} | ${s.lagP99.toFixed(2)} |`),
    ].join('\n'));
    console.log(`  results: ${path}`);
    return ok.every(Boolean) ? 0 : 1;
  } finally {
    for (const c of children.reverse()) {
      try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* not a group leader */ }
      if (c.exitCode === null) await stopChild(c, { timeoutMs: 5_000 }).catch(() => undefined);
    }
    if (existsSync(work)) rmSync(work, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
