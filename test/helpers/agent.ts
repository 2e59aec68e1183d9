// Runs the real `camnode` CLI (the built dist/) as a child process group, the way systemd
// would, and reads its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const CLI = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));

export interface LogLine { level: number; msg: string; [key: string]: unknown }

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Runs the CLI to completion. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; command?: string[] } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const argv = opts.command ?? [process.execPath, CLI];
    const child = spawn(argv[0]!, [...argv.slice(1), ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`camnode ${args.join(' ')} timed out\n${stderr}`)); }, opts.timeoutMs ?? 60_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

export async function tempDir(prefix = 'camnode-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Writes a config (YAML) built from a plain object; returns its path. */
export async function writeConfig(dir: string, config: Record<string, unknown>, name = 'config.yaml'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, stringify(config));
  return path;
}

export async function waitFor<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, what: string, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export class RunningAgent {
  readonly logs: LogLine[] = [];
  stderrText = '';
  readonly exited: Promise<number | null>;
  private constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.stderrText += `${line}\n`;
        }
      }
    });
    this.exited = new Promise((resolve) => proc.on('close', (code) => resolve(code)));
  }

  /**
   * `camnode run --config PATH` as the leader of its own process group. `stdin: 'pipe'` lets
   * the test press the fake button (`press()`); the default is no stdin.
   */
  static start(configPath: string, opts: { env?: NodeJS.ProcessEnv; command?: string[]; stdin?: 'pipe' | 'ignore' } = {}): RunningAgent {
    const argv = opts.command ?? [process.execPath, CLI];
    const proc = spawn(argv[0]!, [...argv.slice(1), 'run', '--config', configPath], {
      // Prune passes every 5 s rather than 30 s (besides the ones short space starts at once):
      // tests that wait for footage to go need not wait half a minute per pass.
      env: { ...process.env, CAMNODE_LOG_LEVEL: 'debug', CAMNODE_PRUNE_INTERVAL_MS: '5000', ...opts.env },
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // A press written after the agent died must not crash the test run with EPIPE.
    proc.stdin?.on('error', () => {});
    return new RunningAgent(proc);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** With `button: {backend: fake}`, each line on the agent's stdin is a press (needs `stdin: 'pipe'`). */
  press(): void {
    if (!this.proc.stdin) throw new Error('press(): start the agent with {stdin: \'pipe\'}');
    this.proc.stdin.write('\n');
  }

  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.logs.find(pred);
  }

  count(pred: (l: LogLine) => boolean): number {
    return this.logs.filter(pred).length;
  }

  waitForLog(pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000): Promise<LogLine> {
    return waitFor(() => this.logs.find(pred), `log: ${what}\n--- stderr ---\n${this.stderrText}`, timeoutMs);
  }

  /** Graceful stop; resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc.exitCode;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.killGroup(), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** SIGKILL the whole process group (agent and its ffmpeg children), as systemd does. */
  killGroup(): void {
    try { process.kill(-this.pid, 'SIGKILL'); } catch { /* gone */ }
  }

  /** SIGKILL the agent alone: its recorders are orphaned. */
  killAgentOnly(): void {
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** A minimal valid config for tests, overridable per section. */
export function baseConfig(dir: string, cameras: Record<string, unknown>[], over: Record<string, Record<string, unknown>> = {}): Record<string, unknown> {
  return {
    node: { id: 'test-node', stateDir: join(dir, 'state'), ...over['node'] },
    storage: { path: join(dir, 'storage'), reserve: '1MB', ...over['storage'] },
    recording: { segmentSeconds: 1, ...over['recording'] },
    cameras,
    button: { backend: 'none' },
    ...Object.fromEntries(Object.entries(over).filter(([k]) => !['node', 'storage', 'recording'].includes(k))),
  };
}
