// One JPEG from a camera's live stream, for the `snapshot` command (CONTRACT §3). A separate,
// short-lived ffmpeg reads the source and encodes its first decodable frame; the recorder is
// not touched. Every failure becomes one plain sentence an operator can act on.
import { spawn } from 'node:child_process';
import type { Source } from '../config/schema.js';
import { redactUrl, scrub, urlSecrets } from '../config/redact.js';
import { buildInputArgs, type RecorderArgsInput } from './args.js';

/** More than any sane JPEG of one frame; a guard against a runaway pipe filling memory. */
export const SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024;
const STDERR_KEEP = 4_096;

export interface SnapshotOptions {
  source: Source;
  /** Give up (and kill ffmpeg) after this long. */
  timeoutMs: number;
  ffmpegPath?: string;
  /** Synthetic picture size for `testsrc`, as the recorder uses it. */
  testsrc?: RecorderArgsInput['testsrc'];
  maxBytes?: number;
  /** Aborting kills ffmpeg at once (the agent is stopping). */
  signal?: AbortSignal;
}

export interface Snapshot {
  jpeg: Buffer;
  /** ISO time the frame arrived from ffmpeg. */
  capturedAt: string;
}

export type SnapshotErrorCode = 'timeout' | 'unreachable' | 'refused' | 'unauthorized' | 'not_found' | 'busy' | 'too_large' | 'no_picture' | 'aborted' | 'failed';

/** A failed snapshot; `message` is one sentence, never a stack or a password. */
export class SnapshotError extends Error {
  constructor(readonly code: SnapshotErrorCode, message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

export function buildSnapshotArgs(source: Source, timeoutMs: number, testsrc?: RecorderArgsInput['testsrc']): string[] {
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
    // ffmpeg's own socket timeout only as a backstop a second after ours, so a hung camera is
    // always reported by our deadline (ffmpeg words its RTSP timeout as "Invalid data found").
    ...buildInputArgs(source, { rtspTimeoutMs: timeoutMs + 1_000, testsrc }),
    '-map', '0:v:0', '-an', '-frames:v', '1', '-q:v', '4', '-f', 'image2pipe', '-c:v', 'mjpeg', 'pipe:1',
  ];
}

export function takeSnapshot(opts: SnapshotOptions): Promise<Snapshot> {
  const maxBytes = opts.maxBytes ?? SNAPSHOT_MAX_BYTES;
  const args = buildSnapshotArgs(opts.source, opts.timeoutMs, opts.testsrc);
  return new Promise<Snapshot>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new SnapshotError('aborted', 'snapshot cancelled'));
      return;
    }
    // Nothing is being written, so SIGKILL loses nothing and cannot be ignored by a stuck read.
    const child = spawn(opts.ffmpegPath ?? 'ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let capturedAt: string | null = null;
    let stderr = '';
    let failure: SnapshotError | null = null;

    const kill = (why: SnapshotError) => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(timeoutError(opts.source, opts.timeoutMs)), opts.timeoutMs);
    const onAbort = () => kill(new SnapshotError('aborted', 'snapshot cancelled'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      capturedAt ??= new Date().toISOString();
      bytes += chunk.length;
      if (bytes > maxBytes) {
        kill(new SnapshotError('too_large', `snapshot larger than ${maxBytes >= 1_048_576 ? `${Math.round(maxBytes / 1_048_576)} MB` : `${maxBytes} bytes`}; refused`));
        return;
      }
      chunks.push(chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= err.code === 'ENOENT'
        ? new SnapshotError('failed', `ffmpeg not found (${opts.ffmpegPath ?? 'ffmpeg'}); install it: apt-get install ffmpeg`)
        : new SnapshotError('failed', `could not start ffmpeg: ${err.message}`);
    });
    // 'close', not 'exit': the process is gone *and* its pipes are drained, so nothing is left
    // behind when the promise settles.
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (failure) return reject(failure);
      const jpeg = Buffer.concat(chunks);
      if (code === 0 && isJpeg(jpeg) && capturedAt) return resolve({ jpeg, capturedAt });
      reject(explainFailure(opts.source, stderr, code));
    });
  });
}

function timeoutError(source: Source, timeoutMs: number): SnapshotError {
  if (source.kind === 'v4l2') {
    return new SnapshotError('timeout', `video device ${source.device} gave no picture within ${seconds(timeoutMs)} (busy while the recorder holds it?)`);
  }
  return new SnapshotError('timeout', `camera did not answer within ${seconds(timeoutMs)}`);
}

function isJpeg(b: Buffer): boolean {
  return b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

function describeSource(source: Source): string {
  switch (source.kind) {
    case 'rtsp': return redactUrl(source.url);
    case 'v4l2': return source.device;
    case 'file': return source.path;
    case 'testsrc': return 'testsrc';
  }
}

/** ffmpeg's stderr turned into one sentence; the patterns are the ones ffmpeg 5.x prints. */
export function explainFailure(source: Source, stderr: string, code: number | null): SnapshotError {
  const where = describeSource(source);
  if (/Connection refused/i.test(stderr)) return new SnapshotError('refused', `camera ${where} refused the connection (nothing listening there)`);
  if (/401 Unauthorized/i.test(stderr)) return new SnapshotError('unauthorized', `camera ${where} refused the credentials (401 Unauthorized)`);
  if (/404 Not Found/i.test(stderr)) return new SnapshotError('not_found', `camera ${where} has no such stream (404 Not Found)`);
  if (/Failed to resolve hostname|Name or service not known/i.test(stderr)) return new SnapshotError('unreachable', `camera host in ${where} cannot be resolved`);
  if (/No route to host|Network is unreachable|Host is unreachable/i.test(stderr)) return new SnapshotError('unreachable', `camera ${where} is unreachable (no route)`);
  if (/Connection timed out/i.test(stderr)) return new SnapshotError('timeout', `camera ${where} did not answer (connection timed out)`);
  if (source.kind === 'v4l2' && /Device or resource busy/i.test(stderr)) {
    // A V4L2 device has one reader; while this camera records, the recorder is it.
    return new SnapshotError('busy', `video device ${where} is busy (the recorder holds it while recording); no snapshot possible from a local camera that is recording`);
  }
  if (/No such file or directory/i.test(stderr)) return new SnapshotError('not_found', `${where} does not exist`);
  const secrets = source.kind === 'rtsp' ? urlSecrets(source.url) : [];
  const last = scrub(stderr, secrets).trim().split('\n').filter(Boolean).pop()?.replace(/^\[[^\]]*\]\s*/, '');
  if (code === 0) return new SnapshotError('no_picture', `camera ${where} sent no picture`);
  return new SnapshotError('failed', `snapshot from ${where} failed${last ? `: ${last}` : ` (ffmpeg exit ${code})`}`);
}
