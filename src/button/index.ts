// The panic button and its LED, built from `button` in the config. `auto` picks what the
// machine has: sysfs GPIO through onoff when a Raspberry Pi pin controller is in sysfs and
// onoff loads; else the libgpiod tools when `gpiomon` is on PATH and a /dev/gpiochip* exists;
// else no button, with a warning. Detection only reads files and runs `--version`/`gpiodetect`;
// lines are opened in start().
import { execFile } from 'node:child_process';
import { access, constants, readdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../config/schema.js';
import type { BackoffPolicy } from '../lifecycle/backoff.js';
import { systemClock, type Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { FakeEdgeSource, FakeLedOutput, NoEdgeSource } from './fake.js';
import { GpiomonEdgeSource, GpiosetLedOutput, parseGpiodetect, parseGpiodVersion, type GpiodVersion, type SpawnFn } from './gpiod.js';
import { Led, NullLedOutput } from './led.js';
import { DebouncedButton } from './panic-button.js';
import { describeSysfsLine, loadOnoff, OnoffEdgeSource, OnoffLedOutput, pickPiChip, readGpioChips, resolveGpioLine, type OnoffModule } from './sysfs.js';
import type { ButtonBackend, ButtonDescription, EdgeSource, LedOutput, Timers } from './types.js';

export type { ButtonBackend, ButtonDescription, Edge, Level, PanicButton, LedOutput } from './types.js';
export { Led, ledSchedule, LED_TIMING, type LedPattern, type LedStep } from './led.js';
export { FakeEdgeSource, FakeLedOutput } from './fake.js';
export { DebouncedButton } from './panic-button.js';

export type ButtonConfig = Config['button'];

export interface ButtonDeps {
  log: Logger;
  clock?: Clock;
  /** With `button.heartbeat`: whether the agent is healthy (it records) — the LED's flash every 5 s. */
  healthy?: () => boolean;
  /** Root of sysfs (tests point it at a fake tree). */
  sysfsRoot?: string;
  /** Where gpiochip character devices live. */
  devRoot?: string;
  /** Where leftover gpiomon/gpioset processes are looked for. */
  procRoot?: string;
  /** The PATH searched for the libgpiod tools. */
  path?: string;
  spawn?: SpawnFn;
  /** Loads onoff (injectable: tests without sysfs GPIO). */
  loadOnoff?: () => Promise<OnoffModule>;
  timers?: Timers;
  backoff?: BackoffPolicy;
  random?: () => number;
}

export interface ButtonSetup {
  /** Start it with the other components; presses go to onPress listeners. */
  button: DebouncedButton;
  led: Led;
  /** The injectable button of the `fake` backend (demo: Enter calls press()); else null. */
  fake: FakeEdgeSource | null;
  /** The fake backend's LED, which the demo can print; else null. */
  fakeLed: FakeLedOutput | null;
  describe(): ButtonDescription;
}

interface Chosen {
  backend: ButtonBackend;
  source: EdgeSource;
  led: LedOutput;
  line: string | null;
  ledLine: string | null;
  status: ButtonDescription['status'];
  note: string;
  fix?: string;
}

const INSTALL_FIX = 'wire the button per docs/button.md; on a Pi enable sysfs GPIO or `apt-get install gpiod`; or set button.backend: none';

export async function createButton(config: ButtonConfig, deps: ButtonDeps): Promise<ButtonSetup> {
  const log = deps.log.child({ component: 'button' });
  const clock = deps.clock ?? systemClock;
  let fake: FakeEdgeSource | null = null;
  let fakeLed: FakeLedOutput | null = null;
  let chosen: Chosen;

  const none = (status: Chosen['status'], note: string, fix?: string): Chosen =>
    ({ backend: 'none', source: new NoEdgeSource(), led: new NullLedOutput(), line: null, ledLine: null, status, note, fix });

  switch (config.backend) {
    case 'fake':
      fake = new FakeEdgeSource(clock);
      fakeLed = new FakeLedOutput(clock);
      chosen = { backend: 'fake', source: fake, led: fakeLed, line: null, ledLine: 'fake (shown by the demo)', status: 'pass', note: 'fake button: Enter in the demo terminal or injected edges' };
      break;
    case 'none':
      chosen = none('pass', 'no panic button (button.backend: none)');
      break;
    case 'onoff': {
      const r = await tryOnoff(config, deps, clock, log);
      chosen = r.ok ? r.chosen : none('fail', `button.backend onoff unavailable: ${r.reason}; running without a button`, INSTALL_FIX);
      break;
    }
    case 'gpiod': {
      const r = await tryGpiod(config, deps, clock, log);
      chosen = r.ok ? r.chosen : none('fail', `button.backend gpiod unavailable: ${r.reason}; running without a button`, INSTALL_FIX);
      break;
    }
    case 'auto': {
      const onoff = await tryOnoff(config, deps, clock, log);
      if (onoff.ok) { chosen = onoff.chosen; break; }
      const gpiod = await tryGpiod(config, deps, clock, log);
      if (gpiod.ok) { chosen = gpiod.chosen; break; }
      chosen = none('warn', `no GPIO for a panic button (onoff: ${onoff.reason}; gpiod: ${gpiod.reason}); running without a button`, INSTALL_FIX);
      break;
    }
  }

  const msg = `panic button: ${chosen.backend}${chosen.line ? ` on ${chosen.line}` : ''}`;
  const fields = { backend: chosen.backend, line: chosen.line, led: chosen.ledLine, note: chosen.note };
  if (chosen.status === 'pass') log.info(fields, msg);
  else if (chosen.status === 'warn') log.warn(fields, msg);
  else log.error(fields, msg);

  const button = new DebouncedButton({ source: chosen.source, debounceMs: config.debounce, clock, log });
  const led = new Led({
    output: chosen.led, log: log.child({ component: 'led' }), timers: deps.timers,
    heartbeat: config.heartbeat ? { healthy: deps.healthy ?? (() => true) } : undefined,
  });
  return {
    button,
    led,
    fake,
    fakeLed,
    describe: () => {
      const problem = button.problem();
      const base = { backend: chosen.backend, line: chosen.line, led: chosen.ledLine };
      if (problem) return { ...base, status: 'fail', note: `${chosen.note}; not working: ${problem}`, fix: 'see the log; docs/button.md lists the wiring and backends' };
      return { ...base, status: chosen.status, note: chosen.note, ...(chosen.fix ? { fix: chosen.fix } : {}) };
    },
  };
}

type Attempt = { ok: true; chosen: Chosen } | { ok: false; reason: string };

async function tryOnoff(config: ButtonConfig, deps: ButtonDeps, clock: Clock, log: Logger): Promise<Attempt> {
  const chips = await readGpioChips(deps.sysfsRoot ?? '/sys');
  if (chips.length === 0) return { ok: false, reason: `no sysfs GPIO (${join(deps.sysfsRoot ?? '/sys', 'class/gpio')})` };
  const button = resolveGpioLine(chips, config.pin);
  if (!button.ok) return { ok: false, reason: button.reason };
  const led = config.ledPin === undefined ? null : resolveGpioLine(chips, config.ledPin);
  if (led && !led.ok) return { ok: false, reason: `LED: ${led.reason}` };
  let onoff: OnoffModule;
  try {
    onoff = await (deps.loadOnoff ?? loadOnoff)();
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const line = describeSysfsLine(config.pin, button.line, button.chip);
  return {
    ok: true,
    chosen: {
      backend: 'onoff',
      source: new OnoffEdgeSource({ onoff, line: button.line, activeLow: config.activeLow, clock, log }),
      led: led ? new OnoffLedOutput(onoff, led.line) : new NullLedOutput(),
      line,
      ledLine: led ? describeSysfsLine(config.ledPin!, led.line, led.chip) : null,
      status: 'pass',
      note: `sysfs GPIO through onoff, ${config.activeLow ? 'active low (button to GND, needs a pull-up)' : 'active high'}, debounce ${config.debounce} ms`,
    },
  };
}

/** The executable `name` in the first PATH directory that has it, or null. */
export async function findOnPath(name: string, path = process.env['PATH'] ?? ''): Promise<string | null> {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch { /* not here */ }
  }
  return null;
}

/** stdout of a short tool run; a non-zero exit still yields what was printed (gpiodetect prints the chips it could open). */
async function toolOutput(file: string, args: string[]): Promise<string> {
  try {
    return (await promisify(execFile)(file, args, { timeout: 5_000 })).stdout;
  } catch (err) {
    const stdout = (err as { stdout?: unknown }).stdout;
    if (typeof stdout === 'string' && stdout.trim()) return stdout;
    throw err;
  }
}

async function tryGpiod(config: ButtonConfig, deps: ButtonDeps, clock: Clock, log: Logger): Promise<Attempt> {
  const gpiomon = await findOnPath('gpiomon', deps.path);
  if (!gpiomon) return { ok: false, reason: 'gpiomon not on PATH (Debian package gpiod)' };
  const devRoot = deps.devRoot ?? '/dev';
  const devices = await readdir(devRoot).then((names) => names.filter((n) => /^gpiochip\d+$/.test(n)), () => []);
  if (devices.length === 0) return { ok: false, reason: `no ${join(devRoot, 'gpiochip*')} device` };
  let version: GpiodVersion | null;
  let detected;
  try {
    version = parseGpiodVersion(await toolOutput(gpiomon, ['--version']));
    const gpiodetect = await findOnPath('gpiodetect', deps.path);
    if (!gpiodetect) return { ok: false, reason: 'gpiodetect not on PATH (Debian package gpiod)' };
    detected = parseGpiodetect(await toolOutput(gpiodetect, []));
  } catch (err) {
    return { ok: false, reason: `libgpiod tools failed: ${(err as Error).message}` };
  }
  if (!version) return { ok: false, reason: 'cannot tell the libgpiod version from `gpiomon --version`' };
  const chip = pickPiChip(detected, config.pin);
  if (!chip.ok) return { ok: false, reason: chip.reason };
  const ledChip = config.ledPin === undefined ? null : pickPiChip(detected, config.ledPin);
  if (ledChip && !ledChip.ok) return { ok: false, reason: `LED: ${ledChip.reason}` };
  let led: LedOutput = new NullLedOutput();
  if (ledChip) {
    const gpioset = await findOnPath('gpioset', deps.path);
    if (!gpioset) return { ok: false, reason: 'gpioset not on PATH (Debian package gpiod)' };
    led = new GpiosetLedOutput({ gpioset, version, chip: ledChip.chip.name, offset: config.ledPin!, log, spawn: deps.spawn, procRoot: deps.procRoot });
  }
  const v = `${version.major}.${version.minor}.${version.patch}`;
  return {
    ok: true,
    chosen: {
      backend: 'gpiod',
      source: new GpiomonEdgeSource({
        gpiomon, version, chip: chip.chip.name, offset: config.pin, activeLow: config.activeLow, clock, log,
        spawn: deps.spawn, procRoot: deps.procRoot, backoff: deps.backoff, random: deps.random,
      }),
      led,
      line: `BCM ${config.pin} = ${chip.chip.name} line ${config.pin} ("${chip.chip.label}")`,
      ledLine: ledChip ? `BCM ${config.ledPin} = ${ledChip.chip.name} line ${config.ledPin} ("${ledChip.chip.label}")` : null,
      status: 'pass',
      note: `libgpiod tools v${v} (gpiomon), ${config.activeLow ? 'active low with pull-up' : 'active high with pull-down'}, debounce ${config.debounce} ms`,
    },
  };
}
