// Hold latency (CONTRACT §6), request to durable incident with its `missing` computed: 200 `hold`
// requests over the control socket of a loaded recorder (`camnode run`, its own process, 4
// cameras recording as in bench/lock-latency.ts: 2 RTSP cameras copied as IP cameras are, 2
// `testsrc` cameras encoded on this machine), each for a past range inside recorded footage
// (now − 20 s to now − 10 s, default cameras). A hold reads the ring's index (the cameras with
// footage in the range, the footage every lock keeps for the pinned share, what is missing), so
// the ring is given a full disk's index: 100,000 older segment files of the same cameras, created
// before the agent starts as sparse files (500 kB apparent each, no blocks on disk; less on a
// filesystem too small for 50 GB), with `storage.maxBytes`
// equal to their total — the ring is at its quota from its first pass, and from then on every
// finished segment and every sealed clip makes the pruner delete the oldest footage.
// One connection, one request at a time, a second between holds (staff ask for footage one by
// one; the sealer, sealing each hold a few seconds after it is made, runs meanwhile). Each hold
// is timed from the request's write to its reply, which the agent sends only after the book is
// fsynced (file and directory), the audit entry fdatasynced, every in-flight unlink finished,
// and `missing` read from the index.
//
//   node dist/bench/hold-latency.js [--holds 200] [--gap-ms 1000] [--prefill 100000] [--dir DIR]
//     --prefill 6000: a small ring (3 GB quota, an index of about 6,000 segments)
//     --gap-ms N: the pause between holds (0: back to back)
//     --dir /dev/shm: no device under the syncs (tmpfs), to tell the agent's own work from the disk's
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, open, readdir } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { segmentFileName } from '../src/store/segment.js';
import { machine, machineMarkdown, median, numberArg, percentile, ROOT, sleep, startRtspCamera, verdict, writeResults } from './lib.js';
import { ControlClient, filesystemOf, pings, RunningBenchAgent, syncCost } from './control-lib.js';

const HOLDS = numberArg('--holds', 200);
/**
 * A hold a second: far more than staff ask for, and still slow enough for the sealer to seal each
 * hold before the next few come (with 250 ms, holds not yet sealed pile up; see --gap-ms).
 */
const DEFAULT_GAP_MS = 1_000;
const DEFAULT_PREFILL = 100_000;
const GAP_MS = process.argv.includes('--gap-ms') ? Math.max(0, Number(process.argv[process.argv.indexOf('--gap-ms') + 1]) || 0) : DEFAULT_GAP_MS;
const PREFILL = Math.floor(numberArg('--prefill', DEFAULT_PREFILL));
/** Apparent size of an older segment: 2 s at 2 Mbit/s (less on a filesystem too small for their total, such as a tmpfs). */
const PREFILL_BYTES = 500_000;
const PINGS = 50;
const TARGET_P99_MS = 100;
/** A sync of the background probe slower than this is a stall of the device. */
const STALL_MS = 20;
const SEGMENT_SECONDS = 2;
/** The held range, back from the moment of the request. */
const HOLD_FROM_MS = 20_000;
const HOLD_TO_MS = 10_000;
/** After every camera has recorded: the held range (now − 20 s) must be footage already. */
const SETTLE_MS = HOLD_FROM_MS + 6_000;
/** The book on disk is read every this many holds (untimed) for the holds not yet sealed. */
const SAMPLE_EVERY = 10;
const STREAM = { pattern: 'snow', width: 1280, height: 720, fps: 15, bitrateKbps: 2000 };
const CAMERAS = [
  { id: 'ip-1', kind: 'rtsp' }, { id: 'ip-2', kind: 'rtsp' },
  { id: 'usb-1', kind: 'testsrc' }, { id: 'usb-2', kind: 'testsrc' },
] as const;

function stringArg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface Summary { n: number; p50: number; p95: number; p99: number; max: number }
function summarise(xs: readonly number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1]! };
}
const ms = (v: number): string => v.toFixed(2);


/**
 * The older footage: PREFILL segments of the configured cameras, cameras interleaved in ring
 * order, ending two minutes ago, as sparse files of `bytes` each (the ring counts a file's size).
 */
async function prefill(storage: string, bytes: number): Promise<void> {
  const root = join(storage, 'segments');
  for (const c of CAMERAS) await mkdir(join(root, c.id), { recursive: true });
  const start = Date.now() - 120_000 - Math.ceil(PREFILL / CAMERAS.length) * SEGMENT_SECONDS * 1000;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < PREFILL) {
      const i = next++;
      const name = segmentFileName({ seq: i + 1, startMs: start + Math.floor(i / CAMERAS.length) * SEGMENT_SECONDS * 1000, durationMs: SEGMENT_SECONDS * 1000 });
      const fh = await open(join(root, CAMERAS[i % CAMERAS.length]!.id, name), 'w');
      try {
        await fh.truncate(bytes);
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

/** Finished segment files in the ring now (what the ring's index holds). */
async function countSegments(storage: string): Promise<number> {
  let n = 0;
  for (const c of CAMERAS) n += (await readdir(join(storage, 'segments', c.id)).catch(() => [] as string[])).filter((f) => /^\d{12}_\d+_\d+\.ts$/.test(f)).length;
  return n;
}

/** The commit measured, and whether src/ differed from it. */
function sourceVersion(): string {
  try {
    const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).trim() !== '';
    return `at commit ${commit}${dirty ? ' with uncommitted changes in src/' : ''}`;
  } catch {
    return 'at an unknown commit';
  }
}

/**
 * The disk's sync latency while the holds run: a 4 kB write + fdatasync of a file of our own on
 * the same filesystem every 200 ms (async: the bench's event loop stays free to time replies).
 * A hold waits for three syncs; a stall of the device shows here too.
 */
class SyncProbe {
  readonly syncs: { start: number; end: number }[] = [];
  private running = true;
  private done: Promise<void>;

  constructor(dir: string) {
    this.done = (async () => {
      const fh = await open(join(dir, 'sync-probe-bg'), 'w');
      const data = Buffer.alloc(4096, 1);
      try {
        while (this.running) {
          const start = performance.now();
          await fh.write(data, 0, data.length, 0);
          await fh.datasync();
          this.syncs.push({ start, end: performance.now() });
          await sleep(200);
        }
      } finally {
        await fh.close();
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

interface StateSample { hold: number; unsealed: number }

interface Measured {
  pingMs: number[];
  holdMs: number[];
  /** Holds made but not yet sealed when each hold was sent (from the last sample of the book). */
  backlogAt: number[];
  withMissing: number;
  missingSpans: number;
  samples: StateSample[];
  deletePasses: number;
  deletedSegments: number;
  holdEntries: number;
  holdsInBook: number;
  sealedAtEnd: number;
  bookBytes: number;
  sync: { fdatasyncMs: number; dirFsyncMs: number };
  holdsS: number;
  segmentsBefore: number;
  segmentsAfter: number;
  /** The background probe's 4 kB write + fdatasync times during the holds. */
  probeMs: number[];
  slowHolds: number;
  slowWithStall: number;
  loadAtEnd: string;
}

/**
 * The older segments' apparent size: PREFILL_BYTES, or less where their total would pass 80% of
 * the filesystem (the ring's quota is at most 90% of it): the quota is their total.
 */
function prefillBytes(dir: string): number {
  const st = statfsSync(dir);
  return Math.min(PREFILL_BYTES, Math.floor((st.blocks * st.bsize * 0.8) / PREFILL));
}

async function measure(rtspUrl: string, dir: string, bytesEach: number): Promise<Measured> {
  const quota = PREFILL * bytesEach;
  const stateDir = join(dir, 'state');
  const storage = join(dir, 'storage');
  const socketPath = join(dir, 'control.sock');
  const config = {
    node: { id: 'bench', stateDir },
    storage: { path: storage, maxBytes: quota },
    recording: { segmentSeconds: SEGMENT_SECONDS },
    cameras: CAMERAS.map((c) => ({ id: c.id, source: c.kind === 'rtsp' ? rtspUrl : 'testsrc', zone: 'entrance' })),
    // No hold is refused for the pinned share: every hold must succeed.
    incident: { maxLockedPercent: 100 },
    button: { backend: 'none' },
    control: { socket: socketPath },
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(config));
  const t0 = performance.now();
  await prefill(storage, bytesEach);
  console.log(`  ${PREFILL} older segment files (sparse, ${(bytesEach / 1000).toFixed(0)} kB apparent each) created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const agent = await RunningBenchAgent.start(configPath, dir, CAMERAS.length, 120_000);
  let client: ControlClient | undefined;
  try {
    await sleep(SETTLE_MS);
    const sync = syncCost(dir);
    client = await ControlClient.open(socketPath);
    const pingMs = await pings(client, PINGS);
    const auditPath = join(stateDir, 'audit.log');
    const auditStart = statSync(auditPath).size;
    const samples: StateSample[] = [];
    const bookPath = join(stateDir, 'incidents.json');
    const ids = new Set<string>();
    // Read from the book on disk (rewritten durably on every change), not from the agent: no
    // request of ours but the holds and the pings runs in the agent.
    const sample = (hold: number): StateSample => {
      // No book file before the first incident.
      const book = (ids.size === 0 ? { incidents: [] } : JSON.parse(readFileSync(bookPath, 'utf8'))) as { incidents: { id: string; state: string }[] };
      const unsealed = book.incidents.filter((x) => ids.has(x.id) && (x.state === 'active' || x.state === 'sealing')).length;
      const s = { hold, unsealed };
      samples.push(s);
      return s;
    };
    const segmentsBefore = await countSegments(storage);
    let last = sample(0);
    const holdMs: number[] = [];
    const backlogAt: number[] = [];
    let withMissing = 0;
    let missingSpans = 0;
    const probe = new SyncProbe(dir);
    const holdSpans: { start: number; end: number }[] = [];
    const t0 = performance.now();
    for (let i = 0; i < HOLDS; i++) {
      const now = Date.now();
      const args = { from: new Date(now - HOLD_FROM_MS).toISOString(), to: new Date(now - HOLD_TO_MS).toISOString(), reason: `bench hold ${i + 1}`, by: 'bench' };
      const { reply, ms: t } = await client.request('hold', args);
      const data = reply.data as { incident?: string; extended?: boolean; missing?: unknown[] } | undefined;
      if (!reply.ok || !data?.incident || data.extended !== false || !Array.isArray(data.missing)) throw new Error(`hold ${i + 1} refused: ${JSON.stringify(reply)}`);
      if (ids.has(data.incident)) throw new Error(`hold ${i + 1} answered with incident ${data.incident} again`);
      ids.add(data.incident);
      if (data.missing.length > 0) {
        withMissing++;
        missingSpans += data.missing.length;
      }
      holdMs.push(t);
      const end = performance.now();
      holdSpans.push({ start: end - t, end });
      backlogAt.push(last.unsealed);
      if ((i + 1) % SAMPLE_EVERY === 0) last = sample(i + 1);
      if (GAP_MS > 0) await sleep(GAP_MS);
    }
    const holdsS = (performance.now() - t0) / 1000;
    await probe.stop();
    const probeMs = probe.syncs.map((x) => x.end - x.start);
    // Holds over the target that overlapped a stalled sync of the probe (over 20 ms).
    const stalls = probe.syncs.filter((x) => x.end - x.start > STALL_MS);
    const slow = holdSpans.filter((h) => h.end - h.start > TARGET_P99_MS);
    const slowWithStall = slow.filter((h) => stalls.some((x) => x.start < h.end && x.end > h.start)).length;
    if (agent.proc.exitCode !== null) throw new Error(`camnode exited during the run: ${agent.tail()}`);
    if (samples[samples.length - 1]!.hold !== HOLDS) sample(HOLDS);
    const segmentsAfter = await countSegments(storage);
    // What the ring deleted meanwhile, and what was acknowledged is on disk: one audit entry and one incident per hold.
    const audit = readFileSync(auditPath, 'utf8').slice(auditStart).split('\n').filter((l) => l.length > 0);
    let deletePasses = 0;
    let deletedSegments = 0;
    let holdEntries = 0;
    for (const line of audit) {
      const entry = JSON.parse(line) as { type?: string; cameras?: Record<string, { segments: number }[]> };
      if (entry.type === 'hold') holdEntries++;
      if (entry.type !== 'delete' || !entry.cameras) continue;
      deletePasses++;
      for (const runs of Object.values(entry.cameras)) for (const r of runs) deletedSegments += r.segments;
    }
    const book = JSON.parse(readFileSync(bookPath, 'utf8')) as { incidents: { id: string; kind?: string; state: string }[] };
    const ours = book.incidents.filter((x) => ids.has(x.id));
    if (agent.recordingCameras() < CAMERAS.length) throw new Error('a camera stopped recording');
    return {
      pingMs, holdMs, backlogAt, withMissing, missingSpans, samples, deletePasses, deletedSegments, holdEntries, sync, holdsS, segmentsBefore, segmentsAfter,
      probeMs, slowHolds: slow.length, slowWithStall, loadAtEnd: loadavg().map((l) => l.toFixed(2)).join(' '),
      holdsInBook: ours.filter((x) => x.kind === 'hold').length,
      sealedAtEnd: ours.filter((x) => x.state === 'sealed' || x.state === 'synced').length,
      bookBytes: statSync(join(stateDir, 'incidents.json')).size,
    };
  } finally {
    client?.close();
    await agent.stop(30_000);
  }
}

async function main(): Promise<number> {
  const m = machine();
  const version = sourceVersion();
  const parent = stringArg('--dir') ?? tmpdir();
  const dir = mkdtempSync(join(parent, 'camnode-bench-hold-'));
  const fs = filesystemOf(dir);
  const bytesEach = prefillBytes(dir);
  const quota = PREFILL * bytesEach;
  console.log(`hold-latency: ${HOLDS} holds over the control socket (${GAP_MS} ms apart), 4 cameras recording (2 RTSP ${STREAM.width}x${STREAM.height} copy, 2 testsrc encoded), ` +
    `${PREFILL} older segments, quota ${(quota / 1e9).toFixed(1)} GB, stateDir on ${fs}`);
  const camera = await startRtspCamera(STREAM);
  let r: Measured;
  try {
    r = await measure(camera.url, dir, bytesEach);
  } finally {
    await camera.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const all = summarise(r.holdMs);
  const ping = summarise(r.pingMs);
  const ok = all.p99 <= TARGET_P99_MS;
  const quarter = Math.ceil(HOLDS / 4);
  const quarters = [0, 1, 2, 3].map((q) => {
    const from = q * quarter;
    const to = Math.min(HOLDS, (q + 1) * quarter);
    const backlog = r.backlogAt.slice(from, to);
    return { from: from + 1, to, s: summarise(r.holdMs.slice(from, to)), backlogMin: Math.min(...backlog), backlogMax: Math.max(...backlog) };
  }).filter((q) => q.s.n > 0);
  const maxBacklog = Math.max(...r.samples.map((s) => s.unsealed));

  console.log(`  device: 4 kB write + fdatasync ${ms(r.sync.fdatasyncMs)} ms, directory fsync ${ms(r.sync.dirFsyncMs)} ms (medians, under the same load)`);
  console.log(`  ping (transport only): p50 ${ms(ping.p50)} ms, p99 ${ms(ping.p99)} ms`);
  const probe = summarise(r.probeMs);
  console.log(`  disk during the holds (4 kB write + fdatasync every 200 ms): p50 ${ms(probe.p50)}  p99 ${ms(probe.p99)}  max ${ms(probe.max)} ms; ` +
    `${r.slowWithStall} of the ${r.slowHolds} holds over ${TARGET_P99_MS} ms overlapped a sync over ${STALL_MS} ms`);
  console.log(`  holds (${all.n}, ${r.holdsS.toFixed(0)} s): p50 ${ms(all.p50)}  p95 ${ms(all.p95)}  p99 ${ms(all.p99)}  max ${ms(all.max)} ms`);
  for (const q of quarters) console.log(`    holds ${q.from}-${q.to}: p50 ${ms(q.s.p50)}  p99 ${ms(q.s.p99)}  max ${ms(q.s.max)} ms; unsealed holds ${q.backlogMin}-${q.backlogMax}`);
  console.log(`  ring: ${r.segmentsBefore} segments in the index when the holds began, ${r.segmentsAfter} at the end; ${r.deletePasses} pruning passes deleted ${r.deletedSegments} segments meanwhile`);
  console.log(`  on disk: ${r.holdsInBook} holds in the book (${(r.bookBytes / 1e3).toFixed(0)} kB), ${r.holdEntries} hold audit entries; ${r.sealedAtEnd} sealed by the end (most unsealed at a sample: ${maxBacklog})`);
  console.log(`  ${r.withMissing} replies named missing footage (${r.missingSpans} spans)`);
  console.log(`  p99 ${ms(all.p99)} ms (target <= ${TARGET_P99_MS} ms) ${verdict(ok)}`);

  const load = `the ring given a full disk's index first: ${PREFILL} older segment files of the same cameras (${SEGMENT_SECONDS} s each, ending 2 min before the agent started), ` +
      `sparse files of ${(bytesEach / 1000).toFixed(0)} kB apparent size (the ring counts a file's size; they take no blocks), and \`storage.maxBytes\` ` +
      `${(quota / 1e9).toFixed(1)} GB, their total, so the ring is at its quota from its first pass and every finished segment or sealed clip makes the pruner delete the oldest footage`;
  // The default run is bench/results/<date>-hold-latency.md; other settings get their own file.
  // On tmpfs (--dir /dev/shm) a sync costs nothing: the figures are then the agent's own work alone.
  const variant = `${PREFILL !== DEFAULT_PREFILL ? `-prefill${PREFILL}` : ''}${GAP_MS !== DEFAULT_GAP_MS ? `-gap${GAP_MS}ms` : ''}${fs.startsWith('tmpfs') ? '-tmpfs' : ''}`;
  const path = writeResults(`hold-latency${variant}`, [
    '# Hold latency: request to durable hold with its `missing`',
    '',
    `Measured: ${HOLDS} \`hold\` requests to \`camnode run\` (its own process) over its control socket, one connection, ` +
    `sequential (newline JSON), ${GAP_MS} ms apart, each for \`from\` = now − ${HOLD_FROM_MS / 1000} s, \`to\` = now − ${HOLD_TO_MS / 1000} s ` +
    '(default cameras: every camera with footage in the range), timed from writing the request to reading its reply. Each reply ' +
    'checked: ok, a new incident id, `extended: false`, a `missing` list. The reply is sent only after the book is written ' +
    'durably (temp file, fsync, rename, fsync of the directory), the `hold` audit entry fdatasynced, every in-flight unlink of the ' +
    'pruner finished, and `missing` computed from the index. Config: `incident.maxLockedPercent: 100` (no hold refused for the ' +
    `pinned share), maxHold 24h. ${PINGS} \`ping\`s first: the transport alone, and a warm-up. Load: 4 cameras recording ` +
    `${SEGMENT_SECONDS} s segments — 2 from one GStreamer RTSP server (${STREAM.width}x${STREAM.height}@${STREAM.fps} ${STREAM.pattern}, ` +
    `${STREAM.bitrateKbps} kbit/s, \`-c copy\`; the server runs on this machine too) and 2 \`testsrc\` cameras encoded here with libx264 ` +
    `(640x360@10) — settled ${SETTLE_MS / 1000} s after every camera recorded; ${load}. The sealer seals each hold ` +
    '(one MP4 per camera, remuxed by ffmpeg, hashed, signed) a few seconds after it is made, while later holds are requested. ' +
    `Every ${SAMPLE_EVERY} holds the bench reads incidents.json (untimed, in its own process) for the holds not yet sealed.`,
    '',
    `${machineMarkdown(m)} camnode ${version}.`,
    '',
    `stateDir and storage filesystem: \`${fs}\`. Measured on it under the same load before the holds: a 4 kB write + fdatasync takes ` +
    `${ms(r.sync.fdatasyncMs)} ms, an fsync of a directory ${ms(r.sync.dirFsyncMs)} ms (medians of 50). A hold makes the same ` +
    'syncs as a lock (book temp file, its directory, the audit log), so on a slower device expect roughly three of its sync times on top. ' +
    `During the holds a probe in the bench did a 4 kB write + fdatasync every 200 ms on the same filesystem (${probe.n} syncs): ` +
    `p50 ${ms(probe.p50)} ms, p99 ${ms(probe.p99)} ms, max ${ms(probe.max)} ms; ${r.slowWithStall} of the ${r.slowHolds} holds over ${TARGET_P99_MS} ms ` +
    `overlapped one of its syncs taking over ${STALL_MS} ms (the sealer writes and fsyncs each hold's clips, the pruner unlinks; ` +
    'other work on this machine shares the device). Load average at the end of the run: ' + `${r.loadAtEnd}.`,
    '',
    '| requests | n | p50 ms | p95 ms | p99 ms | max ms | holds not yet sealed |',
    '|---|---|---|---|---|---|---|',
    `| ping (transport only) | ${ping.n} | ${ms(ping.p50)} | ${ms(ping.p95)} | ${ms(ping.p99)} | ${ms(ping.max)} | – |`,
    `| all holds | ${all.n} | ${ms(all.p50)} | ${ms(all.p95)} | ${ms(all.p99)} | ${ms(all.max)} | up to ${maxBacklog} |`,
    ...quarters.map((q) => `| holds ${q.from}–${q.to} | ${q.s.n} | ${ms(q.s.p50)} | ${ms(q.s.p95)} | ${ms(q.s.p99)} | ${ms(q.s.max)} | ${q.backlogMin}–${q.backlogMax} |`),
    '',
    `The run of holds took ${r.holdsS.toFixed(0)} s. Ring index: ${r.segmentsBefore} finished segment files when the holds began, ${r.segmentsAfter} at the end; ` +
    `meanwhile ${r.deletePasses} pruning passes deleted ${r.deletedSegments} segments (their \`delete\` audit entries). ` +
    `On disk after the run: ${r.holdsInBook} holds in the book (incidents.json ${(r.bookBytes / 1e3).toFixed(0)} kB), ${r.holdEntries} \`hold\` audit entries, ` +
    `${r.sealedAtEnd} of them sealed. ${r.withMissing} replies named missing footage (${r.missingSpans} spans).`,
    '',
    `- Hold latency p99 over ${all.n} holds: **${ms(all.p99)} ms** (p50 ${ms(all.p50)} ms, p95 ${ms(all.p95)} ms, max ${ms(all.max)} ms, median ping ${ms(median(r.pingMs))} ms) — ` +
    `target <= ${TARGET_P99_MS} ms: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
