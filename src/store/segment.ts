// Segment files: the filesystem is the index. A finished segment is named
//   <seq:12>_<startMs>_<durationMs>.ts
// where `seq` is one counter for the whole ring, given in the order segments finish.
// Order (and so eviction) follows `seq`, never the clock: a wrong clock at boot cannot make
// new footage sort first. The wall-clock stamp is kept for locks and for `maxAge`.
// ffmpeg writes the segment in progress as rec-<run>-<index:6>.ts; the agent renames it when
// ffmpeg reports it finished. A crash leaves rec-* files; the next scan adopts them.

export interface Segment {
  seq: number;
  camera: string;
  /** Wall-clock start, ms since the epoch (as stamped; see `timeTrusted`). */
  startMs: number;
  durationMs: number;
  bytes: number;
}

const FINISHED = /^(\d{12})_(\d{1,15})_(\d{1,9})\.ts$/;
const IN_PROGRESS = /^rec-([a-z0-9]+)-(\d{6,})\.ts$/;

export function segmentFileName(s: Pick<Segment, 'seq' | 'startMs' | 'durationMs'>): string {
  return `${String(s.seq).padStart(12, '0')}_${Math.max(0, Math.round(s.startMs))}_${Math.max(0, Math.round(s.durationMs))}.ts`;
}

export function parseSegmentFileName(name: string): Pick<Segment, 'seq' | 'startMs' | 'durationMs'> | null {
  const m = FINISHED.exec(name);
  if (!m) return null;
  return { seq: Number(m[1]), startMs: Number(m[2]), durationMs: Number(m[3]) };
}

/** The ffmpeg output pattern for a recorder run (`%06d` is ffmpeg's segment index). */
export function inProgressPattern(run: string): string {
  return `rec-${run}-%06d.ts`;
}

export function inProgressFileName(run: string, index: number): string {
  return `rec-${run}-${String(index).padStart(6, '0')}.ts`;
}

export function isInProgressFileName(name: string): boolean {
  return IN_PROGRESS.test(name);
}

export function segmentEndMs(s: Pick<Segment, 'startMs' | 'durationMs'>): number {
  return s.startMs + s.durationMs;
}
