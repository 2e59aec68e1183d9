// Which mount a path lives on, and how long a network filesystem may serve stale file sizes and
// mtimes from its attribute cache (CONTRACT §8: a call's `settle` must outlast it). Pure, from the
// text of /proc/self/mounts.
import { resolve } from 'node:path';

export interface Mount { source: string; point: string; type: string; options: string[] }

const NFS = new Set(['nfs', 'nfs4']);
const SMB = new Set(['cifs', 'smb3', 'smbfs']);

/** The mount holding `path` (the longest mount point that contains it), or null. */
export function mountOf(path: string, mountsText: string): Mount | null {
  const target = resolve(path);
  let best: Mount | null = null;
  for (const line of mountsText.split('\n')) {
    const [source, point, type, options] = line.split(' ');
    if (!source || !point || !type || options === undefined) continue;
    // /proc/self/mounts escapes spaces and the like as octal (\040).
    const at = point.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    const inside = at === '/' || target === at || target.startsWith(`${at}/`);
    if (inside && (!best || at.length >= best.point.length)) best = { source, point: at, type, options: options.split(',') };
  }
  return best;
}

/**
 * Seconds a network filesystem may report a file's old size and mtime: NFS `actimeo` or
 * `acregmax` (default 60), `noac` 0; SMB `actimeo` (default 1). Null for a local filesystem.
 */
export function attributeCacheSeconds(m: Pick<Mount, 'type' | 'options'>): number | null {
  const opt = (name: string): number | undefined => {
    const o = m.options.find((x) => x.startsWith(`${name}=`));
    const n = o ? Number(o.slice(name.length + 1)) : Number.NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  if (NFS.has(m.type)) {
    if (m.options.includes('noac')) return 0;
    return opt('actimeo') ?? opt('acregmax') ?? 60;
  }
  if (SMB.has(m.type)) return opt('actimeo') ?? 1;
  return null;
}
