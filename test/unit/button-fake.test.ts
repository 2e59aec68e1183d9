// The button as the agent and the demo use it: createButton → PanicButton → press listeners,
// with the fake backend's injected edges going through the real debounce, and the LED showing
// a lock being made.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createButton, type ButtonSetup } from '../../src/button/index.js';
import type { Timers } from '../../src/button/types.js';
import { ManualClock } from '../../src/platform/clock.js';
import { createLogger, silentLogger } from '../../src/platform/logger.js';

class StepTimers implements Timers {
  private pending: { at: number; fn: () => void; id: number }[] = [];
  private id = 0;
  constructor(private readonly clock: ManualClock) {}
  setTimeout(fn: () => void, ms: number): unknown { this.pending.push({ at: this.clock.monotonic() + ms, fn, id: ++this.id }); return this.id; }
  clearTimeout(h: unknown): void { this.pending = this.pending.filter((t) => t.id !== h); }
  advance(ms: number): void {
    const until = this.clock.monotonic() + ms;
    for (let t = this.next(until); t; t = this.next(until)) {
      this.pending = this.pending.filter((x) => x !== t);
      this.clock.advance(t.at - this.clock.monotonic());
      t.fn();
    }
    this.clock.advance(until - this.clock.monotonic());
  }
  private next(until: number) { return this.pending.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0]; }
}

const CONFIG = { backend: 'fake' as const, pin: 17, activeLow: true, debounce: 50, ledPin: 27, heartbeat: false };

describe('fake button end to end', () => {
  let clock: ManualClock;
  let timers: StepTimers;
  let setup: ButtonSetup;
  const signal = new AbortController().signal;

  beforeEach(async () => {
    clock = new ManualClock();
    timers = new StepTimers(clock);
    setup = await createButton(CONFIG, { log: silentLogger(), clock, timers });
    await setup.led.start(signal);
    await setup.button.start(signal);
  });

  afterEach(async () => {
    await setup.button.stop();
    await setup.led.stop();
  });

  it('describes itself for check and the log', () => {
    expect(setup.describe()).toEqual({ backend: 'fake', line: null, led: 'fake (shown by the demo)', status: 'pass', note: expect.stringContaining('Enter') });
    expect(setup.fake).not.toBeNull();
    expect(setup.fakeLed).not.toBeNull();
  });

  it('press() is one press at the wall-clock time of the press', () => {
    const seen: number[] = [];
    setup.button.onPress((at) => seen.push(at));
    expect(setup.fake!.press()).toBe(true);
    expect(seen).toEqual([clock.now()]);
  });

  it('presses within the debounce count once; after it, again', () => {
    let presses = 0;
    setup.button.onPress(() => presses++);
    setup.fake!.press();
    clock.advance(10);
    setup.fake!.press();
    clock.advance(39);
    setup.fake!.press(); // 49 ms after the last release: still within it
    expect(presses).toBe(1);
    clock.advance(50);
    setup.fake!.press();
    expect(presses).toBe(2);
  });

  it('injected raw edges: a bouncy press and a held button are one press each', () => {
    let presses = 0;
    setup.button.onPress(() => presses++);
    const t = clock.monotonic();
    for (const [level, dt] of [[1, 0], [0, 1], [1, 2], [0, 3], [1, 4]] as const) setup.fake!.injectEdge(level, t + dt);
    setup.fake!.injectEdge(0, t + 10_000); // held 10 s, released
    setup.fake!.injectEdge(1, t + 10_020); // a bounce of the release
    setup.fake!.injectEdge(0, t + 10_021);
    expect(presses).toBe(1);
    setup.fake!.injectEdge(1, t + 10_200);
    expect(presses).toBe(2);
    expect(setup.button.pressCount()).toBe(2);
  });

  it('a listener that throws does not stop the others; unsubscribing works', () => {
    const got: string[] = [];
    setup.button.onPress(() => { throw new Error('boom'); });
    const off = setup.button.onPress(() => got.push('b'));
    setup.button.onPress(() => got.push('c'));
    setup.fake!.press();
    expect(got).toEqual(['b', 'c']);
    off();
    clock.advance(100);
    setup.fake!.press();
    expect(got).toEqual(['b', 'c', 'c']);
  });

  it('a press drives the LED through a lock: solid while locking, then three blinks', async () => {
    const lit: boolean[] = [];
    setup.fakeLed!.onChange((on) => lit.push(on));
    let finishLock!: () => void;
    let locking: Promise<void> | undefined;
    setup.button.onPress(() => {
      locking = setup.led.during(() => new Promise<void>((r) => { finishLock = r; }));
    });
    setup.fake!.press();
    expect(setup.led.pattern()).toBe('locking');
    expect(setup.fakeLed!.isOn()).toBe(true);
    timers.advance(2_000);
    expect(setup.fakeLed!.isOn()).toBe(true);
    finishLock();
    await locking;
    timers.advance(5_000);
    expect(lit).toEqual([true, false, true, false, true, false]);
    expect(setup.led.pattern()).toBe('off');
  });

  it('after stop, presses are refused and nothing is delivered', async () => {
    let presses = 0;
    setup.button.onPress(() => presses++);
    await setup.button.stop();
    expect(setup.fake!.press()).toBe(false);
    expect(presses).toBe(0);
    await setup.button.start(signal); // restartable
    expect(setup.fake!.press()).toBe(true);
    expect(presses).toBe(1);
  });
});

describe('backends none and auto without any GPIO', () => {
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-nogpio-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('none: never presses, says so, and runs', async () => {
    const setup = await createButton({ ...CONFIG, backend: 'none' }, { log: silentLogger() });
    await setup.button.start(new AbortController().signal);
    expect(setup.describe()).toMatchObject({ backend: 'none', status: 'pass', line: null });
    expect(setup.fake).toBeNull();
    await setup.button.stop();
  });

  it('auto on a machine with nothing warns (in the log and in describe) and runs without a button', async () => {
    const lines: string[] = [];
    const log = createLogger({ destination: { write: (s: string) => { lines.push(s); return true; } } as never });
    const setup = await createButton({ ...CONFIG, backend: 'auto' }, { log, sysfsRoot: join(dir, 'sys'), devRoot: join(dir, 'dev'), path: join(dir, 'bin') });
    const d = setup.describe();
    expect(d).toMatchObject({ backend: 'none', status: 'warn', line: null, led: null });
    expect(d.note).toMatch(/onoff: no sysfs GPIO .*; gpiod: gpiomon not on PATH/);
    expect(d.fix).toBeTruthy();
    const entry = lines.map((l) => JSON.parse(l) as { level: number; msg: string; component?: string; backend?: string }).find((l) => l.msg.startsWith('panic button'));
    expect(entry).toMatchObject({ level: 40, component: 'button', backend: 'none' });
    await setup.button.start(new AbortController().signal);
    await setup.led.start();
    setup.led.show('locking'); // harmless without an LED
    await setup.led.stop();
    await setup.button.stop();
  });
});
