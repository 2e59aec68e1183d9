// Finding recordings in the phone system's spool (CONTRACT §8). The spool may be a local folder
// or an NFS/SMB mount, which delivers no change events, so polling is the source of truth: each
// pass lists again only the folders whose mtime changed (a file added or removed changes its
// folder's mtime, on NFS after its attribute cache), so Asterisk's dated `YYYY/MM/DD` folders of
// years past cost one stat each — and nothing on quiet passes once a day has passed since they
// changed (full passes, every 10 minutes, still look at them). Files already in a listing are not stat'ed by this; the caller
// stats those it still waits on.
import { readdir, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import picomatch from 'picomatch';

const RECENT_MS = 60_000;

/** A folder not changed for this long is looked at on full passes only. */
const SETTLED_MS = 86_400_000;

interface Listing { mtimeMs: number; checkedMs: number; files: string[]; dirs: string[] }

export interface SpoolPass {
  /** Matching files (paths relative to the spool) that were not in the previous pass. */
  added: string[];
  /** Matching files of the previous pass that are gone. */
  removed: string[];
  /** Folders that could not be read (permissions, a mount gone): named once per pass. */
  unreadable: { path: string; code: string }[];
}

export class SpoolScanner {
  private readonly listings = new Map<string, Listing>();
  private readonly matches: (relPath: string) => boolean;
  private known = new Set<string>();

  /** `pattern`: a glob over the path below the spool; without a `/` it matches the file's name in any folder. */
  constructor(private readonly root: string, pattern: string) {
    this.matches = picomatch(pattern, { basename: !pattern.includes('/'), nocase: true, dot: false });
  }

  /** Every matching file the last pass found. */
  files(): ReadonlySet<string> {
    return this.known;
  }

  /** One pass over the spool. `full` lists every folder again whatever its mtime. */
  async pass(full = false): Promise<SpoolPass> {
    const seen = new Set<string>();
    const visited = new Set<string>();
    const unreadable: SpoolPass['unreadable'] = [];
    /** A folder that cannot be read now keeps what it and its sub-folders held: nothing below it is "removed". */
    const keepBelow = (rel: string): void => {
      visited.add(rel);
      const listing = this.listings.get(rel);
      if (!listing) return;
      for (const f of listing.files) seen.add(f);
      for (const d of listing.dirs) keepBelow(d);
    };
    const visit = async (rel: string): Promise<void> => {
      visited.add(rel);
      const abs = rel === '' ? this.root : join(this.root, rel);
      let listing = this.listings.get(rel);
      // A folder untouched for a day (yesterday's calls and older) is looked at on full passes
      // only: a quiet pass over years of dated folders then costs no system call for them.
      const settled = !full && listing !== undefined && Date.now() - listing.mtimeMs > SETTLED_MS && listing.checkedMs > listing.mtimeMs + SETTLED_MS;
      if (!settled) {
        try {
          const mtimeMs = (await stat(abs)).mtimeMs;
          // A folder changed in the last minute is listed again: a file added within the same
          // mtime tick (a second on some mounts) or under a skewed server clock is not missed.
          if (full || !listing || listing.mtimeMs !== mtimeMs || Math.abs(Date.now() - mtimeMs) < RECENT_MS) {
            const entries = await readdir(abs, { withFileTypes: true });
            listing = { mtimeMs, checkedMs: Date.now(), files: [], dirs: [] };
            for (const e of entries) {
              if (e.name.startsWith('.')) continue; // temp files of writers, and our own kind
              const child = rel === '' ? e.name : posix.join(rel, e.name);
              if (e.isDirectory()) listing.dirs.push(child);
              else if (e.isFile() && this.matches(child)) listing.files.push(child);
            }
            this.listings.set(rel, listing);
          } else {
            listing.checkedMs = Date.now();
          }
        } catch (err) {
          unreadable.push({ path: abs, code: (err as NodeJS.ErrnoException).code ?? 'EIO' });
          keepBelow(rel);
          return;
        }
      }
      for (const f of listing!.files) seen.add(f);
      for (const d of listing!.dirs) await visit(d);
    };
    await visit('');
    // Folders no longer reached (removed) are forgotten.
    for (const rel of [...this.listings.keys()]) if (!visited.has(rel)) this.listings.delete(rel);
    const added = [...seen].filter((f) => !this.known.has(f));
    const removed = [...this.known].filter((f) => !seen.has(f));
    this.known = seen;
    return { added, removed, unreadable };
  }
}
