import { describe, expect, it } from 'vitest';
import { FakeLedOutput } from '../../src/button/fake.js';
import { Led, LED_TIMING, ledSchedule, type LedStep } from '../../src/button/led.js';
import { ManualTimers } from '../helpers/timers.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

function rig() {
  const clock = new ManualClock();
  const timers = new ManualTimers(clock);
  const output = new FakeLedOutput(clock);
  const led = new Led({ output, log: silentLogger(), timers });
  const t0 = clock.monotonic();
  /** The output's changes as [ms since start, on]. */
  const trace = (): [number, boolean][] => output.history.map((h) => [h.atMs - t0, h.on]);
  return { clock, timers, output, led, trace };
}

const total = (steps: LedStep[]): number => steps.filter((s) => s.ms !== Infinity).reduce((a, s) => a + s.ms, 0);

describe('ledSchedule', () => {
  it('off and locking hold one level forever', () => {
    expect(ledSchedule('off')).toEqual([{ on: false, ms: Infinity }]);
    expect(ledSchedule('locking')).toEqual([{ on: true, ms: Infinity }]);
  });

  it('confirmed is three slow blinks, then off', () => {
    expect(ledSchedule('confirmed')).toEqual([
      { on: true, ms: 600 }, { on: false, ms: 400 },
      { on: true, ms: 600 }, { on: false, ms: 400 },
      { on: true, ms: 600 }, { on: false, ms: Infinity },
    ]);
  });

  it('error flashes fast for 30 s, then goes off', () => {
    const steps = ledSchedule('error');
    expect(steps.slice(0, 2)).toEqual([{ on: true, ms: 100 }, { on: false, ms: 100 }]);
    expect(steps.length).toBe(300);
    expect(total(steps)).toBe(30_000 - 100);
    expect(steps[steps.length - 1]).toEqual({ on: false, ms: Infinity });
  });

  it('every schedule alternates and ends with a held step; the patterns differ in rhythm', () => {
    for (const p of ['off', 'locking', 'confirmed', 'error'] as const) {
      const steps = ledSchedule(p);
      expect(steps[steps.length - 1]!.ms).toBe(Infinity);
      steps.slice(1).forEach((s, i) => expect(s.on).not.toBe(steps[i]!.on));
    }
    const onTime = (p: 'confirmed' | 'error'): number => ledSchedule(p)[0]!.ms;
    expect(onTime('confirmed')).toBeGreaterThanOrEqual(4 * onTime('error'));
  });

  it('follows custom timing', () => {
    const steps = ledSchedule('error', { ...LED_TIMING, errorOnMs: 50, errorOffMs: 50, errorForMs: 1000 });
    expect(steps.length).toBe(20);
  });
});

describe('Led', () => {
  it('drives the output through the confirmed pattern on schedule and reads off afterwards', async () => {
    const { led, timers, trace } = rig();
    await led.start();
    led.show('confirmed');
    expect(led.pattern()).toBe('confirmed');
    timers.advance(10_000);
    expect(trace()).toEqual([[0, false], [0, true], [600, false], [1000, true], [1600, false], [2000, true], [2600, false]]);
    expect(led.pattern()).toBe('off');
    expect(timers.count()).toBe(0);
  });

  it('a new pattern cancels the one running', async () => {
    const { led, timers, output } = rig();
    await led.start();
    led.show('error');
    timers.advance(250);
    led.show('locking');
    expect(timers.count()).toBe(0);
    expect(output.isOn()).toBe(true);
    timers.advance(60_000);
    expect(output.isOn()).toBe(true);
    expect(led.pattern()).toBe('locking');
  });

  it('the error pattern stops after 30 s', async () => {
    const { led, timers, output } = rig();
    await led.start();
    led.show('error');
    timers.advance(29_000);
    expect(led.pattern()).toBe('error');
    timers.advance(2_000);
    expect(led.pattern()).toBe('off');
    expect(output.isOn()).toBe(false);
    expect(output.history.filter((h) => h.on).length).toBe(150);
  });

  it('during(): solid while the work runs, then confirmed', async () => {
    const { led, timers, output } = rig();
    await led.start();
    let finish!: (v: string) => void;
    const done = led.during(() => new Promise<string>((r) => { finish = r; }));
    expect(led.pattern()).toBe('locking');
    timers.advance(5_000);
    expect(output.isOn()).toBe(true);
    finish('20261128T120000Z-abcd');
    await expect(done).resolves.toBe('20261128T120000Z-abcd');
    expect(led.pattern()).toBe('confirmed');
  });

  it('during(): a failed lock shows the error and the failure still reaches the caller', async () => {
    const { led } = rig();
    await led.start();
    await expect(led.during(async () => { throw new Error('fsync failed'); })).rejects.toThrow('fsync failed');
    expect(led.pattern()).toBe('error');
  });

  it('during(): overlapping locks keep it solid until all are done; any failure shows the error', async () => {
    const { led } = rig();
    await led.start();
    let okA!: () => void;
    let failB!: (e: Error) => void;
    const a = led.during(() => new Promise<void>((r) => { okA = r; }));
    const b = led.during(() => new Promise<void>((_, rej) => { failB = rej; }));
    failB(new Error('disk gone'));
    await expect(b).rejects.toThrow('disk gone');
    expect(led.pattern()).toBe('locking');
    okA();
    await a;
    expect(led.pattern()).toBe('error');
    // the next lock starts clean
    await led.during(async () => {});
    expect(led.pattern()).toBe('confirmed');
  });

  it('nothing is written before start or after stop; stop leaves the LED off', async () => {
    const { led, output, timers } = rig();
    led.show('locking');
    expect(output.history).toEqual([]);
    await led.start();
    expect(output.isOn()).toBe(true);
    led.show('error');
    await led.stop();
    expect(output.isOn()).toBe(false);
    const writes = output.history.length;
    timers.advance(60_000);
    expect(output.history.length).toBe(writes);
    await led.stop(); // safe twice
  });

  it('an output that fails is thrown at start (to the supervisor), never into the lock', async () => {
    const clock = new ManualClock();
    const led = new Led({
      output: { open: async () => { throw new Error('EACCES'); }, set: () => { throw new Error('EIO'); }, close: async () => {} },
      log: silentLogger(),
      timers: new ManualTimers(clock),
    });
    await expect(led.start()).rejects.toThrow('EACCES');
    await expect(led.during(async () => 'ok')).resolves.toBe('ok');
    expect(led.pattern()).toBe('confirmed');
    await led.stop();
  });
});

describe('Led heartbeat (button.heartbeat)', () => {
  function heartbeatRig(healthy: { ok: boolean }) {
    const clock = new ManualClock();
    const timers = new ManualTimers(clock);
    const output = new FakeLedOutput(clock);
    const led = new Led({ output, log: silentLogger(), timers, heartbeat: { healthy: () => healthy.ok } });
    const t0 = clock.monotonic();
    const trace = (): [number, boolean][] => output.history.map((h) => [h.atMs - t0, h.on]);
    return { timers, led, trace };
  }

  it('flashes 80 ms every 5 s while healthy, and not at all while not', async () => {
    const health = { ok: true };
    const r = heartbeatRig(health);
    await r.led.start();
    r.timers.advance(10_100);
    expect(r.trace()).toEqual([[0, false], [5_000, true], [5_080, false], [10_000, true], [10_080, false]]);
    health.ok = false;
    r.timers.advance(10_000);
    expect(r.trace()).toHaveLength(5);
    await r.led.stop();
  });

  it('never cuts into a pattern: a press during a flash shows locking, and the flashes resume once it is off', async () => {
    const r = heartbeatRig({ ok: true });
    await r.led.start();
    r.timers.advance(5_040); // mid-flash
    let finish!: () => void;
    const lock = r.led.during(() => new Promise<void>((resolve) => { finish = resolve; }));
    r.timers.advance(6_000); // a beat falls due while locking: no flash, the LED stays on
    expect(r.led.isOn()).toBe(true);
    expect(r.led.pattern()).toBe('locking');
    finish();
    await lock;
    r.timers.advance(3_000); // the confirmation: 0.6 on, 0.4 off, three times
    expect(r.led.pattern()).toBe('off');
    const before = r.trace().length;
    r.timers.advance(5_000);
    expect(r.trace().slice(before).map(([, on]) => on)).toEqual([true, false]);
    await r.led.stop();
  });
});
