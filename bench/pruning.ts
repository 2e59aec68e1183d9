// Pruning under pressure: 4 synthetic cameras recording into a ring held at its quota. How far
// above the quota does camnode's own footage go between prunes? The in-progress segments grow
// until the next prune sees them, so about one segment per camera is the expected bound.
// As root the ring lives on a real tmpfs (real statfs figures); otherwise on the temp
// filesystem with the quota set by maxBytes alone.
//
//   node dist/bench/pruning.js [--seconds 90]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../src/agent.js';
import { validateConfig } from '../src/config/load.js';
import { createLogger } from '../src/platform/logger.js';
import { segmentFileName, parseSegmentFileName } from '../src/store/segment.js';
import { machine, machineMarkdown, mb, numberArg, sleep, verdict, writeResults } from './lib.js';

const SECONDS = numberArg('--seconds', 90);
const CAMERAS = 4;
const MAX_BYTES = 30e6;
const TMPFS_MIB = 64;
const SAMPLE_MS = 100;
const TESTSRC = { width: 640, height: 360, fps: 10, bitrate: 1_000_000 };
/** Filler segments (ring order before the first real one) so the ring is under pressure from the start. */
const FILL_BYTES = 0.9 * MAX_BYTES;
const FILLER_SEGMENT = 250_000;

// Ctrl-C ends the run early but still stops the agent and unmounts the tmpfs.
let interrupted = false;
process.once('SIGINT', () => { interrupted = true; });

interface Sample { atS: number; ownBytes: number; quotaBytes: number; inProgressBytes: number }

/** A real tmpfs when we may mount; null (with the reason printed) otherwise. */
function mountTmpfs(dir: string): string | null {
  if (process.getuid?.() !== 0) {
    console.log('  not root: no tmpfs; the quota comes from maxBytes on the temp filesystem');
    return null;
  }
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MIB}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return dir;
  } catch (err) {
    console.log(`  cannot mount a tmpfs (${(err as Error).message.split('\n')[0]}); the quota comes from maxBytes alone`);
    return null;
  }
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}

/** Filler segments spread over the cameras, stamped in the last hour; returns the last seq. */
function prefill(segmentsRoot: string): number {
  const count = Math.floor(FILL_BYTES / FILLER_SEGMENT);
  const start = Date.now() - 3_600_000;
  for (let i = 0; i < count; i++) {
    const dir = join(segmentsRoot, `cam-${(i % CAMERAS) + 1}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, segmentFileName({ seq: i + 1, startMs: start + i * 2_000, durationMs: 2_000 })), Buffer.alloc(FILLER_SEGMENT));
  }
  return count;
}

/** Everything camnode holds under segments/, and the part still being written. */
async function measure(segmentsRoot: string, realSizes: Map<string, number>, fillerSeqs: number): Promise<{ own: number; inProgress: number }> {
  let own = 0;
  let inProgress = 0;
  for (const entry of await readdir(segmentsRoot, { withFileTypes: true })) {
    const path = join(segmentsRoot, entry.name);
    const names = entry.isDirectory() ? await readdir(path).catch(() => []) : [];
    if (!entry.isDirectory()) own += (await stat(path).catch(() => null))?.size ?? 0;
    for (const name of names) {
      const size = (await stat(join(path, name)).catch(() => null))?.size;
      if (size === undefined) continue; // deleted meanwhile
      own += size;
      const parsed = parseSegmentFileName(name);
      if (!parsed) inProgress += size;
      else if (parsed.seq > fillerSeqs) realSizes.set(`${entry.name}/${name}`, size);
    }
  }
  return { own, inProgress };
}

async function main(): Promise<number> {
  const m = machine();
  const work = mkdtempSync(join(tmpdir(), 'camnode-bench-pruning-'));
  const storage = join(work, 'storage');
  mkdirSync(storage);
  console.log(`pruning: ${CAMERAS} testsrc cameras ${TESTSRC.width}x${TESTSRC.height}@${TESTSRC.fps} ${TESTSRC.bitrate / 1e6} Mbit/s, maxBytes ${mb(MAX_BYTES)}, ${SECONDS} s`);
  const mounted = mountTmpfs(storage);
  const samples: Sample[] = [];
  const realSizes = new Map<string, number>();
  let deleted = 0;
  let fullEvents = 0;
  let restarts = 0;
  let fillerSeqs = 0;
  try {
    const segmentsRoot = join(storage, 'segments');
    fillerSeqs = prefill(segmentsRoot);
    const config = validateConfig({
      node: { id: 'bench', stateDir: join(work, 'state') },
      // A small reserve: the tmpfs is tiny, and the default 1 GiB would leave no quota at all.
      storage: { path: storage, maxBytes: MAX_BYTES, reserve: '1MB' },
      recording: { segmentSeconds: 2 },
      cameras: Array.from({ length: CAMERAS }, (_, i) => ({ id: `cam-${i + 1}`, source: 'testsrc', zone: 'entrance' })),
      button: { backend: 'none' },
      control: { socket: join(work, 'control.sock') },
    });
    // Logs off the disk under test.
    const log = createLogger({ level: 'info', destination: join(work, 'agent.log') });
    const agent = new Agent({ config, log, testsrc: TESTSRC });
    agent.events.on('storage.full', () => { fullEvents++; });
    const controller = new AbortController();
    await agent.start(controller.signal);
    const t0 = performance.now();
    try {
      while (performance.now() - t0 < SECONDS * 1000 && !interrupted) {
        const next = performance.now() + SAMPLE_MS;
        const { own, inProgress } = await measure(segmentsRoot, realSizes, fillerSeqs);
        const quotaBytes = agent.status().storage?.quotaBytes ?? MAX_BYTES;
        samples.push({ atS: (performance.now() - t0) / 1000, ownBytes: own, quotaBytes, inProgressBytes: inProgress });
        await sleep(Math.max(0, next - performance.now()));
      }
      restarts = agent.status().cameras.reduce((n, c) => n + c.restarts, 0);
    } finally {
      controller.abort();
      await agent.stop();
      // The ring logs one line per pass with the segments it deleted.
      for (const line of readFileSync(join(work, 'agent.log'), 'utf8').split('\n')) {
        if (!line.includes('footage deleted by the ring')) continue;
        deleted += Number((JSON.parse(line) as { segments?: number }).segments ?? 0);
      }
    }
  } finally {
    if (mounted) unmount(mounted);
    rmSync(work, { recursive: true, force: true });
  }

  if (interrupted) {
    console.log('  interrupted: no results written');
    return 2;
  }
  const peak = samples.reduce((best, s) => (s.ownBytes - s.quotaBytes > best.ownBytes - best.quotaBytes ? s : best), samples[0]!);
  const over = Math.max(0, peak.ownBytes - peak.quotaBytes);
  const sizes = [...realSizes.values()];
  const meanSegment = sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length);
  const perCamera = over / meanSegment / CAMERAS;
  const overShare = samples.filter((s) => s.ownBytes > s.quotaBytes).length / samples.length;
  const ok = perCamera <= 1;
  const disk = mounted ? `a real ${TMPFS_MIB} MiB tmpfs (quota ${mb(peak.quotaBytes)} from maxBytes and statfs)` : 'the temp filesystem, quota from maxBytes alone';
  console.log(`  ${samples.length} samples, ${sizes.length} real segments (mean ${mb(meanSegment)}), ${deleted} segments pruned, ${fullEvents} storage.full, ${restarts} recorder restarts`);
  console.log(`  peak above quota ${over} bytes (${mb(over)}) at ${peak.atS.toFixed(1)} s, in progress then ${mb(peak.inProgressBytes)}; above quota in ${(overShare * 100).toFixed(0)} % of samples`);
  console.log(`  = ${perCamera.toFixed(2)} segments per camera (target <= 1) ${verdict(ok)}`);
  const path = writeResults('pruning', [
    '# Pruning under pressure',
    '',
    `Measured: ${CAMERAS} synthetic cameras (Agent in-process, testsrc ${TESTSRC.width}x${TESTSRC.height}@${TESTSRC.fps}, libx264 ` +
    `${TESTSRC.bitrate / 1e6} Mbit/s, 2 s segments) recording for ${SECONDS} s into ${disk}, maxBytes ${mb(MAX_BYTES)}. ` +
    `The ring was pre-filled with ${fillerSeqs} filler segments (${mb(fillerSeqs * FILLER_SEGMENT)}) so it is under pressure from the start. ` +
    `Every ${SAMPLE_MS} ms the bytes of every file under segments/ (finished and in progress) were summed and compared with the ring's quota; ` +
    'peaks shorter than a sample interval can be missed.',
    '',
    machineMarkdown(m),
    '',
    `- Samples: ${samples.length}; above quota in ${(overShare * 100).toFixed(0)} % of them`,
    `- Real segments seen: ${sizes.length}, mean ${mb(meanSegment)}; segments pruned: ${deleted}; storage.full events: ${fullEvents}; recorder restarts: ${restarts}`,
    `- Peak above quota: **${over} bytes (${mb(over)})** at ${peak.atS.toFixed(1)} s (in-progress segments then: ${mb(peak.inProgressBytes)})`,
    `- In segments per camera: **${perCamera.toFixed(2)}** — target <= 1: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
