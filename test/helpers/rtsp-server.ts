// A real RTSP camera for integration tests: spawns rtsp-server.py (GStreamer's RTSP server) and
// gives tests the knobs a flaky network camera has: hang (pause), crash (kill), come back (restart).

import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';

// Debian's python: it has `gi`; the pyenv python3 first on PATH does not.
const PYTHON = '/usr/bin/python3';
// Tests run from TS source, so this resolves next to this file in test/helpers.
const SCRIPT = fileURLToPath(new URL('./rtsp-server.py', import.meta.url));
const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
// Enough of the child's stderr to explain a failure, without growing unbounded over a long test.
const STDERR_KEEP = 8_192;

export interface RtspServerOptions {
  /** Omit to let the server pick a free port (bound by the server itself: no race). */
  port?: number;
  pattern?: 'ball' | 'snow' | 'smpte';
  width?: number;
  height?: number;
  fps?: number;
  bitrateKbps?: number;
  /** A pre-encoded Matroska file with one H.264 track to play instead of a live encoder (makeCameraFile). */
  file?: string;
}

export interface RtspServer {
  /** rtsp://127.0.0.1:PORT/cam, stable across restart(). */
  url: string;
  port: number;
  /** PID of the current server process (changes on restart()). */
  readonly pid: number;
  /** SIGTERM and wait for exit; SIGKILL after 3 s. No-op if already exited. */
  stop(): Promise<void>;
  /** SIGSTOP: the socket stays open but nothing answers, like a hung camera. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL and wait: the camera vanishes without closing anything gracefully. */
  kill(): Promise<void>;
  /** Start again on the same port and path (stopping the current process first); waits for READY. */
  restart(): Promise<void>;
}

const running = new Set<RtspServer>();

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

export async function startRtspServer(opts: RtspServerOptions = {}): Promise<RtspServer> {
  const args = [
    SCRIPT,
    '--port', String(opts.port ?? 0),
    '--path', '/cam',
    '--pattern', opts.pattern ?? 'ball',
    '--width', String(opts.width ?? 320),
    '--height', String(opts.height ?? 240),
    '--fps', String(opts.fps ?? 10),
    '--bitrate-kbps', String(opts.bitrateKbps ?? 500),
    '--exit-on-stdin-eof',
    ...(opts.file ? ['--file', opts.file] : []),
  ];

  const first = await launch(args);
  let child = first.child;
  const url = first.url;
  const port = Number(new URL(url).port);
  // Restarts must come back on the same port, not a fresh random one.
  const portIdx = args.indexOf('--port') + 1;
  args[portIdx] = String(port);

  const server: RtspServer = {
    url,
    port,
    get pid() {
      return child.pid ?? -1;
    },
    async stop() {
      running.delete(server);
      await terminate(child);
    },
    pause() {
      if (alive(child)) child.kill('SIGSTOP');
    },
    resume() {
      if (alive(child)) child.kill('SIGCONT');
    },
    async kill() {
      if (alive(child)) child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      await terminate(child);
      child = (await launch(args)).child;
      running.add(server);
    },
  };
  running.add(server);
  return server;
}

/** For afterAll: stop every server still running, even ones a failed test left paused. */
export async function stopAllRtspServers(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((s) => s.stop()));
}

async function launch(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  // All three stdio are pipes (the default). stdin is one we never write to: if this process
  // dies, the server sees EOF and exits instead of holding the port.
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON, args);
  let stderr = '';
  // Always drain both pipes, or GStreamer warnings would eventually fill one and block the server.
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEEP);
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;

  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const fail = (why: string) => {
        clearTimeout(timer);
        reject(new Error(`rtsp-server.py ${why}\n--- stderr ---\n${stderr}`));
      };
      const timer = setTimeout(() => fail(`not READY within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
      child.on('error', (err) => fail(`failed to spawn: ${err.message}`));
      child.once('exit', (code, signal) => fail(`exited before READY (code ${code}, signal ${signal})`));
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        const m = /^READY (\S+)$/m.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    });
    const port = Number(new URL(url).port);
    await waitForTcp(port, deadline);
    return { child, url };
  } catch (err) {
    await terminate(child);
    throw err;
  }
}

/** Poll until a TCP connect to 127.0.0.1:port succeeds. */
async function waitForTcp(port: number, deadline: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() >= deadline) throw new Error(`nothing listening on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(child: ChildProcess): boolean {
  // No pid: spawn itself failed, and no 'exit' will ever come.
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  if (!alive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function terminate(child: ChildProcess): Promise<void> {
  if (!alive(child)) return;
  child.kill('SIGTERM');
  // A paused (SIGSTOPped) server would never act on SIGTERM; wake it so it can.
  child.kill('SIGCONT');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited(child);
  clearTimeout(timer);
}
