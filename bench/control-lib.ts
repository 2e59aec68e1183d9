// What the latency benchmarks share: the filesystem under a directory, the device's price of
// durability, and a client of the agent's control socket that times each request.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasyncSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, median, sleep, stopChild, unitNodeOptions } from './lib.js';

/** fsync's cost depends on the filesystem and its device: name both. */
export function filesystemOf(dir: string): string {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE,OPTIONS', '-T', dir], { encoding: 'utf8' }).trim().replace(/\s+/g, ' ');
  } catch {
    return 'unknown';
  }
}

/**
 * The device's own price of durability, for reading the figures on other hardware: a 4 kB
 * write + fdatasync of one file, and an fsync of its directory (a lock costs two fsyncs of
 * the book, one of its directory and one fdatasync of the audit log).
 */
export function syncCost(dir: string, rounds = 50): { fdatasyncMs: number; dirFsyncMs: number } {
  const file = join(dir, 'sync-probe');
  const fd = openSync(file, 'w');
  const dirFd = openSync(dir, 'r');
  const data = Buffer.alloc(4096, 1);
  const a: number[] = [];
  const b: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      writeSync(fd, data, 0, data.length, 0);
      fdatasyncSync(fd);
      a.push(performance.now() - t);
      t = performance.now();
      fsyncSync(dirFd);
      b.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
    closeSync(dirFd);
    rmSync(file, { force: true });
  }
  return { fdatasyncMs: median(a), dirFsyncMs: median(b) };
}

/** One newline-JSON connection to the control socket; requests go one at a time. */
export class ControlClient {
  private buffered = '';
  private pending: ((line: string) => void) | undefined;
  private nextId = 1;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const resolve = this.pending;
        this.pending = undefined;
        resolve?.(line);
      }
    });
  }

  static open(path: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => resolve(new ControlClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Sends one request; resolves with the reply and the time from write to reply, in ms. */
  request(cmd: string, args: unknown): Promise<{ reply: { id: unknown; ok: boolean; data?: unknown; error?: unknown }; ms: number }> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${cmd} #${id} within 10 s`)), 10_000);
      let t0 = 0;
      this.pending = (line) => {
        const t1 = performance.now();
        clearTimeout(timer);
        try {
          const reply = JSON.parse(line) as { id: unknown; ok: boolean };
          if (reply.id !== id) throw new Error(`reply id ${String(reply.id)} for request ${id}`);
          resolve({ reply, ms: t1 - t0 });
        } catch (err) {
          reject(err as Error);
        }
      };
      t0 = performance.now();
      this.socket.write(`${JSON.stringify({ id, cmd, args })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * `camnode run` in its own process group with the unit's NODE_OPTIONS (as systemd runs it; info
 * logs, the production default),
 * ready once every camera records and the control socket listens. Ctrl-C kills it and removes `dir`.
 */
export class RunningBenchAgent {
  private tailText = '';
  private readonly onSigint: () => void;

  private constructor(readonly proc: ChildProcess, dir: string) {
    this.onSigint = () => {
      try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* gone */ }
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    };
    process.once('SIGINT', this.onSigint);
  }

  /** Cameras that said they record (a camera that stops says camera.down; this counts starts). */
  private readonly recording = new Set<string>();

  recordingCameras(): number {
    return this.recording.size;
  }

  /** Bytes it wrote to stderr (its log: the journal under systemd). */
  stderrBytes = 0;

  /** The last lines it logged, for an error message. */
  tail(): string {
    return this.tailText;
  }

  private readonly waiters = new Set<(entry: Record<string, unknown>, at: number) => void>();

  /** The next log line matching `pred`, and when it arrived (performance.now()). */
  waitForLog(pred: (entry: Record<string, unknown>) => boolean, what: string, timeoutMs: number): Promise<{ entry: Record<string, unknown>; at: number }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiters.delete(waiter); reject(new Error(`no log line "${what}" within ${timeoutMs / 1000} s: ${this.tailText}`)); }, timeoutMs);
      const waiter = (entry: Record<string, unknown>, at: number): void => {
        if (!pred(entry)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve({ entry, at });
      };
      this.waiters.add(waiter);
    });
  }

  static async start(configPath: string, dir: string, cameras: number, timeoutMs: number): Promise<RunningBenchAgent> {
    const proc = spawn(process.execPath, [CLI, 'run', '--config', configPath], {
      env: { ...process.env, CAMNODE_LOG_LEVEL: 'info', NODE_OPTIONS: unitNodeOptions() }, stdio: ['ignore', 'ignore', 'pipe'], detached: true,
    });
    const agent = new RunningBenchAgent(proc, dir);
    const recording = agent.recording;
    let listening = false;
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      agent.tailText = (agent.tailText + line + '\n').slice(-3000);
      agent.stderrBytes += Buffer.byteLength(line) + 1;
      const at = performance.now();
      let entry: { msg?: string; camera?: string };
      try {
        entry = JSON.parse(line) as { msg?: string; camera?: string };
      } catch {
        return; // not a log line
      }
      if (entry.msg === 'recording' && entry.camera) recording.add(entry.camera);
      if (entry.msg === 'control socket listening') listening = true;
      for (const w of [...agent.waiters]) w(entry, at);
    });
    const deadline = Date.now() + timeoutMs;
    while (recording.size < cameras || !listening) {
      if (proc.exitCode !== null) {
        await agent.stop(1_000);
        throw new Error(`camnode exited (${proc.exitCode}): ${agent.tailText}`);
      }
      if (Date.now() > deadline) {
        await agent.stop(5_000);
        throw new Error(`cameras not all recording after ${timeoutMs / 1000} s (${[...recording].join(', ')}): ${agent.tailText}`);
      }
      await sleep(200);
    }
    return agent;
  }

  /** SIGTERM, then the whole group killed whatever is left. */
  async stop(timeoutMs: number): Promise<void> {
    const code = await stopChild(this.proc, { group: false, timeoutMs });
    if (code !== 0) console.error(`camnode exited with ${code} on SIGTERM`);
    try { process.kill(-this.proc.pid!, 'SIGKILL'); } catch { /* the group is gone: good */ }
    process.off('SIGINT', this.onSigint);
  }
}

/** `n` pings over the socket: the transport alone (socket, JSON, handler table), and a warm-up. */
export async function pings(client: ControlClient, n: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const { reply, ms: t } = await client.request('ping', {});
    if (!reply.ok) throw new Error(`ping refused: ${JSON.stringify(reply)}`);
    ms.push(t);
  }
  return ms;
}
