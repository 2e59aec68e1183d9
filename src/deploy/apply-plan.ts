// What applying a pushed config means, decided from the config in force and the next one
// (CONTRACT §9 Config push: "applied module by module"). Pure: the agent only carries it out.
//
// - A camera whose own settings did not change keeps its recorder: no gap. One whose settings
//   changed is stopped, then started again (never two recorders for one camera): a short gap.
// - The ring's limits (quota, reserve, age) are changed in place and re-planned at once.
// - The services (incidents and button, sync, fleet link, control socket, report, footage) are
//   rebuilt when their settings changed, or when the set of cameras did; the recorders go on.
// - The media layer (the ring, every recorder, the call recordings) is rebuilt only when the
//   disk, the segment length or the calls changed: every camera restarts.
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/schema.js';

export interface CameraPlan {
  /** Recording on, untouched. */
  keep: string[];
  /** Stopped, then started with their new settings. */
  restart: string[];
  /** New, or enabled now. */
  start: string[];
  /** Gone, or disabled now. */
  stop: string[];
}

export interface ApplyPlan {
  /** The ring and every recorder rebuilt (storage.path, recording, calls changed). */
  media: boolean;
  /** Every module but recording rebuilt. */
  services: boolean;
  /** The ring's quota, reserve or age changed (in place, when the media layer stays). */
  ringLimits: boolean;
  cameras: CameraPlan;
  /** The top-level keys that differ, for the log. */
  changed: string[];
}

const RING_LIMITS = ['maxUsePercent', 'reserve', 'maxBytes', 'maxAge'] as const;

export function planApply(prev: Config, next: Config): ApplyPlan {
  const keys = [...new Set([...Object.keys(prev), ...Object.keys(next)])] as (keyof Config)[];
  const changed = keys.filter((k) => !isDeepStrictEqual(prev[k], next[k]));
  const media = prev.storage.path !== next.storage.path || changed.includes('recording') || changed.includes('calls');
  const ringLimits = !media && RING_LIMITS.some((k) => !isDeepStrictEqual(prev.storage[k], next.storage[k]));
  const enabled = (c: Config): Map<string, Config['cameras'][number]> => new Map(c.cameras.filter((cam) => cam.enabled).map((cam) => [cam.id, cam]));
  const before = enabled(prev);
  const after = enabled(next);
  const cameras: CameraPlan = { keep: [], restart: [], start: [], stop: [] };
  for (const [id, cam] of after) {
    const old = before.get(id);
    if (!old) cameras.start.push(id);
    else if (media || !isDeepStrictEqual(old, cam)) cameras.restart.push(id);
    else cameras.keep.push(id);
  }
  for (const id of before.keys()) if (!after.has(id)) cameras.stop.push(id);
  // Modules other than recording see cameras only as the lists of ids and of enabled ids.
  const ids = (c: Config): string => JSON.stringify(c.cameras.map((cam) => [cam.id, cam.enabled]));
  const services = media || changed.some((k) => k !== 'cameras' && k !== 'storage') || ids(prev) !== ids(next);
  return { media, services, ringLimits, cameras, changed };
}
