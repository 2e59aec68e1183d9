// `check`'s rows about the box (CONTRACT §9): the media disk not on the SD card or the root
// filesystem, and a Raspberry Pi's firmware report of under-voltage and throttling — through an
// injected mount table and a fake sysfs tree laid out as a Pi 4's and a Pi 5's.
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { powerRow, sdCardRow } from '../../src/check.js';

let root: string;
beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-check-machine-')); });
afterEach(async () => { await rm(root, { recursive: true, force: true }); });

const mounts = (text: string): string => {
  const p = join(root, 'mounts');
  writeFileSync(p, text);
  return p;
};
const PI = '/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n/dev/mmcblk0p1 /boot/firmware vfat rw 0 0\n';

describe('check: the media disk', () => {
  it('passes on a USB SSD, warns on the SD card and on the root filesystem', async () => {
    expect(await sdCardRow('/srv/camnode', mounts(`${PI}/dev/sda1 /srv/camnode ext4 rw,noatime 0 0\n`)))
      .toEqual({ check: 'media disk', verdict: 'pass', detail: '/srv/camnode on /dev/sda1 (ext4, noatime)' });
    const onRoot = await sdCardRow('/srv/camnode', mounts(PI));
    expect(onRoot.verdict).toBe('warn');
    expect(onRoot.detail).toContain('the SD card (/dev/mmcblk0p2)');
    expect(onRoot.fix).toContain('USB SSD');
    const rootOther = await sdCardRow('/srv/camnode', mounts('/dev/vda1 / ext4 rw 0 0\n'));
    expect(rootOther.detail).toContain('the root filesystem (/dev/vda1)');
    const sdMounted = await sdCardRow('/media/card', mounts(`${PI}/dev/mmcblk1p1 /media/card ext4 rw 0 0\n`));
    expect(sdMounted.verdict).toBe('warn');
  });
});

describe('check: power', () => {
  const firmware = (soc: string, word: string): void => {
    const dir = join(root, 'sys', 'devices', 'platform', soc, `${soc}:firmware`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'get_throttled'), `${word}\n`);
  };

  it('passes on a Pi with a clean report and on a machine without the firmware file', async () => {
    firmware('soc', '0');
    expect(await powerRow(join(root, 'sys'))).toEqual({ check: 'power', verdict: 'pass', detail: 'no under-voltage or throttling since boot' });
    expect((await powerRow(join(root, 'nothing'))).detail).toContain('no Raspberry Pi firmware report');
  });

  it('warns on under-voltage now and since boot, naming the supply', async () => {
    firmware('soc@107c000000', '50005');
    const row = await powerRow(join(root, 'sys'));
    expect(row.verdict).toBe('warn');
    expect(row.detail).toBe('now: under-voltage, throttled; since boot: under-voltage, throttled (get_throttled 0x50005)');
    expect(row.fix).toContain('official power supply');
  });

  it('warns on throttling from heat alone, naming cooling', async () => {
    firmware('soc', '80008');
    const row = await powerRow(join(root, 'sys'));
    expect(row.detail).toBe('now: soft-temperature-limit; since boot: soft-temperature-limit (get_throttled 0x80008)');
    expect(row.fix).toContain('cool the Pi');
  });
});
