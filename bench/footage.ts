// The `footage` reply (CONTRACT §6) from a ring of 100,000 finished segments: 4 cameras, 2 s
// segments, a few hundred holes (a camera down for 4 s to a minute) and a few dozen locked and
// kept incident spans. The segment files are created on the temp filesystem (one MPEG-TS packet
// each, as bench/scan.ts does) and indexed by a real `Ring`, so the reply is built from the
// index the agent really holds: `footageOf({segments: ring.allSegments(), ...})` called as
// src/modules/footage.ts calls it (joinWithinMs = 1.5 segments, incident spans from the book).
// Three requests: no bounds, a one-hour window, one camera; each timed over many runs, and once
// more through the module's own `footage` handler, whose reply must be the same.
//
//   node dist/bench/footage.js [--segments 100000] [--runs 100]
import { deepStrictEqual } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventBus } from '../src/events.js';
import type { IncidentBook } from '../src/incidents/book.js';
import type { Faults } from '../src/lifecycle/faults.js';
import { footageModule } from '../src/modules/footage.js';
import { iso, systemClock } from '../src/platform/clock.js';
import { silentLogger } from '../src/platform/logger.js';
import { footageOf, type IncidentSpan } from '../src/store/footage.js';
import { benchRing } from './ring-lib.js';
import { segmentEndMs, segmentFileName, type Segment } from '../src/store/segment.js';
import { machine, machineMarkdown, median, numberArg, percentile, ROOT, verdict, writeResults } from './lib.js';

const SEGMENTS = numberArg('--segments', 100_000);
const RUNS = numberArg('--runs', 100);
const WARMUP = 5;
const CAMERAS = ['cam-1', 'cam-2', 'cam-3', 'cam-4'];
const SEGMENT_SECONDS = 2;
const SEGMENT_MS = SEGMENT_SECONDS * 1000;
/** Holes over all cameras, each 2 to 30 segments long (4 s to a minute: a camera down). */
const HOLES = 300;
const LOCKED = 24;
const KEPT = 24;
const TARGET_MS = 50;
/** One MPEG-TS packet: the ring's scan only stats files, so their content does not matter. */
const CONTENT = Buffer.alloc(188, 0x47);

/** A deterministic PRNG (mulberry32): the same ring on every run of the benchmark. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Plan { segments: Segment[]; holes: number; startMs: number; endMs: number }

/**
 * The ring's segments, in seq order (the order they finished, cameras interleaved): 2 s each
 * with a few ms of jitter in length and seam, as real stamps have, and the holes scattered.
 */
function planRing(): Plan {
  const rand = prng(20261202);
  const perCamera = Math.floor(SEGMENTS / CAMERAS.length);
  // Which segment index of which camera a hole precedes, and its length in segments.
  const holeAt = new Map<string, number>();
  while (holeAt.size < HOLES) {
    const camera = CAMERAS[Math.floor(rand() * CAMERAS.length)]!;
    const index = 1 + Math.floor(rand() * (perCamera - 1));
    holeAt.set(`${camera}/${index}`, 2 + Math.floor(rand() * 29));
  }
  let holeSegments = 0;
  for (const n of holeAt.values()) holeSegments += n;
  // Every camera's footage ends about a minute ago.
  const endMs = Date.now() - 60_000;
  const spanMs = (perCamera + Math.ceil(holeSegments / CAMERAS.length) + 200) * SEGMENT_MS;
  const startMs = endMs - spanMs;
  const all: Omit<Segment, 'seq'>[] = [];
  CAMERAS.forEach((camera, c) => {
    let t = startMs + c * 137;
    const count = perCamera + (c < SEGMENTS % CAMERAS.length ? 1 : 0);
    for (let i = 0; i < count; i++) {
      const hole = holeAt.get(`${camera}/${i}`);
      if (hole) t += hole * SEGMENT_MS;
      const durationMs = SEGMENT_MS - 15 + Math.floor(rand() * 30);
      all.push({ camera, startMs: t, durationMs, bytes: CONTENT.length });
      t += durationMs + Math.floor(rand() * 40);
    }
  });
  // Seq: the order segments finish.
  all.sort((a, b) => segmentEndMs(a) - segmentEndMs(b));
  const segments = all.map((s, i) => ({ ...s, seq: i + 1 }));
  return { segments, holes: holeAt.size, startMs, endMs: Math.max(...segments.map(segmentEndMs)) };
}

/** Incident-book entries as the handler reads them: a few dozen locks (active) and kept clips (sealed). */
function planIncidents(plan: Plan): { id: string; cameras: string[]; window: { start: string; end: string }; state: string }[] {
  const rand = prng(7);
  const out: { id: string; cameras: string[]; window: { start: string; end: string }; state: string }[] = [];
  for (let i = 0; i < LOCKED + KEPT; i++) {
    const startMs = plan.startMs + Math.floor(rand() * (plan.endMs - plan.startMs - 3_600_000));
    const endMs = startMs + 60_000 + Math.floor(rand() * 3_540_000);
    const cameras = CAMERAS.filter(() => rand() < 0.6);
    if (cameras.length === 0) cameras.push(CAMERAS[i % CAMERAS.length]!);
    const d = new Date(startMs).toISOString().replace(/[-:]/g, '').slice(0, 15);
    const suffix = `bn${String.fromCharCode(97 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`;
    out.push({ id: `${d}Z-${suffix}`, cameras, window: { start: iso(startMs), end: iso(endMs) }, state: i < LOCKED ? 'active' : 'sealed' });
  }
  return out;
}

async function createFiles(root: string, segments: readonly Segment[]): Promise<void> {
  for (const c of CAMERAS) await mkdir(join(root, 'segments', c), { recursive: true });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < segments.length) {
      const s = segments[next++]!;
      await writeFile(join(root, 'segments', s.camera, segmentFileName(s)), CONTENT);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

/** The p-th percentile (nearest rank) of unsorted values. */
function percentileOf(xs: readonly number[], p: number): number {
  return percentile([...xs].sort((a, b) => a - b), p);
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

interface Case { name: string; args: { camera?: string; from?: number; to?: number } }
interface Row {
  name: string; first: number; ms: number[]; handlerMs: number[]; stringifyMs: number[];
  jsonBytes: number; ranges: number; locked: number; kept: number; truncated: boolean;
}

async function main(): Promise<number> {
  const m = machine();
  const version = sourceVersion();
  const root = await mkdtemp(join(tmpdir(), 'camnode-bench-footage-'));
  const log = silentLogger();
  const rows: Row[] = [];
  let plan: Plan;
  let indexed = 0;
  let createS = 0;
  let scanMs = 0;
  try {
    plan = planRing();
    let t0 = performance.now();
    await createFiles(root, plan.segments);
    createS = (performance.now() - t0) / 1000;
    console.log(`footage: ${plan.segments.length} segment files (${CAMERAS.length} cameras, ${plan.holes} holes) created in ${createS.toFixed(1)} s (${root})`);
    const ring = benchRing(root, SEGMENT_SECONDS, log);
    t0 = performance.now();
    await ring.start();
    scanMs = performance.now() - t0;
    try {
      indexed = ring.allSegments().length;
      if (indexed !== plan.segments.length) throw new Error(`the ring indexed ${indexed} segments, expected ${plan.segments.length}`);
      const incidents = planIncidents(plan);

      // What src/modules/footage.ts passes: its spans() over the book, joinWithinMs 1.5 segments.
      const spans = (): { locked: IncidentSpan[]; kept: IncidentSpan[] } => {
        const locked: IncidentSpan[] = [];
        const kept: IncidentSpan[] = [];
        for (const i of incidents) {
          const span = { incident: i.id, cameras: i.cameras, startMs: Date.parse(i.window.start), endMs: Date.parse(i.window.end) };
          if (i.state === 'active' || i.state === 'sealing') locked.push(span);
          else if (i.state === 'sealed' || i.state === 'synced') kept.push(span);
        }
        return { locked, kept };
      };
      const call = (a: Case['args']) => footageOf({
        segments: ring.allSegments(), cameras: CAMERAS, camera: a.camera, fromMs: a.from, toMs: a.to,
        joinWithinMs: SEGMENT_SECONDS * 1500, ...spans(),
      });
      // The module's own handler over the same ring and book (a stub book: list() only).
      const module = footageModule({
        clock: systemClock, log, events: new EventBus(log), faults: {} as Faults, signal: new AbortController().signal,
        ring, book: { list: () => incidents, pin: () => () => {} } as unknown as Pick<IncidentBook, 'list' | 'pin'>,
        damaged: { has: () => false }, audit: { append: async () => { throw new Error('not used'); } },
        configuredCameras: CAMERAS, segmentSeconds: SEGMENT_SECONDS, writing: () => false,
      });
      const handler = module.commands!.footage!;

      // A one-hour window in the middle of the ring's span.
      const midMs = Math.round((plan.startMs + plan.endMs) / 2);
      const cases: Case[] = [
        { name: 'no bounds (all 4 cameras)', args: {} },
        { name: 'one-hour from/to window', args: { from: midMs - 1_800_000, to: midMs + 1_800_000 } },
        { name: 'one camera (cam-2), no bounds', args: { camera: 'cam-2' } },
      ];
      for (const c of cases) {
        let t = performance.now();
        const reply = call(c.args);
        const first = performance.now() - t;
        deepStrictEqual(await handler(c.args, { via: 'local' }), reply, `the handler's reply to ${c.name} differs from footageOf's`);
        for (let i = 0; i < WARMUP; i++) call(c.args);
        const ms: number[] = [];
        const handlerMs: number[] = [];
        const stringifyMs: number[] = [];
        let json = '';
        for (let i = 0; i < RUNS; i++) {
          t = performance.now();
          const r = call(c.args);
          ms.push(performance.now() - t);
          t = performance.now();
          json = JSON.stringify(r);
          stringifyMs.push(performance.now() - t);
        }
        for (let i = 0; i < RUNS; i++) {
          t = performance.now();
          await handler(c.args, { via: 'local' });
          handlerMs.push(performance.now() - t);
        }
        const row: Row = {
          name: c.name, first, ms, handlerMs, stringifyMs, jsonBytes: Buffer.byteLength(json),
          ranges: reply.cameras.reduce((n, x) => n + x.ranges.length, 0),
          locked: reply.cameras.reduce((n, x) => n + x.locked.length, 0),
          kept: reply.cameras.reduce((n, x) => n + x.kept.length, 0),
          truncated: reply.cameras.some((x) => x.truncated),
        };
        rows.push(row);
        console.log(`  ${c.name}: median ${median(ms).toFixed(2)} ms, p99 ${percentileOf(ms, 99).toFixed(2)} ms (first call ${first.toFixed(1)} ms); ` +
          `handler median ${median(handlerMs).toFixed(2)} ms, p99 ${percentileOf(handlerMs, 99).toFixed(2)} ms; JSON ${(row.jsonBytes / 1024).toFixed(1)} KiB ` +
          `(stringify ${median(stringifyMs).toFixed(2)} ms), ${row.ranges} ranges, ${row.locked} locked, ${row.kept} kept`);
      }
    } finally {
      await ring.stop();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const worst = Math.max(...rows.map((r) => Math.max(percentileOf(r.ms, 99), percentileOf(r.handlerMs, 99))));
  const ok = worst <= TARGET_MS;
  console.log(`  worst p99 ${worst.toFixed(2)} ms (target <= ${TARGET_MS} ms) ${verdict(ok)}`);
  const f = (v: number): string => v.toFixed(2);
  const path = writeResults('footage', [
    '# `footage` reply from a 100k-segment ring',
    '',
    `Measured: \`footageOf\` (src/store/footage.ts) over the index of a real \`Ring\` started on ${indexed} finished segment files ` +
    `(${CONTENT.length} bytes each, named by segmentFileName; ${CAMERAS.length} cameras, ${SEGMENT_SECONDS} s segments with a few ms of ` +
    `jitter in length and seam, ${plan!.holes} holes of 4 s to 1 min scattered over the cameras, about ${((plan!.endMs - plan!.startMs) / 3_600_000).toFixed(1)} h ` +
    `per camera), called as src/modules/footage.ts calls it: \`segments: ring.allSegments()\`, the configured cameras, ` +
    `\`joinWithinMs: segmentSeconds × 1500\`, and ${LOCKED} locked (active) + ${KEPT} kept (sealed) incident spans built from ` +
    `book entries by the handler's own rule. ${RUNS} timed runs per request after ${WARMUP} warm-up runs (the first call, cold JIT, ` +
    'reported apart). "Handler" is the module\'s `footage` command handler over the same ring and a stub book (its reply checked equal ' +
    'to footageOf\'s); "stringify" is the JSON.stringify the transport does before sending the reply. ' +
    `Index built by \`ring.start()\` in ${scanMs.toFixed(0)} ms (files created in ${createS.toFixed(1)} s; not part of the figures).`,
    '',
    `${machineMarkdown(m)} camnode ${version}.`,
    '',
    '| request | footageOf median ms | footageOf p99 ms | first call ms | handler median ms | handler p99 ms | stringify median ms | reply JSON | ranges | locked | kept | truncated |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${f(median(r.ms))} | ${f(percentileOf(r.ms, 99))} | ${f(r.first)} | ${f(median(r.handlerMs))} | ${f(percentileOf(r.handlerMs, 99))} | ` +
      `${f(median(r.stringifyMs))} | ${(r.jsonBytes / 1024).toFixed(1)} KiB | ${r.ranges} | ${r.locked} | ${r.kept} | ${r.truncated} |`),
    '',
    `- Worst p99 (footageOf or handler, any request) over ${indexed} segments: **${f(worst)} ms** — target <= ${TARGET_MS} ms: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
