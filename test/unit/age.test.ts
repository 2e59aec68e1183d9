// The age format on node:crypto (CONTRACT §7): round trips at the chunk boundaries whatever the
// pieces the bytes arrive in, and every alteration refused. Interoperability with the real
// `age` tool is in test/integration/age-interop.test.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AgeDecrypter, AgeEncrypter, AgeError, generateIdentity, parseIdentity, parseIdentityFile, parseRecipient, recipientString } from '../../src/platform/age.js';

const CHUNK = 64 * 1024;

/** Feeds `bytes` in random pieces (deterministic per seed) and gathers the output. */
function pieces(bytes: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = [];
  let s = seed;
  for (let i = 0; i < bytes.length;) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (s % (CHUNK + 300));
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

function encrypt(plaintext: Buffer, recipients: string[], seed = 1): Buffer {
  const e = new AgeEncrypter(recipients);
  const out: Buffer[] = [];
  for (const p of pieces(plaintext, seed)) out.push(...e.update(p));
  out.push(...e.final());
  return Buffer.concat(out);
}

function decrypt(ciphertext: Buffer, identities: string[], seed = 2): Buffer {
  const d = new AgeDecrypter(identities.map((i) => parseIdentity(i)));
  const out: Buffer[] = [];
  for (const p of pieces(ciphertext, seed)) out.push(...d.update(p));
  out.push(...d.final());
  return Buffer.concat(out);
}

describe('age v1, X25519', () => {
  const alice = generateIdentity();
  const bob = generateIdentity();

  it.each([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17])('round-trips %i bytes in any pieces', (n) => {
    const plaintext = randomBytes(n);
    const ciphertext = encrypt(plaintext, [alice.recipient], n + 3);
    // One tag per 64 KiB chunk (at least one), the 16-byte nonce, and the header.
    const chunks = Math.max(1, Math.ceil(n / CHUNK));
    const header = ciphertext.indexOf('\n---') + 1;
    expect(ciphertext.length).toBe(ciphertext.indexOf('\n', header) + 1 + 16 + n + 16 * chunks);
    expect(decrypt(ciphertext, [alice.identity], n + 5).equals(plaintext)).toBe(true);
  });

  it('encrypts to several recipients, each able to decrypt; a stranger cannot', () => {
    const plaintext = randomBytes(1000);
    const ciphertext = encrypt(plaintext, [alice.recipient, bob.recipient]);
    expect(ciphertext.toString('latin1').match(/^-> X25519 /gm)).toHaveLength(2);
    expect(decrypt(ciphertext, [bob.identity]).equals(plaintext)).toBe(true);
    expect(decrypt(ciphertext, [alice.identity]).equals(plaintext)).toBe(true);
    const stranger = generateIdentity();
    expect(() => decrypt(ciphertext, [stranger.identity])).toThrow(/no identity given decrypts this file/);
  });

  it('refuses a flipped byte anywhere: header, MAC, nonce, payload, tag', () => {
    const plaintext = randomBytes(3 * CHUNK);
    const ciphertext = encrypt(plaintext, [alice.recipient]);
    const headerEnd = ciphertext.indexOf('\n', ciphertext.indexOf('\n---') + 1) + 1;
    const at = {
      share: ciphertext.indexOf('X25519 ') + 10,
      body: ciphertext.indexOf('\n', ciphertext.indexOf('X25519 ')) + 5,
      mac: headerEnd - 5,
      nonce: headerEnd + 3,
      payload: headerEnd + 16 + CHUNK + 100,
      lastTag: ciphertext.length - 1,
    };
    for (const [where, i] of Object.entries(at)) {
      const bad = Buffer.from(ciphertext);
      bad[i] = bad[i]! ^ (where === 'share' || where === 'body' || where === 'mac' ? 0x01 : 0x80);
      expect(() => decrypt(bad, [alice.identity]), where).toThrow(AgeError);
    }
  });

  it('refuses a file cut at a chunk boundary, cut short, or with bytes added', () => {
    const plaintext = randomBytes(2 * CHUNK + 10);
    const ciphertext = encrypt(plaintext, [alice.recipient]);
    const headerEnd = ciphertext.indexOf('\n', ciphertext.indexOf('\n---') + 1) + 1 + 16;
    // Cut after the first whole chunk: that chunk was not sealed as the last one.
    expect(() => decrypt(ciphertext.subarray(0, headerEnd + CHUNK + 16), [alice.identity])).toThrow(/does not authenticate as the last one/);
    expect(() => decrypt(ciphertext.subarray(0, ciphertext.length - 5), [alice.identity])).toThrow(AgeError);
    expect(() => decrypt(ciphertext.subarray(0, headerEnd), [alice.identity])).toThrow(/truncated/);
    expect(() => decrypt(ciphertext.subarray(0, 30), [alice.identity])).toThrow(/ends inside its age header/);
    expect(() => decrypt(Buffer.concat([ciphertext, Buffer.from([0])]), [alice.identity])).toThrow(AgeError);
    expect(() => decrypt(Buffer.alloc(0), [alice.identity])).toThrow(/empty/);
    expect(() => decrypt(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n'), [alice.identity])).toThrow(/armored/);
    expect(() => decrypt(Buffer.from('hello, this is a text file\n'), [alice.identity])).toThrow(/not an age file/);
    // A header that never ends is refused after 64 KiB, not buffered without bound.
    const endless = Buffer.from(`age-encryption.org/v1\n${'-> X25519 AAAA\nAAAA\n'.repeat(20_000)}`);
    expect(() => decrypt(endless, [alice.identity])).toThrow(/no age header in the first 64 KiB/);
  });

  it('parses recipients and identities, naming what is wrong', () => {
    const raw = parseRecipient(alice.recipient);
    expect(raw).toHaveLength(32);
    expect(recipientString(raw)).toBe(alice.recipient);
    expect(parseIdentity(alice.identity).recipient).toBe(alice.recipient);
    // A checksum error (one character changed), the wrong kind, upper case, SSH and PQ keys.
    const typo = `${alice.recipient.slice(0, 10)}${alice.recipient[10] === 'q' ? 'p' : 'q'}${alice.recipient.slice(11)}`;
    expect(() => parseRecipient(typo)).toThrow(/checksum does not match/);
    expect(() => parseRecipient(alice.identity)).toThrow(/this is an age identity/);
    expect(() => parseRecipient(alice.recipient.toUpperCase())).toThrow(/start with age1/);
    expect(() => parseRecipient(`age1${alice.recipient.slice(4).toUpperCase()}`)).toThrow(/lower case/);
    expect(() => parseRecipient('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA')).toThrow(/SSH keys are not supported/);
    expect(() => parseRecipient('age1pq1abcdef')).toThrow(/post-quantum/);
    expect(() => parseIdentity(alice.recipient)).toThrow(/not an age identity/);
    // Well-formed bech32 that is no usable key: another prefix inside, and the all-zero (low-order) point.
    expect(() => parseRecipient('age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq1en783d')).toThrow(/does not hold a 32-byte X25519 key/);
    expect(() => parseRecipient(recipientString(Buffer.alloc(32)))).toThrow(/not a usable X25519 point/);

    const file = `# created: 2026-12-02T10:00:00Z\n# public key: ${alice.recipient}\n${alice.identity}\n\n${bob.identity}\n`;
    expect(parseIdentityFile(file).map((i) => i.recipient)).toEqual([alice.recipient, bob.recipient]);
    expect(() => parseIdentityFile('# nothing here\n', 'id.txt')).toThrow('id.txt holds no age identity');
    expect(() => parseIdentityFile(`${alice.identity}\nAGE-SECRET-KEY-1NOPE\n`, 'id.txt')).toThrow(/^id\.txt line 2: not an age identity/);
    expect(() => parseIdentityFile('-----BEGIN OPENSSH PRIVATE KEY-----\n', 'id.txt')).toThrow(/line 1: an SSH or PEM key/);
  });
});
