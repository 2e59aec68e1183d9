// The retention report on a month of a busy node's audit log (CONTRACT §7): a prune pass every
// 30 s on 4 cameras for 30 days (86,400 `delete` entries, the log a node without an upstream
// keeps whole), with incidents, stills and clock steps among them. Timed: reading the facts of
// the default 30-day period (every entry parsed) and of one day (the rest skipped on their
// timestamp), building the report and rendering its HTML. Peak RSS of the process is reported:
// the log is streamed, never held.
//
//   node dist/bench/report.js [--days 30]
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { buildReport, readAuditFacts } from '../src/custody/report.js';
import { signageView } from '../src/custody/signage.js';
import { renderReportHtml, renderReportText } from '../src/ops/report-render.js';
import type { CameraFootage } from '../src/store/footage.js';
import { machine, machineMarkdown, median, numberArg, verdict, writeResults } from './lib.js';

const DAYS = numberArg('--days', 30);
const CAMERAS = ['entrance', 'desk', 'stacks', 'parking'];
const PASS_MS = 30_000;
const TARGET_MONTH_MS = 1_500;
const DAY = 86_400_000;

async function writeLog(path: string, endMs: number): Promise<number> {
  const out = createWriteStream(path);
  const startMs = endMs - DAYS * DAY;
  let seq = 0;
  const line = (ts: number, type: string, payload: object): string =>
    `${JSON.stringify({ seq: ++seq, prev: '0'.repeat(64), ts: new Date(ts).toISOString(), type, ...payload, hash: 'f'.repeat(64) })}\n`;
  for (let t = startMs; t < endMs; t += PASS_MS) {
    const cameras = Object.fromEntries(CAMERAS.map((c) => [c, [{ from: new Date(t - 14 * DAY).toISOString(), to: new Date(t - 14 * DAY + PASS_MS).toISOString(), segments: 15, bytes: 7_500_000 }]]));
    let text = line(t, 'delete', { reason: 'quota', cameras });
    if (t % (6 * 3_600_000) === 0) text += line(t + 1, 'still', { camera: 'desk', at: new Date(t - 60_000).toISOString(), frameAt: new Date(t - 60_000).toISOString(), purpose: 'incident-review', reason: 'review', by: 'ops:otto' });
    if (t % DAY === 0) text += line(t + 2, 'dispose', { incident: `2026${String(seq).padStart(4, '0')}T000000Z-abcd`, by: 'ops:cleo', reason: 'kept long enough', files: CAMERAS.map((camera) => ({ camera, bytes: 90_000_000 })) });
    if (!out.write(text)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return seq;
}

function footage(endMs: number): CameraFootage[] {
  return CAMERAS.map((id) => ({
    id, oldest: new Date(endMs - 14 * DAY).toISOString(), newest: new Date(endMs).toISOString(), bytes: 0,
    ranges: [{ start: new Date(endMs - 14 * DAY).toISOString(), end: new Date(endMs).toISOString() }], locked: [], kept: [], truncated: false,
  }));
}

async function main(): Promise<number> {
  const m = machine();
  const dir = await mkdtemp(join(tmpdir(), 'camnode-bench-report-'));
  try {
    const endMs = Date.parse('2026-12-02T00:00:00Z');
    const path = join(dir, 'audit.log');
    const entries = await writeLog(path, endMs);
    const bytes = (await stat(path)).size;
    console.log(`report: ${entries} audit entries (${(bytes / 1e6).toFixed(1)} MB) over ${DAYS} days, ${CAMERAS.length} cameras`);
    const month: number[] = [];
    const day: number[] = [];
    const render: number[] = [];
    let html = '';
    let deletions = 0;
    for (let round = 0; round < 5; round++) {
      let t = performance.now();
      const facts = await readAuditFacts(path, endMs - DAYS * DAY, endMs, 30_000);
      const report = buildReport({
        node: 'bench', site: 'Bench Branch', timeZone: 'America/Denver', fromMs: endMs - DAYS * DAY, toMs: endMs, footage: footage(endMs), incidents: [],
        facts, upstream: 'none', signage: signageView(undefined, endMs), clockSynced: true, joinMs: 30_000,
      });
      month.push(performance.now() - t);
      deletions = report.cameras.reduce((n, c) => n + c.deleted.quota.count, 0);
      t = performance.now();
      html = renderReportHtml(report);
      renderReportText(report);
      render.push(performance.now() - t);
      t = performance.now();
      await readAuditFacts(path, endMs - DAY, endMs, 30_000);
      day.push(performance.now() - t);
    }
    await writeFile(join(dir, 'r.html'), html);
    const peakMiB = process.resourceUsage().maxRSS / 1024;
    const monthMs = median(month);
    const ok = monthMs <= TARGET_MONTH_MS;
    console.log(`  30-day report: read+build median ${monthMs.toFixed(0)} ms (target <= ${TARGET_MONTH_MS}) ${verdict(ok)}; one day read ${median(day).toFixed(0)} ms; render ${median(render).toFixed(0)} ms; HTML ${(html.length / 1024).toFixed(0)} KiB; peak RSS ${peakMiB.toFixed(0)} MiB`);
    const out = writeResults('report', [
      '# The retention report on a month of audit log',
      '',
      `Measured: a synthetic audit log of ${entries} entries (${(bytes / 1e6).toFixed(1)} MB): a \`delete\` entry every 30 s for ${DAYS} days on ${CAMERAS.length} cameras (a busy node without an upstream, whose log is never rotated), a still every 6 h and a dispose a day. ` +
      '`readAuditFacts` streams the file and parses only entries inside the period; `buildReport` folds them with the ring\'s footage (synthetic, 14 days per camera) the deleted runs merged into ranges as they are read. Median of 5 rounds, in this process.',
      '',
      machineMarkdown(m),
      '',
      '| what | median ms |',
      '|---|---|',
      `| read + build, 30-day period (every entry parsed; ${deletions} segments deleted) | ${monthMs.toFixed(0)} |`,
      `| read, 1-day period (the rest skipped on its timestamp) | ${median(day).toFixed(0)} |`,
      `| render text + HTML (${(html.length / 1024).toFixed(0)} KiB page) | ${median(render).toFixed(0)} |`,
      '',
      `- Peak RSS of the process: ${peakMiB.toFixed(0)} MiB (the log is streamed line by line).`,
      `- Target: a 30-day report of a busy month in <= ${TARGET_MONTH_MS} ms here: **${verdict(ok)}**.`,
    ].join('\n'));
    console.log(`  results: ${out}`);
    return ok ? 0 : 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
