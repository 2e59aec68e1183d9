// A pushed config's trial (CONTRACT §9) against a stand-in agent and real files: the reply at
// once, the apply after it, the commitment once proven, the rollback when not (or when applying
// fails), one trial at a time, a reset back to the file, and a trial an earlier run left.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CommandError } from '../../src/commands/protocol.js';
import { configSha256, type ConfigInForce } from '../../src/config/identity.js';
import { ConfigError, parseConfigWithDocument } from '../../src/config/load.js';
import { PushedConfigs } from '../../src/config/store.js';
import { ConfigTrial, TRIAL_FILE } from '../../src/deploy/config-trial.js';
import { EventBus, type AgentEvents } from '../../src/events.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { waitFor } from '../helpers/agent.js';

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-trial-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

const doc = (cameras: string[], extra: Record<string, unknown> = {}) => ({
  node: { id: 'n1', stateDir: dir },
  storage: { path: '/srv/camnode' },
  cameras: cameras.map((id) => ({ id, source: `rtsp://u:pw-${id}@10.0.0.9/${id}`, zone: 'entrance' })),
  fleet: { rollbackAfter: '2m' },
  ...extra,
});

function parsed(d: unknown, source: 'file' | 'pushed' = 'file'): ConfigInForce {
  return { ...parseConfigWithDocument(JSON.stringify(d)), source };
}

interface Rig {
  trial: ConfigTrial;
  clock: ManualClock;
  applied: ConfigInForce[];
  events: { type: keyof AgentEvents; payload: unknown }[];
  store: PushedConfigs;
  /** What the stand-in agent says is missing (null: proven). */
  missing: { now: string | null };
  failApply: { next: boolean };
  fatal: unknown[];
  hashKey: Uint8Array;
  /** The audit entries written, in order. */
  audited: { type: string; payload: Record<string, unknown> }[];
  inForce(): ConfigInForce;
}

async function rig(start: ConfigInForce = parsed(doc(['entrance']))): Promise<Rig> {
  const clock = new ManualClock();
  const bus = new EventBus(silentLogger());
  const events: Rig['events'] = [];
  for (const type of ['config.committed', 'config.rolledBack'] as const) bus.on(type, (payload) => events.push({ type, payload }));
  let current = start;
  const applied: ConfigInForce[] = [];
  const missing = { now: null as string | null };
  const failApply = { next: false };
  const fatal: unknown[] = [];
  const store = new PushedConfigs(dir);
  const hashKey = randomBytes(32);
  const audited: Rig['audited'] = [];
  const trial = new ConfigTrial({
    store, hashKey,
    audit: { append: async (type, payload) => { audited.push({ type, payload: payload as Record<string, unknown> }); return { seq: audited.length, hash: 'h' }; } }, clock, events: bus, log: silentLogger(), checkEveryMs: 5,
    target: {
      inForce: () => current,
      apply: async (next) => {
        current = next;
        applied.push(next);
        if (failApply.next) { failApply.next = false; throw new Error('the recorder would not start'); }
      },
      unproven: () => missing.now,
    },
    loadFile: () => parsed(doc(['entrance'])),
    onFatal: (err) => fatal.push(err),
  });
  await trial.start();
  return { trial, clock, applied, events, store, missing, failApply, fatal, hashKey, audited, inForce: () => current };
}

describe('ConfigTrial', () => {
  it('answers at once with the sha256 and the deadline, applies after, commits once proven', async () => {
    const r = await rig();
    r.missing.now = 'camera lobby is connecting';
    const reply = await r.trial.push(stringify(doc(['entrance', 'lobby'])), { by: 'ops:ada', jws: 'e.y.j' });
    expect(reply.trialUntil).toBe(new Date(r.clock.now() + 120_000).toISOString());
    // On the record before anything changed: who, what (paths only), from which config.
    expect(r.audited).toEqual([{ type: 'config', payload: {
      step: 'trial', sha256: reply.sha256, source: 'pushed', previousSha256: configSha256(r.inForce().config, r.hashKey), differs: ['cameras[1]'], by: 'ops:ada', jws: 'e.y.j',
    } }]);
    expect(r.applied).toHaveLength(0);
    expect(JSON.parse(await readFile(join(r.store.dir, TRIAL_FILE), 'utf8'))).toMatchObject({ sha256: reply.sha256 });
    expect(r.trial.current()).toEqual({ sha256: reply.sha256, until: reply.trialUntil });
    await waitFor(() => r.applied.length === 1, 'applied');
    expect(r.inForce().config.cameras.map((c) => c.id)).toEqual(['entrance', 'lobby']);
    expect(r.inForce().source).toBe('pushed');
    // Not proven yet: nothing committed.
    await new Promise((res) => setTimeout(res, 30));
    expect(r.events).toEqual([]);
    r.missing.now = null;
    await waitFor(() => r.events.length === 1, 'committed');
    expect(r.events[0]).toEqual({ type: 'config.committed', payload: { sha256: reply.sha256, source: 'pushed' } });
    expect(r.audited[1]).toEqual({ type: 'config', payload: { step: 'committed', sha256: reply.sha256, source: 'pushed' } });
    expect(r.store.committed()).toMatchObject({ sha256: reply.sha256 });
    expect((await stat(join(r.store.dir, `${reply.sha256}.json`))).mode & 0o777).toBe(0o600);
    await expect(stat(join(r.store.dir, TRIAL_FILE))).rejects.toThrow(/ENOENT/);
    expect(r.trial.current()).toBeNull();
  });

  it('one trial at a time: a push during one is a conflict', async () => {
    const r = await rig();
    r.missing.now = 'the broker link is down';
    await r.trial.push(stringify(doc(['entrance', 'lobby'])));
    const refused = await r.trial.push(stringify(doc(['entrance', 'desk']))).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(CommandError);
    expect((refused as CommandError).code).toBe('conflict');
    await expect(r.trial.reset()).rejects.toMatchObject({ code: 'conflict' });
  });

  it('not proven by the deadline: the previous config is applied again, rolled back with the reason, nothing committed', async () => {
    const before = await rig();
    const first = before.inForce();
    before.missing.now = 'camera attic is error (Connection refused)';
    const reply = await before.trial.push(stringify(doc(['entrance', 'attic'])));
    await waitFor(() => before.applied.length === 1, 'applied');
    before.clock.advance(120_000);
    await waitFor(() => before.events.length === 1, 'rolled back');
    expect(before.events[0]).toEqual({ type: 'config.rolledBack', payload: { sha256: reply.sha256, reason: 'not proven within fleet.rollbackAfter: camera attic is error (Connection refused)' } });
    expect(before.applied[1]).toBe(first);
    expect(before.audited.map((a) => a.payload['step'])).toEqual(['trial', 'rolledBack']);
    expect(before.audited[1]!.payload).toMatchObject({ sha256: reply.sha256, source: 'file', reason: expect.stringContaining('camera attic is error') as unknown });
    expect(before.store.committed()).toBeNull();
    await expect(stat(join(before.store.dir, TRIAL_FILE))).rejects.toThrow(/ENOENT/);
    // Another push may be tried now.
    before.missing.now = null;
    await before.trial.push(stringify(doc(['entrance', 'desk'])));
    await waitFor(() => before.events.length === 2, 'committed');
    expect(before.events[1]!.type).toBe('config.committed');
  });

  it('applying fails: rolled back at once', async () => {
    const r = await rig();
    r.failApply.next = true;
    const reply = await r.trial.push(stringify(doc(['entrance', 'lobby'])));
    await waitFor(() => r.events.length === 1, 'rolled back');
    expect(r.events[0]).toEqual({ type: 'config.rolledBack', payload: { sha256: reply.sha256, reason: 'applying it failed: the recorder would not start' } });
    expect(r.inForce().config.cameras.map((c) => c.id)).toEqual(['entrance']);
  });

  it('a rollback that fails is fatal (the agent restarts on the committed config)', async () => {
    const r = await rig();
    r.missing.now = 'camera lobby is connecting';
    await r.trial.push(stringify(doc(['entrance', 'lobby'])));
    await waitFor(() => r.applied.length === 1, 'applied');
    r.failApply.next = true;
    r.clock.advance(120_001);
    await waitFor(() => r.fatal.length === 1, 'fatal');
    expect(r.events).toEqual([]);
    // The trial file stays: the next start reports the rollback.
    expect(JSON.parse(await readFile(join(r.store.dir, TRIAL_FILE), 'utf8'))).toHaveProperty('sha256');
  });

  it('a bad config is a ConfigError and starts nothing; the same config is no trial', async () => {
    const r = await rig();
    await expect(r.trial.push(stringify({ ...doc(['entrance']), storage: { path: '/srv/camnode', maxbytes: 5 } }))).rejects.toBeInstanceOf(ConfigError);
    const same = await r.trial.push(stringify(doc(['entrance'])));
    expect(same).toEqual({ sha256: configSha256(r.inForce().config, r.hashKey), trialUntil: null, unchanged: true });
    expect(r.applied).toEqual([]);
    expect(r.trial.current()).toBeNull();
  });

  it('reset: back to the file through a trial, the commitment removed; from the file, nothing to do', async () => {
    const r = await rig(parsed(doc(['entrance', 'lobby']), 'pushed'));
    await r.store.save(doc(['entrance', 'lobby']), 'c'.repeat(64));
    await r.store.commit('c'.repeat(64), r.clock.now());
    const reply = await r.trial.reset();
    expect(reply.trialUntil).not.toBeNull();
    await waitFor(() => r.events.length === 1, 'committed');
    expect(r.events[0]).toEqual({ type: 'config.committed', payload: { sha256: reply.sha256, source: 'file' } });
    expect(r.inForce().source).toBe('file');
    expect(r.store.committed()).toBeNull();
    expect(await r.trial.reset()).toMatchObject({ trialUntil: null, unchanged: true });
  });

  it('a trial an earlier run left unfinished is reported rolled back at start, once', async () => {
    const store = new PushedConfigs(dir);
    await store.save(doc(['x']), 'd'.repeat(64));
    await writeFile(join(store.dir, TRIAL_FILE), JSON.stringify({ sha256: 'd'.repeat(64), previousSha256: 'e'.repeat(64), until: '2026-12-01T00:00:00.000Z' }));
    const r = await rig();
    expect(r.events).toEqual([{ type: 'config.rolledBack', payload: { sha256: 'd'.repeat(64), reason: 'the agent stopped during the trial: the previous config is in force' } }]);
    await expect(stat(join(store.dir, TRIAL_FILE))).rejects.toThrow(/ENOENT/);
    const again = await rig();
    expect(again.events).toEqual([]);
  });
});
