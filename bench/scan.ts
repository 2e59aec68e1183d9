// Start-up scan of a full ring: 100,000 finished segment files across 4 camera folders (a
// large disk after weeks of recording), indexed by `new Ring(...).start()`. Wall time and heap,
// three runs and their median.
//
//   node dist/bench/scan.js [--files 100000]
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machine, machineMarkdown, mb, median, numberArg, verdict, writeResults } from './lib.js';
import { createRingFiles, scanRing } from './ring-lib.js';

const FILES = numberArg('--files', 100_000);
const CAMERAS = 4;
const RUNS = 3;
const SEGMENT_MS = 2_000;
const TARGET_MS = 2_000;

interface Run { ms: number; heapPeak: number; heapRetained: number; segments: number }

/** Cold runs need the page cache emptied, which only root on a real host may do. */
function dropCaches(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

async function scanOnce(root: string): Promise<Run> {
  const { ring, ms, heapPeak, heapRetained } = await scanRing(root, SEGMENT_MS);
  const segments = ring.allSegments().length;
  await ring.stop();
  return { ms, heapPeak, heapRetained, segments };
}

async function main(): Promise<number> {
  const m = machine();
  const root = await mkdtemp(join(tmpdir(), 'camnode-bench-scan-'));
  const runs: Run[] = [];
  let cold = true;
  try {
    const t0 = performance.now();
    await createRingFiles(root, Array.from({ length: CAMERAS }, (_, i) => `cam-${i + 1}`), FILES, SEGMENT_MS);
    console.log(`scan: ${FILES} segment files in ${CAMERAS} camera folders created in ${((performance.now() - t0) / 1000).toFixed(1)} s (${root})`);
    for (let i = 0; i < RUNS; i++) {
      cold = dropCaches() && cold;
      const run = await scanOnce(root);
      if (run.segments !== FILES) throw new Error(`the ring indexed ${run.segments} segments, expected ${FILES}`);
      runs.push(run);
      console.log(`  run ${i + 1}: ${run.ms.toFixed(0)} ms, heap peak +${mb(run.heapPeak)}, retained +${mb(run.heapRetained)}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const med = median(runs.map((r) => r.ms));
  const ok = med <= TARGET_MS;
  const cache = cold ? 'cold page cache (dropped in this VM before each run)' : 'warm page cache (dropping it is not permitted here)';
  console.log(`  median ${med.toFixed(0)} ms (target <= ${TARGET_MS} ms) ${verdict(ok)}; ${cache}`);
  const path = writeResults('scan', [
    '# Start-up scan of 100k segments',
    '',
    `Measured: wall time of \`new Ring(...).start()\` (mkdir, scan with a stat of every file, clock state, first prune) over ` +
    `${FILES} finished segment files of 188 bytes (one MPEG-TS packet) named by segmentFileName, across ${CAMERAS} camera folders on ` +
    `the temp filesystem; fake disk reader, \`probeDurationMs: async () => 1000\`, silent logger; ${cache}. ` +
    'Heap: growth of heapUsed over a collected baseline, peak while scanning (sampled every 5 ms) and retained after a full collection.',
    '',
    machineMarkdown(m),
    '',
    '| run | wall ms | heap peak | heap retained |',
    '|---|---|---|---|',
    ...runs.map((r, i) => `| ${i + 1} | ${r.ms.toFixed(0)} | +${mb(r.heapPeak)} | +${mb(r.heapRetained)} |`),
    '',
    `- Median wall time: **${med.toFixed(0)} ms** — target <= ${TARGET_MS} ms: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
