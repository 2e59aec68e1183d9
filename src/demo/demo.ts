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
import { makeDemoFleet } from './throwaway-ca.js';
import { progressBar } from '../ops/render.js';
import type { StatePayload } from '../fleet/topics.js';
import { formatLocal } from '../ops/times.js';

/** When the demo shows how to hold a past range: once it has footage from half a minute back. */
const HOLD_HINT_AFTER_S = 35;

export interface DemoOptions { dir: string; seconds?: number | undefined }

export function demoConfig(dir: string, brokerUrl?: string, fleetCa?: string): Config {
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
    // Commands over MQTT must be signed, as on a real node: by the demo's own throwaway CA.
    ...(brokerUrl ? { mqtt: { url: brokerUrl, protocolVersion: '3.1.1', stateInterval: '10s', keepalive: '10s' } } : {}),
    ...(fleetCa ? { fleet: { ca: fleetCa } } : {}),
    upstream: { type: 'dir', path: join(dir, 'upstream') },
  });
}

interface Part { text: string; priority: number }

/**
 * Joins the parts that fit in `width` columns, keeping their order and dropping the least
 * important first; a line wider than the terminal would wrap, and every redraw would then
 * scroll the screen. Pure.
 */
export function fitParts(parts: readonly Part[], width: number): string {
  const kept = [...parts];
  const join = (): string => kept.map((p) => p.text).join(' | ');
  while (kept.length > 1 && [...join()].length > width) {
    const least = kept.reduce((a, b) => (b.priority > a.priority ? b : a));
    kept.splice(kept.indexOf(least), 1);
  }
  const line = join();
  return [...line].length > width ? `${[...line].slice(0, Math.max(0, width - 1)).join('')}…` : line;
}

/** The demo's live status, at most `width` columns (1 = most important). Pure. */
export function statusLine(status: AgentStatus, opts: { incident?: Incident | undefined; nowMs?: number; led?: boolean; sync?: StatePayload['sync']; width?: number } = {}): string {
  const parts: Part[] = [];
  if (opts.led !== undefined) parts.push({ text: `LED ${opts.led ? '●' : '○'}`, priority: 4 });
  parts.push({ text: status.cameras.map((c) => `${c.id} ${c.state}${c.kbps !== null ? ` ${c.kbps}k` : ''}`).join(', '), priority: 2 });
  const s = status.storage;
  if (!s) {
    parts.push({ text: 'ring: starting', priority: 3 });
  } else {
    parts.push({ text: `ring ${formatBytes(s.usedBytes)}/${formatBytes(s.quotaBytes)}`, priority: 3 });
    parts.push({ text: `${s.segments} segments`, priority: 7 });
    parts.push({ text: `oldest ${s.oldestAt ? s.oldestAt.slice(11, 19) : '-'} UTC`, priority: 6 });
    parts.push({ text: `${formatDuration(s.retainedSeconds * 1000)} kept`, priority: 5 });
  }
  const incident = opts.incident;
  if (incident?.state === 'active') {
    const left = Date.parse(incident.window.end) - (opts.nowMs ?? Date.now());
    parts.push({ text: left > 0 ? `LOCKED ${incident.id} ${Math.ceil(left / 1000)}s left` : `${incident.id} sealing soon`, priority: 1 });
  } else if (incident?.state === 'sealing') {
    parts.push({ text: `${incident.id} sealing`, priority: 1 });
  }
  const up = opts.sync?.current;
  if (up) parts.push({ text: `upload ${progressBar(up.bytesSent, up.bytesTotal, 10)}`, priority: 3 });
  return fitParts(parts, opts.width ?? Number.POSITIVE_INFINITY);
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
  const fleet = await makeDemoFleet(join(dir, 'fleet'));
  const config = demoConfig(dir, broker.url, fleet.caFile);
  const agent = new Agent({ config, log, testsrc: { width: 640, height: 360, fps: 10, bitrate: 400_000 } });
  const tty = process.stdout.isTTY === true;
  const out = (line: string): void => { process.stdout.write(tty ? `\r\x1b[2K${line}` : `${line}\n`); };
  // One column spare: writing into the last one makes some terminals wrap.
  const width = (): number => Math.max(20, (process.stdout.columns || 80) - 1);

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
  say(`  in ${HOLD_HINT_AFTER_S}s: how to keep footage reported later (a hold of a past range)`);
  say(`  or as central ops would, over the embedded MQTT broker (${broker.url}, MQTT 3.1.1), signed as ${fleet.cn} (admin) of a throwaway CA:`);
  const b = `--broker ${broker.url} --mqtt-version 3.1.1 --cert ${fleet.certFile} --key ${fleet.keyFile}`;
  say(`    ${CLI_NAME} ctl nodes ${b}`);
  say(`    ${CLI_NAME} ctl state ${config.node.id} ${b}`);
  say(`    ${CLI_NAME} ctl lock ${config.node.id} ${b} --reason "ops test"`);
  say(`    ${CLI_NAME} ctl watch ${b}`);

  const key = agent.publicKey() ?? '';
  agent.events.on('button.pressed', () => say('panic button pressed'));
  agent.events.on('incident.locked', ({ incident }) => {
    const held = agent.incidents().find((i) => i.id === incident && i.kind === 'hold');
    say(held
      ? `incident ${incident} HELD: ${formatLocal(Date.parse(held.window.start))} to ${formatLocal(Date.parse(held.window.end))} is kept`
      : `incident ${incident} LOCKED: footage from 20s before is kept; recording 20s more`);
  });
  // Once there is footage from earlier: a hold of a past range, as for an incident reported
  // later, in the local times staff would give; then the timeline showing it.
  const startedAt = Date.now();
  const holdHint = setTimeout(() => {
    const camera = config.cameras[0]!.id;
    say(`footage from earlier can be kept now, as for an incident reported later (times are local):`);
    say(`    ${CLI_NAME} ctl hold --local --socket ${socket} --from "${formatLocal(startedAt + 5_000)}" --to "${formatLocal(startedAt + 20_000)}" --reason "laptop reported stolen" --by "demo"`);
    say(`    ${CLI_NAME} ctl footage --local --socket ${socket}`);
    say(`    ${CLI_NAME} ctl still --local --socket ${socket} ${camera} --at "${formatLocal(startedAt + 12_000)}" --purpose incident-review --reason "who took it" --by "demo" -o still.jpg`);
  }, HOLD_HINT_AFTER_S * 1000);
  holdHint.unref();
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
  const draw = (): void => out(statusLine(agent.status(), { incident: latest(), led: agent.ledLit(), sync: agent.syncStatus(), width: width() }));
  const timer = setInterval(() => {
    ticks++;
    if (tty) draw();
    else if (ticks % 25 === 0) out(statusLine(agent.status(), { incident: latest() }));
  }, 200);
  if (tty) process.stdout.on('resize', draw);
  await done;
  clearInterval(timer);
  clearTimeout(holdHint);
  process.stdout.off('resize', draw);
  if (tty) process.stdout.write('\n');
  console.log('stopping…');
  await agent.stop();
  await broker.stop();
  console.log(statusLine(agent.status()));
  const sealed = agent.incidents().filter((i) => i.state === 'sealed');
  if (sealed.length > 0) console.log(`sealed incidents: ${sealed.map((i) => join(config.storage.path, 'incidents', i.id)).join(', ')}`);
  console.log(`footage is in ${join(config.storage.path, 'segments')} (play a segment with: ffplay FILE)`);
}
