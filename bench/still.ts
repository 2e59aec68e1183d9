// `still` decode time (CONTRACT §6): one 10 s 1080p25 MPEG-TS segment as the recorder makes it
// for an encoded source (libx264 ultrafast, one keyframe at the segment's start, timestamps not
// starting at 0), and `extractStill` timed at 0.5 s, 5 s and 9.9 s into it. 9.9 s is the worst
// case: the only keyframe is at the start, so every frame up to the last is decoded. For scale,
// ffprobe's packet listing alone, a plain decode of the whole segment, and the 9.9 s still cut
// with an output-side `-ss` instead of the trim filter are timed too, and the decoding ffmpeg's
// peak RSS is read once per offset.
//
//   node dist/bench/still.js [--runs 5]
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildProbeArgs, buildStillArgs, extractStill, parsePacketList, planStill } from '../src/recorder/still.js';
import { machine, machineMarkdown, mb, median, numberArg, peakRssBytes, sleep, verdict, writeResults } from './lib.js';

const run = promisify(execFile);

const RUNS = numberArg('--runs', 5);
const OFFSETS_MS = [500, 5_000, 9_900];
const TARGET_S = 2;
const SEGMENT = { width: 1920, height: 1080, fps: 25, seconds: 10, bitrate: '4M' };

/**
 * One segment, made the way the recorder makes them (encodeArgs in src/recorder/args.ts: a
 * keyframe forced at each segment boundary, `-g` fps × segment), cut by the segment muxer into
 * MPEG-TS; the first 10 s are thrown away so the kept segment's PTS do not start near 0, as a
 * running recorder's do not. Noise over testsrc2 makes the encoder spend its bitrate.
 */
async function makeSegment(dir: string): Promise<{ path: string; bytes: number; frames: number; s: number }> {
  const t0 = performance.now();
  const { width, height, fps, seconds, bitrate } = SEGMENT;
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error',
    '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${fps},noise=alls=12:allf=t,drawtext=text='%{gmtime} UTC  #%{n}':fontcolor=white:fontsize=77:box=1:boxcolor=black@0.6:x=8:y=8`,
    '-t', String(2 * seconds),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-b:v', bitrate, '-maxrate', bitrate, '-bufsize', bitrate, '-pix_fmt', 'yuv420p',
    '-force_key_frames', `expr:gte(t,n_forced*${seconds})`, '-g', String(fps * seconds),
    '-an', '-f', 'segment', '-segment_time', String(seconds), '-segment_format', 'mpegts', join(dir, 'seg-%03d.ts')], { timeout: 600_000 });
  const names = (await readdir(dir)).filter((n) => n.endsWith('.ts')).sort();
  if (names.length < 2) throw new Error(`expected 2 segments, got ${names.join(', ')}`);
  const path = join(dir, names[1]!);
  const packets = parsePacketList((await run('ffprobe', buildProbeArgs(path), { maxBuffer: 64 * 1024 * 1024 })).stdout);
  const keys = packets.filter((p) => p.key).length;
  if (keys !== 1 || !packets[0]?.key) throw new Error(`the segment should hold one keyframe, first; it holds ${keys}`);
  const { size } = await stat(path);
  return { path, bytes: size, frames: packets.length, s: (performance.now() - t0) / 1000 };
}

/** The decoding ffmpeg of one still, run as extractStill runs it, its VmHWM polled until it exits. */
async function peakRss(path: string, offsetMs: number): Promise<number | null> {
  const packets = parsePacketList((await run('ffprobe', buildProbeArgs(path), { maxBuffer: 64 * 1024 * 1024 })).stdout);
  const child = spawn('ffmpeg', buildStillArgs(path, planStill(packets, offsetMs)), { stdio: ['ignore', 'ignore', 'ignore'] });
  let peak: number | null = null;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let done = false;
  void exited.then(() => { done = true; });
  while (!done) {
    const now = child.pid ? peakRssBytes(child.pid) : null;
    if (now !== null) peak = Math.max(peak ?? 0, now);
    await sleep(5);
  }
  return peak;
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

interface Row { offsetMs: number; frameOffsetMs: number; jpegBytes: number; runs: number[]; peakRss: number | null }

async function main(): Promise<number> {
  const m = machine();
  const work = mkdtempSync(join(tmpdir(), 'camnode-bench-still-'));
  const onSigint = (): void => {
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  const rows: Row[] = [];
  let seg: Awaited<ReturnType<typeof makeSegment>>;
  let probeS: number[];
  let fullDecodeS: number[];
  let outputSsS: number[];
  try {
    const dir = join(work, 'segments');
    await mkdir(dir);
    console.log(`still: one ${SEGMENT.seconds} s ${SEGMENT.width}x${SEGMENT.height}@${SEGMENT.fps} segment (libx264 ultrafast ~${SEGMENT.bitrate}bit/s, one keyframe), ${RUNS} runs per offset`);
    seg = await makeSegment(dir);
    console.log(`  segment: ${seg.frames} frames, ${mb(seg.bytes)}, made in ${seg.s.toFixed(1)} s`);
    // Unmeasured: the file into the page cache, the binaries and libraries too.
    await extractStill({ path: seg.path, offsetMs: 5_000, timeoutMs: 60_000 });

    probeS = [];
    fullDecodeS = [];
    outputSsS = [];
    // The still's own command line at 9.9 s with the trim filter swapped for an output-side -ss.
    const packets = parsePacketList((await run('ffprobe', buildProbeArgs(seg.path), { maxBuffer: 64 * 1024 * 1024 })).stdout);
    const args = buildStillArgs(seg.path, planStill(packets, 9_900));
    const vf = args.indexOf('-vf');
    const withOutputSs = [...args.slice(0, vf), '-ss', args[vf + 1]!.replace(/^trim=start=/, ''), ...args.slice(vf + 2)];
    for (let i = 0; i < RUNS; i++) {
      probeS.push(await timeIt(() => run('ffprobe', buildProbeArgs(seg.path), { maxBuffer: 64 * 1024 * 1024 })));
      fullDecodeS.push(await timeIt(() => run('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-i', seg.path, '-map', '0:v:0', '-f', 'null', '-'])));
      outputSsS.push(await timeIt(() => run('ffmpeg', withOutputSs, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 })));
    }
    console.log(`  ffprobe packet list alone: median ${median(probeS).toFixed(3)} s; decoding the whole segment (-f null): median ${median(fullDecodeS).toFixed(2)} s; ` +
      `the 9.9 s ffmpeg with an output-side -ss: median ${median(outputSsS).toFixed(2)} s`);

    for (const offsetMs of OFFSETS_MS) {
      const row: Row = { offsetMs, frameOffsetMs: NaN, jpegBytes: 0, runs: [], peakRss: null };
      for (let i = 0; i < RUNS; i++) {
        const t0 = performance.now();
        const still = await extractStill({ path: seg.path, offsetMs, timeoutMs: 60_000 });
        row.runs.push((performance.now() - t0) / 1000);
        // The right frame, or the figure means nothing: the last at or before the offset.
        if (still.frameOffsetMs > offsetMs || still.frameOffsetMs <= offsetMs - 1000 / SEGMENT.fps) {
          throw new Error(`still at ${offsetMs} ms gave the frame at ${still.frameOffsetMs} ms`);
        }
        row.frameOffsetMs = still.frameOffsetMs;
        row.jpegBytes = still.jpeg.length;
      }
      row.peakRss = await peakRss(seg.path, offsetMs);
      rows.push(row);
      console.log(`  at ${(offsetMs / 1000).toFixed(1)} s (frame at ${row.frameOffsetMs} ms): median ${median(row.runs).toFixed(2)} s, max ${Math.max(...row.runs).toFixed(2)} s` +
        `, ffmpeg peak RSS ${row.peakRss === null ? 'unknown' : mb(row.peakRss)}, JPEG ${(row.jpegBytes / 1024).toFixed(0)} KiB`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    process.off('SIGINT', onSigint);
  }

  const worst = rows[rows.length - 1]!;
  const ok = median(worst.runs) <= TARGET_S;
  console.log(`  worst offset (9.9 s): median ${median(worst.runs).toFixed(2)} s (target <= ${TARGET_S} s) ${verdict(ok)}`);
  const path = writeResults('still', [
    '# Still: one frame from a recorded segment',
    '',
    `Measured: \`extractStill\` (src/recorder/still.ts) on one ${SEGMENT.seconds} s MPEG-TS segment of ${SEGMENT.width}x${SEGMENT.height}@${SEGMENT.fps} ` +
    `(${seg.frames} frames, ${mb(seg.bytes)}), made as the recorder makes segments of an encoded source: testsrc2 with noise and the ` +
    `burnt-in clock and frame number, libx264 ultrafast zerolatency at ~${SEGMENT.bitrate}bit/s, a keyframe forced at each segment ` +
    'boundary (so one keyframe, at the start), cut by the segment muxer; the second of two segments is used, so its PTS start ' +
    `${SEGMENT.seconds}+ s from 0 as a running recorder's do. Each run is timed from the call to the JPEG in hand: ffprobe lists the ` +
    'packets (no decoding), the frame and its keyframe are chosen, one ffmpeg seeks to the keyframe, decodes up to the frame and ' +
    `encodes it as JPEG (mjpeg, -q:v 3). ${RUNS} runs per offset after one unmeasured run (the file is in the page cache, as a ` +
    'segment of the last hours usually is). Each run is checked to give the last frame at or before the offset. Peak RSS: the ' +
    "decoding ffmpeg's VmHWM, polled every 5 ms in a separate run of the same command line.",
    '',
    machineMarkdown(m),
    '',
    '| offset | frame at | median s | max s | runs s | ffmpeg peak RSS | JPEG |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${(r.offsetMs / 1000).toFixed(1)} s | ${r.frameOffsetMs} ms | ${median(r.runs).toFixed(2)} | ${Math.max(...r.runs).toFixed(2)} | ` +
      `${r.runs.map((s) => s.toFixed(2)).join(', ')} | ${r.peakRss === null ? 'unknown' : mb(r.peakRss)} | ${(r.jpegBytes / 1024).toFixed(0)} KiB |`),
    '',
    `- For scale: ffprobe's packet listing alone, median ${median(probeS).toFixed(3)} s; a plain decode of the whole segment ` +
    `(\`ffmpeg -i SEG -f null -\`), median ${median(fullDecodeS).toFixed(2)} s. The 9.9 s still decodes nearly all of it.`,
    `- Why a \`trim\` filter and not an output-side \`-ss\` cuts the frames before the chosen one: ffmpeg applies an output \`-ss\` after ` +
    'converting every decoded frame to the JPEG encoder\'s pixel format (full-range yuvj420p, a 1080p swscale pass per frame). The ' +
    `9.9 s still's ffmpeg alone (no ffprobe), cut that way: median ${median(outputSsS).toFixed(2)} s (max ${Math.max(...outputSsS).toFixed(2)} s).`,
    `- Worst offset (9.9 s): median **${median(worst.runs).toFixed(2)} s** (max ${Math.max(...worst.runs).toFixed(2)} s) — target <= ${TARGET_S} s: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
