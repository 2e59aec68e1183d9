// Sync over a small uplink: a link shaped to 20 Mbit/s (tbf on the host side of a veth pair
// into a private network namespace) with s3rver running inside the namespace, so every byte
// camnode uploads crosses the shaped link.
//  1. Link use: the real S3Store.upload of a ~100 MB random (incompressible) file, as a
//     fraction of the link, and against a bare SDK multipart upload of the same file in the same
//     run (CreateMultipartUpload, UploadPart with 8 MiB Buffer bodies one after another,
//     CompleteMultipartUpload, the same client settings). Alternating camnode / bare, twice.
//  2. maxRate accuracy: S3Store.upload paced by the Syncer's TokenBucket (8 and 4 Mbit/s caps).
//  3. Resume cost: the real Syncer in a child process over a sealed-incident folder, SIGKILLed
//     at random points, resumed by a new process from its durable queue; the bytes re-sent are
//     counted by the server (request body bytes per part, aborted requests included) and
//     cross-checked with the veth's byte counter.
//
//   node dist/bench/sync-link.js [--mb 100] [--capped-mb 24] [--kills 2]
// Root only (network namespaces, tc); exits 2 otherwise.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { link as hardLink, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand,
  S3Client, UploadPartCommand, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { EventBus } from '../src/events.js';
import type { IncidentBook } from '../src/incidents/book.js';
import { DurableJsonFile } from '../src/platform/durable-json.js';
import { systemClock } from '../src/platform/clock.js';
import { createLogger } from '../src/platform/logger.js';
import { MiB, partSizeFor } from '../src/sync/hashing.js';
import { TokenBucket } from '../src/sync/pacing.js';
import { S3Store } from '../src/sync/s3-store.js';
import type { FileProgress, UploadIo } from '../src/sync/store.js';
import { Syncer } from '../src/sync/syncer.js';
import { createShapedLink, type ShapedLink, type ShapedLinkOptions } from './netns.js';
import { machine, machineMarkdown, mb, numberArg, sleep, verdict, writeResults } from './lib.js';

const SCRIPT = fileURLToPath(import.meta.url);

// The link. burst 32 KB: above rate/HZ even at HZ=100 (25 KB), so tbf never starves between
// timer ticks, yet only ~13 ms of line rate. latency 50 ms: a queue of ~125 KB + the burst, a
// plausible branch router; with the veth's ~0.1 ms RTT that keeps the link busy through TCP's
// backoffs without making the queue the story.
const LINK: ShapedLinkOptions = {
  ns: 'camnode-bench-up', hostIf: 'cnb-up-h', nsIf: 'cnb-up-n',
  hostAddr: '10.231.0.1', nsAddr: '10.231.0.2', prefixLen: 30,
  rate: '20mbit', burst: '32kb', latency: '50ms',
};
const LINK_BPS = 20e6;
/** TCP payload per 1514-byte frame (1500 MTU, 20 IP + 32 TCP with timestamps, 14 Ethernet; tbf counts the frame). */
const TCP_CEILING = 1448 / 1514;
const PORT = 4568;
const ENDPOINT = `http://${LINK.nsAddr}:${PORT}`;
const BUCKET = 'camnode-bench';
const REGION = 'us-east-1';
// s3rver's built-in account.
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const INCIDENT = '20261128T120000Z-bnch';
/** S3Store's fault point after a part's UploadPart answered, before the part is recorded. */
const FAULT_POINT = 'sync.part.sent';

const FILE_BYTES = Math.round(numberArg('--mb', 100) * 1e6);
const CAPPED_BYTES = Math.round(numberArg('--capped-mb', 24) * MiB);
const KILLS = Math.round(numberArg('--kills', 2));
const CAPS_BPS = [8e6, 4e6];

const TARGET_FRACTION = 0.9;
const TARGET_RATIO = 0.95;
const TARGET_CAP_ERROR = 0.1;

const mbit = (bytes: number, ms: number): number => (bytes * 8) / (ms / 1000) / 1e6;
const f2 = (x: number): string => x.toFixed(2);
const f3 = (x: number): string => x.toFixed(3);
const MiBs = (bytes: number): string => `${(bytes / MiB).toFixed(2)} MiB`;

function stringArg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The same settings S3Store gives its client (src/sync/s3-store.ts), for the bare runs. */
function clientConfig(): S3ClientConfig {
  return {
    region: REGION, endpoint: ENDPOINT, forcePathStyle: true, credentials: CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1, requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
  };
}

const newStore = (): S3Store => new S3Store({ endpoint: ENDPOINT, region: REGION, bucket: BUCKET, credentials: CREDENTIALS, probePrefix: 'bench' });

// ---- role: the S3 server inside the namespace ----

/** One HTTP request as the server saw it; body bytes count what arrived, aborted requests too. */
interface ReqRecord {
  id: number;
  method: string;
  key: string;
  uploadId: string | null;
  partNumber: number | null;
  bodyBytes: number;
  status: number | null;
  complete: boolean;
  open: boolean;
}

async function serveS3(): Promise<void> {
  const address = stringArg('--address')!;
  const port = Number(stringArg('--port'));
  const directory = stringArg('--dir')!;
  const require = createRequire(import.meta.url);
  type App = (req: unknown, res: unknown) => void;
  const S3rver = require('s3rver') as new (o: object) => { configureBuckets(): Promise<void>; callback(): App };
  const s3 = new S3rver({ silent: true, directory, configureBuckets: [{ name: BUCKET, configs: [] }] });
  await s3.configureBuckets();
  const app = s3.callback();
  let records: ReqRecord[] = [];
  let nextId = 1;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://s3');
    const part = url.searchParams.get('partNumber');
    const rec: ReqRecord = {
      id: nextId++, method: req.method ?? '', key: decodeURIComponent(url.pathname), uploadId: url.searchParams.get('uploadId'),
      partNumber: part ? Number(part) : null, bodyBytes: 0, status: null, complete: false, open: true,
    };
    records.push(rec);
    // The HTTP parser hands every body chunk to push(): counting there sees what arrived
    // without changing how s3rver reads the stream.
    const push = req.push.bind(req);
    req.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk) rec.bodyBytes += (chunk as Buffer).length;
      return push(chunk, encoding);
    };
    res.once('close', () => {
      rec.open = false;
      rec.status = res.statusCode;
      rec.complete = req.complete;
    });
    app(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, resolve);
  });
  process.stdout.write(`READY ${address}:${port}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'stats') process.stdout.write(`STATS ${JSON.stringify(records)}\n`);
    else if (line === 'reset') records = records.filter((r) => r.open);
  });
  // The benchmark ends (or dies): so does the server.
  lines.on('close', () => process.exit(0));
}

interface S3Server {
  stats(): Promise<ReqRecord[]>;
  reset(): void;
  stop(): Promise<void>;
}

async function startS3(link: ShapedLink, directory: string): Promise<S3Server> {
  const child = link.spawnInside(process.execPath, [SCRIPT, '--role', 's3', '--address', LINK.nsAddr, '--port', String(PORT), '--dir', directory], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4096); });
  const waiting: ((r: ReqRecord[]) => void)[] = [];
  let ready: () => void = () => {};
  const readyP = new Promise<void>((resolve, reject) => {
    ready = resolve;
    child.once('exit', (code) => reject(new Error(`s3rver exited (${code}): ${stderr}`)));
    setTimeout(() => reject(new Error(`s3rver not ready after 20 s: ${stderr}`)), 20_000).unref();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('READY')) ready();
    else if (line.startsWith('STATS ')) waiting.shift()?.(JSON.parse(line.slice(6)) as ReqRecord[]);
  });
  await readyP;
  return {
    stats: () => new Promise<ReqRecord[]>((resolve) => {
      waiting.push(resolve);
      child.stdin!.write('stats\n');
    }),
    reset: () => { child.stdin!.write('reset\n'); },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---- role: the Syncer in its own process (for the kill test) ----

async function runSyncer(): Promise<void> {
  const sealedDir = stringArg('--sealed')!;
  const stateDir = stringArg('--state')!;
  const log = createLogger({ level: 'debug' });
  const events = new EventBus(log);
  // The book only tells the Syncer the incident is sealed; the upload path is all real.
  const incident = { id: INCIDENT, state: 'sealed', urgent: true };
  const book = { list: () => [incident], get: () => incident, setState: async () => {} } as unknown as IncidentBook;
  // Nothing is damaged here; the bench measures the upload path.
  const damaged = { has: () => false, setAside: async () => {} };
  const syncer = new Syncer({ openStore: async () => newStore(), book, damaged, sealedDir, stateDir, keyPrefix: 'bench/resume', clock: systemClock, log, events });
  const synced = new Promise<void>((resolve) => events.on('incident.synced', () => resolve()));
  events.on('sync.failed', (e) => process.stdout.write(`FAILED ${JSON.stringify(e)}\n`));
  // Orphaned by a crashed benchmark, it would retry forever: it goes when its parent does.
  process.stdin.resume();
  process.stdin.once('close', () => process.exit(3));
  await syncer.start();
  await synced;
  await syncer.stop();
  process.stdout.write('SYNCED\n');
  process.exit(0);
}

// ---- the measurements ----

interface UploadRun {
  what: string;
  bytes: number;
  /** CreateMultipartUpload answered -> the last UploadPart answered: the time the link carries the file. */
  linkMs: number;
  /** The whole upload, Create to Complete. */
  totalMs: number;
  /** Bytes tbf passed during the whole upload: frames with every segment's headers, retransmissions included. */
  wireBytes: number;
  drops: number;
  parts: number;
}

async function randomFile(path: string, bytes: number): Promise<string> {
  const handle = await open(path, 'w');
  const hash = createHash('sha256');
  try {
    for (let at = 0; at < bytes; at += 8 * MiB) {
      const chunk = randomBytes(Math.min(8 * MiB, bytes - at));
      hash.update(chunk);
      await handle.write(chunk);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

async function sha256Of(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Downloads the object (the unshaped direction), checks its SHA-256, then deletes it. */
async function verifyAndDelete(key: string, sha256: string, bytes: number): Promise<void> {
  const client = new S3Client(clientConfig());
  try {
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const stored = await sha256Of(got.Body as Readable);
    if (stored.sha256 !== sha256 || stored.bytes !== bytes) throw new Error(`${key}: stored object differs (${stored.bytes} bytes, sha256 ${stored.sha256})`);
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  } finally {
    client.destroy();
  }
}

/** S3Store.upload with the io the Syncer gives it: the TokenBucket when capped, progress kept durably. */
async function camnodeUpload(link: ShapedLink, work: string, file: string, bytes: number, sha256: string, key: string, capBps: number | null): Promise<UploadRun> {
  const store = newStore();
  const bucket = capBps ? new TokenBucket(capBps / 8, 256 * 1024, () => systemClock.monotonic()) : null;
  const progressFile = new DurableJsonFile<FileProgress>(join(work, 'progress.json'), 'bench.write');
  let created = NaN;
  let lastPart = NaN;
  let parts = 0;
  const io: UploadIo = {
    pace: async (n) => {
      const wait = bucket?.take(n) ?? 0;
      if (wait > 0) await sleep(wait);
    },
    sent: () => {},
    save: async (progress) => {
      if (progress.kind === 'multipart' && progress.parts.length === 0) created = performance.now();
      await progressFile.write(progress);
    },
    fault: () => {},
    note: (_fields, msg) => {
      if (msg !== 'part uploaded') return;
      lastPart = performance.now();
      parts++;
    },
    signal: new AbortController().signal,
  };
  const q0 = link.qdisc();
  const t0 = performance.now();
  await store.upload(key, file, { bytes, sha256 }, { kind: 'none' }, io);
  const t1 = performance.now();
  const q1 = link.qdisc();
  await verifyAndDelete(key, sha256, bytes);
  const what = capBps ? `camnode, maxRate ${capBps / 1e6} Mbit/s` : 'camnode';
  return { what, bytes, linkMs: lastPart - created, totalMs: t1 - t0, wireBytes: q1.sentBytes - q0.sentBytes, drops: q1.dropped - q0.dropped, parts };
}

/** The bare SDK: Create, 8 MiB Buffer parts one after another, Complete; same client settings. */
async function bareUpload(link: ShapedLink, file: string, bytes: number, sha256: string, key: string): Promise<UploadRun> {
  const client = new S3Client(clientConfig());
  const partSize = partSizeFor(bytes);
  const handle = await open(file, 'r');
  try {
    const q0 = link.qdisc();
    const t0 = performance.now();
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const created = performance.now();
    const done: { PartNumber: number; ETag: string }[] = [];
    for (let offset = 0, n = 1; offset < bytes; offset += partSize, n++) {
      const body = Buffer.alloc(Math.min(partSize, bytes - offset));
      const { bytesRead } = await handle.read(body, 0, body.length, offset);
      if (bytesRead !== body.length) throw new Error('short read');
      const out = await client.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: n, Body: body }));
      done.push({ PartNumber: n, ETag: out.ETag! });
    }
    const lastPart = performance.now();
    await client.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: done } }));
    const t1 = performance.now();
    const q1 = link.qdisc();
    await verifyAndDelete(key, sha256, bytes);
    return { what: 'bare SDK', bytes, linkMs: lastPart - created, totalMs: t1 - t0, wireBytes: q1.sentBytes - q0.sentBytes, drops: q1.dropped - q0.dropped, parts: done.length };
  } finally {
    await handle.close();
    client.destroy();
  }
}

function printRun(r: UploadRun): void {
  console.log(`  ${r.what.padEnd(30)} link phase ${(r.linkMs / 1000).toFixed(1)} s ${f2(mbit(r.bytes, r.linkMs))} Mbit/s (${f3(mbit(r.bytes, r.linkMs) * 1e6 / LINK_BPS)} of the link), ` +
    `whole ${(r.totalMs / 1000).toFixed(1)} s ${f2(mbit(r.bytes, r.totalMs))} Mbit/s, tbf passed ${f3(r.wireBytes / r.bytes)} bytes per file byte, ${r.drops} tbf drops`);
}

// ---- resume after kills ----

interface Kill {
  how: string;
  atCoverage: number;
  /** The part being received when the child died, and how far into it. */
  inPart: number | null;
  intoPartBytes: number;
  recordedParts: number;
  wastedBytes: number;
}

interface ResumeResult {
  kills: Kill[];
  partBodyBytes: number;
  otherBodyBytes: number;
  wastedBytes: number;
  wireBytes: number;
  resumedWith: number[];
  totalS: number;
  verified: boolean;
}

/** How much of the file the server holds: per part, the most bytes any request for it delivered. */
function coverage(records: readonly ReqRecord[]): number {
  const best = new Map<number, number>();
  for (const r of records) if (r.partNumber !== null) best.set(r.partNumber, Math.max(best.get(r.partNumber) ?? 0, r.bodyBytes));
  return [...best.values()].reduce((a, b) => a + b, 0);
}

async function readRecordedParts(stateDir: string): Promise<number> {
  try {
    const q = JSON.parse(await readFile(join(stateDir, 'sync-queue.json'), 'utf8')) as { incidents: { files: { progress: FileProgress }[] }[] };
    const p = q.incidents[0]?.files[0]?.progress;
    return p?.kind === 'multipart' ? p.parts.length : 0;
  } catch {
    return 0;
  }
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function resumeAfterKills(link: ShapedLink, server: S3Server, work: string, file: string, bytes: number, sha256: string): Promise<ResumeResult> {
  const sealedDir = join(work, 'sealed');
  const stateDir = join(work, 'sync-state');
  await mkdir(join(sealedDir, INCIDENT), { recursive: true });
  await mkdir(stateDir, { recursive: true });
  await hardLink(file, join(sealedDir, INCIDENT, 'cam-1.mp4'));
  const manifest = { version: 1, incident: INCIDENT, files: [{ name: 'cam-1.mp4', bytes, sha256 }] };
  await writeFile(join(sealedDir, INCIDENT, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);

  // Kill k lands at a random point of the k-th equal share of 10 %..90 % of the file.
  const span = 0.8 / KILLS;
  const killAt = Array.from({ length: KILLS }, (_, k) => Math.round((0.1 + span * (k + Math.random())) * bytes));
  server.reset();
  await sleep(100);
  const q0 = link.qdisc();
  const t0 = performance.now();
  const kills: Kill[] = [];
  const snapshots: Set<number>[] = [];
  const resumedWith: number[] = [];
  // First the worst case the product's own fault hook can make: the process dies after a part
  // is sent and before it is recorded (CAMNODE_FAULT kills its process group, hence detached).
  // Then SIGKILLs at random points; the last process runs to the end.
  const plan: ('fault' | 'random' | 'finish')[] = ['fault', ...Array<'random'>(KILLS).fill('random'), 'finish'];
  for (const [phase, how] of plan.entries()) {
    const child = spawn(process.execPath, [SCRIPT, '--role', 'syncer', '--sealed', sealedDir, '--state', stateDir], {
      stdio: ['pipe', 'pipe', 'pipe'], detached: how === 'fault',
      env: { ...process.env, CAMNODE_FAULT: how === 'fault' ? FAULT_POINT : '' },
    });
    liveChildren.add(child);
    let out = '';
    let errTail = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    createInterface({ input: child.stderr }).on('line', (line) => {
      errTail = `${errTail}${line}\n`.slice(-4000);
      // How many recorded parts this process started from (S3Store's note on starting or resuming).
      if (phase > 0 && /"msg":"(resuming multipart upload|multipart upload started)"/.test(line)) resumedWith[phase - 1] = (JSON.parse(line) as { recorded: number }).recorded;
    });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
    if (how === 'finish') {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
      const code = await exited;
      clearTimeout(timer);
      liveChildren.delete(child);
      if (code !== 0 || !out.includes('SYNCED')) throw new Error(`the resumed syncer did not finish (${code}): ${out}${errTail}`);
      continue;
    }
    let records = await server.stats();
    if (how === 'random') {
      const target = Math.max(killAt[kills.filter((k) => k.how === 'random SIGKILL').length]!, coverage(records) + 64 * 1024);
      while (coverage(records) < target) {
        if (child.exitCode !== null) throw new Error(`the syncer exited before the kill point (${child.exitCode}): ${out}${errTail}`);
        await sleep(20);
        records = await server.stats();
      }
      child.kill('SIGKILL');
    }
    const ended = await exited;
    liveChildren.delete(child);
    if (ended !== 'SIGKILL') throw new Error(`the syncer ended with ${ended}, not SIGKILL: ${out}${errTail}`);
    // The kernel still delivers what the dead process left in its socket buffer, then closes:
    // wait for the server to see the connection end before taking stock.
    const deadline = performance.now() + 15_000;
    while ((records = await server.stats()).some((r) => r.open) && performance.now() < deadline) await sleep(50);
    const inFlight = records.filter((r) => r.partNumber !== null && !r.complete).at(-1);
    kills.push({
      how: how === 'fault' ? `fault hook ${FAULT_POINT}` : 'random SIGKILL',
      atCoverage: coverage(records), inPart: inFlight?.partNumber ?? null, intoPartBytes: inFlight?.bodyBytes ?? 0,
      recordedParts: await readRecordedParts(stateDir), wastedBytes: 0,
    });
    snapshots.push(new Set(records.map((r) => r.id)));
    console.log(`  kill ${phase + 1} (${kills.at(-1)!.how}) with ${MiBs(coverage(records))} of the file on the server` +
      (inFlight ? ` (part ${inFlight.partNumber} ${MiBs(inFlight.bodyBytes)} in)` : ' (no part in flight)') + `, ${kills.at(-1)!.recordedParts} parts recorded`);
  }
  const totalS = (performance.now() - t0) / 1000;
  await sleep(200);
  const records = await server.stats();
  const wireBytes = link.qdisc().sentBytes - q0.sentBytes;
  // A record belongs to the phase of the first snapshot that holds it, else to the last phase.
  const phaseOf = (r: ReqRecord): number => {
    const i = snapshots.findIndex((s) => s.has(r.id));
    return i < 0 ? kills.length : i;
  };
  const partRecords = records.filter((r) => r.partNumber !== null);
  // A kill wasted what its phase delivered of any part that a later phase sent again.
  for (let k = 0; k < kills.length; k++) {
    const later = new Set(partRecords.filter((r) => phaseOf(r) > k).map((r) => r.partNumber));
    kills[k]!.wastedBytes = partRecords.filter((r) => phaseOf(r) === k && later.has(r.partNumber)).reduce((a, r) => a + r.bodyBytes, 0);
  }
  const partBodyBytes = partRecords.reduce((a, r) => a + r.bodyBytes, 0);
  const otherBodyBytes = records.filter((r) => r.partNumber === null).reduce((a, r) => a + r.bodyBytes, 0);
  await verifyAndDelete(`bench/resume/${INCIDENT}/cam-1.mp4`, sha256, bytes);
  return { kills, partBodyBytes, otherBodyBytes, wastedBytes: partBodyBytes - bytes, wireBytes, resumedWith, totalS, verified: true };
}

// ---- main ----

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.log('sync-link: skipped — needs root (network namespace, tc)');
    return 2;
  }
  const m = machine();
  // A fixed place, so a crashed run's files go with its namespace (the link's lock says no
  // other run is alive once createShapedLink has returned).
  const work = join(tmpdir(), 'camnode-bench-sync-link');
  const file = join(work, 'clip.bin');
  const capped = join(work, 'capped.bin');
  const partSize = partSizeFor(FILE_BYTES);
  console.log(`sync-link: uploads across a veth shaped with tbf rate ${LINK.rate} burst ${LINK.burst} latency ${LINK.latency} to s3rver in namespace ${LINK.ns}`);
  let link: ShapedLink;
  try {
    link = createShapedLink(LINK);
  } catch (err) {
    console.log(`sync-link: could not run — ${(err as Error).message}`);
    return 2;
  }
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  process.on('exit', () => rmSync(work, { recursive: true, force: true }));
  const links: UploadRun[] = [];
  const caps: { capBps: number; run: UploadRun }[] = [];
  let resume: ResumeResult;
  let qdiscLine = '';
  let server: S3Server | undefined;
  try {
    const [sha, cappedSha] = [await randomFile(file, FILE_BYTES), await randomFile(capped, CAPPED_BYTES)];
    server = await startS3(link, join(work, 's3'));
    qdiscLine = link.qdiscLine();
    console.log(`  ${qdiscLine}`);
    console.log(`  test file ${mb(FILE_BYTES)} of random bytes (${Math.ceil(FILE_BYTES / partSize)} parts of ${MiBs(partSize)})`);

    console.log('1. link use, camnode vs bare SDK, alternating');
    for (let round = 1; round <= 2; round++) {
      links.push(await camnodeUpload(link, work, file, FILE_BYTES, sha, `bench/link-camnode-${round}.bin`, null));
      printRun(links.at(-1)!);
      links.push(await bareUpload(link, file, FILE_BYTES, sha, `bench/link-bare-${round}.bin`));
      printRun(links.at(-1)!);
    }

    console.log(`2. maxRate accuracy (${MiBs(CAPPED_BYTES)} file)`);
    for (const capBps of CAPS_BPS) {
      const run = await camnodeUpload(link, work, capped, CAPPED_BYTES, cappedSha, `bench/capped-${capBps}.bin`, capBps);
      caps.push({ capBps, run });
      printRun(run);
    }

    console.log(`3. resume after a kill by the fault hook (${FAULT_POINT}) and ${KILLS} random SIGKILL${KILLS === 1 ? '' : 's'} of a Syncer process`);
    resume = await resumeAfterKills(link, server, work, file, FILE_BYTES, sha);
  } finally {
    await server?.stop();
    link.destroy();
  }

  // ---- figures ----
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const of = (what: string): UploadRun[] => links.filter((r) => r.what === what);
  const linkRate = (r: UploadRun): number => mbit(r.bytes, r.linkMs) * 1e6;
  const totalRate = (r: UploadRun): number => mbit(r.bytes, r.totalMs) * 1e6;
  const camFraction = mean(of('camnode').map(linkRate)) / LINK_BPS;
  const camTotalFraction = mean(of('camnode').map(totalRate)) / LINK_BPS;
  const bareFraction = mean(of('bare SDK').map(linkRate)) / LINK_BPS;
  const ratio = mean(of('camnode').map(totalRate)) / mean(of('bare SDK').map(totalRate));
  const linkRatio = mean(of('camnode').map(linkRate)) / mean(of('bare SDK').map(linkRate));
  const capErrors = caps.map(({ capBps, run }) => linkRate(run) / capBps - 1);
  const okFraction = camFraction >= TARGET_FRACTION;
  const okRatio = ratio >= TARGET_RATIO;
  const okCaps = capErrors.every((e) => Math.abs(e) <= TARGET_CAP_ERROR);
  const okResume = resume.kills.every((k) => k.wastedBytes <= partSize) && resume.verified;
  const uninterruptedWire = mean(of('camnode').map((r) => r.wireBytes));

  console.log(`  resume: ${resume.kills.length} kills, ${MiBs(resume.partBodyBytes)} of part bodies received for a ${MiBs(FILE_BYTES)} file: ${MiBs(resume.wastedBytes)} re-sent ` +
    `(per kill: ${resume.kills.map((k) => MiBs(k.wastedBytes)).join(', ')}; target <= one part, ${MiBs(partSize)}) ${verdict(okResume)}`);
  console.log(`  camnode link use ${f3(camFraction)} of ${LINK_BPS / 1e6} Mbit/s (target >= ${TARGET_FRACTION}; TCP ceiling ${f3(TCP_CEILING)}) ${verdict(okFraction)}`);
  console.log(`  camnode / bare SDK (whole upload) ${f3(ratio)} (target >= ${TARGET_RATIO}) ${verdict(okRatio)}`);
  console.log(`  maxRate: ${caps.map(({ capBps }, i) => `${capBps / 1e6} Mbit/s ${capErrors[i]! >= 0 ? '+' : ''}${(capErrors[i]! * 100).toFixed(1)} %`).join(', ')} (target within ${TARGET_CAP_ERROR * 100} %) ${verdict(okCaps)}`);

  const runRow = (r: UploadRun, i: number): string => `| ${i + 1} | ${r.what} | ${mb(r.bytes)} | ${r.parts} | ${(r.linkMs / 1000).toFixed(2)} | ${f2(linkRate(r) / 1e6)} | ${f3(linkRate(r) / LINK_BPS)} | ` +
    `${(r.totalMs / 1000).toFixed(2)} | ${f2(totalRate(r) / 1e6)} | ${f3(r.wireBytes / r.bytes)} | ${r.drops} |`;
  const header = ['| run | what | file | parts | link phase s | payload Mbit/s | of link | whole upload s | whole Mbit/s | tbf bytes / file bytes | tbf drops |', '|---|---|---|---|---|---|---|---|---|---|---|'];
  const path = writeResults('sync-link', [
    '# Sync over a shaped 20 Mbit/s uplink: link use, maxRate accuracy, resume cost',
    '',
    `Set-up: a network namespace \`${LINK.ns}\` joined to the host by a veth pair (${LINK.hostAddr}/${LINK.prefixLen} host side, ${LINK.nsAddr} inside), ` +
    `s3rver 3.7 running inside the namespace (\`ip netns exec\`, a filesystem store on the local disk), the upload direction shaped on the host side's egress with ` +
    `\`tc qdisc add dev ${LINK.hostIf} root tbf rate ${LINK.rate} burst ${LINK.burst} latency ${LINK.latency}\`. burst 32 KB is above rate/HZ even at HZ=100 (25 KB) and ` +
    'only ~13 ms of line rate; latency 50 ms gives a queue of ~125 KB plus the burst, a plausible branch router. The reverse direction (ACKs, downloads for ' +
    `verification) is not shaped. Veth MTU 1500; TCP congestion control \`${congestionControl()}\`. ` +
    `tbf counts whole frames, so TCP payload can reach at most 1448/1514 = ${f3(TCP_CEILING)} of the rate.`,
    '',
    `Test file: ${mb(FILE_BYTES)} of random bytes (incompressible), ${Math.ceil(FILE_BYTES / partSize)} parts of ${MiBs(partSize)}. Every upload is downloaded again ` +
    'and its SHA-256 compared with the file\'s, then deleted.',
    '',
    machineMarkdown(m),
    '',
    '## 1. Link use: camnode vs a bare SDK multipart upload',
    '',
    '"camnode" is the real `S3Store.upload` (AWS SDK v3 client as S3Store builds it, 8 MiB parts read from the file, MD5 per part as Content-MD5, ' +
    'bodies streamed in 64 KiB chunks through `io.pace`) with the io the Syncer gives it, minus the rate cap: progress written durably ' +
    '(`DurableJsonFile`: temp file, fsync, rename) after Create and after every part. "bare SDK" is `CreateMultipartUpload`, `UploadPart` with 8 MiB ' +
    '`Buffer` bodies read from the file one after another (no Content-MD5), `CompleteMultipartUpload`, with the same client settings (path style, ' +
    '`requestChecksumCalculation: WHEN_REQUIRED`, `maxAttempts: 1`, the same timeouts). Each run uses a new client (a new connection). Runs alternate, twice. ' +
    'The link phase runs from CreateMultipartUpload\'s answer to the last UploadPart\'s answer (the time the link carries the file); the whole upload adds ' +
    'Create and Complete (s3rver concatenates the parts on Complete: server disk work, not link). "tbf bytes" is the qdisc\'s own Sent counter over the whole ' +
    'upload (frames with every segment\'s headers, retransmissions and requests included); "tbf drops" its drop counter (TCP filling the 50 ms queue).',
    '',
    ...header,
    ...links.map(runRow),
    '',
    `- camnode's payload rate over the link phase: **${f3(camFraction)}** of ${LINK_BPS / 1e6} Mbit/s (target >= ${TARGET_FRACTION}): **${verdict(okFraction)}**. ` +
    `Over the whole upload (Create and Complete included): ${f3(camTotalFraction)}. The bare SDK over its link phase: ${f3(bareFraction)}.`,
    `- camnode / bare SDK, whole upload: **${f3(ratio)}** (target >= ${TARGET_RATIO}): **${verdict(okRatio)}**; over the link phase only: ${f3(linkRatio)}.`,
    '',
    `## 2. maxRate accuracy (${MiBs(CAPPED_BYTES)} random file, ${Math.ceil(CAPPED_BYTES / partSizeFor(CAPPED_BYTES))} parts)`,
    '',
    'The same `S3Store.upload`, its `io.pace` taking from `new TokenBucket(maxRate / 8, 256 * 1024, monotonic clock)` and sleeping what it says, ' +
    'exactly as the Syncer does. The measured rate is file bytes over the link phase (the cap is on payload bytes; the link carries ~4.6 % more in headers). ' +
    `The bucket starts full: its 256 KiB burst alone is worth +${((256 * 1024) / CAPPED_BYTES * 100).toFixed(1)} % on this file.`,
    '',
    ...header,
    ...caps.map(({ run }, i) => runRow(run, i)),
    '',
    ...caps.map(({ capBps, run }, i) => `- cap ${capBps / 1e6} Mbit/s: measured **${f2(linkRate(run) / 1e6)} Mbit/s**, ${capErrors[i]! >= 0 ? '+' : ''}${(capErrors[i]! * 100).toFixed(1)} % ` +
      `(target within ${TARGET_CAP_ERROR * 100} %): **${verdict(Math.abs(capErrors[i]!) <= TARGET_CAP_ERROR)}**`),
    '',
    `## 3. Resume cost after SIGKILL (${KILLS + 1} kills in one upload)`,
    '',
    'The real `Syncer` (durable `SyncQueue` under a state directory, `S3Store`, no rate cap) in a child process, over a sealed-incident folder ' +
    `(\`${INCIDENT}/cam-1.mp4\`, the ${mb(FILE_BYTES)} file, and its manifest.json; the incident book is a stand-in that reports the incident sealed). ` +
    `The first child runs with \`CAMNODE_FAULT=${FAULT_POINT}\` (in its own process group): the product's fault hook SIGKILLs it right after the first ` +
    'UploadPart is answered and before the part is recorded — the worst case, a whole part the server has but the device does not know about. ' +
    `Then ${KILLS} children are SIGKILLed by the benchmark when the server holds a random share of the file (kill k at a uniformly random point of ` +
    'the k-th equal share of 10–90 %). Each new child resumes from the durable queue; the last one runs to `incident.synced`. The server (a counting wrapper around s3rver\'s request ' +
    'handler, inside the namespace) counts every request body byte that arrived, aborted requests included. A kill\'s waste is what its process ' +
    'delivered of parts a later process sent again. s3rver has no ListParts: the resume trusts the recorded parts (S3Store.reconcile\'s fallback).',
    '',
    '| kill | how | server held | part in flight | recorded parts at kill | resumed with parts | re-sent |',
    '|---|---|---|---|---|---|---|',
    ...resume.kills.map((k, i) => `| ${i + 1} | ${k.how} | ${MiBs(k.atCoverage)} | ${k.inPart === null ? 'none' : `part ${k.inPart}, ${MiBs(k.intoPartBytes)} in`} | ${k.recordedParts} | ${resume.resumedWith[i] ?? '?'} | ${MiBs(k.wastedBytes)} |`),
    '',
    `- Part bodies received: ${MiBs(resume.partBodyBytes)} for a ${MiBs(FILE_BYTES)} file: **${MiBs(resume.wastedBytes)} re-sent** in all; ` +
    `per kill ${resume.kills.map((k) => MiBs(k.wastedBytes)).join(', ')} (target <= one part, ${MiBs(partSize)}): **${verdict(okResume)}**. ` +
    `Other request bodies (manifest.json PUT, Complete XML): ${resume.otherBodyBytes} bytes.`,
    `- Cross-check at the shaped link: tbf passed ${mb(resume.wireBytes)} for the killed-and-resumed upload vs ${mb(uninterruptedWire)} for ` +
    `an uninterrupted camnode upload in section 1: ${mb(resume.wireBytes - uninterruptedWire)} more (the re-sent bytes with their headers, plus each process's ` +
    'connection, HEADs, and the manifest).',
    `- The stored object's SHA-256 matches the file: ${resume.verified ? 'yes' : 'no'}. Wall time of the ${KILLS + 2} processes' upload: ${resume.totalS.toFixed(1)} s.`,
    '',
    `tbf at the end of the set-up: \`${qdiscLine}\`.`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return okFraction && okRatio && okCaps && okResume ? 0 : 1;
}

/** The kernel's TCP congestion control (it shapes how a single upload fills the link). */
function congestionControl(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

const role = stringArg('--role');
if (role === 's3') {
  await serveS3();
} else if (role === 'syncer') {
  await runSyncer();
} else {
  process.exitCode = await main().catch((err: unknown) => {
    console.error(err);
    return 2;
  });
}
