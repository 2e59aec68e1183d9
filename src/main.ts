#!/usr/bin/env node
// The only place that touches argv, signals and exit codes (CONTRACT §1):
// 0 success; 1 runtime failure; 2 bad usage or bad config; 3 timed out.
import { createInterface } from 'node:readline';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfigWithDocument, resolveConfigPath } from './config/load.js';
import { loadConfigInForce } from './config/store.js';
import { configSecrets, scrub } from './config/redact.js';
import { createLogger } from './platform/logger.js';
import { MissingToolError } from './platform/ffmpeg.js';
import { StorageError } from './platform/storage.js';
import { AgentAlreadyRunning } from './platform/processes.js';
import { VERSION } from './version.js';
import { AGENT_UMASK } from './platform/private-dirs.js';
import { CliExit } from './platform/cli-exit.js';

/** Errors the user can fix: printed as a message, never a stack trace. */
function exitCodeFor(err: unknown): number {
  if (err instanceof CliExit) return err.exitCode;
  if (err instanceof ConfigError) return 2;
  if (err instanceof CommanderError) return 2;
  return 1;
}

/** The secrets of the config in use, once it is read: blanked in everything printed. */
let secrets: readonly string[] = [];
const say = (text: string): void => { process.stderr.write(`${scrub(text, secrets)}\n`); };

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    for (const line of err.problems) say(line);
  } else if (err instanceof CliExit) {
    say(`${err.prefix}: ${err.message}`);
  } else if (err instanceof MissingToolError || err instanceof StorageError || err instanceof AgentAlreadyRunning) {
    say(`camnode: ${err.message}`);
  } else {
    say(`camnode: ${(err as Error)?.message ?? String(err)}`);
    if (process.env['CAMNODE_DEBUG']) say(`${(err as Error)?.stack}`);
  }
  process.exit(exitCodeFor(err));
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a whole number above 0');
  return n;
}

/**
 * CAMNODE_PRUNE_INTERVAL_MS: how often the ring prunes when space is not short (default 30 s).
 * A diagnostic knob; the tests that race the pruner make it fast.
 */
function pruneIntervalFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const value = env['CAMNODE_PRUNE_INTERVAL_MS'];
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 100) throw new CliExit(2, `CAMNODE_PRUNE_INTERVAL_MS: must be a whole number of milliseconds, at least 100 (got "${value}")`);
  return n;
}

// Each command loads only what it uses: the agent shares a Pi with ffmpeg, and `ctl` is run
// by hand (the demo's broker, check's prober and the S3 SDK are tens of MB each).
async function run(opts: { config?: string }): Promise<void> {
  const inForce = loadConfigInForce(resolveConfigPath(opts.config));
  const { config, document } = inForce;
  secrets = configSecrets(config);
  const { Agent } = await import('./agent.js');
  const log = createLogger({ secrets });
  if (inForce.fallback) log.warn({ reason: inForce.fallback }, 'the committed pushed config is not used');
  // Footage and state for the camnode user and group only; ffmpeg inherits it (CONTRACT §7).
  process.umask(AGENT_UMASK);
  const agent = new Agent({
    config, configDocument: document, configSource: inForce.source, log, pruneIntervalMs: pruneIntervalFromEnv(process.env),
    // `config reset` returns to the file as it reads then.
    loadFile: () => ({ ...loadConfigWithDocument(inForce.path), source: 'file' }),
    // No config known to work in this process: the recorders stop gracefully, systemd restarts
    // the agent on the config committed (the trial file says it was rolled back).
    onFatal: () => void agent.stopRecorders().finally(() => process.exit(70)),
    // A new release that did not prove itself: stop cleanly and exit 1; the launcher switches
    // back at the next start (CONTRACT §9 Update).
    onUpdateMissed: () => {
      if (stopping) return;
      stopping = true;
      controller.abort();
      agent.stop().finally(() => process.exit(1));
    },
  });
  const controller = new AbortController();
  let stopping = false;
  // systemd's notify protocol, when the unit asks for it (Type=notify, WatchdogSec).
  const { SystemdNotifier, Watchdog, watchdogIntervalMs } = await import('./platform/sd-notify.js');
  const notifier = SystemdNotifier.fromEnv(process.env, log);
  let watchdog: InstanceType<typeof Watchdog> | undefined;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    watchdog?.stop();
    notifier?.stopping();
    controller.abort();
    agent.stop().then(() => process.exit(0), (err: unknown) => fail(err));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Last resorts (CONTRACT §5). A rejection nobody handled is a bug, but the state is intact:
  // record it as a fault and go on. After an uncaught exception Node's state is undefined: stop
  // the recorders (their segments stay playable) within 5 s and exit 70; systemd restarts.
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled rejection (a bug): recorded as a fault; the agent goes on');
    agent.reportFault('agent', reason);
  });
  let failing = false;
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'internal error the agent cannot contain: stopping the recorders and exiting 70');
    if (failing) return;
    failing = true;
    setTimeout(() => process.exit(70), 5_000).unref();
    agent.stopRecorders().finally(() => process.exit(70));
  });
  try {
    await agent.start(controller.signal);
  } catch (err) {
    await agent.stop().catch(() => {});
    throw err;
  }
  const intervalMs = watchdogIntervalMs(process.env);
  if (notifier) {
    notifier.ready(`recording ${agent.status().cameras.filter((c) => c.state !== 'disabled').length} camera(s)`);
    if (intervalMs !== null) {
      watchdog = new Watchdog({ notifier, intervalMs, healthy: () => agent.wedged(), log });
      watchdog.start();
    }
  }
  // Tests of the last resorts above: CAMNODE_FAULT=uncaught|unhandled, once started; `wedge`
  // blocks the event loop for a minute after 3 s (the watchdog test).
  const fault = process.env['CAMNODE_FAULT'];
  if (fault === 'wedge') {
    setTimeout(() => {
      log.warn('CAMNODE_FAULT=wedge: blocking the event loop for 60 s');
      const until = Date.now() + 60_000;
      while (Date.now() < until) { /* wedged on purpose */ }
    }, 3_000).unref();
  }
  if (fault === 'uncaught') setImmediate(() => { throw new Error('injected uncaught exception (CAMNODE_FAULT)'); });
  if (fault === 'unhandled') void Promise.reject(new Error('injected unhandled rejection (CAMNODE_FAULT)'));
  // button.backend fake: each line on stdin is a press (bench setups and tests).
  const fake = agent.fakeButton();
  if (fake) createInterface({ input: process.stdin }).on('line', () => fake.press());
}

async function check(opts: { config?: string }): Promise<void> {
  const inForce = loadConfigInForce(resolveConfigPath(opts.config));
  const { config } = inForce;
  secrets = configSecrets(config);
  const { runChecks, renderChecks } = await import('./check.js');
  const rows = await runChecks(config, { configSource: inForce.source, ...(inForce.fallback ? { configFallback: inForce.fallback } : {}) });
  process.stdout.write(`${scrub(renderChecks(rows, process.stdout.isTTY === true && !process.env['NO_COLOR']), secrets)}\n`);
  process.exitCode = rows.some((r) => r.verdict === 'fail') ? 1 : 0;
}

const program = new Command()
  .name('camnode')
  .description('Records branch cameras into a ring buffer sized to the disk.')
  .version(VERSION)
  // `camnode --version` is the program's; `camnode ctl update --version V` is the command's own.
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program.command('run').description('run the agent until SIGTERM/SIGINT')
  .option('--config <path>', 'config file (else $CAMNODE_CONFIG, else /etc/camnode/config.yaml)')
  .action(run);
program.command('check').description('validate the config and the environment; exit 0 only if nothing failed')
  .option('--config <path>', 'config file (else $CAMNODE_CONFIG, else /etc/camnode/config.yaml)')
  .action(check);
program.command('enroll').description('make this node\'s TLS key (kept at mqtt.key, never leaves the box) and a request for ops to sign; --install-cert puts the signed certificate in place')
  .option('--config <path>', 'config file (else $CAMNODE_CONFIG, else /etc/camnode/config.yaml)')
  .option('--install-cert <file>', 'the certificate ops signed (fleet-ca.sh node DIR NODE_ID --csr FILE): checked against the key, the node id and the fleet CA, then written to mqtt.cert')
  .action(async (opts: { config?: string; installCert?: string }) => {
    const { config } = loadConfigInForce(resolveConfigPath(opts.config));
    const { enroll, installCert, EnrollError } = await import('./fleet/enroll.js');
    try {
      if (opts.installCert !== undefined) {
        const r = await installCert(config, opts.installCert);
        process.stdout.write(`certificate installed at ${r.cert} (valid until ${r.notAfter}); start or restart the agent to connect\n`);
        return;
      }
      const r = await enroll(config);
      process.stdout.write([
        `${r.created ? 'key made' : 'key kept'}: ${r.key} (stays on this node)`,
        `request:     ${r.csr}`,
        `fingerprint: ${r.fingerprint} (SHA-256 of the public key; compare it when signing)`,
        `next: copy the request to the fleet CA, run fleet-ca.sh node DIR ${config.node.id} --csr FILE, bring the certificate back and run camnode enroll --install-cert FILE`,
        '',
      ].join('\n'));
    } catch (err) {
      if (err instanceof EnrollError) throw new CliExit(err.exitCode, err.message);
      throw err;
    }
  });
program.command('demo').description('run on embedded defaults: two synthetic cameras and a small ring')
  .option('--dir <dir>', 'where the demo keeps its data', './demo-data')
  .option('--seconds <n>', 'stop after this many seconds', positiveInt)
  .action(async (opts: { dir: string; seconds?: number }) => (await import('./demo/demo.js')).runDemo(opts));

// Usage errors anywhere below exit 2 (commander's own default is 1).
const withExitOverride = (cmd: Command): Command => {
  cmd.exitOverride();
  cmd.commands.forEach(withExitOverride);
  return cmd;
};
// `camnode report` on the node is `camnode ctl report --local`: the running agent answers it over
// its control socket (CONTRACT §7).
if (process.argv[2] === 'report') process.argv.splice(2, 1, 'ctl', 'report', '--local');
// `camnode config reset` is `camnode ctl config --local --reset`: back to the file, through a trial (CONTRACT §9).
if (process.argv[2] === 'config' && process.argv[3] === 'reset') process.argv.splice(2, 2, 'ctl', 'config', '--local', '--reset');
// The ops side (ctl, its rendering, its MQTT client) is loaded only for `camnode ctl`: the agent
// never carries it.
if (process.argv[2] === 'ctl') {
  const { ctlCommand } = await import('./ops/ctl.js');
  program.addCommand(withExitOverride(ctlCommand()));
} else {
  program.command('ctl').description('operations on nodes (CONTRACT §3 commands); `camnode ctl --help` lists them')
    .allowUnknownOption().allowExcessArguments().action(() => {});
  program.command('config').description('`camnode config reset`: return to the config file from a pushed config, through the same trial (`--config PATH`, `--socket PATH`, `--json`)')
    .allowUnknownOption().allowExcessArguments().action(() => {
      throw new CliExit(2, 'camnode config: the only form is `camnode config reset [--config PATH]`');
    });
  program.command('report').description('the retention report of this node: what it kept and deleted, and why (`camnode report --help`: --since, --format text|json|html, -o FILE)')
    .allowUnknownOption().allowExcessArguments().action(() => {});
}
program.command('audit').description('the node\'s hash-chained audit log')
  .command('verify').description('walk the audit log and report the first broken link; exit 0 only if whole. With --log: a copy (the node\'s file, or the chunks from upstream) checked offline against the node\'s signed heads')
  .option('--config <path>', 'config file (else $CAMNODE_CONFIG, else /etc/camnode/config.yaml)')
  .option('--log <file|dir>', 'a copy of the log: the file, or a folder of chunks <first>-<last>.jsonl (audit/<log-id>/ upstream)')
  .option('--key <pubkey>', 'with --log: the node\'s public key (base64 or a file), which signed the heads')
  .option('--heads <dir>', 'with --log: the signed heads (audit/<log-id>/heads/ upstream; default: heads/ inside a chunk folder)')
  .action(async (opts: { config?: string; log?: string; key?: string; heads?: string }) => { process.exitCode = await (await import('./audit/cli.js')).auditVerifyCommand(opts); });
const evidence = program.command('evidence').description('sealed incident folders: verify one, or export it for an examiner');
evidence.command('verify').description('check an incident folder offline: files, signature under the trusted key, and the audit anchor')
  .argument('<dir>', 'the incident folder (holding manifest.json)')
  .requiredOption('--key <pubkey>', 'the trusted public key (base64, as `camnode check` prints it) or a file holding it')
  .option('--audit <file|dir>', 'the node\'s audit log, or the folder of its chunks from upstream: check the manifest\'s anchor and seal entry in it')
  .option('--identity <file>', 'an age identity file (age-keygen): decrypt encrypted clips and check the plaintext too')
  .action(async (dir: string, opts: { key: string; audit?: string; identity?: string }) => { process.exitCode = await (await import('./audit/cli.js')).evidenceVerifyCommand(dir, opts); });
evidence.command('export').description('build the hand-over bundle for an examiner without camnode (plaintext clips, signed bytes, SHA256SUMS, README); DIR may be a copy from upstream')
  .argument('<dir>', 'the incident folder (the node\'s, or a copy of <prefix>/<node>/<incident>/ from upstream)')
  .requiredOption('--out <bundle>', 'a new folder for the bundle')
  .option('--key <pubkey>', 'the trusted public key (default: the published key history beside an upstream copy, else the manifest\'s own, said so)')
  .option('--identity <file>', 'an age identity file: required for an encrypted incident, whose clips the bundle holds decrypted')
  .action(async (dir: string, opts: { out: string; key?: string; identity?: string }) => {
    const { evidenceExportCommand } = await import('./audit/export.js');
    process.exitCode = await evidenceExportCommand(dir, opts);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // --help and --version end here too, successfully.
    if (err.exitCode === 0) process.exit(0);
    process.exit(2);
  }
  fail(err);
});
