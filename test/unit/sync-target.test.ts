// Building the upstream target from the config (CONTRACT §2 `upstream`), and what an S3 failure
// means for the sync loop (issue 5: a permanent failure stops retrying; network errors,
// throttling and timeouts are retried).
// The error shapes are real: each comes out of the AWS SDK's own response parsing — from s3rver
// (npm, the S3 protocol server of TESTING.md), from a small HTTP server answering S3 error XML
// for the answers s3rver never gives (SlowDown, SignatureDoesNotMatch, NoSuchUpload, …), from a
// refused connection and a server that never answers. s3rver also cross-checks hashing.ts: the
// ETag a real server gives a single PUT and a multipart upload is the one camnode expects.
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, NoSuchUpload, PutObjectCommand,
  S3Client, S3ServiceException, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { DirStore } from '../../src/sync/dir-store.js';
import { expectedEtag, multipartEtag, partSizeFor, MULTIPART_THRESHOLD } from '../../src/sync/hashing.js';
import { classifyS3Error, S3Store } from '../../src/sync/s3-store.js';
import { UploadError } from '../../src/sync/store.js';
import { createStore, parseEnvFile, UpstreamConfigError } from '../../src/sync/target.js';

// s3rver ships no types; this is the part of it the test uses.
interface S3rverServer { run(): Promise<{ port: number }>; close(): Promise<void> }
const S3rver = createRequire(import.meta.url)('s3rver') as new (opts: Record<string, unknown>) => S3rverServer;

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

const BUCKET = 'branch-incidents';
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

let dir: string;
let s3: S3rverServer;
let s3Endpoint: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-target-'));
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(dir, 's3rver'), configureBuckets: [{ name: BUCKET }] });
  s3Endpoint = `http://127.0.0.1:${(await s3.run()).port}`;
});
afterAll(async () => {
  await s3?.close();
  await rm(dir, { recursive: true, force: true });
});

function client(endpoint: string, creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, idleTimeout?: number): S3Client {
  return new S3Client({
    region: 'us-east-1', endpoint, forcePathStyle: true, credentials: creds, maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    // The idle-socket timeout, as S3Store sets it (the SDK's requestTimeout only warns).
    ...(idleTimeout ? { requestHandler: { socketTimeout: idleTimeout, connectionTimeout: idleTimeout } } : {}),
  });
}

/** The SDK's rejection for a request (the test fails if it succeeds). */
async function failure(request: () => Promise<unknown>): Promise<unknown> {
  try {
    await request();
  } catch (err) {
    return err;
  }
  throw new Error('expected the request to fail');
}

describe('parseEnvFile', () => {
  it('KEY=VALUE lines with export, quotes, comments and blank lines', () => {
    const text = [
      '# camnode upstream credentials',
      '',
      'AWS_ACCESS_KEY_ID=AKIAEXAMPLE',
      'export AWS_SECRET_ACCESS_KEY="s3cr3t/with+chars="',
      "  export   AWS_REGION = 'eu-central-1'  ",
      'EMPTY=',
      'QUOTED_SPACES="a b  c"',
      'MISMATCHED="open',
      '   # indented comment',
      'not a line at all',
      '1BAD=x',
      'WINDOWS=crlf\r',
    ].join('\n');
    expect(parseEnvFile(text)).toEqual({
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 's3cr3t/with+chars=',
      AWS_REGION: 'eu-central-1',
      EMPTY: '',
      QUOTED_SPACES: 'a b  c',
      MISMATCHED: '"open',
      WINDOWS: 'crlf',
    });
  });

  it('a value may contain "=" and "#"; a later line wins', () => {
    expect(parseEnvFile('K=a=b#c\nK=second\n')).toEqual({ K: 'second' });
    expect(parseEnvFile('')).toEqual({});
  });
});

describe('createStore', () => {
  const base = { node: { id: 'koelbel-01' }, storage: { path: '/srv/camnode' }, cameras: [{ id: 'entrance', source: 'testsrc', zone: 'entrance' }] };
  const s3Config = (upstream: Record<string, unknown>) => validateConfig({ ...base, upstream: { type: 's3', bucket: BUCKET, endpoint: s3Endpoint, ...upstream } });
  const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

  it('none → no store; dir → a DirStore on the path, keys under <prefix>/<node>', async () => {
    expect(await createStore(validateConfig(base))).toBeNull();
    const made = await createStore(validateConfig({ ...base, upstream: { type: 'dir', path: join(dir, 'nas') } }));
    expect(made?.store).toBeInstanceOf(DirStore);
    expect(made?.store.describe()).toBe(join(dir, 'nas'));
    expect(made?.keyPrefix).toBe('incidents/koelbel-01');
    const prefixed = await createStore(validateConfig({ ...base, upstream: { type: 'dir', path: '/mnt/nas', prefix: 'branch/evidence' } }));
    expect(prefixed?.keyPrefix).toBe('branch/evidence/koelbel-01');
  });

  it('a credentials file that cannot be read: a clear error naming the field and the file', async () => {
    const missing = join(dir, 'no-such.env');
    await expect(createStore(s3Config({ credentials: missing }))).rejects.toThrow(UpstreamConfigError);
    await expect(createStore(s3Config({ credentials: missing }))).rejects.toThrow(`upstream.credentials: cannot read ${missing} (ENOENT)`);
    // Root reads any file whatever its mode; a directory in its place is unreadable for anyone.
    const aDir = join(dir, 'creds-dir');
    await mkdir(aDir, { recursive: true });
    await expect(createStore(s3Config({ credentials: aDir }))).rejects.toThrow(`upstream.credentials: cannot read ${aDir} (EISDIR)`);
  });

  it('a credentials file without both keys is refused, and the secret is not in the message', async () => {
    const onlyId = join(dir, 'only-id.env');
    await writeFile(onlyId, 'AWS_ACCESS_KEY_ID=AKIAEXAMPLE\n');
    await expect(createStore(s3Config({ credentials: onlyId }))).rejects.toThrow(`upstream.credentials: ${onlyId} must set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
    const onlySecret = join(dir, 'only-secret.env');
    await writeFile(onlySecret, `# no id\nexport AWS_SECRET_ACCESS_KEY="${SECRET}"\n`);
    const err = await createStore(s3Config({ credentials: onlySecret })).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(UpstreamConfigError);
    expect((err as Error).message).not.toContain(SECRET);
    const empty = join(dir, 'empty.env');
    await writeFile(empty, '\n# nothing\n');
    await expect(createStore(s3Config({ credentials: empty }))).rejects.toThrow(/must set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  });

  it('a good credentials file: an S3 store that reaches the bucket (probe) and never names the secret', async () => {
    const creds = join(dir, 's3.env');
    await writeFile(creds, 'export AWS_ACCESS_KEY_ID=S3RVER\nexport AWS_SECRET_ACCESS_KEY="S3RVER"\n');
    const made = await createStore(s3Config({ credentials: creds }));
    expect(made?.store).toBeInstanceOf(S3Store);
    expect(made?.keyPrefix).toBe('incidents/koelbel-01');
    expect(made?.store.describe()).toBe(`s3://${BUCKET} at ${s3Endpoint} (us-east-1)`);
    expect(await made!.store.probe()).toMatch(/bucket writable with these credentials/);
  });

  it('from the environment when no file is given; a wrong key id is a permanent failure of the probe', async () => {
    const env = { AWS_ACCESS_KEY_ID: 'NOT-A-KEY', AWS_SECRET_ACCESS_KEY: SECRET };
    const made = await createStore(s3Config({}), env);
    expect(made?.store.describe()).not.toContain(SECRET);
    const err = await made!.store.probe().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UploadError);
    expect(err).toMatchObject({ permanent: true, code: 'InvalidAccessKeyId' });
    expect((err as Error).message).not.toContain(SECRET);
  });

  it('a bucket that does not exist is a permanent failure of the probe', async () => {
    const made = await createStore(validateConfig({ ...base, upstream: { type: 's3', bucket: 'no-such-bucket', endpoint: s3Endpoint } }), { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
    await expect(made!.store.probe()).rejects.toMatchObject({ permanent: true, code: 'NoSuchBucket' });
  });
});

describe('classifyS3Error', () => {
  describe('answers of a real S3 protocol server (s3rver), parsed by the SDK', () => {
    it('NoSuchBucket and InvalidAccessKeyId are permanent', async () => {
      const noBucket = classifyS3Error(await failure(() => client(s3Endpoint).send(new PutObjectCommand({ Bucket: 'nope', Key: 'k', Body: 'x' }))));
      expect(noBucket).toMatchObject({ permanent: true, code: 'NoSuchBucket' });
      expect(noBucket.message).toMatch(/^NoSuchBucket \(HTTP 404\): /);
      const badKey = classifyS3Error(await failure(() => client(s3Endpoint, { accessKeyId: 'WRONG', secretAccessKey: 'S3RVER' }).send(new PutObjectCommand({ Bucket: BUCKET, Key: 'k', Body: 'x' }))));
      expect(badKey).toMatchObject({ permanent: true, code: 'InvalidAccessKeyId' });
    });

    it('a HEAD of a missing object (404, no body: "NotFound") is not permanent', async () => {
      const notFound = classifyS3Error(await failure(() => client(s3Endpoint).send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'missing' }))));
      expect(notFound).toMatchObject({ permanent: false, code: 'NotFound' });
    });
  });

  describe('S3 error answers s3rver never gives, from a small server speaking S3 error XML', () => {
    let server: Server;
    let endpoint: string;
    let answer = { status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' };
    beforeAll(async () => {
      server = createHttpServer((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(answer.status, { 'content-type': 'application/xml', 'x-amz-request-id': 'test' });
          res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${answer.code}</Code><Message>${answer.message}</Message><RequestId>test</RequestId></Error>`);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    afterAll(async () => { await new Promise((resolve) => server.close(resolve)); });

    async function classified(status: number, code: string, message = `${code} happened`): Promise<UploadError> {
      answer = { status, code, message };
      const err = await failure(() => client(endpoint).send(new PutObjectCommand({ Bucket: BUCKET, Key: 'k', Body: 'x' })));
      expect((err as { name: string }).name, 'the SDK parsed the code').toBe(code);
      return classifyS3Error(err);
    }

    it('AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId, NoSuchBucket: permanent', async () => {
      expect(await classified(403, 'AccessDenied', 'Access Denied')).toMatchObject({ permanent: true, code: 'AccessDenied', message: 'AccessDenied (HTTP 403): Access Denied' });
      expect(await classified(403, 'SignatureDoesNotMatch')).toMatchObject({ permanent: true, code: 'SignatureDoesNotMatch' });
      expect(await classified(403, 'InvalidAccessKeyId')).toMatchObject({ permanent: true, code: 'InvalidAccessKeyId' });
      expect(await classified(404, 'NoSuchBucket')).toMatchObject({ permanent: true, code: 'NoSuchBucket' });
    });

    it('SlowDown / 503, InternalError / 500, RequestTimeout: retried', async () => {
      const slow = await classified(503, 'SlowDown', 'Please reduce your request rate.');
      expect(slow).toMatchObject({ permanent: false, code: 'SlowDown' });
      expect(slow.message).toBe('SlowDown (HTTP 503): the server asks to slow down');
      expect(await classified(503, 'ServiceUnavailable')).toMatchObject({ permanent: false, message: 'ServiceUnavailable (HTTP 503): the server asks to slow down' });
      expect(await classified(500, 'InternalError')).toMatchObject({ permanent: false, code: 'InternalError' });
      expect(await classified(400, 'RequestTimeout')).toMatchObject({ permanent: false, code: 'RequestTimeout' });
    });

    it('NoSuchUpload (404) is not permanent: that file starts again', async () => {
      expect(await classified(404, 'NoSuchUpload', 'The specified upload does not exist.')).toMatchObject({ permanent: false, code: 'NoSuchUpload' });
    });
  });

  describe('network failures', () => {
    it('a refused connection is retried, and says ECONNREFUSED', async () => {
      // A port that was just free: nothing listens there.
      const probe = createTcpServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const port = (probe.address() as { port: number }).port;
      await new Promise((resolve) => probe.close(resolve));
      const e = classifyS3Error(await failure(() => client(`http://127.0.0.1:${port}`).send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'k' }))));
      expect(e.permanent).toBe(false);
      expect(e.code).toBe('ECONNREFUSED');
      expect(e.message).toContain('ECONNREFUSED');
    });

    it('a server that accepts and never answers: the SDK\'s TimeoutError, retried', async () => {
      const sockets = new Set<Socket>();
      const silent: TcpServer = createTcpServer((s) => { sockets.add(s); s.on('error', () => {}); });
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const port = (silent.address() as { port: number }).port;
        const err = await failure(() => client(`http://127.0.0.1:${port}`, undefined, 300).send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'k' })));
        expect((err as Error).name).toBe('TimeoutError');
        expect(classifyS3Error(err)).toMatchObject({ permanent: false, code: 'TimeoutError' });
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise((resolve) => silent.close(resolve));
      }
    });

    it('ETIMEDOUT and ECONNRESET as Node reports them are retried', () => {
      for (const code of ['ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'ENOTFOUND']) {
        const err = Object.assign(new Error(`connect ${code} 10.0.0.5:443`), { code });
        expect(classifyS3Error(err), code).toMatchObject({ permanent: false, code });
      }
    });
  });

  it('the SDK\'s modelled exceptions: NoSuchUpload and a bare 404 NotFound are not permanent; any 403 is', () => {
    const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });
    expect(classifyS3Error(new NoSuchUpload({ message: 'gone', ...meta(404) }))).toMatchObject({ permanent: false, code: 'NoSuchUpload' });
    expect(classifyS3Error(new S3ServiceException({ name: 'NotFound', $fault: 'client', message: 'UnknownError', ...meta(404) }))).toMatchObject({ permanent: false });
    expect(classifyS3Error(new S3ServiceException({ name: 'Forbidden', $fault: 'client', message: 'UnknownError', ...meta(403) }))).toMatchObject({ permanent: true });
  });
});

describe('hashing.ts against a real server', () => {
  it('a single PUT: the ETag is the MD5 camnode expects', async () => {
    const c = client(s3Endpoint);
    const small = randomBytes(300_001);
    const path = join(dir, 'small.mp4');
    await writeFile(path, small);
    const put = await c.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'x/small.mp4', Body: small, ContentLength: small.length }));
    expect(put.ETag?.replace(/"/g, '')).toBe(md5(small));
    expect(put.ETag?.replace(/"/g, '')).toBe(await expectedEtag(path, small.length));
  });

  it('a multipart upload split the way camnode splits it: the server\'s part ETags give expectedEtag; the object is accepted as stored', async () => {
    const c = client(s3Endpoint);
    const big = randomBytes(MULTIPART_THRESHOLD + 5_000);
    const path = join(dir, 'big.mp4');
    await writeFile(path, big);
    const key = 'x/big.mp4';
    const partSize = partSizeFor(big.length);
    const { UploadId } = await c.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const parts: { PartNumber: number; ETag: string }[] = [];
    for (let n = 1, offset = 0; offset < big.length; n++, offset += partSize) {
      const body = big.subarray(offset, Math.min(big.length, offset + partSize));
      const sent = await c.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: n, Body: body, ContentLength: body.length }));
      expect(sent.ETag?.replace(/"/g, '')).toBe(md5(body));
      parts.push({ PartNumber: n, ETag: sent.ETag! });
    }
    expect(parts).toHaveLength(3);
    // AWS, MinIO and Ceph answer the multipart form of exactly these part ETags.
    expect(multipartEtag(parts.map((p) => p.ETag.replace(/"/g, '')))).toBe(await expectedEtag(path, big.length));
    const done = await c.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    // s3rver's quirk (TESTING.md lists its gaps): a multipart object gets the whole file's MD5.
    expect(done.ETag?.replace(/"/g, '')).toBe(md5(big));
    const head = await c.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head.ContentLength).toBe(big.length);
    // CONTRACT §4 accepts either form: the S3 target counts this object as stored, and not a
    // different file of the same size.
    const store = new S3Store({ endpoint: s3Endpoint, region: 'us-east-1', bucket: BUCKET, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, probePrefix: 'x' });
    const meta = { bytes: big.length, sha256: createHash('sha256').update(big).digest('hex') };
    expect(await store.isStored(key, path, meta, { kind: 'none' })).toBe(true);
    const other = join(dir, 'other.mp4');
    await writeFile(other, randomBytes(big.length));
    expect(await store.isStored(key, other, meta, { kind: 'none' })).toBe(false);
  });
});
