// Filesystem figures for the ring's quota, from statfs(2).
import { statfs } from 'node:fs/promises';

export interface DiskUsage {
  /** Size of the filesystem in bytes. */
  sizeBytes: number;
  /** Bytes in use (by anyone). */
  usedBytes: number;
  /** Bytes an unprivileged writer may still use. */
  freeBytes: number;
  /** Filesystem type name (ext4, tmpfs, …) or the hex magic when unknown. */
  type: string;
}

const FS_TYPES: Record<number, string> = {
  0xef53: 'ext4', 0x01021994: 'tmpfs', 0x9123683e: 'btrfs', 0x58465342: 'xfs', 0xf2f52010: 'f2fs',
  0x4d44: 'vfat', 0x2011bab0: 'exfat', 0x5346544e: 'ntfs', 0x65735546: 'fuseblk', 0x6969: 'nfs',
  0xff534d42: 'cifs', 0xfe534d42: 'smb2', 0x794c7630: 'overlayfs', 0x858458f6: 'ramfs',
};

/** Filesystems that lose more than the last write on power loss, or cannot be trusted with media. */
export const FRAGILE_FILESYSTEMS = new Set(['vfat', 'exfat', 'ntfs', 'fuseblk', 'ramfs']);

export async function diskUsage(path: string): Promise<DiskUsage> {
  const s = await statfs(path);
  const bsize = Number(s.bsize);
  const blocks = Number(s.blocks);
  return {
    sizeBytes: blocks * bsize,
    usedBytes: (blocks - Number(s.bfree)) * bsize,
    freeBytes: Number(s.bavail) * bsize,
    type: FS_TYPES[Number(s.type)] ?? `0x${Number(s.type).toString(16)}`,
  };
}

export type DiskUsageReader = (path: string) => Promise<DiskUsage>;
