// What the fleet benchmarks share: a private Mosquitto (plain listener on 127.0.0.1, no TLS, no
// ACL: the benchmarks measure the link, not the certificates) and `camnode run` as its own
// process with a config we write, followed through its pino log lines.
// (test/helpers/mosquitto.ts runs the provisioned TLS broker for tests; benchmarks run from
// dist and cannot import it, so this keeps just the part they need.)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { CLI, sleep, stopChild } from './lib.js';

const MOSQUITTO = process.env['MOSQUITTO_BIN'] ?? 'mosquitto';

export interface Broker { url: string; port: number; pid: number; log(): string; stop(): Promise<void> }

function freePort(): Promise<number> {
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

/**
 * A private Mosquitto. `max_queued_messages 100000`: the default 1000 makes the broker drop
 * retained messages to a subscriber of thousands of QoS 1 retained topics. No persistence:
 * nothing should outlive the run. `set_tcp_nodelay true` as in the broker config we ship
 * (provisioning/mosquitto/camnode.conf.template); Mosquitto's own default is false.
 */
export async function startBroker(opts: { tcpNoDelay?: boolean } = {}): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), 'camnode-bench-mosquitto-'));
  for (let attempt = 1; ; attempt++) {
    // A port free a moment ago may be taken by the time the broker binds it: retry.
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, [
      `listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false',
      'max_queued_messages 100000', `set_tcp_nodelay ${opts.tcpNoDelay === false ? 'false' : 'true'}`, 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice', 'log_type information', '',
    ].join('\n'));
    const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { log = (log + d).slice(-32_768); });
    const deadline = Date.now() + 10_000;
    // "running" is logged once every listener is bound.
    while (!/mosquitto version \S+ running/.test(log) && child.exitCode === null && Date.now() < deadline) await sleep(20);
    if (/mosquitto version \S+ running/.test(log)) {
      return {
        url: `mqtt://127.0.0.1:${port}`, port, pid: child.pid!, log: () => log,
        stop: async () => {
          await stopChild(child, { timeoutMs: 3_000 });
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopChild(child, { signal: 'SIGKILL' });
    if (attempt >= 3 || !/Address already in use/.test(log)) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`mosquitto did not start:\n${log}`);
    }
  }
}

export interface AgentOptions {
  cameras: number;
  /** The config's mqtt section; omitted: no fleet link. */
  mqtt?: Record<string, unknown>;
  /** The config's fleet section (fleet.ca: who signs commands). */
  fleet?: Record<string, unknown>;
}

export interface RunningAgent {
  pid: number;
  dir: string;
  /** Camera ids that have logged `recording`. */
  recording: Set<string>;
  /** Whether the fleet link has logged `connected to the broker`. */
  connected(): boolean;
  /** The agent's stderr that was not a JSON log line, and the last log lines. */
  tail(): string;
  exited(): boolean;
  stop(): Promise<void>;
}

/** Agents lead their own process groups (as under systemd): a Ctrl-C here must be passed on. */
const liveAgents = new Set<number>();
const liveDirs = new Set<string>();
process.once('SIGINT', () => {
  for (const pid of liveAgents) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  process.exit(130);
});

/** `camnode run` with `testsrc` cameras; resolves once every camera records (and the link is up). */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'camnode-bench-agent-'));
  liveDirs.add(dir);
  const cameraIds = Array.from({ length: opts.cameras }, (_, i) => `cam-${i + 1}`);
  const config = {
    node: { id: 'bench', stateDir: join(dir, 'state') },
    storage: { path: join(dir, 'storage'), maxBytes: '1GB' },
    recording: { segmentSeconds: 2 },
    cameras: cameraIds.map((id) => ({ id, source: 'testsrc', zone: 'entrance' })),
    button: { backend: 'none' },
    control: { socket: join(dir, 'control.sock') },
    ...(opts.mqtt ? { mqtt: opts.mqtt } : {}),
    ...(opts.fleet ? { fleet: opts.fleet } : {}),
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(config));
  // Info logs, the production default.
  const child: ChildProcess = spawn(process.execPath, [CLI, 'run', '--config', configPath], {
    env: { ...process.env, CAMNODE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'], detached: true,
  });
  liveAgents.add(child.pid!);
  const recording = new Set<string>();
  let connected = false;
  let tail = '';
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail = (tail + line + '\n').slice(-4000);
    try {
      const entry = JSON.parse(line) as { msg?: string; camera?: string };
      if (entry.msg === 'recording' && entry.camera) recording.add(entry.camera);
      if (entry.msg === 'connected to the broker') connected = true;
    } catch { /* not a log line */ }
  });
  const agent: RunningAgent = {
    pid: child.pid!, dir, recording,
    connected: () => connected,
    tail: () => tail,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    stop: async () => {
      const code = await stopChild(child, { group: false, timeoutMs: 20_000 });
      if (code !== 0) console.error(`camnode exited with ${code} on SIGTERM`);
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* the group is gone: good */ }
      liveAgents.delete(child.pid!);
      rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
  };
  try {
    const deadline = Date.now() + 60_000;
    while (recording.size < cameraIds.length || (opts.mqtt && !connected)) {
      if (agent.exited()) throw new Error(`camnode exited (${child.exitCode}): ${tail}`);
      if (Date.now() > deadline) throw new Error(`camnode not ready after 60 s (recording: ${[...recording].join(', ') || 'none'}, broker ${connected ? 'connected' : 'not connected'}): ${tail}`);
      await sleep(100);
    }
  } catch (err) {
    await agent.stop();
    throw err;
  }
  return agent;
}

export { percentile } from './lib.js';
