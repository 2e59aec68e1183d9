// The audit chain's rules, the public key format and the manifest signature, as pure logic.
import { generateKeyPairSync, sign } from 'node:crypto';
import canonicalize from 'canonicalize';
import { describe, expect, it } from 'vitest';
import { ChainWalker, GENESIS_PREV, sha256Hex } from '../../src/audit/chain.js';
import { isPublicKeyBase64, publicKeyBase64, publicKeyFromBase64, verifyEd25519 } from '../../src/audit/keys.js';
import { manifestSigningBytes, signManifest, verifyManifestSignature, type UnsignedManifest } from '../../src/audit/manifest.js';
import { verifyAuditLog } from '../../src/audit/verify.js';

/** A whole chain of n entries built by hand, exactly as CONTRACT §4 describes it. */
function chain(n: number, firstSeq = 1): string[] {
  const lines: string[] = [];
  let prev = GENESIS_PREV;
  for (let i = 0; i < n; i++) {
    const line = JSON.stringify({ seq: firstSeq + i, prev, ts: '2026-11-28T12:00:00.000Z', type: 'delete', camera: 'a', bytes: i });
    lines.push(line);
    prev = sha256Hex(line);
  }
  return lines;
}

/** Recomputes every prev after line index `from` (a forger's rewrite). */
function rechain(lines: string[], from = 0): string[] {
  const out = [...lines];
  for (let i = Math.max(1, from); i < out.length; i++) {
    const e = JSON.parse(out[i]!) as Record<string, unknown>;
    e['prev'] = sha256Hex(out[i - 1]!);
    out[i] = JSON.stringify(e);
  }
  return out;
}

function testKey(): { publicKeyBase64: string; sign: (d: Uint8Array) => Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { publicKeyBase64: publicKeyBase64(privateKey), sign: (d) => sign(null, d, privateKey) };
}

describe('audit chain verification', () => {
  it('accepts a whole chain and an empty one, and reports the head', async () => {
    const lines = chain(5);
    expect(await verifyAuditLog(lines)).toEqual({ ok: true, entries: 5, head: { seq: 5, head: sha256Hex(lines[4]!) } });
    expect(await verifyAuditLog([])).toEqual({ ok: true, entries: 0, head: { seq: 0, head: GENESIS_PREV } });
    expect((await verifyAuditLog(chain(3, 0))).ok).toBe(true); // numbering from 0 is accepted
  });

  it('reports an edited entry at the next link, naming both entries', async () => {
    const lines = chain(6);
    lines[2] = lines[2]!.replace('"bytes":2', '"bytes":3'); // seq 3 altered
    const r = await verifyAuditLog(lines);
    expect(r).toMatchObject({ ok: false, line: 4, seq: 4, entries: 3 });
    expect(!r.ok && r.reason).toContain('seq 3 was altered');
  });

  it('reports whitespace or key order changes too: hashes cover the stored bytes', async () => {
    const lines = chain(3);
    const e = JSON.parse(lines[1]!) as Record<string, unknown>;
    lines[1] = JSON.stringify({ type: e['type'], ...e }); // same content, other key order
    expect(await verifyAuditLog(lines)).toMatchObject({ ok: false, seq: 3 });
    const spaced = chain(3);
    spaced[0] = `${spaced[0]} `;
    expect(await verifyAuditLog(spaced)).toMatchObject({ ok: false, seq: 2 });
  });

  it('reports removed, duplicated and renumbered entries', async () => {
    const lines = chain(5);
    expect(await verifyAuditLog([...lines.slice(0, 2), ...lines.slice(3)])).toMatchObject({ ok: false, line: 3, seq: 4 });
    expect(await verifyAuditLog([...lines.slice(0, 3), lines[2]!, ...lines.slice(3)])).toMatchObject({ ok: false, line: 4, seq: 3 });
    expect(await verifyAuditLog(lines.slice(1))).toMatchObject({ ok: false, line: 1, seq: 2 });
    // Dropping the first entries and rechaining still cannot make a new start: its prev is not zeros.
    const renumbered = rechain(lines.slice(2).map((l, i) => l.replace(/"seq":\d+/, `"seq":${i + 1}`)));
    expect(await verifyAuditLog(renumbered)).toMatchObject({ ok: false, line: 1 });
  });

  it('reports lines that are not entries', async () => {
    const lines = chain(3);
    expect(await verifyAuditLog([lines[0]!, '{"seq":2', lines[2]!])).toMatchObject({ ok: false, line: 2, seq: null, reason: 'not valid JSON' });
    expect(await verifyAuditLog([lines[0]!, ''])).toMatchObject({ ok: false, line: 2, reason: 'empty line' });
    expect(await verifyAuditLog(['[1,2]'])).toMatchObject({ ok: false, line: 1, reason: 'not a JSON object' });
    expect(await verifyAuditLog([JSON.stringify({ seq: 1, prev: 'abc', ts: 'x', type: 'lock' })])).toMatchObject({ ok: false, line: 1 });
  });

  it('a rewrite that recomputes every prev is whole as a chain (only the anchor can catch it)', async () => {
    const lines = chain(4);
    lines[0] = lines[0]!.replace('"camera":"a"', '"camera":"b"');
    expect((await verifyAuditLog(lines)).ok).toBe(false);
    expect((await verifyAuditLog(rechain(lines))).ok).toBe(true);
  });
});

describe('public key format', () => {
  it('is standard padded base64 of the raw 32 bytes and round-trips to a verifying key', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const b64 = publicKeyBase64(privateKey);
    expect(b64).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const jwkX = publicKey.export({ format: 'jwk' }).x!;
    expect(Buffer.from(b64, 'base64')).toEqual(Buffer.from(jwkX, 'base64url'));
    const data = Buffer.from('hello');
    const sig = sign(null, data, privateKey).toString('base64');
    expect(verifyEd25519(data, sig, publicKeyFromBase64(b64))).toBe(true);
    expect(verifyEd25519(Buffer.from('hellO'), sig, b64)).toBe(false);
  });

  it('refuses strings that are not a 32-byte key', () => {
    const b64 = publicKeyBase64(generateKeyPairSync('ed25519').privateKey);
    for (const bad of ['', b64.slice(0, 43), b64.replace('=', ''), `${b64}=`, Buffer.alloc(33).toString('base64'), b64.replace(/^./, '-')]) {
      expect(isPublicKeyBase64(bad), bad).toBe(false);
      expect(() => publicKeyFromBase64(bad)).toThrow(/44 characters/);
    }
  });
});

describe('manifest signature', () => {
  const unsigned: UnsignedManifest = {
    incident: { id: '20261128T120000Z-7kq2' },
    files: [{ name: 'entrance.mp4', camera: 'entrance', bytes: 3, sha256: sha256Hex('abc'), start: '2026-11-28T11:58:00.000Z', end: '2026-11-28T12:05:00.000Z', gaps: [] }],
    clock: { synced: true },
    audit: { seq: 2, head: sha256Hex('x') },
    agent: { version: '1.2.3' },
  };

  it('is Ed25519 over the RFC 8785 form of the manifest without its signature', () => {
    const key = testKey();
    const m = signManifest(unsigned, key);
    expect(m.signature.alg).toBe('ed25519');
    expect(m.signature.publicKey).toBe(key.publicKeyBase64);
    expect(Buffer.from(m.signature.value, 'base64')).toHaveLength(64);
    // Checked independently of manifest.ts: canonicalize what a verifier would parse.
    const { signature, ...rest } = JSON.parse(JSON.stringify(m)) as typeof m;
    const canonical = canonicalize(rest)!;
    expect(canonical.startsWith('{"agent":{"version":"1.2.3"},"audit":{"head":')).toBe(true);
    expect(manifestSigningBytes(m).toString('utf8')).toBe(canonical);
    expect(verifyEd25519(Buffer.from(canonical, 'utf8'), signature.value, key.publicKeyBase64)).toBe(true);
  });

  it('verifies only under the signing key and only unaltered, whatever the key order of the file', () => {
    const key = testKey();
    const m = signManifest(unsigned, key);
    const reordered = JSON.parse(JSON.stringify({ signature: m.signature, files: m.files, agent: m.agent, audit: m.audit, clock: m.clock, incident: m.incident })) as unknown;
    expect(verifyManifestSignature(reordered, key.publicKeyBase64)).toEqual({ ok: true });
    expect(verifyManifestSignature(m, testKey().publicKeyBase64).ok).toBe(false);
    const edited = JSON.parse(JSON.stringify(m)) as typeof m;
    edited.files[0]!.bytes = 4;
    expect(verifyManifestSignature(edited, key.publicKeyBase64).ok).toBe(false);
    expect(verifyManifestSignature({ ...m, signature: { ...m.signature, alg: 'rsa' } }, key.publicKeyBase64).ok).toBe(false);
    expect(verifyManifestSignature({ ...m, signature: undefined }, key.publicKeyBase64).ok).toBe(false);
  });
});

describe('a log that begins later (rotated behind a checkpoint, or shipped from the middle)', () => {
  it('continues from the given start, and breaks on a line that does not', () => {
    const lines = chain(6);
    const start = { seq: 3, head: sha256Hex(lines[2]!) };
    const walker = new ChainWalker(start);
    expect(walker.next(Buffer.from(lines[3]!))).toMatchObject({ ok: true, seq: 4 });
    expect(walker.next(Buffer.from(lines[4]!))).toMatchObject({ ok: true, seq: 5 });
    expect(walker.head).toEqual({ seq: 5, head: sha256Hex(lines[4]!) });
    const wrong = new ChainWalker({ seq: 3, head: sha256Hex('something else') });
    expect(wrong.next(Buffer.from(lines[3]!))).toMatchObject({ ok: false, seq: 4, reason: expect.stringMatching(/^prev does not match/) });
    expect(new ChainWalker(start).next(Buffer.from(lines[4]!))).toMatchObject({ ok: false, reason: expect.stringMatching(/^seq 5 follows seq 3/) });
  });
});
