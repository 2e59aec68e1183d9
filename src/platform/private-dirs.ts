// Footage is for the camnode user and its group only (CONTRACT §7: media kept secure). The
// agent runs with umask 0027, so what it and its ffmpeg children create is 0640 / 0750; the
// folders that hold footage and state are narrowed at start in case an installer or an older
// release made them wider. A folder others cannot enter hides every file in it, whatever the
// file's own mode, so the folders are what is set and what `check` checks.
import { chmod, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** What the agent's files may grant: nothing to others, no writes to the group. */
export const AGENT_UMASK = 0o027;

/** Folders to narrow: footage, sealed incidents, and the node's state (its key, the book, the audit log). */
export function privateDirs(storagePath: string, stateDir: string): string[] {
  return [storagePath, `${storagePath}/segments`, `${storagePath}/incidents`, stateDir];
}

/** Removes what others (and the group's write) may do on each folder that exists; returns those changed. */
export async function narrowDirs(dirs: readonly string[]): Promise<{ path: string; from: number; to: number }[]> {
  const changed: { path: string; from: number; to: number }[] = [];
  for (const path of dirs) {
    const mode = await modeOf(path);
    if (mode === null || (mode & AGENT_UMASK) === 0) continue;
    const to = mode & ~AGENT_UMASK;
    // A folder camnode does not own, or a read-only disk, is no reason not to record: `check` says so.
    if (await chmod(path, to).then(() => true, () => false)) changed.push({ path, from: mode, to });
  }
  return changed;
}

/**
 * Folders other users can read or enter, with their modes (octal text): those with a permission
 * for others whose every parent others may pass through too. Missing folders are fine.
 */
export async function openDirs(dirs: readonly string[]): Promise<{ path: string; mode: string; uid: number }[]> {
  const out: { path: string; mode: string; uid: number }[] = [];
  for (const path of dirs) {
    const st = await stat(path).catch(() => null);
    const mode = st ? st.mode & 0o7777 : null;
    if (st === null || mode === null || (mode & 0o007) === 0) continue;
    let reachable = true;
    for (let p = dirname(resolve(path)); reachable; p = dirname(p)) {
      const m = await modeOf(p);
      if (m !== null && (m & 0o001) === 0) reachable = false;
      if (p === dirname(p)) break;
    }
    if (reachable) out.push({ path, mode: mode.toString(8).padStart(4, '0'), uid: st.uid });
  }
  return out;
}

const modeOf = (path: string): Promise<number | null> => stat(path).then((s) => s.mode & 0o7777, () => null);
