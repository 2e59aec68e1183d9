// Upstream sync to S3 under real kills (issue 5; CONTRACT §4 "exactly once, whole"): the whole
// process group is SIGKILLed — through the environment-armed fault hook at chosen points, and
// at random moments in a loop — while a real multipart upload of a sealed incident goes to a
// real S3 protocol server (s3rver). On restart the upload resumes on the same upload id,
// re-sending at most one part per kill, and the objects end byte-identical to the sealed files.
// The parts sent are counted from the agent's own 'part uploaded' debug lines of every run.
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, waitFor, type LogLine, type RunningAgent } from '../helpers/agent.js';
import {
  compareStored, disposeAllS3rvers, lockLargeIncident, makeHighBitrateLoop, partLines, s3Upstream, startRun,
  startS3rver, startSyncNode, waitForIncidentState, writeS3Credentials, type S3Server, type SyncNode,
} from '../helpers/s3.js';
import { recorderPids } from '../helpers/segments.js';

const NODE_ID = 'test-node';
const BUCKET = 'evidence';
const PART = 8 * 1024 * 1024;
// At least three 8 MiB parts, so a kill can land before, between and after parts.
const LARGE_CLIP = 20_000_000;

let workDir: string;
let loop: string;
let credentials: string;
let nodes: SyncNode[] = [];

beforeAll(async () => {
  workDir = await tempDir('camnode-sync-faults-');
  loop = await makeHighBitrateLoop(workDir);
  credentials = await writeS3Credentials(workDir);
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});
afterEach(async () => {
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

const keyOf = (id: string, name: string) => `incidents/${NODE_ID}/${id}/${name}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function node(s3: S3Server, env: NodeJS.ProcessEnv = {}, upstream: Record<string, unknown> = {}): Promise<SyncNode> {
  const n = await startSyncNode({ source: `file:${loop}`, upstream: s3Upstream(s3, BUCKET, credentials, upstream), env });
  nodes.push(n);
  return n;
}

/** The run's sync log lines, for failure messages. */
function syncLog(agent: RunningAgent): string {
  return agent.logs.filter((l) => l['component'] === 'sync').map((l) => JSON.stringify(l)).join('\n');
}

/** Resolves when the run's process group is gone; fails if it outlives `timeoutMs`. */
async function died(agent: RunningAgent, what: string, timeoutMs = 60_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    agent.exited,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still running after ${timeoutMs} ms\n${agent.stderrText}`)), timeoutMs); }),
  ]).finally(() => clearTimeout(timer));
}

/** The upload id each run worked on for this key (from its 'multipart upload started/resuming' line). */
function uploadIds(n: SyncNode, key: string): (string | undefined)[] {
  return n.runs.map((a) => a.logs.find((l: LogLine) => /^(multipart upload started|resuming multipart upload)$/.test(l.msg) && l['key'] === key)?.['uploadId'] as string | undefined);
}

/** For each run after the first, how many parts it sent that an earlier run had already sent. */
function resentPerRun(n: SyncNode, key: string): number[] {
  const lines = partLines(n, key);
  return n.runs.slice(1).map((_, i) => {
    const before = new Set(lines.filter((p) => p.run <= i).map((p) => p.partNumber));
    return lines.filter((p) => p.run === i + 1 && before.has(p.partNumber)).length;
  });
}

async function expectStoredAsSealed(s3: S3Server, n: SyncNode, id: string): Promise<void> {
  const files = await compareStored(s3, BUCKET, n, NODE_ID, id);
  expect(files.map((f) => f.name)).toEqual(['lobby.mp4', 'manifest.json']);
  expect(files[0]!.bytes).toBeGreaterThan(16 * 1024 * 1024);
  for (const f of files) {
    expect(f.storedBytes, f.name).toBe(f.bytes);
    expect(f.storedSha256, f.name).toBe(f.sealedSha256);
    expect(f.metaSha256, f.name).toBe(f.sealedSha256);
    expect([f.md5, f.multipart8MiB], f.name).toContain(f.etag);
  }
  // Every part of the clip reached the server (in some run), numbered 1..N.
  const count = Math.ceil(files[0]!.bytes / PART);
  expect([...new Set(partLines(n, keyOf(id, 'lobby.mp4')).map((p) => p.partNumber))].sort((a, b) => a - b))
    .toEqual(Array.from({ length: count }, (_, i) => i + 1));
}

describe('sync to S3 survives kills of the process group', () => {
  it.each([
    { point: 'sync.part.sent', resent: 1, says: 'the one unrecorded part' },
    { point: 'sync.part.recorded', resent: 0, says: 'no part' },
    { point: 'sync.before-manifest', resent: 0, says: 'no part' },
  ])('killed at $point: resumes on restart, re-sends $says, objects identical', async ({ point, resent }) => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    const n = await node(s3, { CAMNODE_FAULT: point });
    const id = await lockLargeIncident(n, LARGE_CLIP);
    const clipKey = keyOf(id, 'lobby.mp4');
    await died(n.agent, `the agent armed with ${point}`);
    expect(n.agent.stderrText).toContain(`fault injected at ${point}`);

    // Nothing counts as complete upstream: no manifest (and no clip unless it was done).
    expect(await s3.head(BUCKET, keyOf(id, 'manifest.json'))).toBeNull();
    const clipStored = await s3.head(BUCKET, clipKey);
    if (point === 'sync.before-manifest') expect(clipStored).not.toBeNull();
    else expect(clipStored).toBeNull();

    await startRun(n);
    await waitForIncidentState(n, id, 'synced', 60_000);
    // The book says synced a moment before the syncer logs it.
    await n.agent.waitForLog((l) => l.msg === 'incident synced' && l['incident'] === id, 'incident synced', 10_000);

    const [first, second] = n.runs.map((_, run) => partLines(n, clipKey).filter((p) => p.run === run).map((p) => p.partNumber));
    if (point === 'sync.before-manifest') {
      // The clip was done and recorded: the restart sends only the manifest.
      expect(second).toEqual([]);
      expect(n.agent.find((l) => l['key'] === clipKey)).toBeUndefined();
    } else {
      expect(first).toEqual([1]);
      // The same upload, continued: not started over.
      const [idBefore, idAfter] = uploadIds(n, clipKey);
      expect(idBefore).toBeDefined();
      expect(idAfter).toBe(idBefore);
    }
    expect(resentPerRun(n, clipKey)).toEqual([resent]);
    await expectStoredAsSealed(s3, n, id);
  });

  it('killed at random moments of the upload, five times: each restart re-sends at most one part, the objects end identical', async () => {
    const s3 = await startS3rver({ buckets: [BUCKET] });
    // A rate cap spreads the upload over a few seconds so the kills land inside it.
    const n = await node(s3, {}, { maxRate: '64Mbit' });
    const id = await lockLargeIncident(n, LARGE_CLIP);
    const clipKey = keyOf(id, 'lobby.mp4');
    const delays: number[] = [];
    let killed = false;
    for (let kill = 0; kill < 5; kill++) {
      if (kill > 0) await startRun(n);
      const agent = n.agent;
      killed = false;
      // Once this run is uploading (or it has finished), wait a random while and kill.
      const busy = await waitFor(() => agent.find((l) => /^(multipart upload started|resuming multipart upload|already stored upstream|incident synced)$/.test(l.msg)), 'the upload under way', 60_000, 20)
        .catch((err: unknown) => { throw new Error(`${(err as Error).message}\n${n.runs.map((a, i) => `--- run ${i}\n${syncLog(a)}\n${a.stderrText}`).join('\n')}`); });
      if (busy.msg === 'incident synced') break;
      const delay = Math.round(Math.random() * 1_500);
      delays.push(delay);
      await sleep(delay);
      agent.killGroup();
      await died(agent, 'the killed agent', 10_000);
      killed = true;
      // Killed just after it finished: nothing left to kill.
      if (agent.find((l) => l.msg === 'incident synced')) break;
    }
    if (killed) await startRun(n);
    await waitForIncidentState(n, id, 'synced', 60_000);

    const why = `kills after ${delays.join(', ')} ms; parts per run ${JSON.stringify(n.runs.map((_, run) => partLines(n, clipKey).filter((p) => p.run === run).map((p) => p.partNumber)))}`;
    expect(delays.length, why).toBeGreaterThanOrEqual(1);
    for (const r of resentPerRun(n, clipKey)) expect(r, why).toBeLessThanOrEqual(1);
    // One upload id throughout (runs that reached the clip at all).
    expect(new Set(uploadIds(n, clipKey).filter((u) => u !== undefined)).size, why).toBe(1);
    await expectStoredAsSealed(s3, n, id);
  });
});
