// `release` became `dispose` (CONTRACT §3, §4): a book written before the rename says
// `released`, an audit log says `release` and `release.forced`. Both are read as disposed.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { sha256Hex, GENESIS_PREV } from '../../src/audit/chain.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import type { Incident } from '../../src/incidents/incident.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

/** As an earlier release wrote it: no kind, no notes. */
const incident = (id: string, state: string): Omit<Incident, 'kind' | 'notes'> => ({
  id, node: 'n', triggers: [{ at: '2026-11-28T12:00:00.000Z', via: 'button' }], cameras: ['a'],
  window: { start: '2026-11-28T11:58:00.000Z', end: '2026-11-28T12:05:00.000Z' }, state: state as Incident['state'], urgent: true,
});

async function open(stateDir: string): Promise<{ book: IncidentBook; audit: AuditLog }> {
  const log = silentLogger();
  const clock = new ManualClock();
  const audit = new AuditLog({ stateDir, log, clock });
  const sealedDir = join(dir, 'incidents');
  await mkdir(sealedDir, { recursive: true });
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 120_000, postRollMs: 300_000, maxLengthMs: 3_600_000 },
    enabledCameras: () => ['a'], disposeNeedsSync: false, clock, log, events: new EventBus(log), audit,
    auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  await book.start();
  await audit.start();
  return { book, audit };
}

describe('books and logs written before the rename', () => {
  it('a book saying `released` is read as `disposed`, and disposing again is a conflict', async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-rename-'));
    const stateDir = join(dir, 'state');
    await mkdir(stateDir, { recursive: true });
    const id = '20261128T120000Z-abcd';
    await writeFile(join(stateDir, 'incidents.json'), JSON.stringify({ version: 1, incidents: [incident(id, 'released')] }));
    const { book, audit } = await open(stateDir);
    expect(book.get(id)?.state).toBe('disposed');
    // Written before incidents had a kind and notes: a lock without notes.
    expect(book.get(id)).toMatchObject({ kind: 'lock', notes: [] });
    await expect(book.dispose({ incident: id, by: 'ops', reason: 'again' })).rejects.toThrow(/already disposed of/);
    await book.stop();
    await audit.stop();
  });

  it('recovery from a log with `release` and `release.forced` entries gives disposed incidents', async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-rename-'));
    const stateDir = join(dir, 'state');
    await mkdir(stateDir, { recursive: true });
    const a = '20261128T120000Z-aaaa';
    const b = '20261128T130000Z-bbbb';
    const entries = [
      { type: 'lock', incident: incident(a, 'active') },
      { type: 'lock', incident: incident(b, 'active') },
      { type: 'release', incident: a, by: 'ops', reason: 'synced' },
      { type: 'release.forced', incident: b, by: 'ops', reason: 'false alarm', state: 'active' },
    ];
    // A chained log as an earlier release wrote it.
    let prev = GENESIS_PREV;
    const lines = entries.map((e, i) => {
      const line = JSON.stringify({ seq: i + 1, prev, ts: '2026-11-28T14:00:00.000Z', ...e });
      prev = sha256Hex(line);
      return line;
    });
    await writeFile(join(stateDir, AUDIT_LOG_FILE), `${lines.join('\n')}\n`);
    const { book, audit } = await open(stateDir);
    expect(book.list().map((i) => [i.id, i.state])).toEqual([[a, 'disposed'], [b, 'disposed']]);
    await book.stop();
    await audit.stop();
  });
});
