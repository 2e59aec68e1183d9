// `camnode ctl …`: one subcommand per command of CONTRACT §3. With --local the request goes
// to the agent on this machine over its control socket; over MQTT (ops) once the fleet link
// is built.
import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { loadConfig, resolveConfigPath, DEFAULT_CONFIG_PATH } from './config/load.js';
import { parseDuration } from './config/units.js';
import { requestLocal } from './control/socket.js';
import type { Incident } from './incidents/incident.js';

/** Exit status of a ctl run (CONTRACT §1). */
export class CtlExit extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
    this.name = 'CtlExit';
  }
}

interface Common { local?: boolean; socket?: string; config?: string; json?: boolean; timeout?: string }

function socketPath(opts: Common): string {
  if (opts.socket) return opts.socket;
  const path = resolveConfigPath(opts.config);
  if (opts.config || process.env['CAMNODE_CONFIG'] || existsSync(DEFAULT_CONFIG_PATH)) return loadConfig(path).control.socket;
  return '/run/camnode/control.sock';
}

function timeoutMs(opts: Common): number {
  if (!opts.timeout) return 10_000;
  const ms = parseDuration(opts.timeout);
  if (ms === null) throw new CtlExit(2, `--timeout: not a duration: ${opts.timeout}`);
  return ms;
}

export function renderIncident(i: Incident): string {
  return [
    `${i.id}  ${i.state}${i.urgent ? '' : ' (not urgent)'}`,
    `  window   ${i.window.start} → ${i.window.end}`,
    `  cameras  ${i.cameras.join(', ')}`,
    ...i.triggers.map((t) => `  trigger  ${t.at} via ${t.via}${t.by ? ` by ${t.by}` : ''}${t.reason ? `: ${t.reason}` : ''}`),
  ].join('\n');
}

function renderTable(incidents: Incident[]): string {
  if (incidents.length === 0) return 'no incidents';
  const rows = incidents.map((i) => [i.id, i.state, i.window.start.slice(0, 19).replace('T', ' '), i.window.end.slice(11, 19), i.cameras.join(','), String(i.triggers.length)]);
  const head = ['INCIDENT', 'STATE', 'FROM (UTC)', 'TO', 'CAMERAS', 'TRIGGERS'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  return [head, ...rows].map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

async function send(opts: Common, node: string | undefined, cmd: string, args: Record<string, unknown>, render: (data: never) => string): Promise<void> {
  if (!opts.local) {
    throw new CtlExit(1, `ctl over MQTT is not available in this release${node ? ` (node ${node})` : ''}; on the node itself use --local`);
  }
  let reply;
  try {
    reply = await requestLocal(socketPath(opts), cmd, args, timeoutMs(opts));
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new CtlExit(code === 'timeout' ? 3 : 1, (err as Error).message);
  }
  if (!reply.ok) {
    const error = reply.error ?? { code: 'internal', message: 'no error given' };
    throw new CtlExit(error.code === 'bad_request' ? 2 : 1, `${cmd} refused (${error.code}): ${error.message}`);
  }
  process.stdout.write(`${opts.json ? JSON.stringify(reply.data, null, 2) : render(reply.data as never)}\n`);
}

/** NODE is positional unless --local stands in its place; returns [node, ...rest]. */
function positionals(opts: Common, args: string[], names: string[]): [string | undefined, ...string[]] {
  const expected = names.length + (opts.local ? 0 : 1);
  if (args.length !== expected) {
    const usage = [opts.local ? '--local' : 'NODE', ...names].join(' ');
    throw new CtlExit(2, `expected ${usage}`);
  }
  return opts.local ? [undefined, ...args] : [args[0], ...args.slice(1)];
}

function common(cmd: Command): Command {
  return cmd
    .option('--local', 'talk to the agent on this machine over its control socket')
    .option('--socket <path>', 'control socket (default: control.socket from the config)')
    .option('--config <path>', 'config file, for the socket path')
    .option('--json', "print the reply's data as JSON")
    .option('--timeout <duration>', 'how long to wait for an answer', '10s');
}

export function ctlCommand(): Command {
  const ctl = new Command('ctl').description('operations on nodes (CONTRACT §3 commands)');

  common(ctl.command('lock').description('lock an incident window (or extend the open one)'))
    .argument('[node...]')
    .option('--all', 'every node (MQTT)')
    .option('--reason <text>')
    .option('--by <name>')
    .addOption(new Option('--camera <id>', 'only this camera (repeatable)').argParser((v: string, prev: string[] = []) => [...prev, v]))
    .option('--pre-roll <duration>')
    .option('--post-roll <duration>')
    .option('--not-urgent', 'upload in the upstream window rather than at once')
    .action(async (args: string[], o: Common & { all?: boolean; reason?: string; by?: string; camera?: string[]; preRoll?: string; postRoll?: string; notUrgent?: boolean }) => {
      const [node] = o.all ? [undefined] : positionals(o, args, []);
      const payload: Record<string, unknown> = {};
      if (o.reason !== undefined) payload['reason'] = o.reason;
      if (o.by !== undefined) payload['by'] = o.by;
      if (o.camera) payload['cameras'] = o.camera;
      if (o.preRoll !== undefined) payload['preRoll'] = o.preRoll;
      if (o.postRoll !== undefined) payload['postRoll'] = o.postRoll;
      if (o.notUrgent) payload['urgent'] = false;
      await send(o, node, 'lock', payload, (d: { incident: string; extended: boolean }) => `${d.extended ? 'extended' : 'locked'} incident ${d.incident}`);
    });

  common(ctl.command('release').description('release an incident: deletes the local copy (audited)'))
    .argument('<args...>', 'NODE INCIDENT (or --local INCIDENT)')
    .requiredOption('--by <name>')
    .requiredOption('--reason <text>')
    .option('--force', 'release even if not synced (audited)')
    .action(async (args: string[], o: Common & { by: string; reason: string; force?: boolean }) => {
      const [node, incident] = positionals(o, args, ['INCIDENT']);
      await send(o, node, 'release', { incident, by: o.by, reason: o.reason, ...(o.force ? { force: true } : {}) }, (d: { incident: string }) => `released incident ${d.incident}`);
    });

  common(ctl.command('incidents').description("list the node's incidents"))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      await send(o, node, 'incidents', {}, (d: { incidents: Incident[] }) => renderTable(d.incidents));
    });

  common(ctl.command('incident').description('one incident'))
    .argument('<args...>', 'NODE INCIDENT (or --local INCIDENT)')
    .action(async (args: string[], o: Common) => {
      const [node, incident] = positionals(o, args, ['INCIDENT']);
      await send(o, node, 'incident', { incident }, (d: Incident) => renderIncident(d));
    });

  common(ctl.command('ping').description('is the agent there?'))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const started = Date.now();
      await send(o, node, 'ping', {}, (d: { version: string }) => `pong from camnode ${d.version} in ${Date.now() - started} ms`);
    });

  return ctl;
}
