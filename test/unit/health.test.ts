// Health figures for the state's `health` member: Raspberry Pi throttling and CPU temperature over
// fake sysfs trees laid out as the kernels present them, and real figures on this machine.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Health, decodeThrottled, memUsedPercent, parseThrottled, type HealthDeps } from '../../src/fleet/health.js';

const PI4_THROTTLED = 'devices/platform/soc/soc:firmware/get_throttled';
const PI5_THROTTLED = 'devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled';

let root: string;
beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-health-')); });
afterEach(async () => { await rm(root, { recursive: true, force: true }); });

/** Writes files under the fake sysfs root; sysfs values end with a newline. */
async function tree(files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), `${content}\n`);
  }
}

/** Over the fake tree; the start-time machine facts (real processes) are not what these tests are about. */
async function started(extra: HealthDeps = {}): Promise<Health> {
  const h = new Health({ sysfsRoot: root, machineFacts: async () => null, ...extra });
  await h.start();
  return h;
}

const zone = (n: number, type: string, milli: string) => ({
  [`class/thermal/thermal_zone${n}/type`]: type,
  [`class/thermal/thermal_zone${n}/temp`]: milli,
});

describe('throttle word (pure)', () => {
  it('decodes the now and has-occurred bits', () => {
    expect(decodeThrottled(0x50005)).toEqual({ now: ['under-voltage', 'throttled'], occurred: ['under-voltage', 'throttled'] });
    expect(decodeThrottled(0x50000)).toEqual({ now: [], occurred: ['under-voltage', 'throttled'] });
    expect(decodeThrottled(0xa000a)).toEqual({ now: ['arm-frequency-capped', 'soft-temperature-limit'], occurred: ['arm-frequency-capped', 'soft-temperature-limit'] });
    expect(decodeThrottled(0)).toEqual({ now: [], occurred: [] });
  });

  it('parses the kernel\'s bare hex and vcgencmd\'s form, and nothing else', () => {
    expect(parseThrottled('50005\n')).toBe(0x50005);
    expect(parseThrottled('0\n')).toBe(0);
    expect(parseThrottled('throttled=0x50000')).toBe(0x50000);
    expect(parseThrottled('')).toBeNull();
    expect(parseThrottled('oops')).toBeNull();
  });
});

describe('Raspberry Pi throttling over a fake sysfs', () => {
  it('0x50005 (under-voltage and throttled now, both also occurred) is throttled, with the detail for logs', async () => {
    await tree({ [PI4_THROTTLED]: '50005' });
    const h = await started();
    expect((await h.read()).throttled).toBe(true);
    expect(h.lastThrottle).toEqual({ bits: 0x50005, now: ['under-voltage', 'throttled'], occurred: ['under-voltage', 'throttled'] });
  });

  it('0x50000 (only has-occurred bits) is not throttled now', async () => {
    await tree({ [PI4_THROTTLED]: '50000' });
    const h = await started();
    expect((await h.read()).throttled).toBe(false);
    expect(h.lastThrottle).toEqual({ bits: 0x50000, now: [], occurred: ['under-voltage', 'throttled'] });
  });

  it('no firmware file (not a Pi) is unknown: null', async () => {
    await tree({ 'devices/platform/serial8250/driver_override': '(null)' });
    const h = await started();
    expect((await h.read()).throttled).toBeNull();
    expect(h.lastThrottle).toBeNull();
  });

  it('an unreadable word is unknown, not "fine"', async () => {
    await tree({ [PI4_THROTTLED]: 'garbage' });
    expect((await (await started()).read()).throttled).toBeNull();
  });

  it('finds the Pi 5 firmware node (soc@107c000000)', async () => {
    await tree({ [PI5_THROTTLED]: '4' });
    expect((await (await started()).read()).throttled).toBe(true);
  });

  it('reads the rpi_volt hwmon under-voltage alarm where get_throttled is gone, found by name', async () => {
    await tree({
      'class/hwmon/hwmon0/name': 'cpu_thermal',
      'class/hwmon/hwmon0/in0_lcrit_alarm': '1', // another chip's alarm: not ours
      'class/hwmon/hwmon1/name': 'rpi_volt',
      'class/hwmon/hwmon1/in0_lcrit_alarm': '0',
    });
    const h = await started();
    expect((await h.read()).throttled).toBe(false);
    await writeFile(join(root, 'class/hwmon/hwmon1/in0_lcrit_alarm'), '1\n');
    expect((await h.read()).throttled).toBe(true);
    expect(h.lastThrottle).toEqual({ bits: null, now: ['under-voltage'], occurred: [] });
  });

  it('the hwmon alarm adds under-voltage to a word that does not show it', async () => {
    await tree({ [PI4_THROTTLED]: '0', 'class/hwmon/hwmon2/name': 'rpi_volt', 'class/hwmon/hwmon2/in0_lcrit_alarm': '1' });
    const h = await started();
    expect((await h.read()).throttled).toBe(true);
    expect(h.lastThrottle?.now).toEqual(['under-voltage']);
  });

  it('logs when throttling starts and ends, once each', async () => {
    const lines: { level: number; msg: string; throttle?: string[]; bits?: string }[] = [];
    const log = pino({ level: 'info', base: undefined }, { write: (s: string) => { lines.push(JSON.parse(s)); } });
    await tree({ [PI4_THROTTLED]: '50005' });
    const h = await started({ log });
    lines.length = 0; // the start-up line
    await h.read();
    await h.read();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, throttle: ['under-voltage', 'throttled'], bits: '0x50005' });
    await writeFile(join(root, PI4_THROTTLED), '50000\n');
    await h.read();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 30, msg: expect.stringMatching(/no longer/) });
  });
});

describe('CPU temperature over a fake sysfs', () => {
  it('cpu-thermal at 52123 m°C reads 52.1', async () => {
    await tree(zone(0, 'cpu-thermal', '52123'));
    expect((await (await started()).read()).tempC).toBe(52.1);
  });

  it('picks the CPU zone among several, whatever its number', async () => {
    await tree({ ...zone(0, 'acpitz', '27800'), ...zone(1, 'iwlwifi_1', '61000'), ...zone(2, 'cpu-thermal', '48712'), ...zone(3, 'pch_cannonlake', '70000') });
    expect((await (await started()).read()).tempC).toBe(48.7);
  });

  it('follows the sensor as it changes between reads', async () => {
    await tree(zone(0, 'cpu-thermal', '40000'));
    const h = await started();
    expect((await h.read()).tempC).toBe(40);
    await writeFile(join(root, 'class/thermal/thermal_zone0/temp'), '71349\n');
    expect((await h.read()).tempC).toBe(71.3);
  });

  it('no thermal zones: null', async () => {
    await mkdir(join(root, 'class/thermal'), { recursive: true });
    expect((await (await started()).read()).tempC).toBeNull();
  });

  it('only non-CPU zones, or a zone that cannot be read: null', async () => {
    await tree(zone(0, 'acpitz', '27800'));
    expect((await (await started()).read()).tempC).toBeNull();
    await rm(root, { recursive: true });
    await tree({ 'class/thermal/thermal_zone0/type': 'cpu-thermal' }); // temp missing (sensor off)
    expect((await (await started()).read()).tempC).toBeNull();
  });
});

describe('memory', () => {
  it('counts available memory (reclaimable cache) as free, not just MemFree', async () => {
    // 1000 total, 100 strictly free, 600 available: 40 % used, not 90 %.
    const h = await started({ memory: async () => ({ total: 1000, free: 100, available: 600 }) });
    expect((await h.read()).memUsedPct).toBe(40);
    expect(memUsedPercent(3, 1)).toBe(66.7);
    expect(memUsedPercent(0, 0)).toBeNull();
    expect(memUsedPercent(100, 200)).toBeNull();
  });

  it('a failing reader gives null, not a throw', async () => {
    const h = await started({ memory: async () => { throw new Error('no /proc'); } });
    expect((await h.read()).memUsedPct).toBeNull();
  });
});

describe('on this machine', () => {
  it('gives real figures in exactly the CONTRACT shape, rounded', async () => {
    let synced: boolean | null = true;
    const h = new Health({ clockSynced: () => synced });
    await h.start();
    const f = await h.read();
    expect(Object.keys(f).sort()).toEqual(['clockSynced', 'load', 'memUsedPct', 'tempC', 'throttled', 'uptimeS']);
    expect(typeof f.load).toBe('number');
    expect(f.load).toBeGreaterThanOrEqual(0);
    expect(f.load).toBe(Number(f.load!.toFixed(2)));
    expect(f.memUsedPct).toBeGreaterThan(0);
    expect(f.memUsedPct).toBeLessThanOrEqual(100);
    expect(f.memUsedPct).toBe(Number(f.memUsedPct!.toFixed(1)));
    expect(f.uptimeS).toBeGreaterThan(0);
    expect(Number.isInteger(f.uptimeS)).toBe(true);
    expect(f.tempC === null || (typeof f.tempC === 'number' && f.tempC === Number(f.tempC.toFixed(1)))).toBe(true);
    expect(f.clockSynced).toBe(true);
    synced = null;
    expect((await h.read()).clockSynced).toBeNull();
    // The expensive facts, gathered once at start.
    expect(h.machine?.kernel).toBe(os.release());
    expect(h.machine?.cores).toBeGreaterThan(0);
    // JSON round trip: no NaN or undefined sneaks into the state.
    expect(JSON.parse(JSON.stringify(f))).toEqual(f);
    await h.stop();
    await h.stop();
  });

  it('without a clock source the clock is unknown', async () => {
    const h = await started();
    expect((await h.read()).clockSynced).toBeNull();
  });
});
