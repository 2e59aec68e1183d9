// `camnode demo`: the main job on embedded defaults — two synthetic cameras recording into a
// small ring in DIR, pruning within minutes, with a live status line. Later capabilities
// (button, broker, upstream) join here as they are built.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { validateConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { formatBytes, formatDuration } from '../config/units.js';
import { Agent, type AgentStatus } from '../agent.js';
import { createLogger } from '../platform/logger.js';

export interface DemoOptions { dir: string; seconds?: number | undefined }

export function demoConfig(dir: string): Config {
  return validateConfig({
    node: { id: 'demo', site: 'Demo branch', stateDir: join(dir, 'state') },
    // Small enough that the pruner shows within about three minutes.
    storage: { path: join(dir, 'storage'), maxBytes: '24MB', reserve: '100MB' },
    recording: { segmentSeconds: 2 },
    cameras: [
      { id: 'entrance', name: 'Main entrance', source: 'testsrc', zone: 'entrance' },
      { id: 'desk', name: 'Service desk', source: 'testsrc', zone: 'service-desk' },
    ],
    button: { backend: 'fake' },
  });
}

export function statusLine(status: AgentStatus): string {
  const cams = status.cameras.map((c) => `${c.id}:${c.state}${c.kbps !== null ? `@${c.kbps}kbps` : ''}`).join(' ');
  const s = status.storage;
  if (!s) return `cameras ${cams} | ring: starting`;
  const oldest = s.oldestAt ? s.oldestAt.slice(11, 19) : '-';
  return `cameras ${cams} | ring ${formatBytes(s.usedBytes)} of ${formatBytes(s.quotaBytes)} (${s.segments} segments) | oldest ${oldest} UTC | retained ${formatDuration(s.retainedSeconds * 1000)}`;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const logFile = join(dir, 'camnode.log');
  const log = createLogger({ destination: logFile });
  const config = demoConfig(dir);
  const agent = new Agent({ config, log, testsrc: { width: 640, height: 360, fps: 10, bitrate: 400_000 } });
  const tty = process.stdout.isTTY === true;
  const out = (line: string): void => { process.stdout.write(tty ? `\r\x1b[2K${line}` : `${line}\n`); };

  console.log(`camnode demo: 2 synthetic cameras recording into ${config.storage.path}`);
  console.log(`  ring quota ${formatBytes(config.storage.maxBytes ?? 0)}, ${config.recording.segmentSeconds}s segments; the oldest footage is pruned once it is full`);
  console.log(`  logs: ${logFile}`);
  console.log(opts.seconds ? `  running for ${opts.seconds}s (Ctrl-C stops earlier)` : '  Ctrl-C stops');

  const controller = new AbortController();
  await agent.start(controller.signal);
  const done = new Promise<void>((resolveDone) => {
    const finish = (): void => resolveDone();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    if (opts.seconds) setTimeout(finish, opts.seconds * 1000).unref();
  });
  let ticks = 0;
  const timer = setInterval(() => {
    ticks++;
    if (tty || ticks % 5 === 0) out(statusLine(agent.status()));
  }, 1000);
  await done;
  clearInterval(timer);
  if (tty) process.stdout.write('\n');
  console.log('stopping…');
  await agent.stop();
  const final = agent.status();
  console.log(statusLine(final));
  console.log(`footage is in ${join(config.storage.path, 'segments')} (play a segment with: ffplay FILE)`);
}
