// Which mount a path is on, and a network mount's attribute cache (CONTRACT §8: settle outlasts it).
import { describe, expect, it } from 'vitest';
import { attributeCacheSeconds, mountOf } from '../../src/platform/mounts.js';

const MOUNTS = [
  '/dev/root / ext4 rw,noatime 0 0',
  '/dev/sda1 /srv/camnode ext4 rw,noatime 0 0',
  'pbx:/var/spool/asterisk/monitor /mnt/pbx nfs4 rw,relatime,vers=4.2,acregmax=30,hard 0 0',
  '//pbx/recordings /mnt/3cx\\040recordings cifs rw,vers=3.0,actimeo=5 0 0',
  'pbx:/x /mnt/pbx-noac nfs rw,noac 0 0',
  'pbx:/y /mnt/pbx-default nfs rw 0 0',
].join('\n');

describe('mounts', () => {
  it('finds the longest mount point holding a path, octal escapes read', () => {
    expect(mountOf('/mnt/pbx/2026/12/03', MOUNTS)?.point).toBe('/mnt/pbx');
    expect(mountOf('/mnt/pbx-noac', MOUNTS)?.point).toBe('/mnt/pbx-noac');
    expect(mountOf('/mnt/3cx recordings/a', MOUNTS)?.type).toBe('cifs');
    expect(mountOf('/srv/camnode/calls', MOUNTS)?.source).toBe('/dev/sda1');
    expect(mountOf('/srv/camnodes', MOUNTS)?.point).toBe('/');
    expect(mountOf('/x', '')).toBeNull();
  });

  it('reads the attribute cache of NFS and SMB mounts, none for local ones', () => {
    const cache = (path: string): number | null => attributeCacheSeconds(mountOf(path, MOUNTS)!);
    expect(cache('/mnt/pbx/a')).toBe(30);
    expect(cache('/mnt/3cx recordings')).toBe(5);
    expect(cache('/mnt/pbx-noac')).toBe(0);
    expect(cache('/mnt/pbx-default')).toBe(60);
    expect(cache('/srv/camnode')).toBeNull();
    expect(attributeCacheSeconds({ type: 'nfs', options: ['actimeo=3', 'acregmax=90'] })).toBe(3);
    expect(attributeCacheSeconds({ type: 'cifs', options: [] })).toBe(1);
  });
});
