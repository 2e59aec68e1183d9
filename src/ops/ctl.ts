// `camnode ctl …`: one subcommand per command of CONTRACT §3. Over MQTT for central ops
// (--broker … or $CAMNODE_CTL_*); with --local in place of NODE, to the agent on this machine
// over its control socket.
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { Command, Option } from 'commander';
import { CliExit } from '../platform/cli-exit.js';
import { printable, printableDeep } from './printable.js';
import { DEFAULT_CONFIG_PATH, loadConfig, resolveConfigPath } from '../config/load.js';
import { parseDuration } from '../config/units.js';
import { requestLocal } from '../control/socket.js';
import type { DiscloseReply } from '../modules/incidents.js';
import type { Incident } from '../incidents/incident.js';
import type { Report } from '../custody/report.js';
import type { BrokerOptions, FleetClient } from './client.js';
import { nodeRow, renderEvent, renderNodes, renderState, sortRows } from './render.js';
import type { ReplyPayload, StatePayload } from '../fleet/topics.js';
import { renderFootage, type FootageData } from './timeline.js';
import type { ConfigCompareReply, ConfigGetReply, ConfigRow, TrialReply } from './render-config.js';
import { formatLocalAndUtc, parseUserTime, TimeInputError } from './times.js';

/** A node of an earlier release says `released` for what is now `disposed`. */
function stateName(state: string): string {
  return state === 'released' ? 'disposed' : state;
}

/** Exit status of a ctl run (CONTRACT §1): 1 failed, 2 bad usage, 3 no answer. */
export class CtlExit extends CliExit {
  constructor(exitCode: number, message: string) {
    super(exitCode, message, 'camnode ctl');
    this.name = 'CtlExit';
  }
}

interface Common {
  local?: boolean; socket?: string; config?: string; json?: boolean; timeout?: string;
  broker?: string; ca?: string; cert?: string; key?: string; mqttVersion?: string; prefix?: string;
}

function timeoutMs(opts: Common): number {
  if (!opts.timeout) return 10_000;
  const ms = parseDuration(opts.timeout);
  if (ms === null || ms <= 0) throw new CtlExit(2, `--timeout: not a duration: ${opts.timeout}`);
  return ms;
}

function socketPath(opts: Common): string {
  if (opts.socket) return opts.socket;
  if (opts.config || process.env['CAMNODE_CONFIG'] || existsSync(DEFAULT_CONFIG_PATH)) return loadConfig(resolveConfigPath(opts.config)).control.socket;
  return '/run/camnode/control.sock';
}

/** `HOST:PORT` (`[::1]:9108` for IPv6); the port 0 to 65535. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  // A host name is at most 253 characters (RFC 1035); the message quotes only the start of the input.
  if (!m || port > 65_535 || text.length > 262) throw new CtlExit(2, `--listen: HOST:PORT, e.g. 127.0.0.1:9108, not ${text.slice(0, 80)}`);
  return { host: m[1] ?? m[2]!, port };
}

export function brokerOptions(opts: Common, env: NodeJS.ProcessEnv = process.env): BrokerOptions {
  const url = opts.broker ?? env['CAMNODE_CTL_BROKER'];
  if (!url) throw new CtlExit(2, 'no broker: give --broker URL (or set CAMNODE_CTL_BROKER), or use --local on the node');
  if (!/^(mqtts?|wss?):\/\/[^/]+/.test(url)) throw new CtlExit(2, `--broker: not an mqtt://, mqtts://, ws:// or wss:// URL: ${url}`);
  const version = opts.mqttVersion ?? '5';
  if (version !== '5' && version !== '3.1.1') throw new CtlExit(2, `--mqtt-version: 5 or 3.1.1, not ${version}`);
  const tls = /^(mqtts|wss):/.test(url);
  const ca = opts.ca ?? env['CAMNODE_CTL_CA'];
  const cert = opts.cert ?? env['CAMNODE_CTL_CERT'];
  const key = opts.key ?? env['CAMNODE_CTL_KEY'];
  if (tls && (!cert || !key)) throw new CtlExit(2, 'an mqtts:// broker needs --cert and --key (or CAMNODE_CTL_CERT / CAMNODE_CTL_KEY), and usually --ca');
  return { url, ca, cert, key, protocolVersion: version === '5' ? 5 : 4, prefix: opts.prefix ?? 'camnode', timeoutMs: timeoutMs(opts) };
}

async function withClient<T>(opts: Common, fn: (client: FleetClient) => Promise<T>): Promise<T> {
  // MQTT.js is loaded only for commands that go over MQTT (not for --local).
  const { FleetClient, NoAnswer } = await import('./client.js');
  let client: FleetClient;
  try {
    client = await FleetClient.connect(brokerOptions(opts));
  } catch (err) {
    if (err instanceof CtlExit) throw err;
    throw new CtlExit(err instanceof NoAnswer ? 3 : 1, (err as Error).message);
  }
  try {
    return await fn(client);
  } catch (err) {
    if (err instanceof NoAnswer) throw new CtlExit(3, err.message);
    throw err;
  } finally {
    await client.close();
  }
}

/** One command to one node (or the local agent); the reply's data, or a CtlExit. */
async function request(opts: Common, node: string | undefined, cmd: string, args: Record<string, unknown>): Promise<unknown> {
  let reply: ReplyPayload;
  if (opts.local) {
    try {
      reply = await requestLocal(socketPath(opts), cmd, args, timeoutMs(opts)) as ReplyPayload;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // No answer, in time or at all (the agent went away mid-request): exit 3.
      throw new CtlExit(code === 'timeout' || code === 'closed' ? 3 : 1, (err as Error).message);
    }
  } else {
    reply = await withClient(opts, (client) => client.request(node!, cmd, args));
  }
  // A refused config names one bad field per line: each line made printable on its own.
  if (!reply.ok) throw new CtlExit(reply.error.code === 'bad_request' ? 2 : 1, `${cmd} refused (${reply.error.code}): ${reply.error.message}`.split('\n').map(printable).join('\n'));
  // JSON output escapes control characters itself and stays exact for programs.
  return opts.json ? reply.data : printableDeep(reply.data);
}

function print(opts: Common, data: unknown, render: () => string): void {
  process.stdout.write(`${opts.json ? JSON.stringify(data, null, 2) : render()}\n`);
}

/** NODE is positional unless --local stands in its place; returns [node, ...rest]. */
function positionals(opts: Common, args: string[], names: string[]): [string | undefined, ...string[]] {
  const expected = names.length + (opts.local ? 0 : 1);
  if (args.length !== expected) throw new CtlExit(2, `expected ${[opts.local ? '--local' : 'NODE', ...names].join(' ')}`);
  return opts.local ? [undefined, ...args] : [args[0], ...args.slice(1)];
}

/** What `ctl disclose` prints: the record, what to hand over, how the examiner checks it. */
export function renderDisclosure(node: string, d: DiscloseReply): string {
  const copy = d.upstream ?? `the incident folder ${d.incident}/ on ${node} (storage.path/incidents)`;
  return [
    `${node}: disclosure ${d.n} of incident ${d.incident} recorded, signed by the node as ${d.record}${d.where === 'upstream' ? ' (upstream only: the local copy was disposed of)' : ''}`,
    `  manifest SHA-256  ${d.manifestSha256}`,
    d.upstream === null
      ? '  upstream         none configured: the record waits on the node until one is'
      : `  upstream         ${d.upstream}${d.record} (sent at once; retried until stored)`,
    '',
    'Hand over:',
    `  1. copy the incident folder from ${copy} (clips, manifest.json, notes/, disclosures/)`,
    '  2. build the examiner\'s bundle:   camnode evidence export COPY --out BUNDLE',
    '  3. hand over BUNDLE; the examiner checks it without camnode:',
    '       cd BUNDLE && sha256sum -c SHA256SUMS',
    '       openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.signed -sigfile manifest.sig',
    `  the node's key now: ${d.publicKey} (every key it used is published under keys/ beside its incidents)`,
  ].join('\n');
}

export function renderIncident(i: Incident): string {
  return [
    `${i.id}  ${i.kind === 'hold' ? 'hold, ' : ''}${stateName(i.state)}${i.urgent ? '' : ' (not urgent)'}`,
    `  window   ${i.window.start} → ${i.window.end}`,
    `  cameras  ${i.cameras.join(', ')}`,
    ...i.triggers.map((t) => `  trigger  ${t.at} via ${t.via}${t.by ? ` by ${t.by}` : ''}${t.reason ? `: ${t.reason}` : ''}`),
    ...(i.notes ?? []).map((n) => `  note     ${n.at} by ${n.by}${n.record !== undefined ? ` (signed record ${n.record})` : ''}: ${n.text}`),
    ...(i.disclosures ?? []).map((d) => `  disclosed ${d.at} to ${d.agency} on ${d.legalBasis} ${d.reference} (requested by ${d.requestedBy}, recorded by ${d.by ?? 'unsigned'}; record disclosures/${d.n}.json${d.where === 'upstream' ? ', upstream only' : ''})`),
  ].join('\n');
}

/** A time as people type it (CONTRACT §6): ISO, local `YYYY-MM-DD HH:MM[:SS]`, or relative `-90m`; sent as ISO UTC. */
function wireTime(flag: string, value: string, tz: string | undefined): string {
  try {
    return new Date(parseUserTime(value, { nowMs: Date.now(), ...(tz !== undefined ? { timeZone: tz } : {}) })).toISOString();
  } catch (err) {
    if (err instanceof TimeInputError) throw new CtlExit(2, `${flag}: ${err.message}`);
    throw err;
  }
}

interface CameraSpan { camera: string; start: string; end: string }

function renderSpans(title: string, spans: readonly CameraSpan[], tz: string | undefined): string[] {
  if (spans.length === 0) return [];
  return [`${title}:`, ...spans.map((m) => `  ${m.camera}  ${formatLocalAndUtc(Date.parse(m.start), tz)} → ${formatLocalAndUtc(Date.parse(m.end), tz)}`)];
}

function renderHold(node: string, from: string, to: string, d: { incident: string; missing: CameraSpan[]; uncertain: CameraSpan[] }, tz: string | undefined): string {
  return [
    `${node}: held incident ${d.incident}`,
    `  from ${formatLocalAndUtc(Date.parse(from), tz)}`,
    `  to   ${formatLocalAndUtc(Date.parse(to), tz)}`,
    ...(d.missing.length === 0 ? ['nothing of the range is missing'] : renderSpans('missing (no footage left)', d.missing, tz)),
    ...renderSpans('uncertain (stamped before a clock step)', d.uncertain, tz),
  ].join('\n');
}

function renderIncidents(incidents: Incident[]): string {
  if (incidents.length === 0) return 'no incidents';
  const rows = incidents.map((i) => [i.id, i.kind ?? 'lock', stateName(i.state), i.window.start.slice(0, 19).replace('T', ' '), i.window.end.slice(11, 19), i.cameras.join(','), String(i.triggers.length)]);
  const head = ['INCIDENT', 'KIND', 'STATE', 'FROM (UTC)', 'TO', 'CAMERAS', 'TRIGGERS'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  return [head, ...rows].map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

function withLocal(cmd: Command): Command {
  return withBroker(cmd)
    .option('--local', 'talk to the agent on this machine over its control socket (in place of NODE)')
    .option('--socket <path>', 'control socket (default: control.socket from the config)')
    .option('--config <path>', 'config file, for the socket path');
}

function withBroker(cmd: Command): Command {
  return cmd
    .option('--broker <url>', 'MQTT broker (default $CAMNODE_CTL_BROKER)')
    .option('--ca <file>', 'CA certificate (default $CAMNODE_CTL_CA)')
    .option('--cert <file>', 'client certificate (default $CAMNODE_CTL_CERT)')
    .option('--key <file>', 'client key (default $CAMNODE_CTL_KEY)')
    .addOption(new Option('--mqtt-version <v>', 'MQTT protocol version').choices(['5', '3.1.1']).default('5'))
    .option('--prefix <p>', 'topic prefix', 'camnode')
    .option('--timeout <duration>', 'how long to wait for an answer', '10s')
    .option('--json', "print the reply's data as JSON");
}

export function ctlCommand(): Command {
  const ctl = new Command('ctl').description('operations on nodes (CONTRACT §3 commands)');

  withBroker(ctl.command('nodes').description('every node: online, cameras, retention, disk, temperature, incidents, version, config, last seen'))
    .option('--offline', 'only the nodes that are offline')
    .option('--problems', 'only the nodes with something to look at (offline, cameras down, faults, sync, clock, power, heat), and what')
    .action(async (o: Common & { offline?: boolean; problems?: boolean }) => {
      const views = printableDeep(await withClient(o, (client) => client.nodes()));
      const rows = sortRows(views.map(nodeRow)).filter((r) => (!o.offline || !r.online) && (!o.problems || r.problems.length > 0));
      if (rows.length === 0 && views.length > 0 && !o.json) {
        process.stdout.write(`${o.offline ? 'no node is offline' : 'no node has a problem'} (${views.length} node(s))\n`);
        return;
      }
      print(o, rows, () => renderNodes(rows, Date.now(), process.stdout.isTTY === true && !process.env['NO_COLOR'], { problems: o.problems === true }));
    });

  withLocal(ctl.command('state').description("a node's state (and have it re-published)"))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const data = await request(o, node, 'state', {}) as StatePayload;
      print(o, data, () => renderState(node ?? 'this node', data));
    });

  withBroker(ctl.command('exporter').description('serve every node\'s status, state and events as Prometheus metrics on /metrics (runs until stopped)'))
    .option('--listen <host:port>', 'where /metrics is served', '127.0.0.1:9108')
    .option('--forget-after <duration>', 'drop a node silent this long (offline until then)', '7d')
    .option('--crl <file>', 'the fleet CRL file to watch for expiry, besides the one retained on the broker')
    .action(async (o: Common & { listen: string; forgetAfter: string; crl?: string }) => {
      const listen = parseListen(o.listen);
      const forgetAfterMs = parseDuration(o.forgetAfter);
      if (forgetAfterMs === null || forgetAfterMs <= 0) throw new CtlExit(2, `--forget-after: not a duration: ${o.forgetAfter}`);
      const broker = brokerOptions(o);
      const { MetricsExporter } = await import('./metrics/exporter.js');
      const { createLogger } = await import('../platform/logger.js');
      const exporter = new MetricsExporter({ broker, listen, forgetAfterMs, crlFile: o.crl, log: createLogger() });
      try {
        await exporter.start();
      } catch (err) {
        await exporter.stop();
        throw new CtlExit(1, `exporter: ${(err as Error).message}`);
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await exporter.stop();
    });

  withBroker(ctl.command('watch').description('live events, one line each (MQTT only)'))
    .argument('[node]')
    .action(async (node: string | undefined, o: Common) => {
      await withClient(o, async (client) => {
        await client.watch(node, (n, e) => process.stdout.write(`${o.json ? JSON.stringify({ node: n, ...e }) : renderEvent(printable(n), printableDeep(e))}\n`));
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
      });
    });

  withLocal(ctl.command('lock').description('lock an incident window (or extend the open one)'))
    .argument('[node]')
    .option('--all', 'every online node (MQTT)')
    .option('--reason <text>')
    .option('--by <name>')
    .addOption(new Option('--camera <id>', 'only this camera (repeatable)').argParser((v: string, prev: string[] = []) => [...prev, v]))
    .option('--pre-roll <duration>')
    .option('--post-roll <duration>')
    .option('--not-urgent', 'upload in the upstream window rather than at once')
    .action(async (nodeArg: string | undefined, o: Common & { all?: boolean; reason?: string; by?: string; camera?: string[]; preRoll?: string; postRoll?: string; notUrgent?: boolean }) => {
      const payload: Record<string, unknown> = {};
      if (o.reason !== undefined) payload['reason'] = o.reason;
      if (o.by !== undefined) payload['by'] = o.by;
      if (o.camera) payload['cameras'] = o.camera;
      if (o.preRoll !== undefined) payload['preRoll'] = o.preRoll;
      if (o.postRoll !== undefined) payload['postRoll'] = o.postRoll;
      if (o.notUrgent) payload['urgent'] = false;
      const line = (node: string, d: { incident: string; extended: boolean }): string => `${node}: ${d.extended ? 'extended' : 'locked'} incident ${d.incident}`;
      if (o.all) {
        if (nodeArg || o.local) throw new CtlExit(2, '--all takes no NODE and no --local');
        await lockAll(o, payload, line);
        return;
      }
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const data = await request(o, node, 'lock', payload) as { incident: string; extended: boolean };
      print(o, data, () => line(node ?? 'this node', data));
    });

  withLocal(ctl.command('dispose').alias('release').description('dispose of an incident: deletes the node\'s local copy (audited); `release` is the old name'))
    .argument('<args...>', 'NODE INCIDENT (or --local INCIDENT)')
    .option('--by <name>', 'who asks (required until commands are signed)')
    .requiredOption('--reason <text>')
    .option('--force', 'dispose of it even if not synced (audited)')
    .action(async (args: string[], o: Common & { by?: string; reason: string; force?: boolean }) => {
      const [node, incident] = positionals(o, args, ['INCIDENT']);
      const data = await request(o, node, 'dispose', { incident, ...(o.by !== undefined ? { by: o.by } : {}), reason: o.reason, ...(o.force ? { force: true } : {}) }) as { incident: string };
      print(o, data, () => `disposed of incident ${data.incident}`);
    });

  withLocal(ctl.command('hold').description('keep footage from earlier: lock a past range as an incident of its own (CONTRACT §6)'))
    .argument('[node]')
    .requiredOption('--from <time>', 'start: ISO, local "YYYY-MM-DD HH:MM[:SS]", or relative like -90m')
    .requiredOption('--to <time>', 'end (may be in the future: it keeps locking until then)')
    .addOption(new Option('--camera <id>', 'only this camera (repeatable; default every camera with footage in the range)').argParser((v: string, prev: string[] = []) => [...prev, v]))
    .requiredOption('--reason <text>')
    .option('--by <name>', 'who asks (required on the local socket)')
    .option('--tz <zone>', "time zone of local times (default this machine's)")
    .action(async (nodeArg: string | undefined, o: Common & { from: string; to: string; camera?: string[]; reason: string; by?: string; tz?: string }) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const from = wireTime('--from', o.from, o.tz);
      const to = wireTime('--to', o.to, o.tz);
      const payload: Record<string, unknown> = { from, to, reason: o.reason, ...(o.by !== undefined ? { by: o.by } : {}), ...(o.camera ? { cameras: o.camera } : {}) };
      const data = await request(o, node, 'hold', payload) as { incident: string; extended: false; missing: CameraSpan[]; uncertain: CameraSpan[] };
      print(o, data, () => renderHold(node ?? 'this node', from, to, data, o.tz));
    });

  withLocal(ctl.command('footage').description('what footage a node still holds: a timeline per camera (CONTRACT §6)'))
    .argument('[node]')
    .option('--camera <id>', 'only this camera')
    .option('--from <time>', 'ISO, local "YYYY-MM-DD HH:MM[:SS]", or relative like -2h')
    .option('--to <time>')
    .option('--tz <zone>', "time zone of local times (default this machine's)")
    .option('--width <cells>', 'cells in each bar', '60')
    .action(async (nodeArg: string | undefined, o: Common & { camera?: string; from?: string; to?: string; tz?: string; width: string }) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const width = Number.parseInt(o.width, 10);
      if (!Number.isInteger(width) || width < 10 || width > 400) throw new CtlExit(2, `--width: a number of cells from 10 to 400, not ${o.width}`);
      const from = o.from !== undefined ? wireTime('--from', o.from, o.tz) : undefined;
      const to = o.to !== undefined ? wireTime('--to', o.to, o.tz) : undefined;
      const payload: Record<string, unknown> = { ...(o.camera ? { camera: o.camera } : {}), ...(from ? { from } : {}), ...(to ? { to } : {}) };
      const data = await request(o, node, 'footage', payload) as FootageData;
      print(o, data, () => renderFootage(data, {
        ...(o.tz !== undefined ? { timeZone: o.tz } : {}), width,
        ...(from ? { from: Date.parse(from) } : {}), ...(to ? { to: Date.parse(to) } : {}),
        color: process.stdout.isTTY === true && !process.env['NO_COLOR'],
      }));
    });

  withLocal(ctl.command('report').description('the retention report: what a node kept and deleted, and why (CONTRACT §7)'))
    .argument('[node]')
    .option('--since <when>', 'start of the period: a duration back from now (30d) or an ISO time', '30d')
    .addOption(new Option('--format <format>', 'text, json, or one self-contained HTML page').choices(['text', 'json', 'html']).default('text'))
    .option('-o, --output <file>', 'write the report to a file (else standard output)')
    .action(async (nodeArg: string | undefined, o: Common & { since: string; format: 'text' | 'json' | 'html'; output?: string }) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      await reportCommand(o, node, o);
    });

  withLocal(ctl.command('still').description('one JPEG from recorded footage, on the record (CONTRACT §6)'))
    .argument('<args...>', 'NODE CAMERA (or --local CAMERA)')
    .requiredOption('--at <time>', 'ISO, local "YYYY-MM-DD HH:MM[:SS]", or relative like -10m')
    .addOption(new Option('--purpose <purpose>', 'why the image is made').choices(['incident-review', 'suspension-notice']).makeOptionMandatory())
    .requiredOption('--reason <text>')
    .option('--by <name>', 'who asks (required on the local socket)')
    .option('--tz <zone>', "time zone of local times (default this machine's)")
    .requiredOption('-o, --output <file>', 'where to write the JPEG')
    .action(async (args: string[], o: Common & { at: string; purpose: string; reason: string; by?: string; tz?: string; output: string }) => {
      const [node, camera] = positionals(o, args, ['CAMERA']);
      const at = wireTime('--at', o.at, o.tz);
      const data = await request(o, node, 'still', { camera, at, purpose: o.purpose, reason: o.reason, ...(o.by !== undefined ? { by: o.by } : {}) }) as { camera: string; at: string; frameAt: string; jpegBase64: string };
      const jpeg = Buffer.from(data.jpegBase64, 'base64');
      await writeFile(o.output, jpeg);
      const { jpegBase64: _omit, ...meta } = data;
      print(o, { ...meta, file: o.output, bytes: jpeg.length }, () => `${o.output}: ${jpeg.length} bytes, ${data.camera}'s frame at ${formatLocalAndUtc(Date.parse(data.frameAt), o.tz)}`);
    });

  withLocal(ctl.command('note').description('add a note to an incident (signed beside its clips once sealed)'))
    .argument('<args...>', 'NODE INCIDENT (or --local INCIDENT)')
    .requiredOption('--text <text>', 'at most 2,000 characters')
    .option('--by <name>', 'who writes it (required on the local socket)')
    .action(async (args: string[], o: Common & { text: string; by?: string }) => {
      const [node, incident] = positionals(o, args, ['INCIDENT']);
      const data = await request(o, node, 'note', { incident, text: o.text, ...(o.by !== undefined ? { by: o.by } : {}) }) as Incident;
      print(o, data, () => renderIncident(data));
    });

  withBroker(ctl.command('disclose').description('record a disclosure to law enforcement on a subpoena or court order (custodian, signed; CONTRACT §7) and say what to hand over'))
    .argument('<node>')
    .argument('<incident>')
    .addOption(new Option('--legal-basis <basis>', 'what the request rests on').choices(['subpoena', 'court-order']).makeOptionMandatory())
    .requiredOption('--reference <ref>', "the subpoena's or order's number")
    .requiredOption('--agency <name>', 'the requesting agency')
    .requiredOption('--requested-by <name>', 'the officer who asked')
    .option('--by <name>', 'the person the signer acts for (kept as onBehalfOf)')
    .action(async (node: string, incident: string, o: Common & { legalBasis: string; reference: string; agency: string; requestedBy: string; by?: string }) => {
      const data = await request(o, node, 'disclose', {
        incident, legalBasis: o.legalBasis, reference: o.reference, agency: o.agency, requestedBy: o.requestedBy, ...(o.by !== undefined ? { by: o.by } : {}),
      }) as DiscloseReply;
      print(o, data, () => renderDisclosure(node, data));
    });

  withLocal(ctl.command('incidents').description("a node's incidents"))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const data = await request(o, node, 'incidents', {}) as { incidents: Incident[] };
      print(o, data, () => renderIncidents(data.incidents));
    });

  withLocal(ctl.command('incident').description('one incident'))
    .argument('<args...>', 'NODE INCIDENT (or --local INCIDENT)')
    .action(async (args: string[], o: Common) => {
      const [node, incident] = positionals(o, args, ['INCIDENT']);
      const data = await request(o, node, 'incident', { incident }) as Incident;
      print(o, data, () => renderIncident(data));
    });

  withLocal(ctl.command('snapshot').description("one JPEG from a camera's live stream"))
    .argument('<args...>', 'NODE CAMERA (or --local CAMERA)')
    .requiredOption('-o, --output <file>', 'where to write the JPEG')
    .action(async (args: string[], o: Common & { output: string }) => {
      const [node, camera] = positionals(o, args, ['CAMERA']);
      const data = await request(o, node, 'snapshot', { camera }) as { camera: string; capturedAt: string; contentType: string; jpegBase64: string };
      const jpeg = Buffer.from(data.jpegBase64, 'base64');
      await writeFile(o.output, jpeg);
      const { jpegBase64: _omit, ...meta } = data;
      print(o, { ...meta, file: o.output, bytes: jpeg.length }, () => `${o.output}: ${jpeg.length} bytes from ${data.camera} at ${data.capturedAt}`);
    });

  withLocal(ctl.command('sync').description('retry uploads now'))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const data = await request(o, node, 'sync', {}) as { queued: number };
      print(o, data, () => `${data.queued} incident(s) queued for upload`);
    });

  withLocal(ctl.command('config').description('the config in force on a node: get it (secrets as ***), compare a file with it, push one, or return to the file (admin, signed; CONTRACT §9)'))
    .argument('[node]')
    .option('--all', 'every online node, one line each (with --get or --compare)')
    .option('--get', 'the config in force as YAML, its source and sha256 (the default)')
    .option('--compare <file>', 'the paths at which FILE differs from the config in force (validated as a push would be)')
    .option('--set <file>', 'push FILE to the node: applied on trial, then committed or rolled back')
    .option('--reset', 'return to the node\'s config file, through the same trial (`camnode config reset` on the node)')
    .action(configCommand);

  withBroker(ctl.command('update').description('nodes fetch a published release, check its signature, install it on trial, and commit or roll back (admin, signed; CONTRACT §9)'))
    .argument('[node]')
    .option('--all', 'every online node')
    .requiredOption('--version <version>', 'the release to run, as published with `npm run release -- publish`')
    .option('--canary <n>', 'with --all: these many nodes (by name) first; the rest only once all of them committed')
    .option('--wait <duration>', 'how long to wait for each node\'s outcome after it fetched the release', '10m')
    .action(updateCommand);

  withLocal(ctl.command('ping').description('is the agent there?'))
    .argument('[node]')
    .action(async (nodeArg: string | undefined, o: Common) => {
      const [node] = positionals(o, nodeArg ? [nodeArg] : [], []);
      const started = Date.now();
      const data = await request(o, node, 'ping', {}) as { version: string };
      print(o, data, () => `pong from ${node ?? 'this node'} (camnode ${data.version}) in ${Date.now() - started} ms`);
    });

  return ctl;
}

type NodeResult = { node: string; data?: unknown; error?: string };

/**
 * A command to every node whose retained status says online, at once; each answers or is named.
 * Exit 3 if a node did not answer, else 2 if one refused the arguments as bad, else 1 if one
 * refused (after every result is printed).
 */
async function eachOnline(o: Common, cmd: string, payload: Record<string, unknown>, onResult: (r: NodeResult) => void): Promise<NodeResult[]> {
  return withClient(o, async (client) => {
    const online = (await client.nodes()).filter((v) => v.status?.online).map((v) => v.node).sort();
    if (online.length === 0) throw new CtlExit(1, 'no node is online');
    const settled = await Promise.allSettled(online.map((node) => client.request(node, cmd, payload)));
    let worst = 0;
    const results = settled.map((r, i): NodeResult => {
      const node = printable(online[i]!);
      if (r.status === 'fulfilled' && r.value.ok) return { node, data: o.json ? r.value.data : printableDeep(r.value.data) };
      // As for one node: 3 no answer, 2 refused as bad (bad_request), 1 any other refusal.
      const code = r.status === 'rejected' ? ((r.reason as Error).name === 'NoAnswer' ? 3 : 1) : !r.value.ok && r.value.error.code === 'bad_request' ? 2 : 1;
      worst = Math.max(worst, code);
      return { node, error: printable(r.status === 'rejected' ? (r.reason as Error).message : `refused: ${r.value.ok ? '' : r.value.error.message}`) };
    });
    for (const r of results) onResult(r);
    if (worst > 0) throw new CtlExit(worst, `${results.filter((r) => r.error !== undefined).length} of ${online.length} node(s) did not answer ${cmd} (each is named above)`);
    return results;
  });
}

/** lock --all: every online node; each line as it comes. */
async function lockAll(o: Common, payload: Record<string, unknown>, line: (node: string, d: { incident: string; extended: boolean }) => string): Promise<void> {
  const out: Record<string, unknown> = {};
  const printResult = (r: NodeResult): void => {
    out[r.node] = r.error !== undefined ? { error: r.error } : r.data;
    if (o.json) return;
    if (r.error !== undefined) process.stderr.write(`${r.node}: ${r.error}\n`);
    else process.stdout.write(`${line(r.node, r.data as { incident: string; extended: boolean })}\n`);
  };
  try {
    await eachOnline(o, 'lock', payload, printResult);
  } finally {
    if (o.json && Object.keys(out).length > 0) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  }
}

/** `ctl config`: get, compare or push (CONTRACT §9 Config push); --all for get and compare. */
async function configCommand(nodeArg: string | undefined, o: Common & { all?: boolean; get?: boolean; compare?: string; set?: string; reset?: boolean }): Promise<void> {
  const { renderConfigCompare, renderConfigGet, renderConfigTable, renderTrial } = await import('./render-config.js');
  if ([o.get, o.compare, o.set, o.reset].filter((v) => v !== undefined && v !== false).length > 1) throw new CtlExit(2, 'give one of --get, --compare FILE, --set FILE, --reset');
  if (o.all && (nodeArg !== undefined || o.local)) throw new CtlExit(2, '--all takes no NODE');
  if (o.local && nodeArg !== undefined) throw new CtlExit(2, '--local stands in place of NODE');
  if (!o.all && !o.local && nodeArg === undefined) throw new CtlExit(2, 'expected NODE or --all');
  if (o.all && (o.set !== undefined || o.reset)) throw new CtlExit(2, `${o.reset ? '--reset' : '--set'} goes to one node at a time; roll a config out node by node (docs/fleet-ops.md)`);
  const file = o.compare ?? o.set;
  let text = '';
  if (file !== undefined) {
    text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new CtlExit(2, `${o.compare !== undefined ? '--compare' : '--set'}: ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
  }
  const payload = o.compare !== undefined ? { compare: text } : o.set !== undefined ? { yaml: text } : o.reset ? { reset: true } : { get: true };
  if (o.all) {
    const rows: ConfigRow[] = [];
    try {
      await eachOnline(o, 'config', payload, (r) => rows.push(r.error !== undefined ? { node: r.node, error: r.error }
        : o.compare !== undefined ? { node: r.node, compare: r.data as ConfigCompareReply } : { node: r.node, get: r.data as ConfigGetReply }));
    } finally {
      if (rows.length > 0) {
        process.stdout.write(`${o.json ? JSON.stringify(Object.fromEntries(rows.map((r) => [r.node, r.error !== undefined ? { error: r.error } : r.get ?? r.compare])), null, 2) : renderConfigTable(rows)}\n`);
      }
    }
    return;
  }
  const node = nodeArg ?? 'this node';
  const data = await request(o, nodeArg, 'config', payload);
  if (o.compare !== undefined) print(o, data, () => renderConfigCompare(printable(node), printable(o.compare!), data as ConfigCompareReply));
  else if (o.set !== undefined || o.reset) print(o, data, () => renderTrial(printable(node), data as TrialReply, o.local ? 'camnode ctl state --local' : `camnode ctl watch ${printable(node)}`));
  else print(o, data, () => renderConfigGet(printable(node), data as ConfigGetReply));
}

/** `ctl update`: one node, or every online node in waves (ops/rollout.ts); exit 0 only if all committed. */
async function updateCommand(nodeArg: string | undefined, o: Common & { all?: boolean; version: string; canary?: string; wait: string }): Promise<void> {
  if (o.all === (nodeArg !== undefined)) throw new CtlExit(2, o.all ? '--all takes no NODE' : 'expected NODE or --all');
  const canary = o.canary === undefined ? 0 : Number(o.canary);
  if (!Number.isInteger(canary) || canary < 0) throw new CtlExit(2, `--canary: not a number of nodes: ${o.canary}`);
  if (canary > 0 && !o.all) throw new CtlExit(2, '--canary goes with --all');
  const waitMs = parseDuration(o.wait);
  if (waitMs === null || waitMs <= 0) throw new CtlExit(2, `--wait: not a duration: ${o.wait}`);
  const { rollOut } = await import('./rollout.js');
  // A node answers once it has fetched and checked the bundle (megabytes from the store).
  const replyMs = Math.max(timeoutMs(o), 120_000);
  const outcomes = await withClient({ ...o, timeout: `${replyMs}ms` }, async (client) => {
    const views = await client.nodes();
    const nodes = (o.all ? views.filter((v) => v.status?.online) : views.filter((v) => v.node === nodeArg).map((v) => v))
      .map((v) => ({ node: v.node, version: v.status?.version }));
    if (!o.all && nodes.length === 0) nodes.push({ node: nodeArg!, version: undefined });
    if (nodes.length === 0) throw new CtlExit(1, 'no node is online');
    return rollOut({
      nodes, version: o.version, canary, waitMs,
      request: (node, args) => client.request(node, 'update', args),
      watch: (onEvent) => client.watch(undefined, onEvent),
      onWave: (wave, isCanary) => { if (!o.json && o.all) process.stdout.write(`${isCanary ? 'canaries' : 'nodes'}: ${wave.map(printable).join(' ')}\n`); },
      onOutcome: (r) => { if (!o.json) process.stdout.write(`${printable(r.node)}: ${r.outcome}${r.detail ? ` (${printable(r.detail)})` : ''}\n`); },
    });
  });
  if (o.json) process.stdout.write(`${JSON.stringify(Object.fromEntries(outcomes.map((r) => [r.node, { outcome: r.outcome, detail: r.detail }])), null, 2)}\n`);
  const failed = outcomes.filter((r) => r.outcome !== 'committed' && r.outcome !== 'already');
  if (failed.length === 0) return;
  const worst = failed.some((r) => r.outcome === 'refused' && r.detail.startsWith('bad_request')) ? 2
    : failed.every((r) => r.outcome === 'no answer' || r.outcome === 'timed out') ? 3 : 1;
  throw new CtlExit(worst, `${failed.length} of ${outcomes.length} node(s) did not commit camnode ${o.version} (each is named above)`);
}

/** `ctl report` and `camnode report`: asks the node, renders, prints or writes the file. */
async function reportCommand(opts: Common, node: string | undefined, o: { since: string; format: 'text' | 'json' | 'html'; output?: string }): Promise<void> {
  const { renderReport } = await import('./report-render.js');
  const data = await request({ ...opts, json: o.format === 'json' || opts.json }, node, 'report', { since: o.since }) as Report;
  const text = renderReport(data, opts.json ? 'json' : o.format);
  if (o.output === undefined) {
    process.stdout.write(text);
    return;
  }
  await writeFile(o.output, text);
  process.stdout.write(`report of ${printable(data.node)} from ${data.from} to ${data.to} written to ${printable(o.output)} (${o.format})\n`);
}
