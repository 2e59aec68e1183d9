// Scale: a node far past a branch's usual size, in-process on the real classes and real files.
// 1. A ring of 1,000,000 finished segments over 16 cameras (one MPEG-TS packet each, on the temp
//    filesystem): the start-up scan (`Ring.start()`), one eviction plan over the whole index with
//    locks and a quota that evicts 1 %, and `footage` replies (all cameras; one camera, one hour).
// 2. A book of 10,000 incidents (months of a busy branch, never disposed): loading it, then a lock
//    that opens, extensions, and state changes — each one a durable rewrite of the book.
//
//   node dist/bench/scale.js [--segments 1000000] [--cameras 16] [--incidents 10000]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, AUDIT_LOG_FILE } from '../src/audit/log.js';
import { EventBus } from '../src/events.js';
import { IncidentBook } from '../src/incidents/book.js';
import type { Incident } from '../src/incidents/incident.js';
import { iso, systemClock } from '../src/platform/clock.js';
import { silentLogger } from '../src/platform/logger.js';
import { planEviction, type LockedRange } from '../src/store/eviction.js';
import { footageOf } from '../src/store/footage.js';
import { machine, machineMarkdown, mb, median, numberArg, percentile, verdict, writeResults } from './lib.js';
import { createRingFiles, scanRing } from './ring-lib.js';

const SEGMENTS = numberArg('--segments', 1_000_000);
const CAMERAS = numberArg('--cameras', 16);
const INCIDENTS = numberArg('--incidents', 10_000);
const SEGMENT_MS = 2_000;
/** Targets: the unit's TimeoutStartSec is 120 s, and a prune pass runs every 30 s. */
const TARGETS = { scanS: 30, planMs: 1_000, footageMs: 500, bookLoadMs: 2_000, lockP99Ms: 250 };

function timeMs(fn: () => unknown, runs: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

async function ringPart(work: string): Promise<{ rows: string[]; ok: boolean[] }> {
  const root = join(work, 'ring');
  const cameras = Array.from({ length: CAMERAS }, (_, i) => `cam-${String(i + 1).padStart(2, '0')}`);
  console.log(`  ${SEGMENTS.toLocaleString('en')} segments over ${CAMERAS} cameras: creating the files`);
  const t0c = performance.now();
  const start = await createRingFiles(root, cameras, SEGMENTS, SEGMENT_MS, (done) => console.log(`  creating segments: ${done.toLocaleString('en')} of ${SEGMENTS.toLocaleString('en')}`));
  console.log(`  created in ${((performance.now() - t0c) / 1000).toFixed(0)} s; scanning`);
  const { ring, ms, heapPeak, heapRetained } = await scanRing(root, SEGMENT_MS);
  const scanS = ms / 1000;
  const segments = ring.allSegments();
  console.log(`  scan: ${scanS.toFixed(1)} s, ${segments.length.toLocaleString('en')} segments, heap peak +${mb(heapPeak)}, retained ${mb(heapRetained)}`);

  // An eviction plan over the whole index: 50 locked spans across the cameras, a quota 1 % short.
  const segmentBytes = segments.reduce((n, s) => n + s.bytes, 0);
  const spanMs = Math.ceil(SEGMENTS / CAMERAS) * SEGMENT_MS;
  const locks: LockedRange[] = Array.from({ length: 50 }, (_, i) => ({
    camera: cameras[i % CAMERAS]!, startMs: start + (spanMs * i) / 50, endMs: start + (spanMs * i) / 50 + 10 * 60_000,
  }));
  const now = Date.now();
  const plan = () => planEviction({ segments, segmentBytes, locks, quotaBytes: segmentBytes * 0.99, otherOwnBytes: 0, now, maxAgeMs: undefined, uncertainBeforeSeq: 0, calls: [] });
  const evicted = plan().evict.length;
  const planMs = timeMs(plan, 5);
  console.log(`  eviction plan: median ${median(planMs).toFixed(0)} ms, ${evicted.toLocaleString('en')} to evict`);

  const all = () => footageOf({ segments, cameras, joinWithinMs: 1.5 * SEGMENT_MS, locked: [], kept: [] });
  const oneHour = () => footageOf({ segments, cameras, camera: cameras[3], fromMs: now - 2 * 3_600_000, toMs: now - 3_600_000, joinWithinMs: 1.5 * SEGMENT_MS, locked: [], kept: [] });
  const allMs = timeMs(all, 5);
  const hourMs = timeMs(oneHour, 20);
  console.log(`  footage: all cameras median ${median(allMs).toFixed(0)} ms; one camera one hour p99 ${percentile(hourMs, 99).toFixed(1)} ms`);
  await ring.stop();
  await rm(root, { recursive: true, force: true });
  const ok = [scanS <= TARGETS.scanS, median(planMs) <= TARGETS.planMs, median(allMs) <= TARGETS.footageMs];
  return {
    ok,
    rows: [
      `| start-up scan of ${SEGMENTS.toLocaleString('en')} segments, ${CAMERAS} cameras | ${scanS.toFixed(1)} s (heap peak +${mb(heapPeak)}, retained ${mb(heapRetained)}) | ≤ ${TARGETS.scanS} s | **${verdict(ok[0]!)}** |`,
      `| eviction plan over the whole index (50 locks, quota 1 % short: ${evicted.toLocaleString('en')} to evict) | median ${median(planMs).toFixed(0)} ms | ≤ ${TARGETS.planMs} ms | **${verdict(ok[1]!)}** |`,
      `| \`footage\`, all cameras, no bounds | median ${median(allMs).toFixed(0)} ms | ≤ ${TARGETS.footageMs} ms | **${verdict(ok[2]!)}** |`,
      `| \`footage\`, one camera, one hour | p99 ${percentile(hourMs, 99).toFixed(2)} ms | – | |`,
    ],
  };
}

async function bookPart(work: string): Promise<{ rows: string[]; ok: boolean[] }> {
  const stateDir = join(work, 'state');
  await mkdir(stateDir, { recursive: true });
  const log = silentLogger();
  const policy = { preRollMs: 60_000, postRollMs: 60_000, maxLengthMs: 3_600_000 };
  const make = (audit: AuditLog) => new IncidentBook({
    stateDir, sealedDir: join(work, 'incidents'), nodeId: 'scale', policy, enabledCameras: () => ['cam-01', 'cam-02', 'cam-03', 'cam-04'], disposeNeedsSync: true,
    clock: systemClock, log, events: new EventBus(log), audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  // One real incident as the book writes it, then INCIDENTS of them, months back, synced.
  const audit0 = new AuditLog({ stateDir, log, clock: systemClock });
  await audit0.start();
  const seedBook = make(audit0);
  await seedBook.start();
  const first = (await seedBook.lock({ atMs: Date.now() - 400 * 86_400_000, via: 'local', reason: 'scale', by: 'bench', postRollMs: 1 })).incident;
  await seedBook.stop();
  await audit0.stop();
  const incidents: Incident[] = [];
  const base = Date.now() - 365 * 86_400_000;
  for (let i = 0; i < INCIDENTS; i++) {
    const at = base + i * 3_000_000;
    const id = `${iso(at).replace(/[-:]/g, '').replace(/\.\d+/, '')}-${(i % 1024).toString(32).padStart(4, 'a').replace(/[0-9]/g, (d) => 'abcdefghij'[Number(d)]!)}`;
    // Synced incidents carry their manifest's hash, as the sealer leaves them.
    incidents.push({ ...first, id, window: { start: iso(at - 60_000), end: iso(at + 60_000) }, state: 'synced', manifestSha256: 'a'.repeat(64), triggers: first.triggers.map((t) => ({ ...t, at: iso(at) })) });
  }
  await writeFile(join(stateDir, 'incidents.json'), JSON.stringify({ version: 1, incidents }));
  const fileBytes = statSync(join(stateDir, 'incidents.json')).size;
  const audit = new AuditLog({ stateDir, log, clock: systemClock });
  await audit.start();
  const book = make(audit);
  const t0 = performance.now();
  await book.start();
  const loadMs = performance.now() - t0;
  const times: number[] = [];
  let opened = '';
  for (let i = 0; i < 100; i++) {
    const t = performance.now();
    const r = await book.lock({ atMs: Date.now(), via: 'local', reason: 'scale', by: 'bench' });
    times.push(performance.now() - t);
    opened = r.incident.id;
  }
  const stateTimes: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await book.setState(incidents[i]!.id, 'disposed').catch(() => undefined);
    stateTimes.push(performance.now() - t);
  }
  await book.stop();
  await audit.stop();
  times.sort((a, b) => a - b);
  stateTimes.sort((a, b) => a - b);
  console.log(`  book of ${INCIDENTS.toLocaleString('en')} incidents (${mb(fileBytes)}): load ${loadMs.toFixed(0)} ms; lock/extend p50 ${percentile(times, 50).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms; state change p50 ${percentile(stateTimes, 50).toFixed(1)} ms (${opened})`);
  const ok = [loadMs <= TARGETS.bookLoadMs, percentile(times, 99) <= TARGETS.lockP99Ms];
  return {
    ok,
    rows: [
      `| load a book of ${INCIDENTS.toLocaleString('en')} incidents (${mb(fileBytes)} of JSON) | ${loadMs.toFixed(0)} ms | ≤ ${TARGETS.bookLoadMs} ms | **${verdict(ok[0]!)}** |`,
      `| lock (1 open, 99 extensions) with it, each durable | p50 ${percentile(times, 50).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms | p99 ≤ ${TARGETS.lockP99Ms} ms | **${verdict(ok[1]!)}** |`,
      `| state change (dispose) with it | p50 ${percentile(stateTimes, 50).toFixed(1)} ms | – | |`,
    ],
  };
}

async function main(): Promise<number> {
  const m = machine();
  const work = await mkdtemp(join(tmpdir(), 'camnode-bench-scale-'));
  try {
    console.log('scale:');
    const ring = await ringPart(work);
    const book = await bookPart(work);
    const ok = [...ring.ok, ...book.ok];
    const path = writeResults('scale', [
      '# Scale: a million segments, sixteen cameras, ten thousand incidents',
      '',
      `In-process on the real classes over real files on the temp filesystem: a \`Ring\` over ${SEGMENTS.toLocaleString('en')} finished 2-s segment files ` +
      `(one MPEG-TS packet each; the scan only stats them) in ${CAMERAS} camera folders, the eviction plan and \`footageOf\` as the agent calls them; ` +
      `an \`IncidentBook\` over ${INCIDENTS.toLocaleString('en')} incidents with the fsyncing adapter, and a real audit log. Page cache warm (the files were just made).`,
      '',
      machineMarkdown(m),
      '',
      '| measure | figure | target | |',
      '|---|---|---|---|',
      ...ring.rows,
      ...book.rows,
    ].join('\n'));
    console.log(`  results: ${path}`);
    return ok.every(Boolean) ? 0 : 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
