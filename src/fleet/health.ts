// The `health` member of the node's state (CONTRACT §3), read every state interval. Chosen for
// cost on a Pi that is busy recording: only syscalls and small sysfs/proc reads, never a child
// process. (systeminformation, used before, spawned ~19 processes for the machine facts at
// start and cost ~5 MB of the agent's peak memory just loaded; its cpuTemperature spawns shells.)
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import os from 'node:os';
import { readMachineFacts, readMemory, type MachineFacts } from '../platform/device.js';
import type { Component } from '../lifecycle/component.js';
import type { Logger } from '../platform/logger.js';

/** Exactly the `health` member of the state; null where the machine cannot tell. */
export interface HealthFigures {
  /** 1-minute load average. */
  load: number | null;
  /** Memory in use, counting reclaimable cache as free (MemAvailable, not MemFree). */
  memUsedPct: number | null;
  /** CPU temperature in °C. */
  tempC: number | null;
  /** A Raspberry Pi's firmware reports under-voltage, frequency capping or throttling right now. */
  throttled: boolean | null;
  uptimeS: number | null;
  clockSynced: boolean | null;
}

export type ThrottleFlag = 'under-voltage' | 'arm-frequency-capped' | 'throttled' | 'soft-temperature-limit';

/** What the firmware said, for logs. */
export interface ThrottleDetail {
  /** get_throttled's bitmask, null where only the hwmon alarm exists. */
  bits: number | null;
  now: ThrottleFlag[];
  /** Since boot — or, with the hwmon driver loaded, since its last poll (it clears the sticky bits every 2 s). */
  occurred: ThrottleFlag[];
}

export type { MachineFacts };

export interface HealthDeps {
  /** Root of sysfs; a fake tree in tests. */
  sysfsRoot?: string;
  /** Whether the clock is NTP-synchronised (ClockStatus.synced); null when unknown. */
  clockSynced?: () => boolean | null;
  /** Total and available memory in bytes; /proc/meminfo by default. */
  memory?: () => Promise<{ total: number; available: number }>;
  /** Machine facts gathered once at start; from /proc, /sys and /etc by default. */
  machineFacts?: () => Promise<MachineFacts | null>;
  log?: Logger;
}

// Bits of the firmware's get_throttled word (Raspberry Pi documentation, "get_throttled").
const NOW_BITS: [number, ThrottleFlag][] = [[0, 'under-voltage'], [1, 'arm-frequency-capped'], [2, 'throttled'], [3, 'soft-temperature-limit']];
const OCCURRED_SHIFT = 16;

/** The flags set in a get_throttled word. Pure. */
export function decodeThrottled(bits: number): { now: ThrottleFlag[]; occurred: ThrottleFlag[] } {
  return {
    now: NOW_BITS.filter(([bit]) => (bits >>> bit) & 1).map(([, flag]) => flag),
    occurred: NOW_BITS.filter(([bit]) => (bits >>> (bit + OCCURRED_SHIFT)) & 1).map(([, flag]) => flag),
  };
}

/** The kernel prints the word as bare hex ("50005"); vcgencmd's "throttled=0x50005" is accepted too. */
export function parseThrottled(text: string): number | null {
  const m = /^(?:throttled=)?(?:0x)?([0-9a-f]{1,8})$/i.exec(text.trim());
  return m ? Number.parseInt(m[1]!, 16) : null;
}

/** Where this machine's sensors are, found once. */
export interface SensorPaths {
  thermalTemp: string | null;
  getThrottled: string | null;
  underVoltageAlarm: string | null;
}

/** Preference among thermal zone types: the SoC/CPU sensor, never a board, wifi or ACPI zone. */
function cpuZoneRank(type: string): number | null {
  if (/^cpu\d*[-_]thermal$/.test(type)) return 0; // Raspberry Pi ("cpu-thermal"), many ARM boards
  if (type === 'x86_pkg_temp') return 1;
  if (/^soc[-_]thermal$/.test(type)) return 2;
  return null;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export async function findSensors(sysfsRoot: string): Promise<SensorPaths> {
  // Thermal: the zone whose `type` names the CPU; zone numbering differs between boards and kernels.
  let thermalTemp: string | null = null;
  let best = Infinity;
  const zonesDir = join(sysfsRoot, 'class/thermal');
  const zones = (await listDir(zonesDir)).filter((z) => /^thermal_zone\d+$/.test(z))
    .sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  for (const zone of zones) {
    const rank = cpuZoneRank((await readText(join(zonesDir, zone, 'type')))?.trim() ?? '');
    if (rank !== null && rank < best) {
      best = rank;
      thermalTemp = join(zonesDir, zone, 'temp');
    }
  }

  // The firmware's get_throttled file hangs off the firmware node: soc/soc:firmware on Pi 1–4,
  // soc@107c000000/soc@107c000000:firmware on a Pi 5 (where some kernels lack the file).
  let getThrottled: string | null = null;
  const platform = join(sysfsRoot, 'devices/platform');
  for (const soc of (await listDir(platform)).filter((d) => /^soc(@[0-9a-f]+)?$/.test(d))) {
    const candidate = join(platform, soc, `${soc}:firmware`, 'get_throttled');
    if (await exists(candidate)) {
      getThrottled = candidate;
      break;
    }
  }

  // Newer kernels deprecate get_throttled for the raspberrypi-hwmon device ("rpi_volt"), whose
  // in0_lcrit_alarm is the under-voltage bit; its hwmonN number varies, so find it by name.
  let underVoltageAlarm: string | null = null;
  const hwmonDir = join(sysfsRoot, 'class/hwmon');
  for (const hwmon of await listDir(hwmonDir)) {
    if ((await readText(join(hwmonDir, hwmon, 'name')))?.trim() === 'rpi_volt') {
      const candidate = join(hwmonDir, hwmon, 'in0_lcrit_alarm');
      if (await exists(candidate)) underVoltageAlarm = candidate;
      break;
    }
  }
  return { thermalTemp, getThrottled, underVoltageAlarm };
}

const round = (n: number, digits: number) => Number(n.toFixed(digits));

/** Used share of memory in %, from total and *available* bytes (cache the kernel can drop is not "used"). Pure. */
export function memUsedPercent(total: number, available: number): number | null {
  if (!(total > 0) || !(available >= 0) || available > total) return null;
  return round(((total - available) / total) * 100, 1);
}

export class Health implements Component {
  readonly name = 'health';
  /** Gathered once at start. */
  machine: MachineFacts | null = null;
  /** The last throttle reading, for logs; null where the machine has no such firmware. */
  lastThrottle: ThrottleDetail | null = null;
  private sensors: SensorPaths | null = null;

  constructor(private readonly deps: HealthDeps = {}) {}

  async start(): Promise<void> {
    this.sensors = await findSensors(this.deps.sysfsRoot ?? '/sys');
    this.machine = await (this.deps.machineFacts ?? (() => readMachineFacts()))().catch(() => null);
    this.deps.log?.info({ machine: this.machine, sensors: this.sensors }, 'health sensors found');
  }

  async stop(): Promise<void> {
    // Nothing held open: every read opens and closes its files.
  }

  async read(): Promise<HealthFigures> {
    this.sensors ??= await findSensors(this.deps.sysfsRoot ?? '/sys');
    const [memUsedPct, tempC, throttle] = await Promise.all([this.readMemory(), this.readTemperature(), this.readThrottle()]);
    this.noteThrottle(throttle);
    const load = os.loadavg()[0];
    return {
      load: load !== undefined && Number.isFinite(load) ? round(load, 2) : null,
      memUsedPct,
      tempC,
      throttled: throttle ? throttle.now.length > 0 : null,
      uptimeS: Math.floor(os.uptime()),
      clockSynced: this.deps.clockSynced?.() ?? null,
    };
  }

  private async readMemory(): Promise<number | null> {
    try {
      const m = await (this.deps.memory ?? (() => readMemory()))();
      return memUsedPercent(m.total, m.available);
    } catch {
      return null;
    }
  }

  private async readTemperature(): Promise<number | null> {
    if (!this.sensors?.thermalTemp) return null;
    // Millidegrees Celsius; some zones answer EINVAL/ENODATA while their sensor is off.
    const milli = Number.parseInt((await readText(this.sensors.thermalTemp)) ?? '', 10);
    const c = milli / 1000;
    return Number.isFinite(c) && c > -60 && c < 150 ? round(c, 1) : null;
  }

  private async readThrottle(): Promise<ThrottleDetail | null> {
    const { getThrottled, underVoltageAlarm } = this.sensors ?? {};
    const bits = getThrottled ? parseThrottled((await readText(getThrottled)) ?? '') : null;
    const alarmText = underVoltageAlarm ? (await readText(underVoltageAlarm))?.trim() : undefined;
    const alarm = alarmText === '1' ? true : alarmText === '0' ? false : null;
    if (bits === null && alarm === null) return null;
    const { now, occurred } = bits === null ? { now: [], occurred: [] } : decodeThrottled(bits);
    if (alarm && !now.includes('under-voltage')) now.unshift('under-voltage');
    return { bits, now, occurred };
  }

  private noteThrottle(t: ThrottleDetail | null): void {
    const before = this.lastThrottle?.now.join(',') ?? '';
    this.lastThrottle = t;
    const after = t?.now.join(',') ?? '';
    if (before === after || !this.deps.log) return;
    const bits = t?.bits === null || t?.bits === undefined ? null : `0x${t.bits.toString(16)}`;
    // Under-voltage is how SD cards and USB disks get corrupted on a Pi: worth a warning.
    if (after) this.deps.log.warn({ throttle: t?.now, occurred: t?.occurred, bits }, 'firmware reports throttling now (check the power supply and cooling)');
    else this.deps.log.info({ occurred: t?.occurred, bits }, 'firmware no longer reports throttling');
  }
}
