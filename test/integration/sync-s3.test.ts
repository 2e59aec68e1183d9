// Upstream sync to S3 end to end (issue 5; CONTRACT §2 `upstream`, §3 state and events, §4
// layout and the synced rule): the real CLI records a real high-bitrate file source, an
// incident is locked with `camnode ctl lock --local`, sealed, and uploaded to a real S3
// protocol server (s3rver in its own process) as a real multipart upload. What is stored is
// read back through the AWS SDK and compared with the sealed files byte for byte.
// Faults (kills at chosen and random points) are in sync-s3-faults.test.ts.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, waitFor, type LogLine } from '../helpers/agent.js';
import {
  compareStored, ctl, ctlJson, disposeAllS3rvers, footageBytes, freePort, lockLargeIncident, makeHighBitrateLoop,
  partLines, readIncident, s3Upstream, startS3rver, startSyncNode, waitForIncidentState, watchArrivals,
  writeS3Credentials, type SyncNode,
} from '../helpers/s3.js';
import { outboxPending, recorderPids } from '../helpers/segments.js';

const NODE_ID = 'test-node';
const BUCKET = 'evidence';
const MiB = 1024 * 1024;
const PART = 8 * MiB;
// Above the 16 MiB single-PUT limit with room to spare: at least three 8 MiB parts.
const LARGE_CLIP = 20_000_000;

interface SyncState { queued: number; bytesPending: number; lastError: string | null; current: unknown }
interface State { sync: SyncState; incidents: { active: number; held: number; unsynced: number } }

let workDir: string;
let loop: string;
let credentials: string;
let nodes: SyncNode[] = [];

beforeAll(async () => {
  workDir = await tempDir('camnode-sync-s3-');
  loop = await makeHighBitrateLoop(workDir);
  credentials = await writeS3Credentials(workDir);
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});
afterEach(async () => {
  // Even after a failed assertion: no agent, ffmpeg, server or temp dir outlives its test.
  for (const n of nodes) for (const a of n.runs) a.killGroup();
  await Promise.all(nodes.flatMap((n) => n.runs.map((a) => a.exited)));
  for (const n of nodes) {
    for (const pid of await recorderPids(n.storage)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  await Promise.all(nodes.map((n) => rm(n.dir, { recursive: true, force: true })));
  nodes = [];
  await disposeAllS3rvers();
});

async function node(opts: Parameters<typeof startSyncNode>[0]): Promise<SyncNode> {
  const n = await startSyncNode(opts);
  nodes.push(n);
  return n;
}

const sync = (l: LogLine) => l['component'] === 'sync';
const keyOf = (id: string, name: string) => `incidents/${NODE_ID}/${id}/${name}`;

describe('sync to S3 (s3rver)', () => {
  it('uploads a sealed incident as a multipart upload, byte-identical, manifest last; then it is synced and can be disposed of', async () => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    const n = await node({ source: `file:${loop}`, upstream: s3Upstream(s3, BUCKET, credentials) });
    const id = await lockLargeIncident(n, LARGE_CLIP);
    const arrivals = watchArrivals(s3, BUCKET, `incidents/${NODE_ID}/${id}`);
    let seen;
    try {
      await waitForIncidentState(n, id, 'sealed', 30_000).catch(async (err: unknown) => {
        // Sealing and syncing may both be over before the first look.
        if ((await readIncident(n, id)).state !== 'synced') throw err;
      });
      await waitForIncidentState(n, id, 'synced', 60_000);
    } finally {
      seen = await arrivals.stop();
    }

    const files = await compareStored(s3, BUCKET, n, NODE_ID, id);
    expect(files.map((f) => f.name)).toEqual(['lobby.mp4', 'manifest.json']);
    const clip = files[0]!;
    // Really a multipart upload: 8 MiB parts, numbered 1..N, the last one the rest.
    expect(clip.bytes).toBeGreaterThan(16 * MiB);
    const parts = partLines(n, keyOf(id, 'lobby.mp4'));
    const count = Math.ceil(clip.bytes / PART);
    expect(parts.map((p) => p.partNumber)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    expect(parts.map((p) => p.bytes)).toEqual(Array.from({ length: count }, (_, i) => (i < count - 1 ? PART : clip.bytes - PART * (count - 1))));
    for (const f of files) {
      expect(f.storedBytes, f.name).toBe(f.bytes);
      expect(f.storedSha256, f.name).toBe(f.sealedSha256);
      expect(f.metaSha256, f.name).toBe(f.sealedSha256);
    }
    // CONTRACT §4's rule: the ETag is the MD5 or the multipart ETag of the parts' MD5s.
    // (s3rver gives a multipart object its whole MD5; AWS would give the parts' form.)
    expect([clip.md5, clip.multipart8MiB]).toContain(clip.etag);
    expect(files[1]!.etag).toBe(files[1]!.md5);
    // The manifest matches the sealed one's listing.
    const manifest = JSON.parse((await s3.get(BUCKET, keyOf(id, 'manifest.json'))).toString('utf8')) as { files: { name: string; sha256: string; bytes: number }[] };
    expect(manifest.files).toEqual([expect.objectContaining({ name: 'lobby.mp4', sha256: clip.sealedSha256, bytes: clip.bytes })]);

    // Manifest last: when its object first appeared, the clip's was there whole.
    expect(seen.manifestSeen).toBe(true);
    expect(Object.fromEntries(seen.clipsAtManifest)).toEqual({ 'lobby.mp4': clip.bytes });
    expect(seen.firstSeen.get('lobby.mp4')!).toBeLessThanOrEqual(seen.firstSeen.get('manifest.json')!);
    expect(await s3.objectMtimeMs(BUCKET, keyOf(id, 'manifest.json'))).toBeGreaterThanOrEqual(await s3.objectMtimeMs(BUCKET, keyOf(id, 'lobby.mp4')));

    const state = await ctlJson<State>(n, 'state');
    expect(state.sync).toMatchObject({ queued: 0, bytesPending: 0, lastError: null, current: null });
    expect(state.incidents.unsynced).toBe(0);
    expect((await ctlJson<{ state: string }>(n, 'incident', id)).state).toBe('synced');
    // The book says synced a moment before the syncer logs it.
    await n.agent.waitForLog((l) => sync(l) && l.msg === 'incident synced' && l['incident'] === id, 'incident synced', 10_000);
    // The outbox is empty and durable: nothing left queued on disk.
    const queue = JSON.parse(await readFile(join(n.stateDir, 'sync-queue.json'), 'utf8')) as { incidents: unknown[] };
    expect(queue.incidents).toEqual([]);

    // Synced: release needs no --force now, and deletes the local copy (not the upstream one).
    const released = await ctl(n, 'dispose', id, '--by', 'vitest', '--reason', 'uploaded');
    expect(released.code, released.stderr).toBe(0);
    expect((await readIncident(n, id)).state).toBe('disposed');
    expect(existsSync(join(n.storage, 'incidents', id))).toBe(false);
    expect((await s3.head(BUCKET, keyOf(id, 'lobby.mp4')))?.bytes).toBe(clip.bytes);
  });

  it('upstream down mid-upload: retries with growing delays, resumes after the recorded parts once it is back', async () => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    // maxRate keeps the upload going long enough (~1.7 s per part) to cut the server mid-way.
    const n = await node({ source: `file:${loop}`, upstream: s3Upstream(s3, BUCKET, credentials, { maxRate: '40Mbit' }) });
    const id = await lockLargeIncident(n, LARGE_CLIP);
    const clipKey = keyOf(id, 'lobby.mp4');
    await n.agent.waitForLog((l) => l.msg === 'part uploaded' && l['key'] === clipKey && l['partNumber'] === 1, 'part 1 uploaded', 60_000);
    await s3.stop();
    const downAt = Date.now();

    // While it is down: failures, each followed by a longer wait, and the state says why.
    const failures = () => n.agent.logs.filter((l) => sync(l) && l.msg === 'upload failed; will retry');
    await waitFor(() => failures().length >= 2, 'two failed attempts', 30_000);
    const state = await ctlJson<State>(n, 'state');
    expect(state.sync.queued).toBe(1);
    expect(state.sync.lastError).toContain(id);
    // Back after the third failure (a few seconds: base 2 s, doubling): the next try succeeds.
    await waitFor(() => failures().length >= 3, 'three failed attempts', 30_000);
    const downForMs = Date.now() - downAt;
    await s3.start();
    await waitForIncidentState(n, id, 'synced', 60_000);

    const f = failures();
    expect(f.length, `down for ${downForMs} ms`).toBeGreaterThanOrEqual(3);
    expect(f.every((l) => l['incident'] === id && typeof l['reason'] === 'string')).toBe(true);
    const delays = f.map((l) => Number(l['retryInMs']));
    expect(delays[0]!).toBeGreaterThanOrEqual(1_000);
    // Base 2 s doubling with up to 50 % jitter: never shorter than the one before.
    for (let i = 1; i < delays.length; i++) expect(delays[i]!).toBeGreaterThanOrEqual(delays[i - 1]!);
    expect(delays.at(-1)!).toBeGreaterThan(delays[0]!);
    // No hot loop: each attempt came only after the announced wait.
    const at = f.map((l) => Date.parse(String(l['time'])));
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(delays[i - 1]! - 50);
    // The book says synced a moment before the syncer logs it.
    await n.agent.waitForLog((l) => sync(l) && l.msg === 'incident synced' && l['incident'] === id, 'incident synced', 10_000);

    // Resumed on the same upload: no part that was recorded was sent again.
    const parts = partLines(n, clipKey).map((p) => p.partNumber);
    const files = await compareStored(s3, BUCKET, n, NODE_ID, id);
    const count = Math.ceil(files[0]!.bytes / PART);
    expect(parts.filter((p) => p === 1)).toHaveLength(1);
    expect([...new Set(parts)].sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    expect(n.agent.find((l) => l.msg === 'resuming multipart upload' && l['key'] === clipKey && Number(l['recorded']) >= 1)).toBeDefined();
    for (const file of files) {
      expect(file.storedSha256, file.name).toBe(file.sealedSha256);
      expect(file.metaSha256, file.name).toBe(file.sealedSha256);
    }
    expect((await ctlJson<State>(n, 'state')).sync).toMatchObject({ queued: 0, lastError: null });
  });

  it('wrong credentials or a missing bucket: a permanent failure, said clearly, no retry loop; `ctl sync` after the fix uploads', async () => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    // s3rver checks only the key id of a SigV4 request, so both are wrong here.
    const badCredentials = await writeS3Credentials(workDir, 'bad.env', { id: 'NOT-A-KEY', secret: 'not-the-secret' });
    // An mqtt section (to a port nobody listens on) makes the agent keep its events in the
    // durable outbox, where the sync.failed event can be read.
    const mqtt = { url: `mqtt://127.0.0.1:${await freePort()}`, requireSignedCommands: false };
    const cases = [
      { name: 'wrong secret', upstream: s3Upstream(s3, BUCKET, badCredentials), reason: /HTTP 403.*(credentials|Access Key)/i },
      { name: 'missing bucket', upstream: s3Upstream(s3, 'no-such-bucket', credentials), reason: /NoSuchBucket/ },
    ];
    // Both nodes at once: the 15 s of watching for retries overlap.
    const runs = await Promise.all(cases.map(async (c) => {
      const n = await node({ source: `file:${loop}`, upstream: c.upstream, over: { mqtt } });
      await waitFor(async () => (await footageBytes(n)) > 0, 'some footage', 30_000);
      const { incident } = await ctlJson<{ incident: string }>(n, 'lock', '--reason', c.name, '--pre-roll', '2s', '--post-roll', '1s');
      await waitForIncidentState(n, incident, 'sealed', 30_000);
      const failed = await n.agent.waitForLog((l) => sync(l) && l.msg.startsWith('upload failed'), `${c.name}: upload failed`, 30_000);
      return { ...c, n, id: incident, failed };
    }));
    // Watch ~15 s for any further attempt.
    await new Promise((r) => setTimeout(r, 15_000));

    for (const { name, n, id, failed, reason } of runs) {
      expect(failed.msg, name).toMatch(/^upload failed permanently/);
      expect(String(failed['reason']), name).toMatch(reason);
      expect(n.agent.count((l) => sync(l) && l.msg.startsWith('upload failed')), name).toBe(1);
      const state = await ctlJson<State>(n, 'state');
      expect(state.sync.queued, name).toBe(1);
      expect(state.sync.lastError, name).toContain(id);
      expect(state.sync.lastError, name).toMatch(reason);
      expect(state.incidents.unsynced, name).toBe(1);
      expect((await readIncident(n, id)).state, name).toBe('sealed');
      const events = (await outboxPending(n.stateDir)).filter((e) => e['type'] === 'sync.failed');
      expect(events, name).toEqual([expect.objectContaining({ incident: id, permanent: true, reason: expect.stringMatching(reason) })]);
      // Not synced, so release is refused without --force.
      const refused = await ctl(n, 'dispose', id, '--by', 'vitest', '--reason', 'too early');
      expect(refused.code, name).not.toBe(0);
      expect((await readIncident(n, id)).state, name).toBe('sealed');
      // The secret never reaches the log.
      expect(JSON.stringify(n.agent.logs), name).not.toContain('not-the-secret');
    }

    // Fix the missing bucket; `ctl sync` retries now.
    const missing = runs[1]!;
    await s3.createBucket('no-such-bucket');
    expect(await ctlJson<{ queued: number }>(missing.n, 'sync')).toEqual({ queued: 1 });
    await waitForIncidentState(missing.n, missing.id, 'synced', 30_000);
    for (const f of await compareStored(s3, 'no-such-bucket', missing.n, NODE_ID, missing.id)) {
      expect(f.storedSha256, f.name).toBe(f.sealedSha256);
    }
    expect((await ctlJson<State>(missing.n, 'state')).sync).toMatchObject({ queued: 0, lastError: null });

    // Fix the credentials without a restart: `ctl sync` reads the file again.
    const wrong = runs[0]!;
    await writeS3Credentials(workDir, 'bad.env');
    expect(await ctlJson<{ queued: number }>(wrong.n, 'sync')).toEqual({ queued: 1 });
    await waitForIncidentState(wrong.n, wrong.id, 'synced', 30_000);
    for (const f of await compareStored(s3, BUCKET, wrong.n, NODE_ID, wrong.id)) {
      expect(f.storedSha256, f.name).toBe(f.sealedSha256);
    }
    expect(wrong.n.runs).toHaveLength(1);
  });

  it('a credentials file that cannot be read at start: the agent records anyway and reports the sync fault; `ctl sync` after the fix uploads', async () => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    const later = join(workDir, 'later.env');
    await rm(later, { force: true });
    const mqtt = { url: `mqtt://127.0.0.1:${await freePort()}`, requireSignedCommands: false };
    const n = await node({ source: `file:${loop}`, upstream: s3Upstream(s3, BUCKET, later), over: { mqtt } });
    // Recording goes on: footage arrives, and a lock is sealed locally.
    await waitFor(async () => (await footageBytes(n)) > 0, 'some footage', 30_000);
    const { incident } = await ctlJson<{ incident: string }>(n, 'lock', '--reason', 'fault at start', '--pre-roll', '2s', '--post-roll', '1s');
    await waitForIncidentState(n, incident, 'sealed', 30_000);

    interface Faulty { health: { faults: { component: string; since: string; message: string }[] }; sync: SyncState }
    const state = await ctlJson<Faulty>(n, 'state');
    expect(state.health.faults).toEqual([{ component: 'sync', since: expect.any(String), message: expect.stringContaining(`upstream.credentials: cannot read ${later} (ENOENT)`) }]);
    expect(state.sync.lastError).toContain('ENOENT');
    const outbox = () => outboxPending(n.stateDir);
    expect((await outbox()).filter((e) => e['type'] === 'component.failed')).toEqual([
      expect.objectContaining({ component: 'sync', message: expect.stringContaining('ENOENT') }),
    ]);
    // It keeps retrying with backoff on its own, without a restart of the agent.
    await n.agent.waitForLog((l) => l.msg === 'will try again' && l['component'] === 'sync' && Number(l['attempt']) >= 2, 'a second retry', 30_000);

    // Fixed: `ctl sync` starts it at once, and the sealed incident goes up.
    await writeS3Credentials(workDir, 'later.env');
    expect(await ctlJson<{ queued: number }>(n, 'sync')).toEqual({ queued: 1 });
    await waitForIncidentState(n, incident, 'synced', 30_000);
    expect((await ctlJson<Faulty>(n, 'state')).health.faults).toEqual([]);
    await waitFor(async () => (await outbox()).some((e) => e['type'] === 'component.recovered' && e['component'] === 'sync'), 'component.recovered in the outbox', 10_000);
    expect(n.runs).toHaveLength(1);
  });
});
