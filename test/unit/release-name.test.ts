// Release names and keys (CONTRACT §9 Update). Pure.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseReleaseName, releaseKeyBase64, releaseKeys, releaseSignatureValid, signRelease } from '../../src/deploy/release-keys.js';

describe('release names', () => {
  it('takes camnode-<version>-<arch>.tgz with a Debian arch, and nothing else', () => {
    expect(parseReleaseName('camnode-1.2.0-arm64.tgz')).toEqual({ version: '1.2.0', arch: 'arm64', file: 'camnode-1.2.0-arm64.tgz' });
    expect(parseReleaseName('camnode-1.2.0-rc.1-armhf.tgz')).toMatchObject({ version: '1.2.0-rc.1', arch: 'armhf' });
    for (const bad of ['camnode-1.2-arm64.tgz', 'camnode-1.2.0-x64.tgz', 'camnode-1.2.0-arm64.tar.gz', 'camnode-../1.0.0-amd64.tgz', 'camnode-1.2.0-amd64.tgz.sig']) {
      expect(parseReleaseName(bad), bad).toBeNull();
    }
    expect(releaseKeys('incidents', 'camnode-1.2.0-arm64.tgz')).toEqual({ bundle: 'incidents/releases/camnode-1.2.0-arm64.tgz', signature: 'incidents/releases/camnode-1.2.0-arm64.tgz.sig' });
  });

  it('a signature verifies under its key only, over exactly its bytes, and only at 64 bytes', () => {
    const a = generateKeyPairSync('ed25519').privateKey;
    const b = generateKeyPairSync('ed25519').privateKey;
    const bytes = Buffer.from('a bundle');
    const sig = signRelease(bytes, a);
    expect(sig.length).toBe(64);
    expect(releaseSignatureValid(bytes, sig, releaseKeyBase64(a))).toBe(true);
    expect(releaseSignatureValid(bytes, sig, releaseKeyBase64(b))).toBe(false);
    expect(releaseSignatureValid(Buffer.from('a bundle!'), sig, releaseKeyBase64(a))).toBe(false);
    expect(releaseSignatureValid(bytes, sig.subarray(0, 63), releaseKeyBase64(a))).toBe(false);
  });
});
