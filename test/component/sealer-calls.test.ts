// The sealer and the call recordings (CONTRACT §8), on real files with a manual clock: an incident
// naming calls waits while the spool still holds recordings for its window, at most
// incident.maxLength; each call overlapping the window is sealed whole as calls/<name> with
// kind "call" — encrypted to the district when upstream.encryptTo says so, which Debian's `age`
// opens to the exact bytes — and the folder verifies; an incident without calls takes none.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { loadOrCreateNodeKey } from '../../src/audit/keys.js';
import { CallIndex, partialName } from '../../src/calls/index.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { Sealer } from '../../src/incidents/sealer.js';
import { Faults } from '../../src/lifecycle/faults.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring } from '../../src/store/ring.js';
import { ageDecrypt, ageKeygen } from '../helpers/age.js';
import { runCli } from '../helpers/agent.js';
import { audio } from '../helpers/phone.js';

let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-sealer-calls-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function rig(opts: { encryptTo?: string[] } = {}) {
  const storage = join(dir, 'storage');
  const stateDir = join(dir, 'state');
  const sealedDir = join(storage, 'incidents');
  const clock = new ManualClock(Date.UTC(2026, 11, 3, 12));
  const log = silentLogger();
  const events = new EventBus(log);
  const faults = new Faults({ clock, events, log });
  const audit = new AuditLog({ stateDir, log, clock });
  await audit.start();
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 0, postRollMs: 1_000, maxLengthMs: 60_000 },
    enabledCameras: () => ['cam'], namedOnly: ['calls'], disposeNeedsSync: false, clock, log, events, audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  await book.start();
  // Three calls: 40–30 s ago, 25–20 s ago, and one that ended 2 minutes ago.
  const callsDir = join(storage, 'calls');
  mkdirSync(callsDir, { recursive: true });
  const index = new CallIndex(callsDir);
  await index.open();
  const calls: { name: string; bytes: Buffer }[] = [];
  for (const [i, [fromS, toS]] of [[40, 30], [25, 20], [130, 120]].entries()) {
    const bytes = audio('wav', 1, 300 + i * 100);
    const name = `2026120${i}T000000000Z-call-${i}.wav`;
    writeFileSync(join(callsDir, partialName(name)), bytes);
    await index.took({ name, startMs: clock.now() - fromS! * 1000, durationMs: (fromS! - toS!) * 1000, bytes: bytes.length, sha256: sha(bytes), codec: 'pcm_s16le', source: `s/${i}.wav`, tombstone: `s/${i}.wav\0${i}` });
    calls.push({ name, bytes });
  }
  const ring = new Ring({
    auditDeletion: async () => {},
    options: { storagePath: storage, maxUsePercent: 99, reserveBytes: 0, segmentSeconds: 1 },
    clock, log, events, disk: async () => ({ sizeBytes: 1e12, usedBytes: 0, freeBytes: 1e12, type: 'ext4' }),
    locks: book, inProgressFiles: () => [], probeDurationMs: async () => 1_000, pruneIntervalMs: 3_600_000,
    calls: index.shelf(),
  });
  await ring.start();
  const key = await loadOrCreateNodeKey(stateDir);
  const spool = { settled: false };
  const sealer = new Sealer({
    book, ring, sealedDir, segmentSeconds: 1, clock, log, events, faults, audit, key,
    clockSynced: async () => true, version: 'test', checkIntervalMs: 3_600_000,
    calls: { settledFor: () => spool.settled, maxWaitMs: 60_000 },
    ...(opts.encryptTo ? { encryptTo: opts.encryptTo } : {}),
  });
  await sealer.start();
  return { clock, book, sealer, sealedDir, calls, spool, key, index };
}

interface Manifest { files: { name: string; camera: string; kind?: string; sha256: string; bytes: number; start: string; end: string; plaintext?: { name: string; sha256: string } }[]; signature: { publicKey: string } }

describe('sealing calls', () => {
  it('waits for the spool, then seals each call of the window whole as calls/<name>, kind call; the folder verifies', async () => {
    const r = await rig();
    const { incident } = await r.book.lock({ atMs: r.clock.now() - 45_000, via: 'local', preRollMs: 0, postRollMs: 30_000, cameras: ['calls'] });
    expect(incident.cameras).toEqual(['calls']);
    r.clock.advance(10_000);
    await r.sealer.tick();
    // A recording for the window is still in the spool: not sealed yet.
    expect(r.book.get(incident.id)?.state).toBe('active');
    r.spool.settled = true;
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    const folder = join(r.sealedDir, incident.id);
    const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as Manifest;
    // The two calls inside [−45 s, −15 s]; not the one that ended two minutes ago.
    expect(manifest.files.map((f) => [f.name, f.camera, f.kind, f.sha256])).toEqual(
      r.calls.slice(0, 2).map((c) => [`calls/${c.name}`, 'calls', 'call', sha(c.bytes)]),
    );
    expect(manifest.files[0]!.start).toBe(new Date(r.clock.now() - 50_000).toISOString());
    expect(sha(await readFile(join(folder, 'calls', r.calls[0]!.name)))).toBe(sha(r.calls[0]!.bytes));
    expect((await readdir(join(folder, 'calls'))).sort()).toEqual(r.calls.slice(0, 2).map((c) => c.name));
    const verified = await runCli(['evidence', 'verify', folder, '--key', manifest.signature.publicKey]);
    expect(verified.code, verified.stdout).toBe(0);
    await r.sealer.stop();
    await r.index.close();
  });

  it('seals after incident.maxLength with what is there when the spool never settles', async () => {
    const r = await rig();
    const { incident } = await r.book.lock({ atMs: r.clock.now() - 45_000, via: 'local', preRollMs: 0, postRollMs: 30_000, cameras: ['calls'] });
    r.clock.advance(30_000);
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('active');
    r.clock.advance(60_000);
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    await r.sealer.stop();
    await r.index.close();
  });

  it('a lock without calls neither waits for the spool nor takes a call', async () => {
    const r = await rig();
    const { incident } = await r.book.lock({ atMs: r.clock.now() - 45_000, via: 'local', preRollMs: 0, postRollMs: 30_000 });
    expect(incident.cameras).toEqual(['cam']);
    r.clock.advance(10_000);
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    expect(existsSync(join(r.sealedDir, incident.id, 'calls'))).toBe(false);
    await r.sealer.stop();
    await r.index.close();
  });

  it('encrypted to the district: calls/<name>.age, which age opens to the exact call; no plaintext left', async () => {
    const identity = join(dir, 'district.key');
    const recipient = await ageKeygen(identity);
    const r = await rig({ encryptTo: [recipient] });
    r.spool.settled = true;
    const { incident } = await r.book.lock({ atMs: r.clock.now() - 45_000, via: 'local', preRollMs: 0, postRollMs: 30_000, cameras: ['calls'] });
    r.clock.advance(10_000);
    await r.sealer.tick();
    const folder = join(r.sealedDir, incident.id);
    const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.files.map((f) => [f.name, f.plaintext?.name])).toEqual(r.calls.slice(0, 2).map((c) => [`calls/${c.name}.age`, `calls/${c.name}`]));
    expect((await readdir(join(folder, 'calls'))).sort()).toEqual(r.calls.slice(0, 2).map((c) => `${c.name}.age`));
    for (const [i, f] of manifest.files.entries()) {
      const opened = await ageDecrypt(join(folder, f.name), identity);
      expect(opened.code, opened.stderr).toBe(0);
      expect(sha(opened.stdout)).toBe(sha(r.calls[i]!.bytes));
      expect(f.plaintext?.sha256).toBe(sha(r.calls[i]!.bytes));
    }
    const verified = await runCli(['evidence', 'verify', folder, '--key', manifest.signature.publicKey, '--identity', identity]);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.stdout).toContain(`clip calls/${r.calls[0]!.name} (in calls/${r.calls[0]!.name}.age)`);
    await r.sealer.stop();
    await r.index.close();
  });
});
