// Looking at what the agent left in its ring from the outside: the finished segment files of a
// camera (their names are the index, CONTRACT/ARCHITECTURE), whether one plays, and which
// ffmpeg recorders are writing into a storage right now.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SegmentFile {
  seq: number;
  startMs: number;
  durationMs: number;
  bytes: number;
  path: string;
}

// <seq:12>_<startMs>_<durMs>.ts — the same shape src/store/segment.ts writes; kept separate on
// purpose so a change of the on-disk naming shows up as a failing test, not a silent follow.
const FINISHED = /^(\d{12})_(\d{1,15})_(\d{1,9})\.ts$/;

/** Finished segments of one camera, ascending seq. In-progress `rec-*` files are left out. */
export async function listSegments(storagePath: string, camera: string): Promise<SegmentFile[]> {
  const dir = join(storagePath, 'segments', camera);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: SegmentFile[] = [];
  for (const name of names) {
    const m = FINISHED.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    // The ring may prune a file between readdir and stat: it is simply not there any more.
    const st = await stat(path).catch(() => null);
    if (!st) continue;
    out.push({ seq: Number(m[1]), startMs: Number(m[2]), durationMs: Number(m[3]), bytes: st.size, path });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** The file's playable duration in seconds per ffprobe, or null if ffprobe cannot read it. */
export async function probeDuration(path: string): Promise<number | null> {
  try {
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'default=noprint_wrappers=1:nokey=1', path], { timeout: 20_000 });
    const seconds = Number.parseFloat(stdout.trim());
    return Number.isFinite(seconds) ? seconds : null;
  } catch {
    return null;
  }
}

/** PIDs of ffmpeg processes with an argument under `<storage>/segments/` (read from /proc). */
/** Teardown: the agent's process group, then any ffmpeg still writing under `storagePath` (orphaned by a kill). */
export async function killAgentAndRecorders(agent: { killGroup(): void; exited: Promise<unknown> } | undefined, storagePath: string): Promise<void> {
  agent?.killGroup();
  await agent?.exited;
  for (const pid of await recorderPids(storagePath)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

export async function recorderPids(storagePath: string): Promise<number[]> {
  const prefix = `${join(storagePath, 'segments')}/`;
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let raw: string;
    try {
      raw = await readFile(join('/proc', name, 'cmdline'), 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const args = raw.split('\0').filter((a) => a !== '');
    if (!/(^|\/)ffmpeg$/.test(args[0] ?? '')) continue;
    if (args.some((a) => a.startsWith(prefix))) pids.push(Number(name));
  }
  return pids.sort((a, b) => a - b);
}

/** The node's undelivered events, as its outbox journal says (read from outside). */
export async function outboxPending(stateDir: string): Promise<Record<string, unknown>[]> {
  const { OUTBOX_FILE, replayOutbox } = await import('../../src/fleet/outbox.js');
  return replayOutbox(await readFile(join(stateDir, OUTBOX_FILE), 'utf8')).pending as Record<string, unknown>[];
}
