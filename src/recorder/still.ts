// One JPEG from a recorded segment, for the `still` command (CONTRACT §6): the last frame at or
// before a given offset into the segment, decoded from that segment and nothing else. Only the
// one output frame is encoded; the segment is read, never re-encoded.
//
// Two short-lived children: ffprobe lists the segment's video packets (no decoding) so the
// frame and the keyframe it depends on are chosen here, exactly; then one ffmpeg seeks to that
// keyframe, decodes up to the frame and writes it as a JPEG to stdout.
//
// Why the frame is chosen here and not left to ffmpeg's `-ss`: in MPEG-TS, ffmpeg's input
// seeking does *not* land on a keyframe. The demuxer has no index and finds the position by a
// binary search over packet DTS in which every packet counts as a keyframe, so `-ss T -i seg.ts`
// starts decoding at the packet nearest T; the H.264 decoder then discards everything up to the
// next keyframe, and with one keyframe per segment (the recorder's own encodes) that is no
// picture at all. So the input seek goes to (just before) the keyframe's DTS, and a `trim`
// filter drops the decoded frames before the chosen one. Not an output-side `-ss`: ffmpeg puts
// that cut after the conversion to the JPEG encoder's pixel format, so every decoded frame is
// converted first — three times the work of decoding alone for a 1080p segment.
import { spawn } from 'node:child_process';

/** More than any sane JPEG of one frame; a guard against a runaway pipe filling memory. */
export const STILL_MAX_BYTES = 8 * 1024 * 1024;
/** ffprobe's packet list of even a long, high-rate segment is far below this. */
const PROBE_MAX_BYTES = 32 * 1024 * 1024;
const STDERR_KEEP = 4_096;
/**
 * How far before the keyframe's DTS the input seek aims. The demuxer lands on the last packet
 * whose DTS is at or before the aim (the one before the keyframe: the decoder skips it), and
 * the same point is ffmpeg's input-side cut, which must not drop the keyframe itself (its PTS
 * may equal its DTS) by a few µs of rounding.
 */
const SEEK_MARGIN_US = 1_000;
/** The cut after decoding lies this far (at most) before the chosen frame, under half a frame. */
const TRIM_EPSILON_US = 1_000;

export interface StillOptions {
  /** The segment file (MPEG-TS as the recorder writes it). */
  path: string;
  /** Where on the segment's timeline: `at` minus the segment's start, in ms. */
  offsetMs: number;
  /** Give up (and kill ffprobe/ffmpeg) after this long, both steps together. */
  timeoutMs: number;
  ffmpegPath?: string;
  ffprobePath?: string;
  /** Aborting kills the running child at once (the agent is stopping). */
  signal?: AbortSignal;
  maxBytes?: number;
}

export interface Still {
  jpeg: Buffer;
  /**
   * The frame's PTS minus the segment's first video PTS, in whole ms rounded down, so
   * `segment start + frameOffsetMs` is never after the time asked for.
   */
  frameOffsetMs: number;
}

export type StillErrorCode = 'no_frame' | 'unreadable' | 'timeout' | 'aborted' | 'too_large' | 'failed';

/** A failed still; `message` is one sentence, never a stack or a path of the machine. */
export class StillError extends Error {
  constructor(
    readonly code: StillErrorCode,
    message: string,
    /** For `no_frame`: the offset (ms) of the nearest frame this segment does hold. */
    readonly nearestOffsetMs?: number,
  ) {
    super(message);
    this.name = 'StillError';
  }
}

/** One video packet as ffprobe lists it, in decode order; times in µs on the file's clock. */
export interface SegmentPacket {
  ptsUs: number;
  dtsUs: number | null;
  key: boolean;
}

/** Parses `ffprobe -show_entries packet=pts_time,dts_time,flags -of compact=p=0` output. */
export function parsePacketList(text: string): SegmentPacket[] {
  const packets: SegmentPacket[] = [];
  for (const line of text.split('\n')) {
    const fields = new Map<string, string>();
    for (const part of line.trim().split('|')) {
      const eq = part.indexOf('=');
      if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
    }
    const pts = toUs(fields.get('pts_time'));
    if (pts === null) continue; // a side-data line, or a packet without a PTS (not a frame we can place)
    packets.push({ ptsUs: pts, dtsUs: toUs(fields.get('dts_time')), key: (fields.get('flags') ?? '').includes('K') });
  }
  return packets;
}

function toUs(text: string | undefined): number | null {
  if (text === undefined || !/^-?\d+(\.\d+)?$/.test(text)) return null;
  return Math.round(Number(text) * 1e6);
}

/** What to decode: the chosen frame and the two cuts that get ffmpeg to it. */
export interface StillPlan {
  /** The chosen frame's PTS minus the segment's first video PTS. */
  frameOffsetUs: number;
  /** Input-side `-ss` (µs after the first PTS), or null to decode from the file's start. */
  seekUs: number | null;
  /** Decoded frames earlier than this (µs after the seek point) are dropped. */
  trimUs: number;
}

/**
 * Chooses the frame for `offsetMs` from the segment's packets (decode order): the last frame
 * whose PTS is at or before first PTS + offset, and the keyframe to decode it from. Throws
 * StillError `no_frame` (with the nearest offset) before the first frame or after the last
 * frame's time on screen, `unreadable` when there is no frame at all.
 */
export function planStill(packets: readonly SegmentPacket[], offsetMs: number): StillPlan {
  if (packets.length === 0) throw new StillError('unreadable', 'the segment holds no video frames');
  const firstUs = packets.reduce((min, p) => Math.min(min, p.ptsUs), Infinity);
  // Frames shown before the first keyframe (open-GOP leading pictures) cannot be decoded from
  // this segment; the recorder's segments start on a keyframe, so normally there are none.
  const firstKey = packets.findIndex((p) => p.key);
  const floorUs = firstKey >= 0 ? packets[firstKey]!.ptsUs : firstUs;
  const frames = packets.map((p, index) => ({ ...p, index })).filter((p) => p.ptsUs >= floorUs).sort((a, b) => a.ptsUs - b.ptsUs || a.index - b.index);
  const first = frames[0]!;
  const last = frames[frames.length - 1]!;
  const offsetUs = (us: number): number => us - firstUs;
  const targetUs = firstUs + Math.round(offsetMs * 1000);

  if (targetUs < first.ptsUs) {
    const nearest = Math.ceil(offsetUs(first.ptsUs) / 1000);
    throw new StillError('no_frame', `no frame that early in the segment; its first frame is at ${nearest} ms`, nearest);
  }
  // The last frame stays on screen for one frame interval; after that the segment has nothing.
  const intervalUs = medianGap(frames.map((f) => f.ptsUs));
  if (targetUs >= last.ptsUs + Math.max(intervalUs, 1)) {
    const nearest = Math.floor(offsetUs(last.ptsUs) / 1000);
    throw new StillError('no_frame', `no frame that late in the segment; its last frame is at ${nearest} ms`, nearest);
  }

  let pick = 0;
  while (pick + 1 < frames.length && frames[pick + 1]!.ptsUs <= targetUs) pick++;
  const chosen = frames[pick]!;

  // The keyframe to start from: the last one, in decode order, not after the chosen frame.
  let key: (typeof frames)[number] | undefined;
  for (let i = chosen.index; i >= 0; i--) {
    const p = packets[i]!;
    if (p.key && p.ptsUs <= chosen.ptsUs) {
      key = { ...p, index: i };
      break;
    }
  }
  // Input seeking is by DTS (see above): aim just before the keyframe's DTS. The file's first
  // keyframe needs no seek at all.
  let seekUs: number | null = null;
  if (key && key.index > 0) {
    const aim = offsetUs(key.dtsUs ?? key.ptsUs) - SEEK_MARGIN_US;
    if (aim > 0) seekUs = aim;
  }
  // Cut a hair before the chosen frame: after the frame before it (less than half the gap),
  // but far enough that rounding of µs times cannot drop the chosen frame itself.
  const prev = frames[pick - 1];
  const gapUs = prev ? chosen.ptsUs - prev.ptsUs : 2 * TRIM_EPSILON_US;
  const epsilonUs = Math.min(TRIM_EPSILON_US, Math.floor(gapUs / 2));
  const trimUs = Math.max(0, offsetUs(chosen.ptsUs) - (seekUs ?? 0) - epsilonUs);
  return { frameOffsetUs: offsetUs(chosen.ptsUs), seekUs, trimUs };
}

function medianGap(sortedUs: readonly number[]): number {
  const gaps: number[] = [];
  for (let i = 1; i < sortedUs.length; i++) {
    const gap = sortedUs[i]! - sortedUs[i - 1]!;
    if (gap > 0) gaps.push(gap);
  }
  if (gaps.length === 0) return 0;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)]!;
}

/** ffmpeg reads "a:b" as protocol a; a relative path goes through the file protocol. */
function inputName(path: string): string {
  return path.startsWith('/') ? path : `file:${path}`;
}

const seconds = (us: number): string => (us / 1e6).toFixed(6);

export function buildProbeArgs(path: string): string[] {
  return ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,dts_time,flags', '-of', 'compact=p=0', inputName(path)];
}

/**
 * With `-ss` before `-i`, ffmpeg seeks to the file's start time (its first PTS) plus the value,
 * and shifts timestamps so that point is 0 (without `-ss`, the first PTS is 0); the trim filter
 * counts from there.
 */
export function buildStillArgs(path: string, plan: StillPlan): string[] {
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
    ...(plan.seekUs === null ? [] : ['-ss', seconds(plan.seekUs)]),
    '-i', inputName(path),
    '-map', '0:v:0', '-an', '-vf', `trim=start=${seconds(plan.trimUs)}`,
    '-frames:v', '1', '-f', 'image2pipe', '-c:v', 'mjpeg', '-q:v', '3', 'pipe:1',
  ];
}

export async function extractStill(opts: StillOptions): Promise<Still> {
  if (opts.signal?.aborted) throw new StillError('aborted', 'still cancelled');
  const deadline = Date.now() + opts.timeoutMs;
  const probe = await runChild('ffprobe', opts.ffprobePath ?? 'ffprobe', buildProbeArgs(opts.path), deadline, opts, PROBE_MAX_BYTES,
    () => new StillError('unreadable', 'the segment lists too many frames to be a segment'));
  if (probe.code !== 0) throw unreadable(probe.stderr, opts.path);
  const plan = planStill(parsePacketList(probe.stdout.toString('utf8')), opts.offsetMs);

  const maxBytes = opts.maxBytes ?? STILL_MAX_BYTES;
  const tooLarge = () => new StillError('too_large', `still larger than ${maxBytes >= 1_048_576 ? `${Math.round(maxBytes / 1_048_576)} MB` : `${maxBytes} bytes`}; refused`);
  const out = await runChild('ffmpeg', opts.ffmpegPath ?? 'ffmpeg', buildStillArgs(opts.path, plan), deadline, opts, maxBytes, tooLarge);
  if (out.code !== 0) {
    if (/Invalid data found|No such file or directory|could not find codec parameters/i.test(out.stderr)) throw unreadable(out.stderr, opts.path);
    const last = lastLine(out.stderr, opts.path);
    throw new StillError('failed', `decoding the still failed${last ? `: ${last}` : ` (ffmpeg exit ${out.code})`}`);
  }
  if (!isJpeg(out.stdout)) throw new StillError('unreadable', 'the segment gave no picture for that time; its video may be damaged');
  return { jpeg: out.stdout, frameOffsetMs: Math.floor(plan.frameOffsetUs / 1000) };
}

interface ChildResult { code: number | null; stdout: Buffer; stderr: string }

/**
 * Runs one short-lived child to completion with the shared deadline and abort signal. Nothing
 * it does is written anywhere but its pipes, so SIGKILL loses nothing and cannot be ignored.
 */
function runChild(tool: string, command: string, args: string[], deadline: number, opts: StillOptions, maxBytes: number, tooLarge: () => StillError): Promise<ChildResult> {
  return new Promise<ChildResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new StillError('aborted', 'still cancelled'));
      return;
    }
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let stderr = '';
    let failure: StillError | null = null;

    const kill = (why: StillError) => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const timeoutMs = opts.timeoutMs;
    const within = timeoutMs < 1_000 ? `${timeoutMs} ms` : `${Number((timeoutMs / 1000).toFixed(1))} s`;
    const timer = setTimeout(() => kill(new StillError('timeout', `still not ready within ${within}`)), Math.max(0, deadline - Date.now()));
    const onAbort = () => kill(new StillError('aborted', 'still cancelled'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      if (failure) return;
      bytes += chunk.length;
      if (bytes > maxBytes) {
        kill(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= err.code === 'ENOENT'
        ? new StillError('failed', `${tool} not found (${command}); install it: apt-get install ffmpeg`)
        : new StillError('failed', `could not start ${tool}: ${err.message}`);
    });
    // 'close', not 'exit': the process is gone and its pipes drained before the promise settles.
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else resolve({ code, stdout: Buffer.concat(chunks), stderr });
    });
  });
}

function unreadable(stderr: string, path: string): StillError {
  if (/No such file or directory/i.test(stderr)) return new StillError('unreadable', 'the segment file is missing');
  if (/Invalid data found/i.test(stderr)) return new StillError('unreadable', 'the segment is not readable video (invalid data)');
  const last = lastLine(stderr, path);
  return new StillError('unreadable', `the segment could not be read${last ? `: ${last}` : ''}`);
}

/** ffmpeg's last complaint without its "[component @ 0x…]" prefix or the segment's path. */
function lastLine(stderr: string, path: string): string | undefined {
  return stderr.split(path).join('segment').trim().split('\n').filter(Boolean).pop()?.replace(/^\[[^\]]*\]\s*/, '').replace(/[.\s]+$/, '');
}

function isJpeg(b: Buffer): boolean {
  return b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9;
}
