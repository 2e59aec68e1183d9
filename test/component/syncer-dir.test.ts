// The Syncer (issue 5) onto a folder target (DirStore), with real parts around it: a real
// IncidentBook and AuditLog under a temp state dir, sealed folders written the way the sealer
// writes them (clips, then a manifest signed with the node's real key), a real temp folder as the
// upstream. Time is injected: a ManualClock, and a `sleep` that records every wait. Pacing
// waits (made while an upload is in flight) advance the clock at once, as if the time passed;
// idle waits (nothing to send now: the window, a retry backoff) stay pending until the test lets
// the time pass, so the loop can be stepped and each wait checked to the millisecond.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { loadOrCreateNodeKey } from '../../src/audit/keys.js';
import { serializeManifest, signManifest, verifyManifestSignature, type ManifestFile } from '../../src/audit/manifest.js';
import { EventBus, type AgentEvents } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { DamagedIncidents } from '../../src/incidents/damaged.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { DirStore } from '../../src/sync/dir-store.js';
import type { ObjectStore } from '../../src/sync/store.js';
import { Syncer, type SyncerDeps } from '../../src/sync/syncer.js';

const MiB = 1024 * 1024;
const NODE = 'test-node';
const PREFIX = `incidents/${NODE}`;
const BURST = 256 * 1024; // the Syncer's token bucket burst
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const isRoot = process.getuid?.() === 0;

interface Rig {
  dir: string;
  stateDir: string;
  sealedDir: string;
  clock: ManualClock;
  events: EventBus;
  book: IncidentBook;
  audit: AuditLog;
  damaged: DamagedIncidents;
  syncer: Syncer | undefined;
  /** Waits asked for while an upload was in flight (the rate cap), and the progress then. */
  paceWaits: number[];
  paceProgress: { sent: number; pending: number }[];
  /** Waits asked for with nothing to send now, in order; `pending` is the one the loop sits in. */
  idleWaits: number[];
  pending: { ms: number; resolve: () => void } | undefined;
  /** Every upload the target was asked for, with what the incident folder upstream held as it began. */
  uploads: { key: string; before: Map<string, number> }[];
  seen: { [K in keyof AgentEvents]?: AgentEvents[K][] };
}

const rigs: Rig[] = [];
const mounts: string[] = [];
const watchers: FSWatcher[] = [];

afterEach(async () => {
  for (const w of watchers.splice(0)) w.close();
  for (const rig of rigs.splice(0)) {
    await rig.syncer?.stop();
    await rig.book.stop();
    await rig.audit.stop();
    for (const m of mounts.splice(0)) {
      try { execFileSync('umount', [m]); } catch { /* reported by rm below if still mounted */ }
    }
    await rm(rig.dir, { recursive: true, force: true });
  }
});

async function makeRig(startAt = Date.UTC(2026, 10, 28, 12)): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'camnode-syncer-'));
  const stateDir = join(dir, 'state');
  const sealedDir = join(dir, 'storage', 'incidents');
  await mkdir(sealedDir, { recursive: true });
  const clock = new ManualClock(startAt);
  const log = silentLogger();
  const events = new EventBus(log);
  const audit = new AuditLog({ stateDir, log, clock });
  await audit.start();
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: NODE,
    policy: { preRollMs: 1_000, postRollMs: 1_000, maxLengthMs: 3_600_000 },
    enabledCameras: () => ['front', 'back'],
    disposeNeedsSync: true, clock, log, events, audit, auditLogPath: audit.path,
  });
  await book.start();
  const damaged = new DamagedIncidents({ sealedDir, audit, events, clock, log });
  await damaged.start();
  const rig: Rig = { dir, stateDir, sealedDir, clock, events, book, audit, damaged, syncer: undefined, paceWaits: [], paceProgress: [], idleWaits: [], pending: undefined, uploads: [], seen: {} };
  for (const type of ['incident.synced', 'sync.failed'] as const) {
    events.on(type, (p) => { ((rig.seen[type] ??= []) as unknown[]).push(p); });
  }
  rigs.push(rig);
  return rig;
}

/** A sealed incident as the sealer leaves it: clips, a signed manifest, the book saying sealed. */
async function sealedIncident(rig: Rig, opts: { urgent?: boolean; sizes?: Record<string, number> } = {}): Promise<{ id: string; files: Map<string, Buffer> }> {
  const sizes = opts.sizes ?? { front: 3 * MiB + 12_345, back: 2 * MiB + 777 };
  const { incident } = await rig.book.lock({ atMs: rig.clock.now(), via: 'local', reason: 'test', urgent: opts.urgent ?? true });
  const dir = join(rig.sealedDir, incident.id);
  await mkdir(dir, { recursive: true });
  const files = new Map<string, Buffer>();
  const listed: ManifestFile[] = [];
  for (const [camera, bytes] of Object.entries(sizes)) {
    const data = randomBytes(bytes);
    await writeFile(join(dir, `${camera}.mp4`), data);
    files.set(`${camera}.mp4`, data);
    listed.push({ name: `${camera}.mp4`, camera, bytes, sha256: sha256(data), start: incident.window.start, end: incident.window.end, gaps: [] });
  }
  const key = await loadOrCreateNodeKey(rig.stateDir);
  const manifest = signManifest({ incident: { ...incident, state: 'sealed' }, files: listed, clock: { synced: true }, audit: rig.audit.head(), agent: { version: 'test' } }, key);
  const text = Buffer.from(serializeManifest(manifest));
  await writeFile(join(dir, 'manifest.json'), text);
  files.set('manifest.json', text);
  await rig.book.setState(incident.id, 'sealed');
  // The next lock must open a new incident: let this one's window pass.
  rig.clock.advance(3_000);
  return { id: incident.id, files };
}

/** A target that records what it is asked to upload and what was already in place upstream. */
function recording(rig: Rig, inner: ObjectStore, root: string): ObjectStore {
  return {
    describe: () => inner.describe(),
    probe: () => inner.probe(),
    isStored: (...a) => inner.isStored(...a),
    list: (prefix) => inner.list(prefix),
    get: (key) => inner.get(key),
    upload: async (key, ...rest) => {
      const folder = join(root, dirname(key));
      const before = new Map<string, number>();
      for (const name of await readdir(folder).catch(() => [] as string[])) before.set(name, (await stat(join(folder, name))).size);
      rig.uploads.push({ key, before });
      return inner.upload(key, ...rest);
    },
  };
}

function startSyncer(rig: Rig, store: ObjectStore, over: Partial<SyncerDeps> = {}): Syncer {
  const syncer = new Syncer({
    openStore: async () => store, book: rig.book, damaged: rig.damaged, sealedDir: rig.sealedDir, stateDir: rig.stateDir, keyPrefix: PREFIX,
    clock: rig.clock, log: silentLogger(), events: rig.events,
    sleep: (ms, signal) => {
      const status = syncer.status();
      if (status.current) {
        rig.paceWaits.push(ms);
        rig.paceProgress.push({ sent: status.current.bytesSent, pending: status.bytesPending });
        rig.clock.advance(ms);
        return Promise.resolve();
      }
      rig.idleWaits.push(ms);
      return new Promise<void>((resolve) => {
        const done = (): void => {
          if (rig.pending?.resolve === done) rig.pending = undefined;
          resolve();
        };
        rig.pending = { ms, resolve: done };
        if (signal.aborted) done();
        signal.addEventListener('abort', done, { once: true });
      });
    },
    ...over,
  });
  rig.syncer = syncer;
  return syncer;
}

async function until<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The loop's next idle wait (it is sitting in it), after `count` idle waits so far. */
async function idleWait(rig: Rig, count: number): Promise<number> {
  await until(() => rig.idleWaits.length >= count && rig.pending, `idle wait #${count}`);
  return rig.idleWaits[count - 1]!;
}

/** The pending idle wait runs out: its time passes on the clock. */
function passIdle(rig: Rig): void {
  const p = rig.pending!;
  rig.clock.advance(p.ms);
  p.resolve();
}

async function expectUpstreamIdentical(root: string, id: string, files: Map<string, Buffer>): Promise<void> {
  const folder = join(root, PREFIX, id);
  expect((await readdir(folder)).sort()).toEqual([...files.keys()].sort());
  for (const [name, data] of files) {
    const up = await readFile(join(folder, name));
    expect(up.length, name).toBe(data.length);
    expect(sha256(up), name).toBe(sha256(data));
  }
}

async function queueOnDisk(rig: Rig): Promise<{ incident: string; attempts: number; permanent: boolean; lastError: string | null; files: { name: string; done: boolean }[] }[]> {
  return (JSON.parse(await readFile(join(rig.stateDir, 'sync-queue.json'), 'utf8')) as { incidents: never[] }).incidents;
}

describe('Syncer onto a folder', () => {
  it('an urgent incident goes up byte-identical, clips first and the manifest last; synced, announced, queue empty', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas');
    await mkdir(root); // upstream.path exists: camnode never creates it
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root));
    await syncer.start();
    const { id, files } = await sealedIncident(rig);
    // The folder upstream is watched (inotify) for names appearing in it.
    const folder = join(root, PREFIX, id);
    await mkdir(folder, { recursive: true });
    const appeared: string[] = [];
    watchers.push(watch(folder, (_type, name) => { if (name && !name.startsWith('.') && !appeared.includes(name)) appeared.push(name); }));
    rig.events.emit('incident.sealed', { incident: id }); // as the sealer does

    await until(() => rig.seen['incident.synced']?.length, 'incident.synced');
    expect(rig.seen['incident.synced']).toEqual([{ incident: id }]);
    expect(rig.seen['sync.failed']).toBeUndefined();
    await expectUpstreamIdentical(root, id, files);
    expect((await readdir(folder)).filter((n) => n.endsWith('.partial'))).toEqual([]);
    // The uploaded manifest is the signed one, unchanged.
    const key = await loadOrCreateNodeKey(rig.stateDir);
    expect(verifyManifestSignature(JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')), key.publicKeyBase64)).toEqual({ ok: true });

    // Manifest last: asked for after every clip, with every clip already whole in its place …
    expect(rig.uploads.map((u) => basename(u.key))).toEqual(['front.mp4', 'back.mp4', 'manifest.json']);
    const atManifest = rig.uploads[2]!.before;
    expect(atManifest.get('front.mp4')).toBe(files.get('front.mp4')!.length);
    expect(atManifest.get('back.mp4')).toBe(files.get('back.mp4')!.length);
    expect(atManifest.has('manifest.json')).toBe(false);
    expect(rig.uploads[0]!.before.size).toBe(0);
    // … and the names appeared upstream in that order (renamed into place one by one).
    await until(() => appeared.length === 3, 'three names seen by inotify', 2_000);
    expect(appeared).toEqual(['front.mp4', 'back.mp4', 'manifest.json']);

    expect(rig.book.get(id)?.state).toBe('synced');
    expect(syncer.status()).toEqual({ queued: 0, bytesPending: 0, lastError: null, current: null });
    expect(await queueOnDisk(rig)).toEqual([]);
    // Nothing left to do: the loop sits in its plain idle wait; no pacing without maxRate.
    await until(() => rig.pending, 'the loop idle');
    expect(new Set(rig.idleWaits)).toEqual(new Set([60_000]));
    expect(rig.paceWaits).toEqual([]);
  });

  it('maxRate is honoured exactly: the waits add up to (bytes − burst) / rate, within 1 ms', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas');
    await mkdir(root); // upstream.path exists: camnode never creates it
    const { id, files } = await sealedIncident(rig);
    const total = [...files.values()].reduce((a, b) => a + b.length, 0);
    const rateBytes = 1_000_000; // maxRate 8Mbit
    const syncer = startSyncer(rig, new DirStore(root), { maxRateBps: 8_000_000 });
    const t0 = rig.clock.monotonic();
    await syncer.start(); // queued from the book at start
    await until(() => rig.seen['incident.synced']?.length, 'incident.synced');
    await expectUpstreamIdentical(root, id, files);

    const exactMs = ((total - BURST) / rateBytes) * 1000;
    const sum = rig.paceWaits.reduce((a, b) => a + b, 0);
    expect(sum).toBeGreaterThanOrEqual(exactMs - 1e-6);
    expect(sum).toBeLessThan(exactMs + 1);
    // The folder target sends 1 MiB chunks: the first one takes the burst, each full one after
    // it costs 1048.576 ms, rounded up to the ms and paid back on the next.
    expect(rig.paceWaits[0]).toBe(Math.ceil(((MiB - BURST) / rateBytes) * 1000));
    for (const w of rig.paceWaits.slice(1, 3)) expect([1048, 1049]).toContain(w);
    // All of it on the injected clock: the time the uplink took is the time the cap allows.
    expect(rig.clock.monotonic() - t0).toBe(sum);
    // Progress (sampled at every paced wait) only grows, and what is pending is always the rest.
    const progress = rig.paceProgress;
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.sent).toBeGreaterThanOrEqual(progress[i - 1]!.sent);
    for (const p of progress) expect(p.sent + p.pending).toBe(total);
  });

  it('a non-urgent incident waits for the window; an urgent one goes at once', async () => {
    // Noon local time (built from local components: any time zone).
    const rig = await makeRig(new Date(2026, 10, 28, 12, 0, 0).getTime());
    const root = join(rig.dir, 'nas');
    await mkdir(root); // upstream.path exists: camnode never creates it
    const later = await sealedIncident(rig, { urgent: false, sizes: { front: 400_000 } });
    const now = await sealedIncident(rig, { urgent: true, sizes: { back: 300_000 } });
    const syncer = startSyncer(rig, new DirStore(root), { window: '19:00-07:00' });
    await syncer.start();

    await until(() => rig.seen['incident.synced']?.length, 'the urgent incident synced');
    expect(rig.seen['incident.synced']).toEqual([{ incident: now.id }]);
    // Outside the window: the loop waits (its longest idle wait), nothing of the other goes up.
    expect(await idleWait(rig, 1)).toBe(60_000);
    passIdle(rig);
    expect(await idleWait(rig, 2)).toBe(60_000);
    await expect(stat(join(root, PREFIX, later.id))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(rig.book.get(later.id)?.state).toBe('sealed');
    expect(syncer.status()).toMatchObject({ queued: 1, bytesPending: [...later.files.values()].reduce((a, b) => a + b.length, 0) });

    // 30 s before the window opens, the wait is exactly those 30 s …
    rig.clock.jump(new Date(2026, 10, 28, 18, 59, 30).getTime() - rig.clock.now());
    rig.pending!.resolve();
    expect(await idleWait(rig, 3)).toBe(30_000);
    await expect(stat(join(root, PREFIX, later.id))).rejects.toMatchObject({ code: 'ENOENT' });
    // … and at 19:00 it goes.
    passIdle(rig);
    await until(() => rig.seen['incident.synced']?.length === 2, 'the non-urgent incident synced');
    expect(new Date(rig.clock.now()).getHours()).toBe(19);
    await expectUpstreamIdentical(root, later.id, later.files);
    expect(rig.book.get(later.id)?.state).toBe('synced');
  });

  it('an unwritable target (a path under a file: ENOTDIR) is retried with growing, capped backoff; sync retries at once', async () => {
    const rig = await makeRig();
    // The share is there, but a file stands where the prefix folder must go.
    const root = join(rig.dir, 'nas');
    await mkdir(root);
    const blocker = join(root, 'incidents');
    await writeFile(blocker, 'not a directory');
    const { id, files } = await sealedIncident(rig, { sizes: { front: 500_000 } });
    // base 1 s, cap 8 s, half jitter; random 0.5 → 0.75 × the exponential step.
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root), { backoff: { baseMs: 1_000, maxMs: 8_000, jitter: 0.5 }, random: () => 0.5 });
    await syncer.start();

    const waits: number[] = [];
    for (let n = 1; n <= 5; n++) {
      waits.push(await idleWait(rig, n));
      if (n < 5) passIdle(rig);
    }
    expect(waits).toEqual([750, 1_500, 3_000, 6_000, 6_000]);
    expect(rig.uploads).toHaveLength(5);
    // One sync.failed for the first failure, not one per retry.
    expect(rig.seen['sync.failed']).toEqual([{ incident: id, reason: expect.stringContaining('ENOTDIR'), permanent: false }]);
    expect(syncer.status().lastError).toContain('ENOTDIR');
    expect(await queueOnDisk(rig)).toMatchObject([{ incident: id, attempts: 5, permanent: false, lastError: expect.stringContaining('ENOTDIR') }]);
    expect(rig.book.get(id)?.state).toBe('sealed');

    // `sync`: at once, without the clock moving, and the backoff starts over.
    const clockBefore = rig.clock.now();
    expect(await syncer.retryNow()).toBe(1);
    expect(await idleWait(rig, 6)).toBe(750);
    expect(rig.uploads).toHaveLength(6);
    expect(rig.clock.now()).toBe(clockBefore);
    expect(rig.seen['sync.failed']).toHaveLength(2);

    // The share comes back; `sync` again, and it goes up.
    await rm(blocker);
    await syncer.retryNow();
    await until(() => rig.seen['incident.synced']?.length, 'incident.synced');
    await expectUpstreamIdentical(root, id, files);
    expect(syncer.status()).toEqual({ queued: 0, bytesPending: 0, lastError: null, current: null });
  });

  it('a share that is not mounted (upstream.path missing) is retried, and nothing is written in its place', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas');
    const { id, files } = await sealedIncident(rig, { sizes: { front: 300_000 } });
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root), { backoff: { baseMs: 1_000, maxMs: 8_000, jitter: 0.5 }, random: () => 0.5 });
    await syncer.start();
    await until(() => rig.seen['sync.failed']?.length, 'sync.failed');
    expect(rig.seen['sync.failed']).toEqual([{ incident: id, reason: expect.stringContaining('is the share mounted?'), permanent: false }]);
    expect(await idleWait(rig, 1)).toBe(750);
    await expect(stat(root)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(rig.book.get(id)?.state).toBe('sealed');
    // The share is mounted: the next try goes up.
    await mkdir(root);
    passIdle(rig);
    await until(() => rig.seen['incident.synced']?.length, 'incident.synced');
    await expectUpstreamIdentical(root, id, files);
    await syncer.stop();
  });

  it('damaged sealed incidents (manifest missing, truncated, a clip changed) are set aside at start; sync goes on with the rest', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas');
    await mkdir(root); // upstream.path exists: camnode never creates it
    const damagedSeen: unknown[] = [];
    rig.events.on('incident.damaged', (e) => damagedSeen.push(e));
    const missing = await sealedIncident(rig, { sizes: { front: 3_000 } });
    rig.clock.advance(10_000);
    const truncated = await sealedIncident(rig, { sizes: { front: 3_000 } });
    rig.clock.advance(10_000);
    const changed = await sealedIncident(rig, { sizes: { front: 300_000, back: 200_000 } });
    rig.clock.advance(10_000);
    const good = await sealedIncident(rig, { sizes: { front: 3_000 } });
    await rm(join(rig.sealedDir, missing.id, 'manifest.json'));
    const manifestPath = join(rig.sealedDir, truncated.id, 'manifest.json');
    await truncate(manifestPath, (await stat(manifestPath)).size - 40);
    await truncate(join(rig.sealedDir, changed.id, 'back.mp4'), 100_000);

    // A crash between seal and enqueue: none of them is queued yet. start() must not throw.
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root));
    await syncer.start();
    await until(() => rig.seen['incident.synced']?.length, 'the good incident synced');
    expect(rig.seen['incident.synced']).toEqual([{ incident: good.id }]);
    await expectUpstreamIdentical(root, good.id, good.files);

    expect(damagedSeen).toEqual([
      { incident: missing.id, reason: 'manifest.json is missing' },
      { incident: truncated.id, reason: expect.stringMatching(/^manifest\.json is unreadable/) },
      { incident: changed.id, reason: 'back.mp4 is 100000 bytes, the manifest says 200000' },
    ]);
    for (const { id } of [missing, truncated, changed]) {
      // Moved aside whole, never deleted; nothing of it went upstream; audited.
      await expect(stat(join(rig.sealedDir, id))).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await stat(join(rig.sealedDir, `${id}.damaged`))).isDirectory()).toBe(true);
      await expect(stat(join(root, PREFIX, id))).rejects.toMatchObject({ code: 'ENOENT' });
    }
    expect((await readdir(join(rig.sealedDir, `${changed.id}.damaged`))).sort()).toEqual(['back.mp4', 'front.mp4', 'manifest.json']);
    const audit = (await readFile(rig.audit.path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; incident?: string });
    expect(audit.filter((e) => e.type === 'damaged').map((e) => e.incident)).toEqual([missing.id, truncated.id, changed.id]);
    expect(rig.damaged.count()).toBe(3);
    expect(await queueOnDisk(rig)).toEqual([]);

    // After a restart they stay aside (counted from the folders), and are not tried again.
    await syncer.stop();
    const again = new DamagedIncidents({ sealedDir: rig.sealedDir, audit: rig.audit, events: rig.events, clock: rig.clock, log: silentLogger() });
    await again.start();
    expect(again.count()).toBe(3);
    expect(again.has(changed.id)).toBe(true);
  });

  it('a clip changed after it was queued: set aside when its turn comes, never uploaded', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas'); // not there yet: the first attempts fail and it stays queued
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root));
    await syncer.start();
    const { id } = await sealedIncident(rig, { sizes: { front: 300_000, back: 200_000 } });
    rig.events.emit('incident.sealed', { incident: id });
    await until(() => rig.seen['sync.failed']?.length, 'a first failure (no target folder)');
    expect(syncer.status().queued).toBe(1);
    await rm(join(rig.sealedDir, id, 'back.mp4'));
    await mkdir(root);
    await syncer.retryNow();
    await until(() => rig.damaged.has(id), 'set aside');
    // Set aside first, then taken off the queue (on disk a moment later).
    await until(async () => (await queueOnDisk(rig)).length === 0, 'off the queue on disk');
    expect(rig.uploads.map((u) => basename(u.key)).filter((k) => k !== 'front.mp4')).toEqual([]);
    await expect(stat(join(root, PREFIX, id, 'manifest.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await readdir(join(rig.sealedDir, `${id}.damaged`))).sort()).toEqual(['front.mp4', 'manifest.json']);
    expect(await queueOnDisk(rig)).toEqual([]);
    expect(syncer.status().queued).toBe(0);
  });

  it('a queued incident disposed of by force leaves the queue; it is not "damaged"', async () => {
    const rig = await makeRig();
    const root = join(rig.dir, 'nas'); // not there: it stays queued
    const damagedSeen: unknown[] = [];
    rig.events.on('incident.damaged', (e) => damagedSeen.push(e));
    const syncer = startSyncer(rig, recording(rig, new DirStore(root), root));
    await syncer.start();
    const { id } = await sealedIncident(rig, { sizes: { front: 3_000 } });
    rig.events.emit('incident.sealed', { incident: id });
    await until(() => rig.seen['sync.failed']?.length, 'a first failure');
    await rig.book.dispose({ incident: id, by: 'counsel', reason: 'not needed', force: true });
    await until(() => syncer.status().queued === 0, 'off the queue');
    await mkdir(root);
    await syncer.retryNow();
    expect(damagedSeen).toEqual([]);
    expect(rig.damaged.count()).toBe(0);
    await until(async () => (await queueOnDisk(rig)).length === 0, 'off the queue on disk');
  });

  describe.skipIf(!isRoot && process.env['CI'] !== 'true')('on a read-only mount (root)', () => {
    it('EROFS is a permanent failure: said once, no retries until `sync`', async () => {
      if (!isRoot) throw new Error('needs root to mount a read-only tmpfs (CI runs as root)');
      const rig = await makeRig();
      const mnt = join(rig.dir, 'ro');
      await mkdir(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mnt]);
      mounts.push(mnt);
      // The share's root exists (it is the mount) but refuses writes.
      const root = mnt;
      const { id } = await sealedIncident(rig, { sizes: { front: 200_000 } });
      const syncer = startSyncer(rig, recording(rig, new DirStore(root), root), { backoff: { baseMs: 1_000, maxMs: 8_000, jitter: 0.5 }, random: () => 0.5 });
      await syncer.start();
      await until(() => rig.seen['sync.failed']?.length, 'sync.failed');
      expect(rig.seen['sync.failed']).toEqual([{ incident: id, reason: expect.stringContaining('EROFS'), permanent: true }]);
      expect(await idleWait(rig, 1)).toBe(60_000);
      passIdle(rig);
      expect(await idleWait(rig, 2)).toBe(60_000);
      expect(rig.uploads).toHaveLength(1);
      expect(await queueOnDisk(rig)).toMatchObject([{ incident: id, permanent: true, lastError: expect.stringContaining('EROFS') }]);
      expect(syncer.status()).toMatchObject({ queued: 1, lastError: expect.stringContaining('EROFS') });
      // `sync` tries once more, and says so again.
      await syncer.retryNow();
      await until(() => rig.seen['sync.failed']?.length === 2, 'second sync.failed');
      expect(rig.uploads).toHaveLength(2);
      expect(rig.book.get(id)?.state).toBe('sealed');
    });
  });
});
