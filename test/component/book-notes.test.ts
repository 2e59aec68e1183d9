// Notes and disclosures in the book (CONTRACT §6, §7): a note on a sealed incident writes its record first and
// unsyncs a synced one; the sync cannot mark it synced while a record it did not upload exists.
// Holds widen, never move, with a clock step. Real files in a temp dir.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_LOG_FILE, AuditLog } from '../../src/audit/log.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { widenWindow, type Incident } from '../../src/incidents/incident.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

async function open(reuse?: string): Promise<{ book: IncidentBook; clock: ManualClock; events: EventBus; audit: AuditLog }> {
  dir = reuse ?? await mkdtemp(join(tmpdir(), 'camnode-book-notes-'));
  const stateDir = join(dir, 'state');
  const log = silentLogger();
  const clock = new ManualClock();
  const audit = new AuditLog({ stateDir, log, clock });
  const sealedDir = join(dir, 'incidents');
  await mkdir(sealedDir, { recursive: true });
  const events = new EventBus(log);
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 120_000, postRollMs: 300_000, maxLengthMs: 3_600_000 },
    enabledCameras: () => ['a'], disposeNeedsSync: true, clock, log, events, audit,
    auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  await audit.start();
  await book.start();
  return { book, clock, events, audit };
}

describe('notes', () => {
  it('a record written while the rest went up keeps the incident unsynced until it goes up too', async () => {
    const { book, clock, events } = await open();
    const { incident } = await book.lock({ atMs: clock.now(), via: 'local', by: 'desk' });
    await book.setState(incident.id, 'sealed');
    await book.setState(incident.id, 'synced');
    const grew: string[] = [];
    events.on('incident.grew', ({ incident: id }) => grew.push(id));
    const records: number[] = [];
    const noted = await book.note({ incident: incident.id, text: 'police report 26-11873', by: 'ops:ann' }, async (_i, _n, n) => { records.push(n); });
    expect(records).toEqual([1]);
    expect(noted).toMatchObject({ state: 'sealed', notes: [{ by: 'ops:ann', text: 'police report 26-11873', record: 1 }] });
    expect(grew).toEqual([incident.id]);
    // The syncer finishing an upload that did not carry the record: still sealed.
    expect((await book.setState(incident.id, 'synced', { recordsUploaded: 0 })).state).toBe('sealed');
    expect((await book.setState(incident.id, 'synced', { recordsUploaded: 1 })).state).toBe('synced');
  });

  it('a note on an open incident stays in the book (the manifest carries it); none while it is sealed', async () => {
    const { book, clock } = await open();
    const { incident } = await book.lock({ atMs: clock.now(), via: 'local', by: 'desk' });
    const recorded: number[] = [];
    const noted = await book.note({ incident: incident.id, text: 'patron left at 15:10', by: 'desk' }, async (_i, _n, n) => { recorded.push(n); });
    expect(recorded).toEqual([]);
    expect(noted.notes).toEqual([{ at: expect.any(String), by: 'desk', text: 'patron left at 15:10' }]);
    await book.setState(incident.id, 'sealing');
    await expect(book.note({ incident: incident.id, text: 'x', by: 'desk' }, async () => {})).rejects.toThrow(/being sealed/);
  });
});

describe('disclosures', () => {
  const request = { legalBasis: 'subpoena' as const, reference: 'SUB-1', agency: 'Sheriff', requestedBy: 'Det. K', by: 'ops:cleo' };

  it('only once sealed; numbered; the record is written before the book and the audit log say so; a failed record leaves no trace', async () => {
    const { book, clock, events } = await open();
    const { incident } = await book.lock({ atMs: clock.now(), via: 'local', by: 'desk' });
    const sha = async (): Promise<string> => 'c'.repeat(64);
    const noRecord = async (): Promise<void> => { throw new Error('must not be written'); };
    await expect(book.disclose({ incident: incident.id, ...request }, sha, noRecord)).rejects.toThrow(/still recording/);
    await book.setState(incident.id, 'sealing');
    await expect(book.disclose({ incident: incident.id, ...request }, sha, noRecord)).rejects.toThrow(/being sealed/);
    await book.setState(incident.id, 'sealed', { manifestSha256: 'a'.repeat(64) });

    const seen: string[] = [];
    events.on('incident.disclosed', (e) => seen.push(`${e.incident} ${e.n} ${e.legalBasis}`));
    await expect(book.disclose({ incident: incident.id, ...request }, sha, async () => { throw new Error('disk full'); })).rejects.toThrow(/disk full/);
    expect(book.get(incident.id)!.disclosures).toBeUndefined();
    const log = (): Promise<string> => readFile(join(dir, 'state', AUDIT_LOG_FILE), 'utf8');
    expect(await log()).not.toContain('"disclose"');

    const written: number[] = [];
    const first = await book.disclose({ incident: incident.id, ...request }, sha, async (i, d) => {
      written.push(d.n);
      expect(book.get(i.id)!.disclosures).toBeUndefined();
    });
    // The book's own hash wins over the fallback's.
    expect(first.disclosure).toMatchObject({ n: 1, manifestSha256: 'a'.repeat(64), where: 'local+upstream', by: 'ops:cleo' });
    await book.setState(incident.id, 'synced');
    await book.dispose({ incident: incident.id, by: 'ops:cleo', reason: 'kept upstream' });
    const second = await book.disclose({ incident: incident.id, ...request, legalBasis: 'court-order' }, sha, async (_i, d) => { written.push(d.n); });
    expect(second.disclosure).toMatchObject({ n: 2, legalBasis: 'court-order', where: 'upstream' });
    // A record left on disk by an attempt that was never acknowledged keeps its number.
    const third = await book.disclose({ incident: incident.id, ...request }, sha, async (_i, d) => { written.push(d.n); }, async (_i, n) => n !== 3);
    expect(third.disclosure.n).toBe(4);
    written.pop();
    seen.pop();
    expect(second.incident.state).toBe('disposed');
    expect(written).toEqual([1, 2]);
    expect(seen).toEqual([`${incident.id} 1 subpoena`, `${incident.id} 2 court-order`]);
    expect(await log()).toContain('"type":"disclose"');
  });

  it('a book lost after a disclosure is rebuilt from the audit log: the disclosures and the manifest\'s hash', async () => {
    const first = await open();
    const { incident } = await first.book.lock({ atMs: first.clock.now(), via: 'local', by: 'desk' });
    await first.book.setState(incident.id, 'sealed');
    await first.audit.append('seal', { incident: incident.id, manifestSha256: 'd'.repeat(64) });
    // No hash in the book: the caller's fallback (the folder, the seal entry) names it.
    await first.book.disclose({ incident: incident.id, ...request }, async () => 'd'.repeat(64), async () => {});
    await first.book.stop();
    await first.audit.stop();
    await rm(join(dir, 'state', 'incidents.json'));
    const again = await open(dir);
    expect(again.book.get(incident.id)).toMatchObject({ manifestSha256: 'd'.repeat(64), disclosures: [{ n: 1, legalBasis: 'subpoena', reference: 'SUB-1', manifestSha256: 'd'.repeat(64) }] });
  });
});

describe('a clock step and a hold', () => {
  it('widens the hold\'s range to keep both the footage it named and the same footage restamped', () => {
    const hold = { window: { start: '2026-12-01T15:00:00.000Z', end: '2026-12-01T15:30:00.000Z' } } as Incident;
    expect(widenWindow(hold, 40_000).window).toEqual({ start: '2026-12-01T15:00:00.000Z', end: '2026-12-01T15:30:40.000Z' });
    expect(widenWindow(hold, -40_000).window).toEqual({ start: '2026-12-01T14:59:20.000Z', end: '2026-12-01T15:30:00.000Z' });
  });
});
