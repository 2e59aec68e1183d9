// The audit log leaves the node (CONTRACT §7), on real files: three days of accelerated activity
// are cut into chunks and signed heads, sent through the upstream records outbox to a folder
// target, and rotated off the node behind checkpoints — the local log stays bounded, the book
// recovers from the checkpoint, and the upstream copy verifies with `camnode audit verify`.
// Then the node's tail is cut after a head went upstream, and a middle chunk upstream is
// rewritten: both are detected.
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readRawLines } from '../../src/audit/chain.js';
import { loadOrCreateNodeKey, type NodeKey } from '../../src/audit/keys.js';
import { AUDIT_LOG_FILE, AuditLog } from '../../src/audit/log.js';
import { AuditShipper } from '../../src/audit/shipper.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { DirStore } from '../../src/sync/dir-store.js';
import { pendingRecords, RecordPublisher } from '../../src/sync/records.js';
import { runCli, waitFor } from '../helpers/agent.js';

const PREFIX = 'incidents/branch-7';
const LOG_ID = '20261101T080000Z';
const KEEP = 24 * 1024;
const CHUNK = 8 * 1024;

let root: string;
let stateDir: string;
let share: string;
let clock: ManualClock;
let key: NodeKey;
let audit: AuditLog;
let book: IncidentBook;
let publisher: RecordPublisher;
let shipper: AuditShipper;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-audit-up-'));
  stateDir = join(root, 'state');
  share = join(root, 'share');
  await mkdir(share);
  clock = new ManualClock(Date.parse('2026-11-01T08:00:00Z'));
  key = await loadOrCreateNodeKey(stateDir);
  audit = new AuditLog({ stateDir, log: silentLogger(), clock });
  await audit.start();
  book = openBook();
  await book.start();
  publisher = new RecordPublisher({ stateDir, keyPrefix: PREFIX, openStore: async () => new DirStore(share), log: silentLogger(), backoff: { baseMs: 10, maxMs: 20, jitter: 0 } });
  await publisher.start();
  shipper = new AuditShipper({
    stateDir, nodeId: 'branch-7', audit, key, logId: () => LOG_ID, headIntervalMs: 5 * 60_000,
    rotate: (through, opts) => book.settled(() => audit.rotate(through, () => book.list().filter((i) => i.state !== 'disposed'), opts)), queued: () => publisher.poke(),
    clock, log: silentLogger(), chunkMaxBytes: CHUNK, chunkMaxAgeMs: 3_600_000, keepBytes: KEEP,
    // Driven by the test: no timer of its own.
    timers: { setTimeout: () => 0, clearTimeout: () => {} },
  });
  await shipper.start();
});
afterEach(async () => {
  await shipper.stop();
  await publisher.stop();
  await book.stop();
  await audit.stop();
  await rm(root, { recursive: true, force: true });
});

function openBook(): IncidentBook {
  const log = silentLogger();
  return new IncidentBook({
    stateDir, sealedDir: join(root, 'incidents'), nodeId: 'branch-7', policy: { preRollMs: 60_000, postRollMs: 60_000, maxLengthMs: 3_600_000 },
    enabledCameras: () => ['entrance'], disposeNeedsSync: true, clock, log, events: new EventBus(log), audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
}

const series = (): string => join(share, PREFIX, 'audit', LOG_ID);
const drained = (): Promise<unknown> => waitFor(async () => (await pendingRecords(stateDir)).length === 0, 'the records sent', 10_000, 5);

/** A prune pass's entry, as the ring writes one a minute on a busy node. */
const prunePass = (i: number): Promise<unknown> => audit.append('delete', {
  reason: 'quota', cameras: { entrance: [{ from: new Date(clock.now() - 86_400_000).toISOString(), to: new Date(clock.now() - 86_340_000 + i).toISOString(), segments: 30, bytes: 5_000_000 }] },
});

/** `hours` of activity: a prune pass a minute, the shipper looking every 5 minutes, the records sent as they come. */
async function run(hours: number, largest: { bytes: number }): Promise<void> {
  for (let minute = 0; minute < hours * 60; minute++) {
    clock.advance(60_000);
    await prunePass(minute);
    if (minute % 5 === 4) {
      await shipper.tick();
      await drained();
      await shipper.tick();
      largest.bytes = Math.max(largest.bytes, audit.bytes());
    }
  }
}

describe('the audit log upstream', () => {
  it('days of activity: chunks and heads upstream, the local log bounded, the book recovered from a checkpoint, the copy verifies', async () => {
    const { incident } = await book.lock({ atMs: clock.now(), via: 'local', by: 'desk', reason: 'kept through rotations' });
    const largest = { bytes: 0 };
    await run(72, largest);

    // 72 h × 60 passes ≈ 1.3 MB of entries; the node keeps a bounded tail.
    const total = (await readdir(series())).filter((n) => n.endsWith('.jsonl')).length;
    expect(total).toBeGreaterThan(50);
    expect(largest.bytes).toBeLessThan(KEEP + 2 * CHUNK);
    const local = await verifyAuditLog(join(stateDir, AUDIT_LOG_FILE));
    expect(local).toMatchObject({ ok: true, notes: [expect.stringMatching(/^entries up to seq \d+ were rotated off the node/)] });

    // Every chunk continues the previous; every head matches (heads/ beside the chunks is taken).
    const copy = await runCli(['audit', 'verify', '--log', series(), '--key', key.publicKeyBase64]);
    expect(copy.code, copy.stdout + copy.stderr).toBe(0);
    expect(copy.stdout).toMatch(/^audit log .*: whole, \d+ entries, head seq \d+/);
    // Heads are signed every 5 minutes, chunks close hourly: the newest heads wait for their chunk.
    expect(copy.stdout).toMatch(/note: \d+ head\(s\) up to seq \d+ .* are past the last chunk: not shipped yet/);
    expect(copy.stdout).toMatch(/signed heads: \d{3} of \d{3} checked against the log, all match/);
    const heads = await readdir(join(series(), 'heads'));
    expect(heads.length).toBeGreaterThan(800);
    const head = JSON.parse(await readFile(join(series(), 'heads', heads.sort((a, b) => parseInt(b, 10) - parseInt(a, 10))[0]!), 'utf8')) as Record<string, unknown>;
    expect(head).toMatchObject({ node: 'branch-7', logId: LOG_ID, seq: shipper.head()!.seq, head: shipper.head()!.head, signature: { alg: 'ed25519', publicKey: key.publicKeyBase64 } });

    // The lock entry went with the first chunks; the book comes back from the newest checkpoint.
    await book.stop();
    await rm(join(stateDir, 'incidents.json'));
    book = openBook();
    await book.start();
    expect(book.get(incident.id)).toMatchObject({ id: incident.id, triggers: [{ reason: 'kept through rotations' }] });
  }, 120_000);

  it('a tail cut on the node after its head went upstream, and a rewritten middle chunk, are detected', async () => {
    await run(6, { bytes: 0 });
    // Entries after the last rotation's checkpoint, under a head that went upstream.
    clock.advance(5 * 60_000);
    for (let i = 0; i < 12; i++) await prunePass(i);
    await shipper.tick();
    await drained();
    const path = join(stateDir, AUDIT_LOG_FILE);
    const signed = shipper.head()!;
    expect(signed.seq).toBe(audit.head().seq);
    // Cut the node's last ten entries (all of them under the newest head).
    let offset = 0;
    const ends: number[] = [];
    for await (const { bytes } of readRawLines(path)) ends.push((offset += bytes.length + 1));
    await truncate(path, ends[ends.length - 11]!);
    const cut = await runCli(['audit', 'verify', '--log', path, '--key', key.publicKeyBase64, '--heads', join(series(), 'heads')]);
    expect(cut.code, cut.stdout).toBe(1);
    expect(cut.stdout).toContain(`but the node signed a head at seq ${signed.seq} at ${signed.at}: entries after seq ${signed.seq - 10} were cut off`);
    // Without the heads the cut file alone looks whole: that is what the heads are for.
    expect((await runCli(['audit', 'verify', '--log', path, '--key', key.publicKeyBase64])).code).toBe(0);

    // A log made up to pass: it claims (by a checkpoint of its own) to begin where the node's
    // newest head is, or after every head. Neither ties to what the node signed.
    const made = async (startSeq: number): Promise<string> => {
      const lines: string[] = [];
      let prev = 'ab'.repeat(32);
      const first = JSON.stringify({ seq: startSeq + 1, prev, ts: '2026-11-01T20:00:00.000Z', type: 'checkpoint', dropped: { seq: startSeq, hash: prev }, incidents: [] });
      lines.push(first);
      prev = (await import('node:crypto')).createHash('sha256').update(first).digest('hex');
      lines.push(JSON.stringify({ seq: startSeq + 2, prev, ts: '2026-11-01T20:01:00.000Z', type: 'note', incident: 'x', note: { at: 'x', by: 'x', text: 'x' } }));
      const file = join(root, `made-${startSeq}.log`);
      await writeFile(file, `${lines.join('\n')}\n`);
      return file;
    };
    const forged = await runCli(['audit', 'verify', '--log', await made(signed.seq), '--key', key.publicKeyBase64, '--heads', join(series(), 'heads')]);
    expect(forged.code, forged.stdout).toBe(1);
    expect(forged.stdout).toContain('its start was forged');
    const after = await runCli(['audit', 'verify', '--log', await made(signed.seq + 5), '--key', key.publicKeyBase64, '--heads', join(series(), 'heads')]);
    expect(after.code, after.stdout).toBe(1);
    expect(after.stdout).toMatch(/none of the \d+ signed head\(s\) falls inside this copy/);

    const chunks = (await readdir(series())).filter((n) => n.endsWith('.jsonl')).sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
    expect(chunks.length).toBeGreaterThan(3);
    const middle = join(series(), chunks[Math.floor(chunks.length / 2)]!);
    const text = await readFile(middle, 'utf8');
    await writeFile(middle, text.replace('"segments":30', '"segments":3'));
    const rewritten = await runCli(['audit', 'verify', '--log', series(), '--key', key.publicKeyBase64]);
    expect(rewritten.code, rewritten.stdout).toBe(1);
    expect(rewritten.stdout).toMatch(/BROKEN at line \d+ \(seq \d+\): prev does not match/);
  }, 60_000);

  it('a chunk is cut once: after a crash mid-cut the same range is cut again, and nothing is sent under two names', async () => {
    for (let i = 0; i < 50; i++) await prunePass(i);
    clock.advance(2 * 3_600_000);
    await shipper.tick();
    await drained();
    await shipper.tick();
    const chunks = async (): Promise<string[]> => (await readdir(series())).filter((n) => n.endsWith('.jsonl')).sort();
    const before = await chunks();
    expect(before.length).toBeGreaterThan(1);
    const statePath = join(stateDir, 'audit-upstream.json');
    const state = JSON.parse(await readFile(statePath, 'utf8')) as { shipped: { seq: number; head: string }; cutting: unknown; chunks: unknown[] };
    expect(state).toMatchObject({ shipped: { seq: audit.head().seq, head: audit.head().head }, cutting: null, chunks: [] });

    // The agent died after recording the intent to cut the last chunk, before it was queued.
    await shipper.stop();
    const last = before.map((n) => n.replace('.jsonl', '').split('-').map(Number)).sort((x, y) => y[0]! - x[0]!)[0]!;
    await rm(join(series(), `${last[0]}-${last[1]}.jsonl`));
    let prevHead = '';
    for await (const { bytes } of readRawLines(join(stateDir, AUDIT_LOG_FILE))) {
      if ((JSON.parse(bytes.toString()) as { seq: number }).seq === last[0]! - 1) prevHead = (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex');
    }
    await writeFile(statePath, JSON.stringify({ ...state, shipped: { seq: last[0]! - 1, head: prevHead }, cutting: { first: last[0], last: last[1], logId: LOG_ID } }));
    // More entries since: they must not be folded into the interrupted chunk.
    for (let i = 0; i < 5; i++) await prunePass(100 + i);
    shipper = new AuditShipper({
      stateDir, nodeId: 'branch-7', audit, key, logId: () => LOG_ID, headIntervalMs: 5 * 60_000,
      rotate: (through, opts) => audit.rotate(through, () => [], opts), queued: () => publisher.poke(), clock, log: silentLogger(), chunkMaxBytes: CHUNK, keepBytes: KEEP,
      timers: { setTimeout: () => 0, clearTimeout: () => {} },
    });
    await shipper.start();
    await shipper.tick();
    await drained();
    expect(await chunks()).toEqual(before);
    const whole = await runCli(['audit', 'verify', '--log', series(), '--key', key.publicKeyBase64]);
    expect(whole.code, whole.stdout).toBe(0);
  });
});
