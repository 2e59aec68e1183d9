import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createButton } from '../../src/button/index.js';
import { loadOnoff, pickPiChip, readGpioChips, resolveGpioLine, type OnoffModule, type SysfsGpioChip } from '../../src/button/sysfs.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

type Chip = Omit<SysfsGpioChip, 'name'>;
const chip = (label: string, base: number, ngpio: number): Chip => ({ label, base, ngpio });

// Layouts as the kernels present them (labels, bases and line counts of real boards).
const PI4_KERNEL_66: Chip[] = [chip('pinctrl-bcm2711', 512, 58), chip('raspberrypi-exp-gpio', 570, 8)];
const PI4_OLD_KERNEL: Chip[] = [chip('pinctrl-bcm2711', 0, 58), chip('raspberrypi-exp-gpio', 504, 8)];
const PI5_BOOKWORM: Chip[] = [
  chip('gpio-brcmstb@107d508500', 512, 32),
  chip('gpio-brcmstb@107d508520', 544, 4),
  chip('gpio-brcmstb@107d517c00', 548, 17),
  chip('gpio-brcmstb@107d517c20', 565, 6),
  chip('pinctrl-rp1', 571, 54),
];
const PI3: Chip[] = [chip('pinctrl-bcm2835', 0, 54), chip('raspberrypi-exp-gpio', 504, 8)];
const PC: Chip[] = [chip('INT34C6:00', 512, 360)];

async function writeTree(root: string, chips: Chip[]): Promise<void> {
  const dir = join(root, 'class', 'gpio');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'export'), '');
  await writeFile(join(dir, 'unexport'), '');
  for (const c of chips) {
    await mkdir(join(dir, `gpiochip${c.base}`), { recursive: true });
    // sysfs values end with a newline
    await writeFile(join(dir, `gpiochip${c.base}`, 'label'), `${c.label}\n`);
    await writeFile(join(dir, `gpiochip${c.base}`, 'base'), `${c.base}\n`);
    await writeFile(join(dir, `gpiochip${c.base}`, 'ngpio'), `${c.ngpio}\n`);
  }
}

describe('resolveGpioLine (pure)', () => {
  it('Pi 4 on kernel 6.6+: base 512 + BCM', () => {
    expect(resolveGpioLine(PI4_KERNEL_66, 17)).toMatchObject({ ok: true, line: 529, chip: { label: 'pinctrl-bcm2711' } });
    expect(resolveGpioLine(PI4_KERNEL_66, 27)).toMatchObject({ ok: true, line: 539 });
  });

  it('Pi 5 under bookworm: the RP1 at base 571, never the SoC banks listed before it', () => {
    expect(resolveGpioLine(PI5_BOOKWORM, 17)).toMatchObject({ ok: true, line: 588, chip: { label: 'pinctrl-rp1', base: 571 } });
    expect(resolveGpioLine(PI5_BOOKWORM, 0)).toMatchObject({ ok: true, line: 571 });
  });

  it('older kernels: base 0', () => {
    expect(resolveGpioLine(PI4_OLD_KERNEL, 17)).toMatchObject({ ok: true, line: 17 });
    expect(resolveGpioLine(PI3, 17)).toMatchObject({ ok: true, line: 17, chip: { label: 'pinctrl-bcm2835' } });
  });

  it('refuses a machine without a Pi pin controller, naming what it found', () => {
    const r = resolveGpioLine(PC, 17);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/no Raspberry Pi GPIO chip.*INT34C6:00/);
    expect(resolveGpioLine([], 17)).toMatchObject({ ok: false, reason: expect.stringMatching(/chips: none/) });
  });

  it('refuses a pin the chip does not have', () => {
    expect(resolveGpioLine(PI5_BOOKWORM, 54)).toMatchObject({ ok: false, reason: expect.stringMatching(/BCM 54 is beyond pinctrl-rp1 \(54 lines\)/) });
    expect(resolveGpioLine(PI4_KERNEL_66, 57)).toMatchObject({ ok: true, line: 569 });
  });

  it('prefers the RP1 over a BCM2711 should both ever appear, whatever the order', () => {
    const both = [chip('pinctrl-bcm2711', 0, 58), chip('pinctrl-rp1', 571, 54)];
    expect(resolveGpioLine(both, 5)).toMatchObject({ line: 576 });
    expect(resolveGpioLine([...both].reverse(), 5)).toMatchObject({ line: 576 });
    expect(pickPiChip([chip('pinctrl-rp1', 571, 54), chip('pinctrl-bcm2711', 0, 58)], 56)).toMatchObject({ ok: true, chip: { label: 'pinctrl-bcm2711' } });
  });
});

describe('readGpioChips over fake sysfs trees', () => {
  let root: string;
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-sysfs-')); });
  afterEach(async () => { await rm(root, { recursive: true, force: true }); });

  it('reads a Pi 4 tree and resolves BCM 17 to 529', async () => {
    await writeTree(root, PI4_KERNEL_66);
    const chips = await readGpioChips(root);
    expect(chips).toEqual([
      { name: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 },
      { name: 'gpiochip570', label: 'raspberrypi-exp-gpio', base: 570, ngpio: 8 },
    ]);
    expect(resolveGpioLine(chips, 17)).toMatchObject({ ok: true, line: 529 });
  });

  it('reads a Pi 5 tree with the brcmstb chips present and resolves BCM 17 to 588', async () => {
    await writeTree(root, PI5_BOOKWORM);
    const chips = await readGpioChips(root);
    expect(chips.map((c) => c.name)).toEqual(['gpiochip512', 'gpiochip544', 'gpiochip548', 'gpiochip565', 'gpiochip571']);
    expect(resolveGpioLine(chips, 17)).toMatchObject({ ok: true, line: 588, chip: { name: 'gpiochip571' } });
  });

  it('no sysfs GPIO at all is an empty list; broken chip entries and other files are skipped', async () => {
    expect(await readGpioChips(join(root, 'nothing'))).toEqual([]);
    await writeTree(root, PI4_KERNEL_66);
    await mkdir(join(root, 'class/gpio/gpiochip600'));
    await writeFile(join(root, 'class/gpio/gpiochip600/label'), 'half-gone\n');
    await mkdir(join(root, 'class/gpio/gpio529'));
    expect((await readGpioChips(root)).map((c) => c.name)).toEqual(['gpiochip512', 'gpiochip570']);
  });
});

/** Stands in for onoff's Gpio on a machine without GPIO: records what the backend asked for. */
function fakeOnoff(initial: 0 | 1 = 0) {
  const made: FakeGpio[] = [];
  class FakeGpio {
    value: 0 | 1 = initial;
    writes: number[] = [];
    unexported = false;
    watcher: ((err: Error | null | undefined, value: 0 | 1) => void) | undefined;
    constructor(readonly line: number, readonly direction: string, readonly edge?: string, readonly options?: object) {
      made.push(this);
    }
    readSync(): 0 | 1 { return this.value; }
    writeSync(v: number): void { this.writes.push(v); }
    watch(cb: (err: Error | null | undefined, value: 0 | 1) => void): void { this.watcher = cb; }
    unwatchAll(): void { this.watcher = undefined; }
    unexport(): void { this.unexported = true; }
    /** The kernel reports a new (already active-low-inverted) value. */
    fire(value: 0 | 1): void { this.value = value; this.watcher?.(null, value); }
  }
  const module = { Gpio: FakeGpio as unknown as OnoffModule['Gpio'] };
  return { module, made };
}

describe('the onoff backend through createButton', () => {
  let root: string;
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-sysfs-')); });
  afterEach(async () => { await rm(root, { recursive: true, force: true }); });

  const config = { backend: 'auto' as const, pin: 17, activeLow: true, debounce: 50, ledPin: 27, heartbeat: false };

  it('auto picks onoff on a Pi 5 tree: button on gpio 588, LED on 598, edges become one press', async () => {
    await writeTree(root, PI5_BOOKWORM);
    const onoff = fakeOnoff();
    const clock = new ManualClock();
    const setup = await createButton(config, { log: silentLogger(), clock, sysfsRoot: root, loadOnoff: async () => onoff.module });
    expect(setup.describe()).toMatchObject({
      backend: 'onoff',
      status: 'pass',
      line: 'BCM 17 = sysfs gpio 588 (gpiochip571 "pinctrl-rp1", base 571)',
      led: 'BCM 27 = sysfs gpio 598 (gpiochip571 "pinctrl-rp1", base 571)',
    });
    const presses: number[] = [];
    setup.button.onPress((at) => presses.push(at));
    await setup.button.start(new AbortController().signal);
    await setup.led.start();
    const [input, output] = [onoff.made.find((g) => g.line === 588)!, onoff.made.find((g) => g.line === 598)!];
    expect([input.direction, input.edge, input.options]).toEqual(['in', 'both', { activeLow: true, debounceTimeout: 0 }]);
    expect(output.direction).toBe('low');

    for (const v of [1, 0, 1, 0, 1] as const) input.fire(v); // a bouncy press, all within 1 ms
    clock.advance(300);
    input.fire(0);
    expect(presses).toEqual([clock.now() - 300]);
    clock.advance(100);
    input.fire(1);
    expect(presses.length).toBe(2);

    setup.led.show('locking');
    expect(output.writes.at(-1)).toBe(1);
    await setup.led.stop();
    await setup.button.stop();
    expect(output.writes.at(-1)).toBe(0);
    expect(input.unexported && output.unexported).toBe(true);
    expect(input.watcher).toBeUndefined();
  });

  it('a line that reads pressed at start (a missing pull-up) does not press until released', async () => {
    await writeTree(root, PI4_KERNEL_66);
    const onoff = fakeOnoff(1);
    const clock = new ManualClock();
    const setup = await createButton({ ...config, ledPin: undefined }, { log: silentLogger(), clock, sysfsRoot: root, loadOnoff: async () => onoff.module });
    expect(setup.describe()).toMatchObject({ line: expect.stringContaining('sysfs gpio 529'), led: null });
    let presses = 0;
    setup.button.onPress(() => presses++);
    await setup.button.start(new AbortController().signal);
    const input = onoff.made[0]!;
    input.fire(1);
    expect(presses).toBe(0);
    input.fire(0);
    clock.advance(60);
    input.fire(1);
    expect(presses).toBe(1);
    await setup.button.stop();
  });

  it('onoff that cannot load: auto falls through, an explicit onoff fails with the reason', async () => {
    await writeTree(root, PI4_KERNEL_66);
    const broken = async (): Promise<OnoffModule> => { throw new Error('the onoff GPIO library cannot load (epoll missing)'); };
    const deps = { log: silentLogger(), sysfsRoot: root, loadOnoff: broken, path: '', devRoot: join(root, 'dev') };
    const auto = await createButton(config, deps);
    expect(auto.describe()).toMatchObject({ backend: 'none', status: 'warn', note: expect.stringContaining('epoll missing') });
    const explicit = await createButton({ ...config, backend: 'onoff' }, deps);
    expect(explicit.describe()).toMatchObject({ backend: 'none', status: 'fail', note: expect.stringMatching(/onoff unavailable: .*epoll missing/) });
  });

  it('a Pi tree but a pin the chip lacks is a clear failure, not a wrong line', async () => {
    await writeTree(root, PI5_BOOKWORM);
    const onoff = fakeOnoff();
    const setup = await createButton({ ...config, backend: 'onoff', pin: 60 }, { log: silentLogger(), sysfsRoot: root, loadOnoff: async () => onoff.module });
    expect(setup.describe()).toMatchObject({ backend: 'none', status: 'fail', note: expect.stringContaining('BCM 60 is beyond pinctrl-rp1') });
    expect(onoff.made).toEqual([]);
  });

  it('a Gpio that cannot be opened (no permission) is thrown to the supervisor and check fails', async () => {
    await writeTree(root, PI4_KERNEL_66);
    const module = { Gpio: class { constructor() { throw new Error("EACCES: permission denied, open '/sys/class/gpio/export'"); } } as unknown as OnoffModule['Gpio'] };
    const setup = await createButton(config, { log: silentLogger(), sysfsRoot: root, loadOnoff: async () => module });
    await expect(setup.button.start(new AbortController().signal)).rejects.toThrow('EACCES');
    await expect(setup.led.start()).rejects.toThrow('EACCES');
    expect(setup.describe()).toMatchObject({ backend: 'onoff', status: 'fail', note: expect.stringContaining('EACCES') });
    setup.led.show('locking');
    await setup.led.stop();
    await setup.button.stop();
  });

  it('the real onoff loads on this machine (its epoll addon is built)', async () => {
    const onoff = await loadOnoff();
    expect(typeof onoff.Gpio).toBe('function');
  });
});
