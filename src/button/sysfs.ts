// The onoff (sysfs) backend. Since kernel 6.6 sysfs GPIO numbers are offset: the line is the
// base of the Pi's pin controller chip plus the BCM number (base 512 on a Pi 4, 571 on a Pi 5
// under bookworm, 0 on older kernels). The base is read from sysfs, never assumed.
// Only this directory imports onoff, and only through a dynamic import, so a machine whose
// epoll addon is missing still runs (with a clear error instead of a crash at load).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { EdgeSink, EdgeSource, Level, LedOutput } from './types.js';

/**
 * Labels of the chips that carry a Pi's 40-pin header, best first: RP1 on a Pi 5, the BCM2711
 * on a Pi 4 / CM4 / Pi 400, the BCM2835 family on older Pis and the Zero 2. Other chips (the
 * Pi 5's brcmstb SoC banks, the firmware expander) must never be picked.
 */
export const PI_PINCTRL_LABELS = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835'] as const;

export interface GpioChip { label: string; ngpio: number }
export interface SysfsGpioChip extends GpioChip { name: string; base: number }

export type ChipChoice<T> = { ok: true; chip: T } | { ok: false; reason: string };

/** The Pi header chip among `chips` that has line `pin`. Pure. */
export function pickPiChip<T extends GpioChip>(chips: readonly T[], pin: number): ChipChoice<T> {
  const rank = (label: string): number => (PI_PINCTRL_LABELS as readonly string[]).indexOf(label);
  const known = chips.filter((c) => rank(c.label) >= 0);
  if (known.length === 0) {
    const seen = chips.map((c) => c.label).join(', ') || 'none';
    return { ok: false, reason: `no Raspberry Pi GPIO chip (${PI_PINCTRL_LABELS.join(', ')}) found; chips: ${seen}` };
  }
  const fits = known.filter((c) => pin >= 0 && pin < c.ngpio).sort((a, b) => rank(a.label) - rank(b.label));
  const chip = fits[0];
  if (!chip) return { ok: false, reason: `BCM ${pin} is beyond ${known.map((c) => `${c.label} (${c.ngpio} lines)`).join(', ')}` };
  return { ok: true, chip };
}

export type GpioLineResolution<T> = { ok: true; line: number; chip: T } | { ok: false; reason: string };

/** The sysfs GPIO number of BCM pin `bcmPin`: its chip's base plus the pin. Pure. */
export function resolveGpioLine<T extends GpioChip & { base: number }>(chips: readonly T[], bcmPin: number): GpioLineResolution<T> {
  const choice = pickPiChip(chips, bcmPin);
  if (!choice.ok) return choice;
  return { ok: true, line: choice.chip.base + bcmPin, chip: choice.chip };
}

/** The chips under `<sysfsRoot>/class/gpio`; empty when sysfs GPIO is absent. */
export async function readGpioChips(sysfsRoot = '/sys'): Promise<SysfsGpioChip[]> {
  const dir = join(sysfsRoot, 'class', 'gpio');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const chips: SysfsGpioChip[] = [];
  for (const name of names.filter((n) => /^gpiochip\d+$/.test(n))) {
    try {
      const read = (file: string): Promise<string> => readFile(join(dir, name, file), 'utf8').then((s) => s.trim());
      const [label, base, ngpio] = await Promise.all([read('label'), read('base'), read('ngpio')]);
      const chip = { name, label, base: Number(base), ngpio: Number(ngpio) };
      if (Number.isInteger(chip.base) && Number.isInteger(chip.ngpio)) chips.push(chip);
    } catch {
      // a chip that vanished or cannot be read is not ours
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

export function describeSysfsLine(bcmPin: number, line: number, chip: SysfsGpioChip): string {
  return `BCM ${bcmPin} = sysfs gpio ${line} (${chip.name} "${chip.label}", base ${chip.base})`;
}

// The part of onoff this backend uses (its own typings, imported as types only).
type OnoffGpioClass = typeof import('onoff').Gpio;
export interface OnoffModule { Gpio: OnoffGpioClass }
type OnoffGpio = InstanceType<OnoffGpioClass>;

/** onoff, loaded on demand; a clear error when its native epoll addon cannot load. */
export async function loadOnoff(): Promise<OnoffModule> {
  try {
    const mod = await import('onoff');
    return { Gpio: mod.Gpio };
  } catch (err) {
    throw new Error(`the onoff GPIO library cannot load (its native epoll addon is missing or built for another Node): ${(err as Error).message}`);
  }
}

export interface OnoffEdgeSourceDeps {
  onoff: OnoffModule;
  /** The sysfs GPIO number (base + BCM). */
  line: number;
  activeLow: boolean;
  clock: Clock;
  log: Logger;
}

export class OnoffEdgeSource implements EdgeSource {
  private gpio: OnoffGpio | undefined;

  constructor(private readonly deps: OnoffEdgeSourceDeps) {}

  async start(sink: EdgeSink): Promise<void> {
    const { onoff, line, activeLow, clock, log } = this.deps;
    // activeLow makes the kernel invert the value, so 1 reads as pressed. onoff's own
    // debounce is off: the one debounce is ours, the same for every backend.
    const gpio = new onoff.Gpio(line, 'in', 'both', { activeLow, debounceTimeout: 0 });
    this.gpio = gpio;
    const initial = gpio.readSync() as Level;
    sink.reset(initial);
    if (initial === 1) {
      log.warn({ line }, 'the panic button reads pressed at start; it must be released before it can press (a button to GND needs a pull-up: see docs/button.md)');
    }
    gpio.watch((err, value) => {
      if (err) {
        log.error({ err }, 'reading the button line failed');
        return;
      }
      sink.edge({ level: value, atMs: clock.monotonic() });
    });
  }

  async stop(): Promise<void> {
    const gpio = this.gpio;
    this.gpio = undefined;
    if (!gpio) return;
    gpio.unwatchAll();
    try { gpio.unexport(); } catch { /* already gone */ }
  }

  problem(): string | null {
    return null;
  }
}

export class OnoffLedOutput implements LedOutput {
  private gpio: OnoffGpio | undefined;

  constructor(private readonly onoff: OnoffModule, private readonly line: number) {}

  async open(): Promise<void> {
    this.gpio = new this.onoff.Gpio(this.line, 'low');
  }

  set(on: boolean): void {
    this.gpio?.writeSync(on ? 1 : 0);
  }

  async close(): Promise<void> {
    const gpio = this.gpio;
    this.gpio = undefined;
    if (!gpio) return;
    try { gpio.writeSync(0); } catch { /* best effort */ }
    gpio.unexport();
  }
}
