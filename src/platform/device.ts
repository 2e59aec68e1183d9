// Facts about the machine read from injectable roots (a Pi's firmware files do not exist here).
import { readFile, access } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** "Raspberry Pi 4 Model B Rev 1.4", or null when not a device-tree machine. */
export async function deviceModel(root = '/'): Promise<string | null> {
  try {
    return (await readFile(join(root, 'proc/device-tree/model'), 'utf8')).replace(/\0+$/, '').trim() || null;
  } catch {
    return null;
  }
}

/** What a health report says of the machine, read once at start. */
export interface MachineFacts {
  model: string | null;
  os: string | null;
  kernel: string | null;
  arch: string | null;
  cpu: string | null;
  cores: number | null;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

/** "Debian GNU/Linux 12 (bookworm)" from /etc/os-release: PRETTY_NAME, else NAME and VERSION_ID. Pure. */
export function parseOsRelease(text: string): string | null {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S*))\s*$/.exec(line.trim());
    if (m) fields.set(m[1]!, (m[2]?.replace(/\\(.)/g, '$1') ?? m[3] ?? m[4] ?? '').trim());
  }
  return fields.get('PRETTY_NAME') || [fields.get('NAME'), fields.get('VERSION_ID')].filter(Boolean).join(' ') || null;
}

/** ARM's "CPU part" numbers of the cores Raspberry Pis have used. */
const ARM_PARTS: Record<string, string> = {
  '0xb76': 'ARM1176', '0xc07': 'Cortex-A7', '0xd03': 'Cortex-A53', '0xd08': 'Cortex-A72', '0xd0b': 'Cortex-A76',
};

/**
 * The CPU's name from /proc/cpuinfo. On ARM, a known core ("ARM Cortex-A72", from its CPU part)
 * with the SoC's "Hardware" line, which on every Pi says only BCM2835 — ahead of "model name",
 * which 32-bit ARM kernels fill with the bare "ARMv7 Processor rev 4 (v7l)". Else "model name"
 * (x86), else whatever ARM gave. Pure.
 */
export function parseCpuModel(text: string): string | null {
  // [ \t]: an empty value must not reach across the line's end into the next one.
  const value = (key: string) => new RegExp(`^${key}[ \\t]*:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim() || null;
  const part = value('CPU part')?.toLowerCase();
  const core = part && ARM_PARTS[part] ? `ARM ${ARM_PARTS[part]}` : null;
  const hardware = value('Hardware');
  if (core) return [core, hardware].filter(Boolean).join(' ');
  return value('model name') || hardware || value('Model');
}

/** Total and available memory in bytes from /proc/meminfo (kB figures); null when either is missing. Pure. */
export function parseMeminfo(text: string): { total: number; available: number } | null {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : null;
  };
  const total = kb('MemTotal');
  const available = kb('MemAvailable');
  return total === null || available === null ? null : { total, available };
}

/** Memory from `<root>/proc/meminfo`: one small read, no process (the health figure, every state interval). */
export async function readMemory(root = '/'): Promise<{ total: number; available: number }> {
  const parsed = parseMeminfo((await readText(join(root, 'proc/meminfo'))) ?? '');
  if (!parsed) throw new Error(`no MemTotal/MemAvailable in ${join(root, 'proc/meminfo')}`);
  return parsed;
}

/**
 * The machine as the health report names it, from files only (a Pi's device tree, else the
 * firmware's DMI strings; /etc/os-release; /proc/cpuinfo) — no child processes.
 */
export async function readMachineFacts(root = '/'): Promise<MachineFacts> {
  const dmi = async (name: string) => {
    const v = (await readText(join(root, 'sys/class/dmi/id', name)))?.trim();
    return v && !/^(default string|to be filled by o\.e\.m\.|system product name)$/i.test(v) ? v : null;
  };
  const [tree, vendor, product, osRelease, cpuinfo] = await Promise.all([
    deviceModel(root), dmi('sys_vendor'), dmi('product_name'),
    readText(join(root, 'etc/os-release')), readText(join(root, 'proc/cpuinfo')),
  ]);
  const cpus = os.cpus();
  return {
    model: tree ?? ([vendor, product].filter(Boolean).join(' ') || null),
    os: osRelease === null ? null : parseOsRelease(osRelease),
    kernel: os.release() || null,
    arch: os.arch() || null,
    cpu: (cpuinfo === null ? null : parseCpuModel(cpuinfo)) ?? (cpus[0]?.model?.trim() || null),
    cores: cpus.length || null,
  };
}

/**
 * Whether the OS reports the clock synchronised: systemd-timesyncd's flag file, else
 * `timedatectl`; null when nothing can tell (no systemd, as in containers).
 */
export async function clockSynced(root = '/', timedatectl = 'timedatectl'): Promise<boolean | null> {
  if (await timesyncdSynced(root)) return true;
  return askTimedatectl(timedatectl).catch(() => null);
}

/** systemd-timesyncd's flag file, there once it has synchronised the clock since boot. */
export async function timesyncdSynced(root = '/'): Promise<boolean> {
  try {
    await access(join(root, 'run/systemd/timesync/synchronized'));
    return true;
  } catch {
    return false;
  }
}

/**
 * `timedatectl show --property=NTPSynchronized` (any time daemon: chrony, ntpd, timesyncd);
 * null when it cannot tell. Rejects when the program cannot run (ENOENT where it is not installed).
 */
export async function askTimedatectl(timedatectl = 'timedatectl'): Promise<boolean | null> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(timedatectl, ['show', '--property=NTPSynchronized', '--value'], { timeout: 5_000 }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    return null; // it ran and failed: no systemd-timedated (containers), no D-Bus
  }
  const v = stdout.trim();
  return v === 'yes' ? true : v === 'no' ? false : null;
}
