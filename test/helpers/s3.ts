// A real S3 protocol server for sync tests: s3rver (npm) in its own child process on a fixed
// 127.0.0.1 port, so a test can take the upstream down hard (SIGKILL: open connections drop as
// on a real outage) and bring it back on the same port with the same data. Objects are read
// back through the AWS SDK itself (path style), the way central ops would.
//
// s3rver 3.7 quirks: no ListParts/Abort/ListMultipartUploads; of a SigV4 request it checks only
// that the access key id exists (S3RVER), not the signature, so "wrong credentials" here means a
// wrong key id; a multipart object's ETag is the plain MD5 of the whole object, not the parts' form;
// listing or HEAD of an object still being written makes it hash (and cache) the partial file.
//
// Below the server: small helpers for sync tests that drive a real agent (one camera on a
// high-bitrate file source, so an incident's clip is a real multipart upload).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import {
  CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client,
} from '@aws-sdk/client-s3';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from './agent.js';
import { listSegments } from './segments.js';

const S3RVER_MAIN = createRequire(import.meta.url).resolve('s3rver');
// The SDK is pinned to a version that runs on Node 20; its notice about later ones is noise here.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
const READY_TIMEOUT_MS = 15_000;

export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

// Runs in the child (CommonJS `node -e`): start s3rver and say so on stdout.
const CHILD = `
const S3rver = require(process.env.S3RVER_MAIN);
const opts = JSON.parse(process.env.S3RVER_OPTS);
new S3rver(opts).run().then(
  () => process.stdout.write('S3RVER READY\\n'),
  (err) => { process.stderr.write(String(err && err.stack || err) + '\\n'); process.exit(1); },
);
`;

export interface StoredObject {
  key: string;
  bytes: number;
  etag: string;
  sha256Meta: string | undefined;
  lastModified: Date | undefined;
}

export interface S3Server {
  port: number;
  /** http://127.0.0.1:PORT — stable across stop()/start(). */
  endpoint: string;
  /** s3rver's data directory: `<dir>/<bucket>/<key>._S3rver_object`. */
  dir: string;
  client: S3Client;
  readonly running: boolean;
  /** Starts (again) on the same port with the same data; waits until it listens. */
  start(): Promise<void>;
  /** SIGKILL: the upstream is gone at once, open connections drop. */
  stop(): Promise<void>;
  createBucket(name: string): Promise<void>;
  list(bucket: string, prefix: string): Promise<{ key: string; bytes: number; lastModified: Date | undefined }[]>;
  head(bucket: string, key: string): Promise<StoredObject | null>;
  get(bucket: string, key: string): Promise<Buffer>;
  /** The object's file on s3rver's disk (its mtime is when the object was written). */
  objectPath(bucket: string, key: string): string;
  objectMtimeMs(bucket: string, key: string): Promise<number>;
  /** stop() and delete the data directory. */
  dispose(): Promise<void>;
}

const servers = new Set<S3Server>();

/** A port free now on 127.0.0.1; the server keeps it across its restarts. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export async function startS3rver(opts: { buckets?: string[] } = {}): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), 'camnode-s3rver-'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const client = new S3Client({
    endpoint, region: 'us-east-1', forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET },
    // As in the product: s3rver would store the SDK's default checksums inside streamed objects.
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });

  const server: S3Server = {
    port, endpoint, dir, client,
    get running() { return child !== undefined; },

    async start() {
      if (child) return;
      const options = {
        port, address: '127.0.0.1', silent: true, directory: dir,
        configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
      };
      const proc = spawn(process.execPath, ['-e', CHILD], {
        env: { ...process.env, S3RVER_MAIN, S3RVER_OPTS: JSON.stringify(options) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      exited = new Promise((resolve) => proc.on('close', () => resolve()));
      let out = '';
      let err = '';
      proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`s3rver did not start in ${READY_TIMEOUT_MS} ms\n${err}`)), READY_TIMEOUT_MS);
        proc.on('close', (code) => { clearTimeout(timer); reject(new Error(`s3rver exited (${code}) before it was ready\n${err}`)); });
        proc.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('S3RVER READY\n')) { clearTimeout(timer); resolve(); }
        });
      }).catch(async (e: unknown) => {
        proc.kill('SIGKILL');
        await exited;
        child = undefined;
        throw e;
      });
    },

    async stop() {
      if (!child) return;
      child.kill('SIGKILL');
      await exited;
      child = undefined;
    },

    async createBucket(name) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
    },

    async list(bucket, prefix) {
      const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (out.Contents ?? []).map((o) => ({ key: o.Key!, bytes: o.Size ?? -1, lastModified: o.LastModified }));
    },

    async head(bucket, key) {
      try {
        const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return {
          key, bytes: h.ContentLength ?? -1, etag: (h.ETag ?? '').replace(/"/g, ''),
          sha256Meta: h.Metadata?.['sha256'], lastModified: h.LastModified,
        };
      } catch (err) {
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
        throw err;
      }
    },

    async get(bucket, key) {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    },

    objectPath(bucket, key) {
      return join(dir, bucket, `${key}._S3rver_object`);
    },

    async objectMtimeMs(bucket, key) {
      return (await stat(server.objectPath(bucket, key))).mtimeMs;
    },

    async dispose() {
      await server.stop();
      servers.delete(server);
      client.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
  servers.add(server);
  try {
    await server.start();
  } catch (err) {
    await server.dispose();
    throw err;
  }
  return server;
}

/** Teardown: every server started by this test file, stopped and its data deleted. */
export async function disposeAllS3rvers(): Promise<void> {
  await Promise.all([...servers].map((s) => s.dispose()));
}

/** A credentials file as CONTRACT §2 `upstream.credentials` reads it. */
export async function writeS3Credentials(dir: string, name = 's3.env', keys = { id: S3RVER_KEY, secret: S3RVER_SECRET }): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `AWS_ACCESS_KEY_ID=${keys.id}\nAWS_SECRET_ACCESS_KEY=${keys.secret}\n`, { mode: 0o600 });
  return path;
}

/** The `upstream` config section for this server. */
export function s3Upstream(server: S3Server, bucket: string, credentials: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 's3', endpoint: server.endpoint, region: 'us-east-1', bucket, credentials, ...over };
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** S3's multipart ETag for `data` split into `partSize` parts (CONTRACT §4). */
export function multipartEtag(data: Buffer, partSize: number): string {
  const md5s: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += partSize) {
    md5s.push(createHash('md5').update(data.subarray(offset, offset + partSize)).digest());
  }
  return `${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${md5s.length}`;
}

// ---- Sync test nodes: a real agent recording a high-bitrate file source, so one incident's
// clip is a real multipart upload (> 16 MiB) after a few seconds of recording.

const execFileP = promisify(execFile);

/**
 * A 10 s 720p H.264 file at ~48 Mbit/s (noise keeps it from compressing), for `source: file:`:
 * the recorder copies it in real time (no re-encode), ~6 MB of footage per second.
 */
export async function makeHighBitrateLoop(dir: string): Promise<string> {
  const path = join(dir, 'loop.mp4');
  await execFileP('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=25', '-t', '10',
    '-vf', 'noise=alls=40:allf=t', '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '48M', '-maxrate', '48M', '-bufsize', '48M',
    '-g', '25', '-pix_fmt', 'yuv420p', path,
  ], { timeout: 60_000 });
  return path;
}

export interface SyncNode {
  dir: string;
  configPath: string;
  storage: string;
  stateDir: string;
  socket: string;
  /** The agent of the current run; `runs` holds every run's agent (their logs) in order. */
  agent: RunningAgent;
  runs: RunningAgent[];
}

export interface IncidentView { id: string; state: string; cameras: string[]; window: { start: string; end: string } }

/** Starts `camnode run` on a fresh node dir with one camera on `source` and the given upstream. */
export async function startSyncNode(opts: {
  source: string; upstream: Record<string, unknown>; env?: NodeJS.ProcessEnv; over?: Record<string, Record<string, unknown>>; camera?: string;
}): Promise<SyncNode> {
  const dir = await tempDir('camnode-sync-');
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, [{ id: opts.camera ?? 'lobby', source: opts.source, zone: 'entrance' }], {
    control: { socket },
    upstream: opts.upstream,
    ...opts.over,
  });
  const configPath = await writeConfig(dir, config);
  const node: SyncNode = { dir, configPath, socket, storage: join(dir, 'storage'), stateDir: join(dir, 'state'), agent: undefined as unknown as RunningAgent, runs: [] };
  await startRun(node, opts.env);
  return node;
}

/** Starts the node's agent (again), with `env` (e.g. CAMNODE_FAULT), and waits until it is up. */
export async function startRun(node: SyncNode, env: NodeJS.ProcessEnv = {}): Promise<RunningAgent> {
  const agent = RunningAgent.start(node.configPath, { env: { CAMNODE_FAULT: '', ...env } });
  node.agent = agent;
  node.runs.push(agent);
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started').catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n--- its log ---\n${agent.logs.slice(-40).map((l) => JSON.stringify(l)).join('\n')}\n--- its stderr ---\n${agent.stderrText}`);
  });
  return agent;
}

/** Bytes of finished footage of a camera in the node's ring. */
export async function footageBytes(node: SyncNode, camera = 'lobby'): Promise<number> {
  return (await listSegments(node.storage, camera)).reduce((a, s) => a + s.bytes, 0);
}

/** `camnode ctl <sub> --local --config <node's config> --json …`, parsed; fails on a non-zero exit. */
export async function ctlJson<T>(node: SyncNode, sub: string, ...args: string[]): Promise<T> {
  const r = await runCli(['ctl', sub, '--local', '--config', node.configPath, '--json', ...args]);
  if (r.code !== 0) throw new Error(`ctl ${sub} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export function ctl(node: SyncNode, sub: string, ...args: string[]): Promise<CliResult> {
  return runCli(['ctl', sub, '--local', '--config', node.configPath, ...args]);
}

export async function readIncident(node: SyncNode, id: string): Promise<IncidentView> {
  const reply = await requestLocal(node.socket, 'incident', { incident: id }, 5_000);
  if (!reply.ok) throw new Error(`incident ${id}: ${JSON.stringify(reply.error)}`);
  return reply.data as IncidentView;
}

export function waitForIncidentState(node: SyncNode, id: string, state: string, timeoutMs = 60_000): Promise<IncidentView> {
  return waitFor(async () => {
    const i = await readIncident(node, id).catch(() => null);
    return i?.state === state && i;
  }, `incident ${id} ${state}\n--- stderr ---\n${node.agent.stderrText}`, timeoutMs, 200);
}

/**
 * Locks once at least `minBytes` of footage are recorded, with a pre-roll reaching back over
 * all of it (fresh node) and a short post-roll, so the clip is sealed soon and is large.
 */
export async function lockLargeIncident(node: SyncNode, minBytes: number): Promise<string> {
  await waitFor(async () => (await footageBytes(node)) >= minBytes, `${minBytes} bytes of footage`, 60_000, 250);
  const { incident } = await ctlJson<{ incident: string }>(node, 'lock', '--reason', 'sync test', '--by', 'vitest', '--pre-roll', '60s', '--post-roll', '1s');
  return incident;
}

/** Log lines of every run of the node with this message (and, optionally, a key). */
export function partLines(node: SyncNode, key?: string): { run: number; partNumber: number; bytes: number }[] {
  return node.runs.flatMap((a, run) => a.logs
    .filter((l) => l.msg === 'part uploaded' && (key === undefined || l['key'] === key))
    .map((l) => ({ run, partNumber: Number(l['partNumber']), bytes: Number(l['bytes']) })));
}

export interface FileCheck {
  name: string;
  bytes: number;
  sealedSha256: string;
  storedSha256: string;
  storedBytes: number;
  metaSha256: string | undefined;
  etag: string;
  /** What the ETag may be by CONTRACT §4: the MD5, or the multipart ETag of 8 MiB parts. */
  md5: string;
  multipart8MiB: string;
}

/** Each sealed file of the incident next to the object stored for it. */
export async function compareStored(server: S3Server, bucket: string, node: SyncNode, nodeId: string, id: string): Promise<FileCheck[]> {
  const sealedDir = join(node.storage, 'incidents', id);
  const names = (await readdir(sealedDir)).filter((n) => n.endsWith('.mp4') || n === 'manifest.json').sort();
  const out: FileCheck[] = [];
  for (const name of names) {
    const local = await readFile(join(sealedDir, name));
    const key = `incidents/${nodeId}/${id}/${name}`;
    const head = await server.head(bucket, key);
    const stored = head ? await server.get(bucket, key) : Buffer.alloc(0);
    out.push({
      name, bytes: local.length, sealedSha256: sha256(local), storedSha256: head ? sha256(stored) : '(missing)', storedBytes: head?.bytes ?? -1,
      metaSha256: head?.sha256Meta, etag: head?.etag ?? '', md5: md5(local), multipart8MiB: multipartEtag(local, 8 * 1024 * 1024),
    });
  }
  return out;
}

/**
 * Watches s3rver's data folder (passively: listing through s3rver would make it hash objects
 * still being written) and records, each time the manifest's object file is first seen, the
 * clips' object files then present and their sizes.
 */
export function watchArrivals(server: S3Server, bucket: string, prefix: string): { stop(): Promise<{ manifestSeen: boolean; clipsAtManifest: Map<string, number>; firstSeen: Map<string, number> }> } {
  const dir = join(server.dir, bucket, prefix);
  const firstSeen = new Map<string, number>();
  const clipsAtManifest = new Map<string, number>();
  let manifestSeen = false;
  let running = true;
  const loop = (async () => {
    while (running) {
      const names = await readdir(dir).catch(() => [] as string[]);
      const objects = names.filter((n) => n.endsWith('._S3rver_object')).map((n) => n.slice(0, -'._S3rver_object'.length));
      const now = performance.now();
      for (const n of objects) if (!firstSeen.has(n)) firstSeen.set(n, now);
      if (!manifestSeen && objects.includes('manifest.json')) {
        manifestSeen = true;
        for (const n of objects.filter((o) => o !== 'manifest.json')) {
          // s3rver writes an object's metadata after its bytes: no metadata, not whole yet.
          const whole = await stat(join(dir, `${n}._S3rver_metadata.json`)).then(() => true, () => false);
          clipsAtManifest.set(n, whole ? (await stat(join(dir, `${n}._S3rver_object`))).size : -1);
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { manifestSeen, clipsAtManifest, firstSeen };
    },
  };
}
