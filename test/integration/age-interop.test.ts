// camnode's age against the reference `age` tool (Debian's age 1.1), both ways (CONTRACT §7):
// what the node encrypts, `age -d` opens to the exact bytes; what `age` encrypts, the node opens.
// A flipped byte or a wrong identity fails loudly on both sides. And a 1 GB clip is encrypted in
// a separate process whose peak RSS is measured: memory stays flat whatever the size.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptFile, encryptFile, parseIdentityFile } from '../../src/platform/age.js';
import { tempDir } from '../helpers/agent.js';
import { ageDecrypt as ageDecryptWith, ageKeygen } from '../helpers/age.js';

const run = promisify(execFile);
let dir: string;
let identityFile: string;
let recipient: string;

beforeAll(async () => {
  dir = await tempDir('camnode-age-');
  identityFile = join(dir, 'district.key');
  recipient = await ageKeygen(identityFile);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const ageDecrypt = (file: string, identity = identityFile) => ageDecryptWith(file, identity);

describe('age interoperability with the reference tool', () => {
  it.each([0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 2_500_001])('%i bytes: the node encrypts, age decrypts; age encrypts, the node decrypts', async (n) => {
    const plain = join(dir, `p${n}`);
    await writeFile(plain, randomBytes(n));
    const ours = await encryptFile(plain, join(dir, `p${n}.node.age`), [recipient]);
    expect(ours.plaintext).toEqual({ bytes: n, sha256: await sha256Of(plain) });
    expect(ours.ciphertext).toEqual({ bytes: (await stat(join(dir, `p${n}.node.age`))).size, sha256: await sha256Of(join(dir, `p${n}.node.age`)) });
    const byAge = await ageDecrypt(join(dir, `p${n}.node.age`));
    expect(byAge.code, byAge.stderr).toBe(0);
    expect(byAge.stdout.equals(await readFile(plain))).toBe(true);

    await run('age', ['-r', recipient, '-o', join(dir, `p${n}.ref.age`), plain]);
    const pieces: Buffer[] = [];
    const theirs = await decryptFile(join(dir, `p${n}.ref.age`), parseIdentityFile(await readFile(identityFile, 'utf8')), (b) => pieces.push(b));
    expect(Buffer.concat(pieces).equals(await readFile(plain))).toBe(true);
    expect(theirs.plaintext.sha256).toBe(ours.plaintext.sha256);
    // The same size as age's own encryption: the same chunking and header shape.
    expect((await stat(join(dir, `p${n}.ref.age`))).size).toBe(ours.ciphertext.bytes);
  });

  it('reads files age encrypted to several recipients, and age reads ours', async () => {
    const other = join(dir, 'other.key');
    const otherRecipient = await ageKeygen(other);
    const plain = join(dir, 'multi');
    await writeFile(plain, randomBytes(100_000));
    await run('age', ['-r', otherRecipient, '-r', recipient, '-o', join(dir, 'multi.ref.age'), plain]);
    const got = await decryptFile(join(dir, 'multi.ref.age'), parseIdentityFile(await readFile(identityFile, 'utf8')));
    expect(got.plaintext.sha256).toBe(await sha256Of(plain));
    await encryptFile(plain, join(dir, 'multi.node.age'), [otherRecipient, recipient]);
    for (const id of [identityFile, other]) expect((await ageDecrypt(join(dir, 'multi.node.age'), id)).stdout.equals(await readFile(plain))).toBe(true);
  });

  it('a flipped byte or a wrong identity fails loudly on both sides', async () => {
    const plain = join(dir, 'tamper');
    await writeFile(plain, randomBytes(200_000));
    const enc = join(dir, 'tamper.age');
    await encryptFile(plain, enc, [recipient]);
    const ids = parseIdentityFile(await readFile(identityFile, 'utf8'));
    const bytes = await readFile(enc);
    for (const at of [bytes.indexOf('X25519') + 12, bytes.indexOf('\n---') + 8, bytes.length - 100_000, bytes.length - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] = bad[at]! ^ 0x01;
      await writeFile(join(dir, 'bad.age'), bad);
      const ref = await ageDecrypt(join(dir, 'bad.age'));
      expect(ref.code, `age -d of a file flipped at ${at}`).not.toBe(0);
      await expect(decryptFile(join(dir, 'bad.age'), ids), `flipped at ${at}`).rejects.toThrow(/authenticate|malformed|canonical|no identity/);
    }
    const wrong = join(dir, 'wrong.key');
    await ageKeygen(wrong);
    expect((await ageDecrypt(enc, wrong)).stderr).toMatch(/no identity matched any of the recipients/);
    await expect(decryptFile(enc, parseIdentityFile(await readFile(wrong, 'utf8')))).rejects.toThrow(/no identity given decrypts this file/);
  });

  it('encrypts a 1 GB clip with flat memory (peak RSS measured in its own process)', async () => {
    const GB = 1024 ** 3;
    /** Encrypts a file of `bytes` zeros in a fresh Node process; its peak RSS in MiB. */
    const encryptIn = async (bytes: number): Promise<{ peakMiB: number; path: string }> => {
      const clip = join(dir, `clip-${bytes}.mp4`);
      await writeFile(clip, '');
      await truncate(clip, bytes);
      const script = `
        const { encryptFile } = await import(${JSON.stringify(new URL('../../dist/src/platform/age.js', import.meta.url).href)});
        const r = await encryptFile(${JSON.stringify(clip)}, ${JSON.stringify(`${clip}.age`)}, [${JSON.stringify(recipient)}]);
        console.log(JSON.stringify({ ...r, peakKiB: process.resourceUsage().maxRSS }));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 1 << 20 });
      const r = JSON.parse(stdout) as { plaintext: { bytes: number }; peakKiB: number };
      expect(r.plaintext.bytes).toBe(bytes);
      return { peakMiB: r.peakKiB / 1024, path: clip };
    };
    const small = await encryptIn(64 * 1024 ** 2);
    const big = await encryptIn(GB);
    console.log(`peak RSS encrypting 64 MiB: ${small.peakMiB.toFixed(1)} MiB; 1 GiB: ${big.peakMiB.toFixed(1)} MiB`);
    // Flat: sixteen times the bytes, the same memory (within the garbage collector's slack).
    expect(big.peakMiB - small.peakMiB).toBeLessThan(16);
    expect(big.peakMiB).toBeLessThan(160);
    // And age reads it back to the same gigabyte of zeros.
    const check = await new Promise<string>((resolve, reject) => {
      const age = spawn('age', ['-d', '-i', identityFile, `${big.path}.age`]);
      const hash = createHash('sha256');
      let n = 0;
      age.stdout.on('data', (b: Buffer) => { hash.update(b); n += b.length; });
      age.on('error', reject);
      age.on('close', (code) => (code === 0 && n === GB ? resolve(hash.digest('hex')) : reject(new Error(`age -d exited ${code} after ${n} bytes`))));
    });
    expect(check).toBe(await sha256Of(big.path));
    for (const p of [small.path, big.path]) await rm(p);
    for (const p of [small.path, big.path]) await rm(`${p}.age`);
  }, 300_000);
});
