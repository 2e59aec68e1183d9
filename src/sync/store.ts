// Where sealed incidents go (CONTRACT §4 upstream layout). Each target resumes in its own way
// — S3 by multipart upload, a folder by byte offset — behind one interface, so the sync
// protocol (order, manifest last, verification, durable progress) is the same for both.

export interface FileMeta {
  bytes: number;
  sha256: string;
}

/** Per-file progress, kept durably by the sync queue; its shape belongs to the target. */
export type FileProgress =
  | { kind: 'none' }
  | { kind: 'multipart'; uploadId: string; partSize: number; parts: { partNumber: number; etag: string; md5: string }[] }
  | { kind: 'offset'; offset: number };

export interface UploadIo {
  /** Resolves when `bytes` more may be sent (the rate cap). */
  pace(bytes: number): Promise<void>;
  /** Bytes actually sent, for progress. */
  sent(bytes: number): void;
  /** Records progress durably; resolves once it is on disk. */
  save(progress: FileProgress): Promise<void>;
  /** Fault-injection points for crash tests. */
  fault(point: string): void;
  /** A step worth a debug line (a part sent, a resume). */
  note(fields: Record<string, unknown>, msg: string): void;
  signal: AbortSignal;
}

export interface ObjectStore {
  /** "s3://bucket/prefix at endpoint" or "/mnt/nas/camnode/incidents" — never credentials. */
  describe(): string;
  /** Whether the object is stored whole: by the target's own rule (CONTRACT §4 for S3). */
  isStored(key: string, file: string, meta: FileMeta, progress: FileProgress): Promise<boolean>;
  /** Uploads a file, resuming from `progress`; resolves once it is stored whole. */
  upload(key: string, file: string, meta: FileMeta, progress: FileProgress, io: UploadIo): Promise<void>;
  /** Proves the target is reachable and writable (for `camnode check`). */
  probe(): Promise<string>;
  /** Keys stored under a prefix ending in `/` (one level or more below it), sorted. */
  list(prefix: string): Promise<string[]>;
  /** An object's bytes, or null if there is none. */
  get(key: string): Promise<Buffer | null>;
}

/** Why an upload failed, as far as retrying goes. */
export class UploadError extends Error {
  constructor(message: string, readonly permanent: boolean, readonly code: string) {
    super(message);
    this.name = 'UploadError';
  }
}
