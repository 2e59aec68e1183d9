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
import { createInterface } from 'node:readline';
import type { Incident } from '../incidents/incident.js';
import { CLI_NAME } from './cli-name.js';
import { EmbeddedBroker } from './broker.js';
import { progressBar } from '../ops/render.js';
import type { StatePayload } from '../fleet/topics.js';

export interface DemoOptions { dir: string; seconds?: number | undefined }

export function demoConfig(dir: string, brokerUrl?: string): Config {
  return validateConfig({
    node: { id: 'demo', site: 'Demo branch', stateDir: join(dir, 'state') },
    // Small enough that the pruner shows within about three minutes.
    storage: { path: join(dir, 'storage'), maxBytes: '24MB', reserve: '100MB' },
    recording: { segmentSeconds: 2 },
    cameras: [
      { id: 'entrance', name: 'Main entrance', source: 'testsrc', zone: 'entrance' },
      { id: 'desk', name: 'Service desk', source: 'testsrc', zone: 'service-desk' },
    ],
    incident: { preRoll: '20s', postRoll: '20s', maxLength: '5m' },
    button: { backend: 'fake' },
    control: { socket: join(dir, 'control.sock') },
    ...(brokerUrl ? { mqtt: { url: brokerUrl, protocolVersion: '3.1.1', stateInterval: '10s', keepalive: '10s' } } : {}),
    upstream: { type: 'dir', path: join(dir, 'upstream') },
  });
}

export function statusLine(status: AgentStatus, incident?: Incident, nowMs = Date.now(), led?: boolean, sync?: StatePayload['sync']): string {
  const cams = status.cameras.map((c) => `${c.id}:${c.state}${c.kbps !== null ? `@${c.kbps}kbps` : ''}`).join(' ');
  const s = status.storage;
  if (!s) return `cameras ${cams} | ring: starting`;
  const oldest = s.oldestAt ? s.oldestAt.slice(11, 19) : '-';
  let lock = '';
  if (incident?.state === 'active') {
    const left = Date.parse(incident.window.end) - nowMs;
    lock = left > 0 ? ` | LOCKED ${incident.id}: post-roll ${Math.ceil(left / 1000)}s left` : ` | ${incident.id}: sealing soon`;
  } else if (incident?.state === 'sealing') {
    lock = ` | ${incident.id}: sealing`;
  }
  if (sync?.current) lock += ` | upload ${sync.current.incident} ${progressBar(sync.current.bytesSent, sync.current.bytesTotal, 12)}`;
  const lamp = led === undefined ? '' : `LED ${led ? '●' : '○'} | `;
  return `${lamp}cameras ${cams} | ring ${formatBytes(s.usedBytes)} of ${formatBytes(s.quotaBytes)} (${s.segments} segments) | oldest ${oldest} UTC | retained ${formatDuration(s.retainedSeconds * 1000)}${lock}`;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const logFile = join(dir, 'camnode.log');
  const log = createLogger({ destination: logFile });
  // The upstream folder must exist (camnode never creates a target's root: see docs/sync.md).
  await mkdir(join(dir, 'upstream'), { recursive: true });
  const broker = new EmbeddedBroker();
  await broker.start();
  const config = demoConfig(dir, broker.url);
  const agent = new Agent({ config, log, testsrc: { width: 640, height: 360, fps: 10, bitrate: 400_000 } });
  const tty = process.stdout.isTTY === true;
  const out = (line: string): void => { process.stdout.write(tty ? `\r\x1b[2K${line}` : `${line}\n`); };

  const controller = new AbortController();
  await agent.start(controller.signal);
  const socket = config.control.socket;
  const say = (line: string): void => { process.stdout.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`); };
  say(`camnode demo: 2 synthetic cameras recording into ${config.storage.path}`);
  say(`  ring quota ${formatBytes(config.storage.maxBytes ?? 0)}, ${config.recording.segmentSeconds}s segments; the oldest footage is pruned once it is full`);
  say(`  logs: ${logFile}`);
  say(tty ? '  press Enter to press the panic button (locks 20s before and after); Ctrl-C stops' : '  not a terminal: the panic button is not wired to the keyboard');
  if (opts.seconds) say(`  running for ${opts.seconds}s`);
  say('  from another terminal:');
  say(`    ${CLI_NAME} ctl lock --local --socket ${socket} --reason "test" --by "demo"`);
  say(`    ${CLI_NAME} ctl incidents --local --socket ${socket}`);
  say(`    ${CLI_NAME} ctl ping --local --socket ${socket}`);
  say(`  or as central ops would, over the embedded MQTT broker (${broker.url}, MQTT 3.1.1):`);
  const b = `--broker ${broker.url} --mqtt-version 3.1.1`;
  say(`    ${CLI_NAME} ctl nodes ${b}`);
  say(`    ${CLI_NAME} ctl state ${config.node.id} ${b}`);
  say(`    ${CLI_NAME} ctl lock ${config.node.id} ${b} --reason "ops test" --by "ops"`);
  say(`    ${CLI_NAME} ctl watch ${b}`);

  const key = agent.publicKey() ?? '';
  agent.events.on('button.pressed', () => say('panic button pressed'));
  agent.events.on('incident.locked', ({ incident }) => say(`incident ${incident} LOCKED: footage from 20s before is kept; recording 20s more`));
  agent.events.on('incident.extended', ({ incident }) => say(`incident ${incident} extended by another trigger`));
  agent.events.on('incident.sealed', ({ incident }) => {
    const folder = join(config.storage.path, 'incidents', incident);
    say(`incident ${incident} SEALED: clips and signed manifest in ${folder}`);
    say(`  verify: ${CLI_NAME} evidence verify ${folder} --key ${key} --audit ${join(config.node.stateDir, 'audit.log')}`);
  });
  agent.events.on('incident.synced', ({ incident }) => say(`incident ${incident} SYNCED upstream: ${join(dir, 'upstream', 'incidents', config.node.id, incident)}`));
  agent.events.on('sync.failed', ({ incident, reason, permanent }) => say(`upload of ${incident} failed${permanent ? ' permanently' : ''}: ${reason}`));
  const fake = agent.fakeButton();
  if (tty && fake) createInterface({ input: process.stdin }).on('line', () => fake.press());

  const done = new Promise<void>((resolveDone) => {
    const finish = (): void => resolveDone();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    if (opts.seconds) setTimeout(finish, opts.seconds * 1000).unref();
  });
  const latest = (): Incident | undefined => agent.incidents().filter((i) => i.state === 'active' || i.state === 'sealing').at(-1);
  let ticks = 0;
  // Redraw often on a terminal so the LED's blinks show.
  const timer = setInterval(() => {
    ticks++;
    if (tty) out(statusLine(agent.status(), latest(), Date.now(), agent.ledLit(), agent.syncStatus()));
    else if (ticks % 25 === 0) out(statusLine(agent.status(), latest()));
  }, 200);
  await done;
  clearInterval(timer);
  if (tty) process.stdout.write('\n');
  console.log('stopping…');
  await agent.stop();
  await broker.stop();
  const final = agent.status();
  console.log(statusLine(final));
  const sealed = agent.incidents().filter((i) => i.state === 'sealed');
  if (sealed.length > 0) console.log(`sealed incidents: ${sealed.map((i) => join(config.storage.path, 'incidents', i.id)).join(', ')}`);
  console.log(`footage is in ${join(config.storage.path, 'segments')} (play a segment with: ffplay FILE)`);
}
