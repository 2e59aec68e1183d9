// The names a seal writes, as sync accepts them from a manifest (CONTRACT §4, §8): a camera's
// clip, or a call under calls/; nothing that leaves the incident folder.
import { describe, expect, it } from 'vitest';
import { isSealedFileName } from '../../src/incidents/records.js';
import { parseSealedManifest } from '../../src/sync/syncer.js';

describe('sealed file names', () => {
  it('takes clips and calls, refuses paths out of the folder', () => {
    for (const ok of ['entrance.mp4', 'entrance.mp4.age', 'calls/20261203T141502000Z-out-2001.wav', 'calls/20261203T141502000Z-In_Mueller.wav.age']) expect(isSealedFileName(ok), ok).toBe(true);
    for (const bad of ['', '.mp4', 'Entrance.mp4', '../x.mp4', 'calls/', 'calls/../x', 'calls/.hidden', 'calls/a/b.wav', 'notes/1.json', '/etc/passwd']) expect(isSealedFileName(bad), bad).toBe(false);
  });

  it('sync refuses a manifest listing a name out of the folder', () => {
    const manifest = (name: string): Buffer => Buffer.from(JSON.stringify({ files: [{ name, bytes: 1, sha256: 'a'.repeat(64) }] }));
    expect(parseSealedManifest(manifest('calls/x.wav')).files).toHaveLength(1);
    expect(() => parseSealedManifest(manifest('calls/../../x'))).toThrow('does not list its files as sealed manifests do');
  });
});
