// Finding recorders a crashed agent left behind, and the single-agent lock: no camera may
// ever be recorded twice. /proc is injectable so tests can use a fake tree.
import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProcessInfo { pid: number; args: string[] }

export async function listProcesses(procRoot = '/proc'): Promise<ProcessInfo[]> {
  const out: ProcessInfo[] = [];
  for (const name of await readdir(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const raw = await readFile(join(procRoot, name, 'cmdline'));
      const args = raw.toString('utf8').split('\0');
      if (args[args.length - 1] === '') args.pop();
      if (args.length > 0) out.push({ pid: Number(name), args });
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return out;
}

/** ffmpeg recorders writing into the ring at `segmentsRoot` that are not ours. Pure. */
export function orphanRecorders(processes: readonly ProcessInfo[], segmentsRoot: string, ownPids: ReadonlySet<number>): ProcessInfo[] {
  const prefix = segmentsRoot.endsWith('/') ? segmentsRoot : `${segmentsRoot}/`;
  return processes.filter((p) => !ownPids.has(p.pid)
    && /(^|\/)ffmpeg$/.test(p.args[0] ?? '')
    && p.args.some((a) => a.startsWith(prefix) && /\/rec-[a-z0-9]+-%06d\.ts$/.test(a)));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGINT (ffmpeg closes its segment cleanly), then SIGKILL after the timeout. */
export async function stopProcesses(pids: readonly number[], timeoutMs = 5_000): Promise<void> {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGINT'); } catch { /* already gone */ }
  }
  const deadline = Date.now() + timeoutMs;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = left.filter(alive);
  }
  for (const pid of left) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

export class AgentAlreadyRunning extends Error {
  constructor(readonly pid: number, lockFile: string) {
    super(`another camnode agent (pid ${pid}) is recording into this storage (${lockFile}); stop it first`);
    this.name = 'AgentAlreadyRunning';
  }
}

/** The kernel's start time of a process (field 22 of /proc/PID/stat): a pid plus this names one process. */
export async function processStartTime(pid: number, procRoot = '/proc'): Promise<string | null> {
  try {
    const stat = await readFile(join(procRoot, String(pid), 'stat'), 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Takes the storage's agent lock: created exclusively, holding "PID STARTTIME". A lock whose
 * process is gone — or whose pid now names another process — is stale and taken over.
 */
export async function acquireAgentLock(lockFile: string, procRoot = '/proc'): Promise<() => Promise<void>> {
  const me = `${process.pid} ${await processStartTime(process.pid, procRoot) ?? ''}`.trim();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(lockFile, `${me}\n`, { flag: 'wx' });
      return async () => {
        const held = (await readFile(lockFile, 'utf8').catch(() => '')).trim();
        if (held === me) await unlink(lockFile).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        // Created, then the write failed (a full disk): an empty lock file would be taken for
        // a stale one by the next agent; leave none rather than a misleading one.
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') await unlink(lockFile).catch(() => {});
        throw err;
      }
    }
    const [pidText, started] = (await readFile(lockFile, 'utf8').catch(() => '')).trim().split(' ');
    const pid = Number.parseInt(pidText ?? '', 10);
    if (pid > 0 && pid !== process.pid && alive(pid)) {
      const current = await processStartTime(pid, procRoot);
      // Same pid, same start time: the very agent that took the lock is still running.
      if (!started || current === null || current === started) throw new AgentAlreadyRunning(pid, lockFile);
    }
    await unlink(lockFile).catch(() => {});
  }
  throw new Error(`could not take the agent lock ${lockFile}`);
}
