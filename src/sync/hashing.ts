// The digests the targets check a file by: S3's ETag is the MD5 of a single-part object, or
// the MD5 of the parts' binary MD5s with "-N" for a multipart one (CONTRACT §4).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';

export const MiB = 1024 * 1024;
/** Files up to this size go in one PUT; larger ones as multipart uploads. */
export const MULTIPART_THRESHOLD = 16 * MiB;
const MIN_PART = 8 * MiB;
const MAX_PARTS = 10_000;

/** Part size for a file: 8 MiB, or larger (whole MiB) when the file needs more than 10,000 parts. Pure. */
export function partSizeFor(bytes: number): number {
  return Math.max(MIN_PART, Math.ceil(bytes / MAX_PARTS / MiB) * MiB);
}

export function partCount(bytes: number, partSize: number): number {
  return Math.max(1, Math.ceil(bytes / partSize));
}

/** The multipart ETag from the parts' MD5s (hex). Pure. */
export function multipartEtag(partMd5Hex: readonly string[]): string {
  const joined = Buffer.concat(partMd5Hex.map((h) => Buffer.from(h, 'hex')));
  return `${createHash('md5').update(joined).digest('hex')}-${partMd5Hex.length}`;
}

export async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await handle.read(buffer, read, length - read, offset + read);
      if (bytesRead === 0) throw new Error(`${file} is shorter than expected (${offset + read} bytes)`);
      read += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

export function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** The ETag S3 gives this file when camnode uploads it (single PUT or its multipart split). */
export async function expectedEtag(file: string, bytes: number): Promise<string> {
  if (bytes <= MULTIPART_THRESHOLD) return md5Hex(await readRange(file, 0, bytes));
  const partSize = partSizeFor(bytes);
  const md5s: string[] = [];
  for (let offset = 0; offset < bytes; offset += partSize) md5s.push(md5Hex(await readRange(file, offset, Math.min(partSize, bytes - offset))));
  return multipartEtag(md5s);
}

/**
 * The MD5 of a whole file, streamed (files can be GBs). Some S3-compatible servers (s3rver)
 * give a multipart object this plain MD5 as its ETag instead of the parts' form.
 */
export async function fileMd5(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file, { highWaterMark: MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
