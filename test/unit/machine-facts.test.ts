// What the health report says of the machine, from files only: parsers over the texts real
// machines hold, the readers over fake roots laid out as a Pi and a PC present them, and this machine.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseCpuModel, parseMeminfo, parseOsRelease, readMachineFacts, readMemory } from '../../src/platform/device.js';

let root: string;
beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-machine-')); });
afterEach(async () => { await rm(root, { recursive: true, force: true }); });

async function tree(files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

const PI_CPUINFO = `processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000abcdef01\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n`;
const PI_OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n`;
const MEMINFO = `MemTotal:        3884084 kB\nMemFree:          200000 kB\nMemAvailable:    2900000 kB\nBuffers:           50000 kB\n`;

describe('parsers (pure)', () => {
  it('names the OS by PRETTY_NAME, else NAME and VERSION_ID, with either quoting', () => {
    expect(parseOsRelease(PI_OS_RELEASE)).toBe('Debian GNU/Linux 12 (bookworm)');
    expect(parseOsRelease(`NAME='Alpine Linux'\nVERSION_ID=3.20.1\n`)).toBe('Alpine Linux 3.20.1');
    expect(parseOsRelease(`PRETTY_NAME="A \\"quoted\\" OS"\n`)).toBe('A "quoted" OS');
    expect(parseOsRelease('garbage\n\n')).toBeNull();
  });

  it('names the CPU by model name on x86, by its core and SoC on a Pi', () => {
    expect(parseCpuModel('processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n')).toBe('Intel(R) Xeon(R) Processor');
    expect(parseCpuModel(PI_CPUINFO)).toBe('ARM Cortex-A72 BCM2835');
    expect(parseCpuModel(PI_CPUINFO.replace('0xd08', '0xd0b'))).toBe('ARM Cortex-A76 BCM2835');
    expect(parseCpuModel(PI_CPUINFO.replace('0xd08', '0xfff'))).toBe('BCM2835');
    expect(parseCpuModel('processor : 0\n')).toBeNull();
  });

  it('names a 32-bit Pi OS kernel\'s CPU by its core too, not by the bare "ARMv7 Processor"', () => {
    const armv7 = PI_CPUINFO.replace('processor\t: 0\n', 'processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\n');
    expect(parseCpuModel(armv7)).toBe('ARM Cortex-A72 BCM2835');
    expect(parseCpuModel(armv7.replace('0xd08', '0xfff'))).toBe('ARMv7 Processor rev 3 (v7l)');
  });

  it('reads an empty value as missing, never the line after it', () => {
    expect(parseCpuModel('model name\t:\nflags\t: fpu vme\n')).toBeNull();
    expect(parseCpuModel('model name\t:\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n')).toBe('Raspberry Pi 4 Model B Rev 1.4');
  });

  it('reads total and available memory in bytes, and refuses a meminfo without them', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({ total: 3884084 * 1024, available: 2900000 * 1024 });
    expect(parseMeminfo('MemTotal: 100 kB\nMemFree: 50 kB\n')).toBeNull();
  });
});

describe('readers over a fake root', () => {
  it('a Raspberry Pi: the device tree names the board', async () => {
    await tree({ 'proc/device-tree/model': 'Raspberry Pi 4 Model B Rev 1.4\0', 'proc/cpuinfo': PI_CPUINFO, 'etc/os-release': PI_OS_RELEASE });
    const facts = await readMachineFacts(root);
    expect(facts).toMatchObject({ model: 'Raspberry Pi 4 Model B Rev 1.4', os: 'Debian GNU/Linux 12 (bookworm)', cpu: 'ARM Cortex-A72 BCM2835' });
    expect(facts.kernel).toBe(os.release());
    expect(facts.cores).toBe(os.cpus().length);
  });

  it('a PC: the firmware\'s DMI strings, its placeholders left out', async () => {
    await tree({ 'sys/class/dmi/id/sys_vendor': 'Dell Inc.\n', 'sys/class/dmi/id/product_name': 'OptiPlex 3080\n' });
    expect((await readMachineFacts(root)).model).toBe('Dell Inc. OptiPlex 3080');
    await tree({ 'sys/class/dmi/id/product_name': 'Default string\n' });
    expect((await readMachineFacts(root)).model).toBe('Dell Inc.');
  });

  it('an empty root: nulls where nothing tells, the CPU from the kernel\'s list', async () => {
    const facts = await readMachineFacts(root);
    expect(facts).toMatchObject({ model: null, os: null });
    expect(facts.cpu).toBe(os.cpus()[0]?.model.trim() || null);
    await expect(readMemory(root)).rejects.toThrow(/MemAvailable/);
  });

  it('memory from meminfo', async () => {
    await tree({ 'proc/meminfo': MEMINFO });
    expect(await readMemory(root)).toEqual({ total: 3884084 * 1024, available: 2900000 * 1024 });
  });
});

describe('on this machine', () => {
  it('reads the real files', async () => {
    const facts = await readMachineFacts();
    const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => null);
    if (osRelease !== null) expect(facts.os).toBe(parseOsRelease(osRelease));
    expect(facts.arch).toBe(os.arch());
    expect(facts.cpu).toBeTruthy();
    const mem = await readMemory();
    // Against the file itself, not os.totalmem() (sysinfo), which lxcfs-style containers make differ.
    expect(mem.total).toBe(parseMeminfo(await readFile('/proc/meminfo', 'utf8'))!.total);
    expect(mem.available).toBeGreaterThan(0);
    expect(mem.available).toBeLessThanOrEqual(mem.total);
  });
});
