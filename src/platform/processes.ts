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

/** Takes the storage's agent lock; a stale lock (dead pid) is taken over. */
export async function acquireAgentLock(lockFile: string, procRoot = '/proc'): Promise<() => Promise<void>> {
  try {
    const pid = Number.parseInt(await readFile(lockFile, 'utf8'), 10);
    if (pid > 0 && pid !== process.pid && alive(pid)) {
      const cmdline = await readFile(join(procRoot, String(pid), 'cmdline'), 'utf8').catch(() => '');
      if (/camnode|main\.js/.test(cmdline)) throw new AgentAlreadyRunning(pid, lockFile);
    }
  } catch (err) {
    if (err instanceof AgentAlreadyRunning) throw err;
  }
  await writeFile(lockFile, `${process.pid}\n`);
  return async () => {
    const pid = await readFile(lockFile, 'utf8').catch(() => '');
    if (Number.parseInt(pid, 10) === process.pid) await unlink(lockFile).catch(() => {});
  };
}
