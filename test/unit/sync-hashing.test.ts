// The digests a file is checked by upstream (CONTRACT §4): S3's ETag is the MD5 of a single-part
// object, or the MD5 of the parts' binary MD5s with "-N" for a multipart one; the part size
// keeps every file within S3's 10,000 parts. Vectors are computed here independently (node:crypto
// over buffer slices, and one fixed vector computed with Python's hashlib); the cross-check
// against a real S3 protocol server's multipart ETag is in sync-target.test.ts.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedEtag, md5Hex, MiB, multipartEtag, MULTIPART_THRESHOLD, partCount, partSizeFor, readRange } from '../../src/sync/hashing.js';

const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

describe('partSizeFor', () => {
  it('is 8 MiB up to 10,000 parts of it', () => {
    for (const bytes of [0, 1, 8 * MiB, 16 * MiB + 1, 2 * GiB, 10_000 * 8 * MiB]) expect(partSizeFor(bytes), String(bytes)).toBe(8 * MiB);
    expect(partCount(10_000 * 8 * MiB, 8 * MiB)).toBe(10_000);
  });

  it('grows in whole MiB once 8 MiB parts would need more than 10,000', () => {
    expect(partSizeFor(10_000 * 8 * MiB + 1)).toBe(9 * MiB);
    expect(partSizeFor(TiB)).toBe(105 * MiB); // 104.86 MiB → 105
    expect(partSizeFor(5 * TiB)).toBe(525 * MiB); // S3's largest object
  });

  it('always the smallest whole-MiB size (≥ 8 MiB) that fits in 10,000 parts', () => {
    const sizes = [3, 8 * MiB - 1, 80 * GiB, 80 * GiB + 12_345, 81 * GiB, 333 * GiB + 7, TiB - 1, TiB + 1, 3 * TiB + 999, 5 * TiB];
    for (const bytes of sizes) {
      const part = partSizeFor(bytes);
      expect(part % MiB, String(bytes)).toBe(0);
      expect(part).toBeGreaterThanOrEqual(8 * MiB);
      expect(partCount(bytes, part), String(bytes)).toBeLessThanOrEqual(10_000);
      if (part > 8 * MiB) expect(partCount(bytes, part - MiB), String(bytes)).toBeGreaterThan(10_000);
    }
  });

  it('partCount: at least one part, the last one short', () => {
    expect(partCount(0, 8 * MiB)).toBe(1);
    expect(partCount(8 * MiB, 8 * MiB)).toBe(1);
    expect(partCount(8 * MiB + 1, 8 * MiB)).toBe(2);
  });
});

describe('multipartEtag', () => {
  it('a fixed vector: parts "hello" and "world" (computed with Python hashlib)', () => {
    expect(multipartEtag(['5d41402abc4b2a76b9719d911017c592', '7d793037a0760186574b0282f2f435e7'])).toBe('065947336a2f2a95ba8899f3675c3be6-2');
  });

  it('is the MD5 of the binary part MD5s, with the part count; one part is not a plain MD5', () => {
    const parts = [randomBytes(1000), randomBytes(777), randomBytes(1)];
    const binary = Buffer.concat(parts.map((p) => createHash('md5').update(p).digest()));
    expect(multipartEtag(parts.map((p) => md5(p)))).toBe(`${md5(binary)}-3`);
    const one = randomBytes(64);
    expect(multipartEtag([md5(one)])).toBe(`${md5(createHash('md5').update(one).digest())}-1`);
    expect(multipartEtag([md5(one)])).not.toBe(md5(one));
  });

  it('depends on the order of the parts', () => {
    const a = md5('a');
    const b = md5('b');
    expect(multipartEtag([a, b])).not.toBe(multipartEtag([b, a]));
  });
});

describe('expectedEtag on real files', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-hashing-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  async function file(name: string, data: Buffer): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, data);
    return path;
  }

  it('a small file (one PUT): its plain MD5', async () => {
    const data = randomBytes(123_457);
    expect(await expectedEtag(await file('small.mp4', data), data.length)).toBe(md5(data));
    expect(md5Hex(data)).toBe(md5(data));
  });

  it('an empty file: the MD5 of nothing', async () => {
    expect(await expectedEtag(await file('empty.json', Buffer.alloc(0)), 0)).toBe('d41d8cd98f00b204e9800998ecf8427e');
  });

  it('exactly at the threshold: still one PUT', async () => {
    const data = randomBytes(MULTIPART_THRESHOLD);
    expect(await expectedEtag(await file('at.mp4', data), data.length)).toBe(md5(data));
  });

  it('one byte over the threshold: 8 MiB parts, the last one a single byte', async () => {
    const data = randomBytes(MULTIPART_THRESHOLD + 1);
    const parts = [data.subarray(0, 8 * MiB), data.subarray(8 * MiB, 16 * MiB), data.subarray(16 * MiB)];
    expect(parts[2]!.length).toBe(1);
    const expected = `${md5(Buffer.concat(parts.map((p) => createHash('md5').update(p).digest())))}-3`;
    expect(await expectedEtag(await file('over.mp4', data), data.length)).toBe(expected);
  });

  it('readRange reads exact ranges, and refuses a file shorter than it should be', async () => {
    const data = randomBytes(10_000);
    const path = await file('range.bin', data);
    expect((await readRange(path, 1234, 5000)).equals(data.subarray(1234, 6234))).toBe(true);
    await expect(readRange(path, 9000, 2000)).rejects.toThrow(/shorter than expected/);
    // A clip that shrank since it was sealed must not be hashed as if whole.
    await expect(expectedEtag(path, 20_000)).rejects.toThrow(/shorter than expected/);
  });
});
