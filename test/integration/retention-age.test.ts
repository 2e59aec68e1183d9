// `storage.maxAge` end to end (CONTRACT §2: "footage older than this is deleted even with room
// left"; "footage whose time is uncertain is kept until space requires"): the real CLI records
// a synthetic camera with a disk of tens of GB, so age is the only reason anything could go.
// Whether the OS says the clock is synchronised comes from `timedatectl`, which these machines
// lack: a stand-in on PATH answers as systemd's would.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { useRtspRig } from '../helpers/rig.js';
import { listSegments } from '../helpers/segments.js';

const rig = useRtspRig([]);
const MAX_AGE_S = 5;

async function startAged(ntp: 'yes' | 'no'): Promise<{ agent: RunningAgent; storage: string; stateDir: string }> {
  const dir = await tempDir('camnode-age-');
  rig.dirs.push(dir);
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'timedatectl'), `#!/bin/sh\n# timedatectl show --property=NTPSynchronized --value\necho ${ntp}\n`);
  await chmod(join(bin, 'timedatectl'), 0o755);
  const config = baseConfig(dir, [{ id: 'hall', source: 'testsrc', zone: 'entrance' }], { storage: { maxAge: `${MAX_AGE_S}s` } });
  const agent = RunningAgent.start(await writeConfig(dir, config), {
    // Passes every 5 s (the helper's setting): age alone never makes space short.
    env: { PATH: `${bin}:${process.env['PATH'] ?? ''}`, CAMNODE_PRUNE_INTERVAL_MS: '5000' },
  });
  rig.agents.push(agent);
  return { agent, storage: join(dir, 'storage'), stateDir: join(dir, 'state') };
}

describe('storage.maxAge', () => {
  it('with the clock synchronised, footage older than maxAge is deleted (reason age) and audited', async () => {
    const { agent, storage, stateDir } = await startAged('yes');
    const reasons = (l: { [k: string]: unknown }): Record<string, number> => (l['reasons'] ?? {}) as Record<string, number>;
    const deleted = await agent.waitForLog((l) => l.msg === 'footage deleted by the ring' && (reasons(l)['age'] ?? 0) > 0, 'an age deletion', 40_000);
    expect(deleted['cameras']).toEqual(['hall']);
    // A few more passes: what is left is no older than maxAge (plus the pass interval and a segment).
    await new Promise((r) => setTimeout(r, 6_000));
    const left = await listSegments(storage, 'hall');
    const oldestAgeS = (Date.now() - left[0]!.startMs) / 1000;
    expect(oldestAgeS).toBeLessThan(MAX_AGE_S + 5 + 2);
    expect(left.length).toBeGreaterThanOrEqual(MAX_AGE_S - 1);
    expect(agent.count((l) => l.msg === 'footage deleted by the ring' && Object.keys(reasons(l)).some((r) => r !== 'age'))).toBe(0);

    expect(await agent.stop()).toBe(0);
    const audited = (await readFile(join(stateDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e['type'] === 'delete');
    expect(audited.length).toBeGreaterThanOrEqual(1);
    // One entry per pass, for the one reason and camera, its runs adding up to what was deleted.
    expect(audited.every((e) => e['reason'] === 'age' && Object.keys(e['cameras'] as object).join() === 'hall')).toBe(true);
    const runs = audited.flatMap((e) => (e['cameras'] as Record<string, { segments: number }[]>)['hall']!);
    expect(runs.reduce((n, r) => n + r.segments, 0)).toBe(agent.logs
      .filter((l) => l.msg === 'footage deleted by the ring').reduce((n, l) => n + Number(l['segments']), 0));
    expect(audited).toHaveLength(agent.count((l) => l.msg === 'footage deleted by the ring'));
  });

  it('while the OS says the clock is not synchronised, nothing is aged out', async () => {
    const { agent, storage } = await startAged('no');
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
    // Three times maxAge and more: with a synced clock most of this would be gone.
    await waitFor(async () => {
      const segs = await listSegments(storage, 'hall');
      return segs.length > 0 && (Date.now() - segs[0]!.startMs) / 1000 > 3 * MAX_AGE_S;
    }, 'footage three times maxAge old', 40_000);
    await new Promise((r) => setTimeout(r, 6_000));
    expect(agent.count((l) => l.msg === 'footage deleted by the ring')).toBe(0);
    const segs = await listSegments(storage, 'hall');
    expect(segs[0]!.seq).toBe(1);
    expect(await agent.stop()).toBe(0);
  });
});
