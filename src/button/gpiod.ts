// The libgpiod-tools backend: a long-running `gpiomon` from Debian's `gpiod` package, supervised
// like ffmpeg (restart with capped backoff and jitter), and `gpioset` for the LED. Works where
// sysfs GPIO is gone. The tools changed between v1 (bookworm, 1.6) and v2 (trixie, 2.x):
//   v1: gpiomon [--bias=…] --line-buffered <chip> <offset>
//       "event:  RISING EDGE offset: 17 timestamp: [     193.120379374]"
//       stdout is fully buffered on a pipe unless --line-buffered is given.
//   v2: gpiomon [--bias=…] --consumer=… --chip <chip> <offset>
//       "193.120379374\trising\tgpiochip0 17 \"GPIO17\"" (flushed after each batch of events)
//   v1 gpioset exits at once unless --mode=signal; v2 gpioset holds the line until killed.
// Both print "<tool> (libgpiod) v<version>" for --version. Edges are reported as the physical
// level changed; active-low is translated here (the kernel's own inversion of event types
// under active-low has differed between uAPI versions).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { listProcesses, stopProcesses, type ProcessInfo } from '../platform/processes.js';
import type { EdgeSink, EdgeSource, Level, LedOutput } from './types.js';

export interface GpiodVersion { major: number; minor: number; patch: number }

/** From `gpiomon --version`: "gpiomon (libgpiod) v1.6.3". */
export function parseGpiodVersion(text: string): GpiodVersion | null {
  const m = /\(libgpiod\)\s+v(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0) };
}

export interface GpiomonEvent {
  edge: 'rising' | 'falling';
  /** The kernel's event timestamp in ms (monotonic clock unless realtime was asked for). */
  atMs: number;
  offset: number | null;
}

const nsToMs = (sec: string, frac: string): number => Number(sec) * 1000 + Number(frac.padEnd(9, '0').slice(0, 9)) / 1e6;

/** v1 human-readable: `event:  RISING EDGE offset: 17 timestamp: [     193.120379374]`. */
export function parseGpiomonV1Line(line: string): GpiomonEvent | null {
  const m = /^event:\s+(RISING|FALLING) EDGE\s+offset:\s*(\d+)\s+timestamp:\s*\[\s*(\d+)\.(\d+)\]\s*$/.exec(line);
  if (!m) return null;
  return { edge: m[1] === 'RISING' ? 'rising' : 'falling', offset: Number(m[2]), atMs: nsToMs(m[3]!, m[4]!) };
}

/**
 * v2 human-readable: `<time>\t<rising|falling>\t<line id>`; the time is `sec.nsec` (monotonic)
 * or ISO-8601 with nanoseconds (--utc, --localtime); the line id is `chip offset`, `chip offset
 * "name"` or `"name"`.
 */
export function parseGpiomonV2Line(line: string): GpiomonEvent | null {
  const [time, edge, id] = line.split('\t');
  if (time === undefined || (edge !== 'rising' && edge !== 'falling') || id === undefined) return null;
  let atMs: number;
  const raw = /^\s*(\d+)\.(\d{1,9})\s*$/.exec(time);
  const iso = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{1,9})(Z?)$/.exec(time.trim());
  if (raw) atMs = nsToMs(raw[1]!, raw[2]!);
  else if (iso) atMs = Date.parse(`${iso[1]}${iso[3]}`) + Number(iso[2]!.padEnd(9, '0')) / 1e6;
  else return null;
  if (!Number.isFinite(atMs)) return null;
  const byOffset = /^\S+ (\d+)(?: .*)?$/.exec(id.trim());
  return { edge, atMs, offset: byOffset ? Number(byOffset[1]) : null };
}

export function parseGpiomonLine(major: number, line: string): GpiomonEvent | null {
  return major >= 2 ? parseGpiomonV2Line(line) : parseGpiomonV1Line(line);
}

/** Pressed is low on an active-low button. Pure. */
export function edgeLevel(edge: 'rising' | 'falling', activeLow: boolean): Level {
  return (edge === 'rising') !== activeLow ? 1 : 0;
}

const CONSUMER = 'camnode';

/**
 * gpiomon's arguments. The bias keeps the released level defined: a pull-up for a button to
 * GND (active low), a pull-down for one to 3V3. Bias came in libgpiod 1.5.
 */
export function gpiomonArgs(version: GpiodVersion, chip: string, offset: number, activeLow: boolean): string[] {
  const bias = `--bias=${activeLow ? 'pull-up' : 'pull-down'}`;
  if (version.major >= 2) return [bias, `--consumer=${CONSUMER}`, '--chip', chip, String(offset)];
  const v1Bias = version.minor >= 5 ? [bias] : [];
  return [...v1Bias, '--line-buffered', chip, String(offset)];
}

/** gpioset's arguments to drive the LED line and hold it until the process is stopped. */
export function gpiosetArgs(version: GpiodVersion, chip: string, offset: number, on: boolean): string[] {
  const value = `${offset}=${on ? 1 : 0}`;
  if (version.major >= 2) return [`--consumer=${CONSUMER}-led`, '--chip', chip, value];
  return ['--mode=signal', chip, value];
}

export interface GpiodetectChip { name: string; label: string; ngpio: number }

/** `gpiodetect` lines (v1 and v2 alike): `gpiochip0 [pinctrl-bcm2711] (58 lines)`. */
export function parseGpiodetect(text: string): GpiodetectChip[] {
  const chips: GpiodetectChip[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+\[(.*)\]\s+\((\d+) lines?\)\s*$/.exec(line.trim());
    if (m) chips.push({ name: m[1]!, label: m[2]!, ngpio: Number(m[3]) });
  }
  return chips;
}

/**
 * gpiomon/gpioset processes holding our line that are not ours: left behind when the agent
 * alone was killed (its process group survives outside systemd). They hold the line, and a new
 * request would fail with EBUSY. Pure.
 */
export function strayGpioTools(processes: readonly ProcessInfo[], chip: string, offsets: readonly number[], ownPids: ReadonlySet<number>): ProcessInfo[] {
  const isTool = (a: string | undefined): boolean => /(^|\/)(gpiomon|gpioset)$/.test(a ?? '');
  return processes.filter((p) => !ownPids.has(p.pid)
    && (isTool(p.args[0]) || isTool(p.args[1]))
    && p.args.some((a) => a === chip || a === `/dev/${chip}` || a === `--chip=${chip}`)
    && p.args.some((a) => offsets.some((o) => a === String(o) || a.startsWith(`${o}=`))));
}

async function stopStrays(procRoot: string, chip: string, offset: number, log: Logger): Promise<void> {
  try {
    const strays = strayGpioTools(await listProcesses(procRoot), chip, [offset], new Set([process.pid]));
    if (strays.length === 0) return;
    log.warn({ pids: strays.map((p) => p.pid), chip, offset }, 'stopping GPIO tools left holding the line');
    await stopProcesses(strays.map((p) => p.pid), 2_000);
  } catch (err) {
    log.warn({ err }, 'could not look for GPIO tools holding the line');
  }
}

type Child = ChildProcessByStdio<null, Readable, Readable>;
export type SpawnFn = (command: string, args: readonly string[]) => Child;
const defaultSpawn: SpawnFn = (command, args) => spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });

interface Run { child: Child; closed: Promise<void>; stderr: string[] }

function startRun(spawnFn: SpawnFn, command: string, args: readonly string[], log: Logger, onExit: (code: number | null, signal: NodeJS.Signals | null, stderr: string[]) => void): Run {
  const child = spawnFn(command, args);
  const stderr: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 5) stderr.shift();
  });
  child.on('error', (err) => {
    stderr.push(`cannot start ${command}: ${err.message}`);
    log.debug({ err }, 'spawn failed');
  });
  const closed = new Promise<void>((resolve) => {
    child.on('close', (code, signal) => {
      onExit(code, signal, stderr);
      resolve();
    });
  });
  return { child, closed, stderr };
}

async function endRun(run: Run, timeoutMs: number): Promise<void> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGTERM');
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
  try {
    await run.closed;
  } finally {
    clearTimeout(timer);
  }
}

export interface GpiomonSourceDeps {
  gpiomon: string;
  version: GpiodVersion;
  chip: string;
  offset: number;
  activeLow: boolean;
  clock: Clock;
  log: Logger;
  spawn?: SpawnFn;
  procRoot?: string;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** A run this long resets the backoff and clears the reported problem. */
  stableAfterMs?: number;
  stopTimeoutMs?: number;
}

export class GpiomonEdgeSource implements EdgeSource {
  private run: Run | undefined;
  private sink: EdgeSink | undefined;
  private stopping = false;
  private failures = 0;
  private restarts = 0;
  private runStartedMs = 0;
  private lastExit: string | null = null;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: GpiomonSourceDeps) {}

  async start(sink: EdgeSink): Promise<void> {
    this.sink = sink;
    this.stopping = false;
    this.failures = 0;
    this.lastExit = null;
    await stopStrays(this.deps.procRoot ?? '/proc', this.deps.chip, this.deps.offset, this.deps.log);
    this.spawnRun();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const run = this.run;
    if (run) await endRun(run, this.deps.stopTimeoutMs ?? 3_000);
  }

  /** Down right now, or crash-looping (three failures without a stable run). */
  problem(): string | null {
    if (this.lastExit === null || this.stopping) return null;
    if (!this.run) return `gpiomon is down, restarting: ${this.lastExit}`;
    const stable = this.deps.clock.monotonic() - this.runStartedMs >= (this.deps.stableAfterMs ?? 60_000);
    return stable || this.failures < 3 ? null : `gpiomon keeps exiting (${this.restarts} restarts): ${this.lastExit}`;
  }

  /** Restarts since start (tests, status). */
  restartCount(): number {
    return this.restarts;
  }

  private spawnRun(): void {
    const { gpiomon, version, chip, offset, activeLow, log } = this.deps;
    const args = gpiomonArgs(version, chip, offset, activeLow);
    log.info({ gpiomon, args }, 'starting gpiomon');
    this.runStartedMs = this.deps.clock.monotonic();
    // A new run knows nothing of the line's level: forget the debounce history.
    this.sink?.reset();
    const run = startRun(this.deps.spawn ?? defaultSpawn, gpiomon, args, log, (code, signal, stderr) => this.onExit(run, code, signal, stderr));
    this.run = run;
    createInterface({ input: run.child.stdout }).on('line', (line) => {
      const event = parseGpiomonLine(version.major, line);
      if (!event || (event.offset !== null && event.offset !== offset)) {
        if (line.trim()) log.debug({ line }, 'unexpected gpiomon output');
        return;
      }
      this.sink?.edge({ level: edgeLevel(event.edge, activeLow), atMs: event.atMs });
    });
  }

  private onExit(run: Run, code: number | null, signal: NodeJS.Signals | null, stderr: string[]): void {
    if (this.run === run) this.run = undefined;
    if (this.stopping) {
      this.deps.log.info({ code, signal }, 'gpiomon stopped');
      return;
    }
    const ranMs = this.deps.clock.monotonic() - this.runStartedMs;
    if (ranMs >= (this.deps.stableAfterMs ?? 60_000)) this.failures = 0;
    this.failures++;
    this.restarts++;
    this.lastExit = `exited (${signal ?? `code ${code}`})${stderr.length ? `: ${stderr.slice(-2).join(' | ')}` : ''}`;
    const delay = backoffDelay(this.failures, this.deps.backoff ?? DEFAULT_BACKOFF, this.deps.random);
    this.deps.log.warn({ reason: this.lastExit, restartInMs: delay, failures: this.failures }, 'gpiomon down; restarting');
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.spawnRun();
    }, delay);
  }
}

export interface GpiosetLedDeps {
  gpioset: string;
  version: GpiodVersion;
  chip: string;
  offset: number;
  log: Logger;
  spawn?: SpawnFn;
  procRoot?: string;
  stopTimeoutMs?: number;
}

/**
 * The LED through gpioset: one process holds the line at one level; a change replaces it.
 * Changes are serialised (the old process must release the line before the new one asks for
 * it, or the request fails with EBUSY) and coalesced: only the latest wanted level is applied.
 */
export class GpiosetLedOutput implements LedOutput {
  private run: Run | undefined;
  private level: boolean | null = null;
  private wanted: boolean | null = null;
  private applying: Promise<void> = Promise.resolve();
  private busy = false;
  private closed = false;
  private lastWarning = '';

  constructor(private readonly deps: GpiosetLedDeps) {}

  async open(): Promise<void> {
    this.closed = false;
    await stopStrays(this.deps.procRoot ?? '/proc', this.deps.chip, this.deps.offset, this.deps.log);
  }

  set(on: boolean): void {
    this.wanted = on;
    if (this.busy) return; // the running loop picks the new level up
    this.busy = true;
    this.applying = this.apply();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.applying;
    const run = this.run;
    if (run) await endRun(run, this.deps.stopTimeoutMs ?? 2_000);
  }

  private async apply(): Promise<void> {
    try {
      while (!this.closed && this.wanted !== null && this.wanted !== this.level) {
        const old = this.run;
        if (old) await endRun(old, this.deps.stopTimeoutMs ?? 2_000);
        if (this.closed) return;
        this.hold(this.wanted);
      }
    } finally {
      // Cleared in the same turn as the loop's last check, so a set() cannot fall between.
      this.busy = false;
    }
  }

  private hold(target: boolean): void {
    const { gpioset, version, chip, offset, log } = this.deps;
    const run = startRun(this.deps.spawn ?? defaultSpawn, gpioset, gpiosetArgs(version, chip, offset, target), log, (code, signal, stderr) => {
      if (this.run === run) {
        this.run = undefined;
        this.level = null;
      }
      if (signal === 'SIGTERM' || signal === 'SIGKILL' || (code === 0 && signal === null)) return;
      const warning = `gpioset exited (${signal ?? `code ${code}`})${stderr.length ? `: ${stderr.join(' | ')}` : ''}`;
      if (warning !== this.lastWarning) log.warn({ reason: warning }, 'could not drive the LED');
      this.lastWarning = warning;
    });
    this.run = run;
    this.level = target;
  }
}
