// Helpers shared by the benchmarks: the machine's facts, /proc readings, an RTSP test camera,
// and the dated results file. Benchmarks print figures; they never run in CI.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';

/** The repository root (this file runs as dist/bench/lib.js). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist', 'src', 'main.js');
const RTSP_SCRIPT = join(ROOT, 'test', 'helpers', 'rtsp-server.py');
// Debian's python has `gi`; a pyenv python first on PATH may not.
const PYTHON = '/usr/bin/python3';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `--name N` from argv (shorter runs while working on a benchmark), else the default. */
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** The p-th percentile (nearest rank) of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

export interface Machine { cores: number; cpu: string; memGB: number; node: string; ffmpeg: string; kernel: string; load: string }

export function machine(): Machine {
  let ffmpeg = 'unknown';
  try {
    ffmpeg = /ffmpeg version (\S+)/.exec(execFileSync('ffmpeg', ['-hide_banner', '-version'], { encoding: 'utf8' }))?.[1] ?? ffmpeg;
  } catch { /* reported as unknown */ }
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memGB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    ffmpeg,
    kernel: release(),
    // Other work on the machine skews CPU figures: say how busy it was when we began.
    load: loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}

export function machineMarkdown(m: Machine): string {
  return `Machine: ${m.cores} cores (${m.cpu}), ${m.memGB} GiB RAM, Linux ${m.kernel}, node ${m.node}, ffmpeg ${m.ffmpeg}; load average at start ${m.load}.`;
}

/** Writes bench/results/<YYYY-MM-DD>-<name>.md (UTC date) and returns its path. */
export function writeResults(name: string, markdown: string): string {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${new Date().toISOString().slice(0, 10)}-${name}.md`);
  writeFileSync(path, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  return path;
}

export const verdict = (pass: boolean): string => (pass ? 'PASS' : 'FAIL');

/** A full collection now, when the runtime allows it (heap figures then mean retained bytes). */
export function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

// ---- /proc ----

let clkTck: number | undefined;
/** Kernel clock ticks per second (the unit of /proc/<pid>/stat times). */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

interface ProcStat { ppid: number; utime: number; stime: number; cutime: number; cstime: number }

function readStat(pid: number): ProcStat | null {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
  } catch {
    return null;
  }
}

/** NODE_OPTIONS as device/camnode.service sets it: a bench runs the agent as the unit does. */
export function unitNodeOptions(): string {
  const unit = readFileSync(join(ROOT, 'device', 'camnode.service'), 'utf8');
  return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim() ?? '';
}

/**
 * CPU time of a process in nanoseconds, all its threads (V8's and libuv's included), from
 * /proc/PID/task/*\/schedstat: exact where utime/stime count 10-ms ticks. Threads that have
 * ended are not counted (the agent's threads live as long as it does).
 */
export function processCpuNs(pid: number): number {
  // Throws when the process is gone or the kernel keeps no schedstat: never a silent 0.
  const tasks = readdirSync(`/proc/${pid}/task`);
  let ns = 0;
  let read = 0;
  for (const task of tasks) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      read++;
    } catch { /* the thread ended */ }
  }
  if (read === 0 || !Number.isFinite(ns)) throw new Error(`no schedstat readable for process ${pid}`);
  return ns;
}

/** CPU ticks (user + system) a single process has used so far; 0 once it is gone. */
export function processTicks(pid: number): number {
  const s = readStat(pid);
  return s ? s.utime + s.stime : 0;
}

/**
 * CPU ticks of a process and all its descendants: their own time, plus the children's time
 * the kernel folded into cutime/cstime when they were reaped (an ffmpeg that restarted).
 */
export function treeTicks(rootPid: number): { self: number; children: number } {
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = byParent.get(s.ppid) ?? [];
    list.push(Number(name));
    byParent.set(s.ppid, list);
  }
  const root = readStat(rootPid);
  if (!root) return { self: 0, children: 0 };
  let children = root.cutime + root.cstime;
  const stack = [...(byParent.get(rootPid) ?? [])];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    const s = readStat(pid);
    if (s) children += s.utime + s.stime + s.cutime + s.cstime;
    stack.push(...(byParent.get(pid) ?? []));
  }
  return { self: root.utime + root.stime, children };
}

/** Peak resident set (VmHWM) of a process in bytes, or null once it is gone. */
export function peakRssBytes(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// ---- processes ----

/** Waits for a child to exit; signals it (its group, if it leads one) and then SIGKILLs it. */
export async function stopChild(child: ChildProcess, opts: { signal?: NodeJS.Signals; timeoutMs?: number; group?: boolean } = {}): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const kill = (sig: NodeJS.Signals): void => {
    try {
      if (opts.group && child.pid) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch { /* already gone */ }
  };
  kill(opts.signal ?? 'SIGTERM');
  const timer = setTimeout(() => kill('SIGKILL'), opts.timeoutMs ?? 15_000);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

export interface RtspCamera { url: string; pid: number; stop(): Promise<void> }

/** GStreamer's RTSP test camera (test/helpers/rtsp-server.py) on a free port. */
export async function startRtspCamera(opts: { pattern: string; width: number; height: number; fps: number; bitrateKbps: number }): Promise<RtspCamera> {
  const child = spawn(PYTHON, [RTSP_SCRIPT, '--port', '0', '--pattern', opts.pattern, '--width', String(opts.width), '--height', String(opts.height),
    '--fps', String(opts.fps), '--bitrate-kbps', String(opts.bitrateKbps), '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4096); });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`RTSP camera not ready after 15 s: ${stderr}`)), 15_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`RTSP camera exited (${code}): ${stderr}`));
    });
  });
  return { url, pid: child.pid!, stop: async () => { await stopChild(child, { timeoutMs: 3_000 }); } };
}
