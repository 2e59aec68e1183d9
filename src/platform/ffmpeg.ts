// Facts about the installed ffmpeg and small probes of media files.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const MIN_FFMPEG = [5, 0] as const;

export class MissingToolError extends Error {
  constructor(readonly tool: string, message: string) {
    super(message);
    this.name = 'MissingToolError';
  }
}

/** "5.1.9" from `ffmpeg -version`; throws MissingToolError when ffmpeg is not on PATH. */
export async function ffmpegVersion(ffmpegPath = 'ffmpeg'): Promise<string> {
  try {
    const { stdout } = await run(ffmpegPath, ['-hide_banner', '-version'], { timeout: 10_000 });
    const m = /ffmpeg version n?(\d+(?:\.\d+)*)/.exec(stdout);
    return m?.[1] ?? stdout.split('\n')[0] ?? 'unknown';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MissingToolError('ffmpeg', `ffmpeg not found on PATH (install it: apt-get install ffmpeg)`);
    }
    throw err;
  }
}

export function versionAtLeast(version: string, min: readonly number[]): boolean {
  const parts = version.split('.').map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < min.length; i++) {
    const v = parts[i] ?? 0;
    if (Number.isNaN(v)) return false;
    if (v !== min[i]) return v > min[i]!;
  }
  return true;
}

/** Duration of a media file in ms, or null if it does not parse. */
export async function probeDurationMs(path: string, ffprobePath = 'ffprobe'): Promise<number | null> {
  try {
    const { stdout } = await run(ffprobePath, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', path], { timeout: 15_000 });
    const seconds = Number.parseFloat(stdout.trim());
    return Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : null;
  } catch {
    return null;
  }
}
