// The ring's deletions in the audit log (CONTRACT §4): each prune pass writes its `delete`
// entry before its first unlink. The real CLI records two synthetic cameras into a quota a few
// seconds deep and is killed (the whole process group, as a power cut would) right after the
// first unlink of its first deleting pass. Every file that went — before the kill and in the
// passes after the restart — must lie inside a run the log states for its camera, and the log
// must still verify.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseConfig, RunningAgent, runCli, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments, type SegmentFile } from '../helpers/segments.js';

const CAMERAS = ['door', 'desk'];

// No camera servers: testsrc cameras. The rig cleans up agents, orphaned ffmpegs and dirs.
const rig = useRtspRig([]);

interface Run { from: string; to: string; segments: number; bytes: number }
interface DeleteEntry { seq: number; type: 'delete'; reason: string; cameras: Record<string, Run[]> }

async function deleteEntries(stateDir: string): Promise<DeleteEntry[]> {
  const text = await readFile(join(stateDir, 'audit.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string })
    .filter((e): e is DeleteEntry => e.type === 'delete');
}

/** Every finished segment ever seen on disk, by camera and seq (polled until told to stop). */
class Sightings {
  readonly seen = new Map<string, Map<number, SegmentFile>>(CAMERAS.map((c) => [c, new Map()]));
  private stopped = false;
  private readonly loop: Promise<void>;
  constructor(private readonly storage: string) {
    this.loop = (async () => {
      while (!this.stopped) {
        await this.poll();
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
  }
  async poll(): Promise<void> {
    for (const c of CAMERAS) for (const s of await listSegments(this.storage, c).catch(() => [])) this.seen.get(c)!.set(s.seq, s);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

describe('a crash inside a prune pass', () => {
  it('leaves the pass\'s delete entry in the log, and every deleted file inside a logged run', async () => {
    const dir = await tempDir('camnode-prune-');
    rig.dirs.push(dir);
    const storage = join(dir, 'storage');
    const stateDir = join(dir, 'state');
    const cameras = CAMERAS.map((id) => ({ id, source: 'testsrc', zone: 'entrance' }));
    // Several seconds of both cameras, whatever testsrc's bitrate (up to 2 Mbit/s each): the
    // first segments live long enough for the 40 ms poll to see them, also on a loaded machine.
    const config = baseConfig(dir, cameras, { storage: { maxBytes: '2MB' } });
    const configPath = await writeConfig(dir, config);
    const sightings = new Sightings(storage);

    const first = RunningAgent.start(configPath, { env: { CAMNODE_FAULT: 'prune.unlinked' } });
    rig.agents.push(first);
    const code = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r('timeout'), 90_000))]);
    expect(code, `the fault point was never reached\n${first.stderrText}`).not.toBe('timeout');
    expect(first.stderrText).toContain('fault injected at prune.unlinked');
    await sightings.poll();

    // Killed after exactly one unlink: the pass's entry is there, naming it and the rest of the pass.
    const atKill = await deleteEntries(stateDir);
    expect(atKill.length).toBeGreaterThanOrEqual(1);
    const goneAtKill = await gone(sightings, storage);
    expect(goneAtKill.length).toBe(1);
    expectInsideRuns(goneAtKill, atKill);
    // The pass named more than the one file it reached: the rest were still there when it died.
    const named = atKill.at(-1)!;
    expect(Object.values(named.cameras).flat().reduce((n, r) => n + r.segments, 0)).toBeGreaterThanOrEqual(1);

    // Restarted without the fault: it prunes on, each pass audited first.
    const second = RunningAgent.start(configPath);
    rig.agents.push(second);
    await second.waitForLog((l) => l.msg === 'agent started', 'agent started');
    await waitFor(() => second.count((l) => l.msg === 'footage deleted by the ring') >= 3, 'three more prune passes', 60_000);
    expect(await second.stop()).toBe(0);
    await sightings.stop();
    await sightings.poll();

    const entries = await deleteEntries(stateDir);
    const all = await gone(sightings, storage);
    expect(all.length).toBeGreaterThan(goneAtKill.length);
    expectInsideRuns(all, entries);
    // One entry per pass and reason (only quota here), never one per segment.
    expect(entries.every((e) => e.reason === 'quota')).toBe(true);
    expect(entries.length).toBeLessThan(all.length);
    const verify = await runCli(['audit', 'verify', '--config', configPath]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});

/** Segments seen at some point and no longer on disk, with their camera. */
async function gone(sightings: Sightings, storage: string): Promise<(SegmentFile & { camera: string })[]> {
  const out: (SegmentFile & { camera: string })[] = [];
  for (const c of CAMERAS) {
    const now = new Set((await listSegments(storage, c)).map((s) => s.seq));
    for (const s of sightings.seen.get(c)!.values()) if (!now.has(s.seq)) out.push({ ...s, camera: c });
  }
  return out;
}

function expectInsideRuns(deleted: (SegmentFile & { camera: string })[], entries: DeleteEntry[]): void {
  for (const s of deleted) {
    const runs = entries.flatMap((e) => e.cameras[s.camera] ?? []);
    const inside = runs.some((r) => Date.parse(r.from) <= s.startMs && s.startMs + s.durationMs <= Date.parse(r.to));
    expect(inside, `${s.camera} seq ${s.seq} (${new Date(s.startMs).toISOString()}) deleted outside every logged run`).toBe(true);
  }
}
