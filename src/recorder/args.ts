// The ffmpeg command line for one camera, built purely from config and platform facts so it
// can be tested without cameras or video devices.
import type { Source } from '../config/schema.js';

export interface RecorderArgsInput {
  source: Source;
  /** Full path pattern of the segment files, e.g. /srv/camnode/segments/entrance/rec-1-%06d.ts */
  outputPattern: string;
  segmentSeconds: number;
  /** RTSP socket timeout: without it ffmpeg hangs forever on a half-open connection. */
  rtspTimeoutMs: number;
  /** H.264 encoder for sources that must be encoded (v4l2, testsrc). */
  encoder: H264Encoder;
  /** Target bitrate for encoded sources, bits per second. */
  encodeBitrate?: number;
  /** Synthetic picture size and rate. */
  testsrc?: { width: number; height: number; fps: number };
}

export type H264Encoder = 'h264_v4l2m2m' | 'libx264';

/**
 * Which H.264 encoder a machine should use for sources that need encoding. Pi 3/4 (and Zero 2)
 * have a hardware encoder behind V4L2 M2M; the Pi 5 dropped it, and other machines have none
 * we can rely on, so they encode in software with libx264 at the fastest preset.
 */
export function chooseH264Encoder(deviceModel: string | null): H264Encoder {
  if (!deviceModel) return 'libx264';
  const m = /Raspberry Pi (\d+|Zero 2|Compute Module (\d+))/.exec(deviceModel);
  if (!m) return 'libx264';
  const generation = m[1] === 'Zero 2' ? 3 : Number(m[2] ?? m[1]);
  return generation >= 3 && generation <= 4 ? 'h264_v4l2m2m' : 'libx264';
}

function encodeArgs(input: RecorderArgsInput, fps: number): string[] {
  const bitrate = String(input.encodeBitrate ?? 2_000_000);
  // A keyframe at every segment boundary so segments cut on time.
  const keyframes = ['-force_key_frames', `expr:gte(t,n_forced*${input.segmentSeconds})`, '-g', String(Math.max(1, Math.round(fps * input.segmentSeconds)))];
  if (input.encoder === 'h264_v4l2m2m') {
    return ['-c:v', 'h264_v4l2m2m', '-b:v', bitrate, '-pix_fmt', 'yuv420p', ...keyframes];
  }
  return ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-b:v', bitrate, '-pix_fmt', 'yuv420p', ...keyframes];
}

/** Picture size and rate of the synthetic source when none is configured. */
const DEFAULT_TESTSRC = { width: 640, height: 360, fps: 10 };

/**
 * The input half of an ffmpeg command line for a camera source (everything up to and including
 * `-i`), shared by the recorder and by one-off readers such as snapshots.
 */
export function buildInputArgs(source: Source, opts: Pick<RecorderArgsInput, 'rtspTimeoutMs' | 'testsrc'>): string[] {
  switch (source.kind) {
    case 'rtsp':
      return ['-rtsp_transport', 'tcp', '-timeout', String(opts.rtspTimeoutMs * 1000), '-i', source.url];
    case 'file':
      return ['-re', '-stream_loop', '-1', '-i', source.path];
    case 'v4l2':
      return ['-f', 'v4l2', '-i', source.device];
    case 'testsrc': {
      const { width, height, fps } = opts.testsrc ?? DEFAULT_TESTSRC;
      // The burnt-in clock shows the wall time each frame was made (UTC), and #n the frame's
      // number since this ffmpeg started, so neighbouring frames are told apart in a picture.
      const filter = `testsrc2=size=${width}x${height}:rate=${fps},drawtext=text='%{gmtime} UTC  #%{n}':fontcolor=white:fontsize=${Math.max(12, Math.round(height / 14))}:box=1:boxcolor=black@0.6:x=8:y=8`;
      return ['-re', '-f', 'lavfi', '-i', filter];
    }
  }
}

export function buildRecorderArgs(input: RecorderArgsInput): string[] {
  const { source } = input;
  const global = ['-hide_banner', '-nostats', '-loglevel', 'warning'];
  const fps = source.kind === 'testsrc' ? (input.testsrc ?? DEFAULT_TESTSRC).fps : 15;
  const codec = source.kind === 'rtsp' || source.kind === 'file' ? ['-c:v', 'copy'] : encodeArgs(input, fps);
  const inputArgs = [...buildInputArgs(source, input), '-map', '0:v:0', ...codec];
  // Audio is never recorded: the district's policy covers video, and audio recording of the
  // public raises wiretap questions the policy does not settle.
  const output = [
    '-an',
    '-f', 'segment', '-segment_time', String(input.segmentSeconds), '-segment_format', 'mpegts',
    // Without flush_packets on the inner muxer a killed ffmpeg leaves a 0-byte segment.
    '-segment_format_options', 'flush_packets=1',
    // Each finished segment is reported on stdout as it closes: "name,start,end".
    '-segment_list', 'pipe:1', '-segment_list_type', 'csv', '-segment_list_flags', '+live',
    input.outputPattern,
  ];
  return [...global, ...inputArgs, ...output];
}

/** One line of ffmpeg's CSV segment list. */
export interface SegmentListEntry {
  file: string;
  startSeconds: number;
  endSeconds: number;
}

export function parseSegmentListLine(line: string): SegmentListEntry | null {
  const m = /^("?)(.+?)\1,(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)\s*$/.exec(line);
  if (!m) return null;
  const startSeconds = Number(m[3]);
  const endSeconds = Number(m[4]);
  if (!(endSeconds >= startSeconds)) return null;
  return { file: m[2]!, startSeconds, endSeconds };
}

/** A short sample of the camera's stream to stdout (for `check`: is it alive, at what bitrate). */
export function buildSampleArgs(input: Omit<RecorderArgsInput, 'outputPattern'>, seconds: number): string[] {
  const full = buildRecorderArgs({ ...input, outputPattern: 'unused' });
  const inputPart = full.slice(0, full.indexOf('-an'));
  return [...inputPart, '-an', '-t', String(seconds), '-f', 'mpegts', 'pipe:1'];
}
