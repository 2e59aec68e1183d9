// The S3 target (AWS S3, MinIO, Ceph, Garage, Wasabi, …) through the AWS SDK v3.
// - Path-style addressing for any endpoint that is not AWS.
// - requestChecksumCalculation WHEN_REQUIRED: many third-party servers break on the SDK's
//   default CRC checksums (some store them inside the object); Content-MD5 protects each body.
// - The SDK's own retries are off: the sync loop retries with its own backoff and knows
//   which failures are permanent.
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, ListPartsCommand, PutObjectCommand, S3Client, UploadPartCommand, type S3ClientConfig, type UploadPartCommandOutput,
} from '@aws-sdk/client-s3';
import { expectedEtag, fileMd5, md5Hex, multipartEtag, MULTIPART_THRESHOLD, partCount, partSizeFor, readRange } from './hashing.js';
import { UploadError, type FileMeta, type FileProgress, type ObjectStore, type UploadIo } from './store.js';

export interface S3Target {
  endpoint?: string | undefined;
  region: string;
  bucket: string;
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** Where the probe writes (e.g. incidents/koelbel-01). */
  probePrefix: string;
}

const PERMANENT = new Set([
  'AccessDenied', 'NoSuchBucket', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AllAccessDisabled',
  'InvalidBucketName', 'AuthorizationHeaderMalformed', 'InvalidToken', 'ExpiredToken', 'AccountProblem',
  'CredentialsProviderError', 'InvalidRequest',
]);

/** What an SDK failure means for the sync loop. Pure. */
export function classifyS3Error(err: unknown): UploadError {
  const e = err as { name?: string; Code?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  // A HEAD's error has no body: a 403 then reaches us as "Unknown: UnknownError" (the first
  // request of every upload is a HEAD), which would be all the log and state could say.
  const bare403 = status === 403 && !e.Code && (e.name === 'Unknown' || e.name === 'Forbidden');
  // Node's network errors are plain `Error`s: their code (ECONNREFUSED, ETIMEDOUT) says more.
  const code = bare403 ? 'Forbidden' : e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined) ?? e.code ?? 'Error';
  const permanent = PERMANENT.has(code) || status === 403 || (status === 404 && code !== 'NoSuchUpload' && code !== 'NotFound' && code !== 'NoSuchKey');
  const why = code === 'SlowDown' || status === 503 ? 'the server asks to slow down'
    : bare403 ? 'access denied: check the credentials (key id and secret) and the bucket\'s permissions' : e.message ?? code;
  return new UploadError(`${code}${status ? ` (HTTP ${status})` : ''}: ${why}`, permanent, code);
}

function throttled(body: Buffer, io: UploadIo): Readable {
  const CHUNK = 64 * 1024;
  return Readable.from((async function* () {
    for (let offset = 0; offset < body.length; offset += CHUNK) {
      const chunk = body.subarray(offset, Math.min(body.length, offset + CHUNK));
      await io.pace(chunk.length);
      io.sent(chunk.length);
      yield chunk;
    }
  })());
}

export class S3Store implements ObjectStore {
  private readonly client: S3Client;

  constructor(private readonly target: S3Target) {
    // The SDK is pinned to one exact version that runs on Node 20; its warning that later
    // versions will not would land in the journal at every start.
    process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
    const config: S3ClientConfig = {
      region: target.region,
      ...(target.endpoint ? { endpoint: target.endpoint, forcePathStyle: true } : {}),
      ...(target.credentials ? { credentials: target.credentials } : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1,
      // A hung upstream (half-open TCP on a dropped uplink) must fail so the loop can retry. In
      // this SDK `requestTimeout` only logs a warning (unless throwOnRequestTimeout) and bounds
      // the whole request, which a paced 8 MiB part may rightly exceed; an idle socket is the
      // sign of a hang.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
    };
    this.client = new S3Client(config);
  }

  describe(): string {
    return `s3://${this.target.bucket}${this.target.endpoint ? ` at ${this.target.endpoint}` : ''} (${this.target.region})`;
  }

  async isStored(key: string, file: string, meta: FileMeta, progress: FileProgress): Promise<boolean> {
    let head;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: key }));
    } catch (err) {
      const e = classifyS3Error(err);
      if (e.code === 'NotFound' || e.code === 'NoSuchKey' || e.code === '404') return false;
      throw e;
    }
    if (head.ContentLength !== meta.bytes) return false;
    const etag = (head.ETag ?? '').replace(/"/g, '');
    if (progress.kind === 'multipart' && progress.parts.length === partCount(meta.bytes, progress.partSize)
      && etag === multipartEtag([...progress.parts].sort((a, b) => a.partNumber - b.partNumber).map((p) => p.md5))) return true;
    // CONTRACT §4: the MD5, or the multipart ETag of the parts' MD5s. A plain MD5 is accepted for
    // a multipart upload too: some servers (s3rver) store a multipart object under its whole MD5.
    return etag === (etag.includes('-') ? await expectedEtag(file, meta.bytes) : await fileMd5(file));
  }

  async upload(key: string, file: string, meta: FileMeta, progress: FileProgress, io: UploadIo): Promise<void> {
    try {
      if (meta.bytes <= MULTIPART_THRESHOLD) await this.putWhole(key, file, meta, io);
      else await this.multipart(key, file, meta, progress, io);
    } catch (err) {
      if (err instanceof UploadError) throw err;
      const e = classifyS3Error(err);
      // The server forgot the upload (expired, aborted by a lifecycle rule): start the file
      // again on the next try rather than resending parts to an upload that is gone.
      if (e.code === 'NoSuchUpload') await io.save({ kind: 'none' });
      throw e;
    }
  }

  async probe(): Promise<string> {
    const key = `${this.target.probePrefix}/.camnode-probe`;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.target.bucket, Key: key, Body: 'probe', ContentLength: 5 }));
      await this.client.send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key: key })).catch(() => {});
    } catch (err) {
      throw classifyS3Error(err);
    }
    return `${this.describe()}: bucket writable with these credentials`;
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
        for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw classifyS3Error(err);
    }
    return out.sort();
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      const got = await this.client.send(new GetObjectCommand({ Bucket: this.target.bucket, Key: key }));
      return Buffer.from(await got.Body!.transformToByteArray());
    } catch (err) {
      const e = classifyS3Error(err);
      if (e.code === 'NotFound' || e.code === 'NoSuchKey' || e.code === '404') return null;
      throw e;
    }
  }

  private async putWhole(key: string, file: string, meta: FileMeta, io: UploadIo): Promise<void> {
    const body = await readRange(file, 0, meta.bytes);
    await this.client.send(new PutObjectCommand({
      Bucket: this.target.bucket, Key: key, Body: throttled(body, io), ContentLength: body.length,
      ContentMD5: Buffer.from(md5Hex(body), 'hex').toString('base64'),
      Metadata: { sha256: meta.sha256 },
      ContentType: key.endsWith('.json') ? 'application/json' : 'video/mp4',
    }), { abortSignal: io.signal });
  }

  private async multipart(key: string, file: string, meta: FileMeta, start: FileProgress, io: UploadIo): Promise<void> {
    const { bucket } = this.target;
    // Every part recorded: a stop may have come after the server completed the upload and
    // before that was recorded; the upload id is gone then, so completing it again would fail.
    if (start.kind === 'multipart' && start.parts.length === partCount(meta.bytes, start.partSize) && await this.isStored(key, file, meta, start)) {
      io.note({ key, uploadId: start.uploadId }, 'multipart upload was already complete');
      return;
    }
    let progress = start.kind === 'multipart' ? await this.reconcile(key, start) : null;
    if (!progress) {
      const created = await this.client.send(new CreateMultipartUploadCommand({
        Bucket: bucket, Key: key, Metadata: { sha256: meta.sha256 }, ContentType: 'video/mp4',
      }), { abortSignal: io.signal });
      progress = { kind: 'multipart', uploadId: created.UploadId!, partSize: partSizeFor(meta.bytes), parts: [] };
      await io.save(progress);
    }
    const count = partCount(meta.bytes, progress.partSize);
    io.note({ key, uploadId: progress.uploadId, parts: count, recorded: progress.parts.length }, progress.parts.length > 0 ? 'resuming multipart upload' : 'multipart upload started');
    const done = new Set(progress.parts.map((p) => p.partNumber));
    for (let partNumber = 1; partNumber <= count; partNumber++) {
      if (done.has(partNumber)) continue;
      const offset = (partNumber - 1) * progress.partSize;
      const body = await readRange(file, offset, Math.min(progress.partSize, meta.bytes - offset));
      const md5 = md5Hex(body);
      const sent: UploadPartCommandOutput = await this.client.send(new UploadPartCommand({
        Bucket: bucket, Key: key, UploadId: progress.uploadId, PartNumber: partNumber,
        Body: throttled(body, io), ContentLength: body.length, ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
      }), { abortSignal: io.signal });
      io.note({ key, partNumber, bytes: body.length }, 'part uploaded');
      io.fault('sync.part.sent');
      progress = { ...progress, parts: [...progress.parts, { partNumber, etag: (sent.ETag ?? '').replace(/"/g, ''), md5 }] };
      await io.save(progress);
      io.fault('sync.part.recorded');
    }
    const parts = [...progress.parts].sort((a, b) => a.partNumber - b.partNumber);
    const completed = await this.client.send(new CompleteMultipartUploadCommand({
      Bucket: bucket, Key: key, UploadId: progress.uploadId,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) },
    }), { abortSignal: io.signal });
    const etag = (completed.ETag ?? '').replace(/"/g, '');
    const expected = multipartEtag(parts.map((p) => p.md5));
    if (etag && etag !== expected && etag !== await fileMd5(file)) throw new UploadError(`stored ETag ${etag} is not the parts' ${expected}`, false, 'ETagMismatch');
  }

  /**
   * Where the server has the upload: ListParts when it has it (s3rver does not), else what was
   * recorded. An upload the server no longer knows starts that file again (null).
   */
  private async reconcile(key: string, progress: Extract<FileProgress, { kind: 'multipart' }>): Promise<Extract<FileProgress, { kind: 'multipart' }> | null> {
    try {
      const listed = await this.client.send(new ListPartsCommand({ Bucket: this.target.bucket, Key: key, UploadId: progress.uploadId }));
      const onServer = new Map((listed.Parts ?? []).map((p) => [p.PartNumber, (p.ETag ?? '').replace(/"/g, '')]));
      // Keep recorded parts the server confirms with the same ETag (the MD5 we computed).
      return { ...progress, parts: progress.parts.filter((p) => onServer.get(p.partNumber) === p.etag) };
    } catch (err) {
      const e = classifyS3Error(err);
      if (e.code === 'NoSuchUpload') return null;
      if (e.permanent && e.code !== 'AccessDenied') throw e;
      // ListParts not offered (or not allowed): trust what was recorded.
      return progress;
    }
  }
}
