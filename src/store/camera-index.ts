// The ring's segments per camera, for the questions asked of one camera's footage — what
// overlaps a window (a seal, a hold, a still), what a lock keeps — without walking every
// camera's segments. Each camera's list is in seq order, which is time order unless a clock
// step or a stamp read late broke it; while it is in order a window is found by binary search,
// otherwise by a walk of that camera's list alone.
import { segmentEndMs, type Segment } from './segment.js';

interface CameraList {
  list: Segment[];
  /** Starts never go down along the list (checked on each push, and after a step). */
  ordered: boolean;
  /** The longest segment: how far before a window's start a segment can begin and still reach into it. */
  longestMs: number;
}

export class CameraIndex {
  private readonly cameras = new Map<string, CameraList>();

  /** Rebuilt from the ring's segments (seq order). */
  reset(segments: readonly Segment[]): void {
    this.cameras.clear();
    for (const s of segments) this.push(s);
  }

  push(s: Segment): void {
    let c = this.cameras.get(s.camera);
    if (!c) this.cameras.set(s.camera, (c = { list: [], ordered: true, longestMs: 0 }));
    const last = c.list[c.list.length - 1];
    if (last && s.startMs < last.startMs) c.ordered = false;
    c.longestMs = Math.max(c.longestMs, s.durationMs);
    c.list.push(s);
  }

  /** Takes a segment out (the oldest usually go: they are near the front). */
  remove(s: Segment): void {
    const c = this.cameras.get(s.camera);
    const at = c ? c.list.indexOf(s) : -1;
    if (at >= 0) c!.list.splice(at, 1);
  }

  /** After stamps were corrected in place (a clock step): whether each list is still in order. */
  restamped(): void {
    for (const c of this.cameras.values()) {
      c.ordered = true;
      for (let i = 1; i < c.list.length && c.ordered; i++) if (c.list[i]!.startMs < c.list[i - 1]!.startMs) c.ordered = false;
    }
  }

  /** Cameras with segments in the ring. */
  cameraIds(): string[] {
    return [...this.cameras.entries()].filter(([, c]) => c.list.length > 0).map(([id]) => id);
  }

  /** One camera's segments overlapping [startMs, endMs), in seq order. */
  between(camera: string, startMs: number, endMs: number): Segment[] {
    const c = this.cameras.get(camera);
    if (!c) return [];
    const overlapping = (s: Segment): boolean => s.startMs < endMs && segmentEndMs(s) > startMs;
    if (!c.ordered) return c.list.filter(overlapping);
    // The first segment that can reach into the window starts no earlier than start − longest.
    let lo = 0;
    let hi = c.list.length;
    const from = startMs - c.longestMs;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c.list[mid]!.startMs < from) lo = mid + 1;
      else hi = mid;
    }
    const out: Segment[] = [];
    for (let i = lo; i < c.list.length && c.list[i]!.startMs < endMs; i++) if (overlapping(c.list[i]!)) out.push(c.list[i]!);
    return out;
  }

  /** The end of a camera's newest segment (the last recorded), or null. */
  newestEndOf(camera: string): number | null {
    const list = this.cameras.get(camera)?.list;
    const last = list?.[list.length - 1];
    return last ? segmentEndMs(last) : null;
  }
}
