// The cost of sending the audit log upstream (CONTRACT §7) on a busy node: a real AuditLog,
// AuditShipper and RecordPublisher over a folder target, the log held at its steady size by
// rotation. Each pass follows one minute's entries (a prune pass and a state change), as the
// agent's timer does; the shipper cuts chunks, signs heads, notes what is stored and rotates.
// Figures: CPU and wall time per pass (the normal case, resuming where the last pass stopped,
// and the first pass after a restart, which reads the whole local log), and the local log's
// largest size. Then `evidence export` of a 200 MB incident: the hand-over's throughput.
//
//   node dist/bench/audit-upstream.js [--passes 600]
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadOrCreateNodeKey } from '../src/audit/keys.js';
import { AuditLog } from '../src/audit/log.js';
import { serializeManifest, signManifest } from '../src/audit/manifest.js';
import { AuditShipper } from '../src/audit/shipper.js';
import { ManualClock } from '../src/platform/clock.js';
import { silentLogger } from '../src/platform/logger.js';
import { DirStore } from '../src/sync/dir-store.js';
import { pendingRecords, RecordPublisher } from '../src/sync/records.js';
import { CLI, machine, machineMarkdown, median, numberArg, percentile, verdict, writeResults } from './lib.js';

const PASSES = numberArg('--passes', 600);
const PASS_TARGET_MS = 20;
const FULL_TARGET_MS = 250;
const EXPORT_TARGET_MBPS = 20;
const KEEP = 2 * 1024 * 1024;
const noTimers = { setTimeout: () => 0, clearTimeout: () => {} };

async function waitDrained(stateDir: string): Promise<void> {
  for (let i = 0; i < 2000 && (await pendingRecords(stateDir)).length > 0; i++) await new Promise((r) => setTimeout(r, 2));
}

const cpuMs = (since: NodeJS.CpuUsage): number => { const u = process.cpuUsage(since); return (u.user + u.system) / 1000; };

async function shipping(root: string): Promise<{ pass: number[]; passCpu: number[]; full: number[]; fullCpu: number[]; largest: number; entries: number; chunks: number; heads: number }> {
  const stateDir = join(root, 'state');
  const share = join(root, 'share');
  await mkdir(share, { recursive: true });
  const clock = new ManualClock(Date.parse('2026-11-01T08:00:00Z'));
  const key = await loadOrCreateNodeKey(stateDir);
  const audit = new AuditLog({ stateDir, log: silentLogger(), clock });
  await audit.start();
  const publisher = new RecordPublisher({ stateDir, keyPrefix: 'incidents/n', openStore: async () => new DirStore(share), log: silentLogger() });
  await publisher.start();
  const make = (): AuditShipper => new AuditShipper({
    stateDir, nodeId: 'n', audit, key, logId: () => '20261101T080000Z', headIntervalMs: 5 * 60_000, rotate: (through, opts) => audit.rotate(through, () => [], opts),
    queued: () => publisher.poke(), clock, log: silentLogger(), keepBytes: KEEP, timers: noTimers,
  });
  let shipper = make();
  await shipper.start();
  // A big incident in every checkpoint is the worst case for rotation: 20 incidents, 100 triggers each.
  const out = { pass: [] as number[], passCpu: [] as number[], full: [] as number[], fullCpu: [] as number[], largest: 0, entries: 0, chunks: 0, heads: 0 };
  // Fill the log past its steady size first (about two days of entries at one a minute… in bulk).
  const entry = (i: number): Promise<unknown> => audit.append('delete', {
    reason: 'quota', cameras: Object.fromEntries(['entrance', 'desk', 'stacks', 'lobby'].map((c) => [c, [{ from: new Date(clock.now() - 86_400_000).toISOString(), to: new Date(clock.now() - 86_340_000 + i).toISOString(), segments: 30, bytes: 45_000_000 }]])),
  });
  for (let i = 0; i < 6_000; i++) {
    if (i % 60 === 0) clock.advance(3_600_000);
    await entry(i);
  }
  await shipper.tick();
  await waitDrained(stateDir);
  for (let p = 0; p < PASSES; p++) {
    clock.advance(60_000);
    await entry(p);
    await audit.append('note', { incident: '20261101T080000Z-abcd', note: { at: new Date(clock.now()).toISOString(), by: 'bench', text: 'x'.repeat(80) } });
    // Every 100th pass: a restart, whose first pass reads the whole local log.
    const restart = p % 100 === 99;
    if (restart) {
      await shipper.stop();
      shipper = make();
      await shipper.start();
    }
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    await shipper.tick();
    (restart ? out.full : out.pass).push(performance.now() - t0);
    (restart ? out.fullCpu : out.passCpu).push(cpuMs(cpu));
    await waitDrained(stateDir);
    out.largest = Math.max(out.largest, audit.bytes());
  }
  out.entries = audit.head().seq;
  const series = join(share, 'incidents/n/audit/20261101T080000Z');
  out.chunks = (await readdir(series)).filter((n) => n.endsWith('.jsonl')).length;
  out.heads = (await readdir(join(series, 'heads'))).length;
  // The copy upstream verifies.
  execFileSync(process.execPath, [CLI, 'audit', 'verify', '--log', series, '--key', key.publicKeyBase64], { stdio: 'ignore' });
  await shipper.stop();
  await publisher.stop();
  await audit.stop();
  return out;
}

async function exporting(root: string): Promise<{ mb: number; seconds: number }> {
  const stateDir = join(root, 'export-state');
  const dir = join(root, 'incident');
  await mkdir(dir, { recursive: true });
  const key = await loadOrCreateNodeKey(stateDir);
  const files = [];
  let total = 0;
  for (const camera of ['entrance', 'desk']) {
    const bytes = randomBytes(100 * 1024 * 1024);
    await writeFile(join(dir, `${camera}.mp4`), bytes);
    files.push({ name: `${camera}.mp4`, camera, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), start: '2026-11-01T08:00:00.000Z', end: '2026-11-01T08:10:00.000Z', gaps: [] });
    total += bytes.length;
  }
  const manifest = signManifest({ incident: { id: '20261101T080000Z-abcd' } as never, files, clock: { synced: true }, audit: { seq: 0, head: '0'.repeat(64) }, agent: { version: 'bench' } }, key);
  await writeFile(join(dir, 'manifest.json'), serializeManifest(manifest));
  const t0 = performance.now();
  execFileSync(process.execPath, [CLI, 'evidence', 'export', dir, '--out', join(root, 'bundle'), '--key', key.publicKeyBase64], { stdio: 'ignore' });
  return { mb: total / 1e6, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<number> {
  const m = machine();
  const root = await mkdtemp(join(tmpdir(), 'camnode-bench-audit-'));
  try {
    const s = await shipping(root);
    const e = await exporting(root);
    const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
    const passP99 = percentile(sorted(s.passCpu), 99);
    const fullMax = Math.max(...s.fullCpu);
    const mbps = e.mb / e.seconds;
    const ok = passP99 <= PASS_TARGET_MS && fullMax <= FULL_TARGET_MS && mbps >= EXPORT_TARGET_MBPS;
    const f = (v: number): string => v.toFixed(1);
    console.log(`  pass CPU p50 ${f(median(s.passCpu))} ms, p99 ${f(passP99)} ms (target <= ${PASS_TARGET_MS}); after a restart max ${f(fullMax)} ms (target <= ${FULL_TARGET_MS}); local log at most ${(s.largest / 1024).toFixed(0)} KiB`);
    console.log(`  export ${f(e.mb)} MB in ${e.seconds.toFixed(2)} s: ${f(mbps)} MB/s (target >= ${EXPORT_TARGET_MBPS}) ${verdict(ok)}`);
    const path = writeResults('audit-upstream', [
      '# The audit log upstream: cost per pass, bounded local log; evidence export throughput',
      '',
      `Measured: a real AuditLog, AuditShipper and RecordPublisher (folder target on the temp filesystem), log prefilled with 6,000 entries ` +
      `(four-camera prune passes, ~${f(s.largest / Math.max(1, s.entries) / 1)} B each on average), then ${PASSES} passes each after one minute's ` +
      'entries (a prune pass and a note), as the agent\'s one-minute timer runs them: cut chunks (hourly or 1 MB), sign the head (every 5 min), ' +
      `note what is stored, rotate past ${KEEP / 1024 / 1024} MB. Every 100th pass follows a restart (a new shipper: it reads the whole local log once). ` +
      'CPU is this process\'s user+system time during the pass; wall includes fsyncs. The upstream copy is then checked with `camnode audit verify --log`. ' +
      'Export: `camnode evidence export` of an incident of two 100 MiB clips (verify every hash, then copy), wall time of the CLI.',
      '',
      `${machineMarkdown(m)}`,
      '',
      '| figure | value |',
      '|---|---|',
      `| pass CPU median / p99 / max | ${f(median(s.passCpu))} / ${f(passP99)} / ${f(Math.max(...s.passCpu))} ms |`,
      `| pass wall median / p99 | ${f(median(s.pass))} / ${f(percentile(sorted(s.pass), 99))} ms |`,
      `| first pass after a restart, CPU max / wall max | ${f(fullMax)} / ${f(Math.max(...s.full))} ms |`,
      `| local audit log, largest seen | ${(s.largest / 1024).toFixed(0)} KiB (rotation at ${KEEP / 1024} KiB) |`,
      `| entries / chunks / heads upstream | ${s.entries} / ${s.chunks} / ${s.heads} |`,
      `| evidence export, 2 × 100 MiB | ${e.seconds.toFixed(2)} s, ${f(mbps)} MB/s |`,
      '',
      `- Pass CPU p99 **${f(passP99)} ms** (target <= ${PASS_TARGET_MS} ms), after a restart **${f(fullMax)} ms** (target <= ${FULL_TARGET_MS} ms), ` +
      `export **${f(mbps)} MB/s** (target >= ${EXPORT_TARGET_MBPS}): **${verdict(ok)}**`,
    ].join('\n'));
    console.log(`  results: ${path}`);
    return ok ? 0 : 1;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
