// Incident ids are unique (CONTRACT §4): two incidents locked in the same second with the same
// random suffix would share an id, and the second replaced the first in the book — a synced
// incident among them. A suffix already in use is drawn again.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { openIncident } from '../../src/incidents/incident.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

const policy = { preRollMs: 2_000, postRollMs: 1_000, maxLengthMs: 60_000 };
let dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

describe('incident ids', () => {
  it('openIncident draws again while the id is taken, and says so if it never frees', () => {
    const T = Date.UTC(2026, 11, 2, 12);
    let n = 0;
    const random = () => Math.floor(n++ / 4) % 32; // aaaa, bbbb, cccc, …
    const taken = new Set(['20261202T120000Z-aaaa', '20261202T120000Z-bbbb']);
    const i = openIncident('n', { atMs: T, via: 'button' }, policy, ['cam'], { random, taken: (id) => taken.has(id) });
    expect(i.id).toBe('20261202T120000Z-cccc');
    expect(() => openIncident('n', { atMs: T, via: 'button' }, policy, ['cam'], { random: () => 0, taken: () => true })).toThrow(/no free incident id/);
  });

  it('a second incident in the same second with the same draw gets its own id; the first is kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'camnode-ids-'));
    dirs.push(dir);
    const stateDir = join(dir, 'state');
    const sealedDir = join(dir, 'incidents');
    await mkdir(stateDir);
    await mkdir(sealedDir);
    const clock = new ManualClock(Date.UTC(2026, 11, 2, 12, 0, 0, 100));
    // Both locks draw "aaaa" first; the second then draws "bbbb".
    let draws = 0;
    const random = () => (draws++ < 8 ? 0 : 1);
    const log = silentLogger();
    const events = new EventBus(log);
    const audit = new AuditLog({ stateDir, log, clock });
    const book = new IncidentBook({
      stateDir, sealedDir, nodeId: 'n', policy, enabledCameras: () => ['cam'], disposeNeedsSync: false,
      clock, log, events, audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE), random,
    });
    await audit.start();
    await book.start();
    const first = await book.lock({ atMs: clock.now(), via: 'local', postRollMs: 1 });
    await book.setState(first.incident.id, 'synced');
    clock.advance(500); // same second, the first window long over
    const second = await book.lock({ atMs: clock.now(), via: 'local', postRollMs: 1 });
    expect(second.extended).toBe(false);
    expect(first.incident.id).toBe('20261202T120000Z-aaaa');
    expect(second.incident.id).toBe('20261202T120000Z-bbbb');
    expect(book.get(first.incident.id)?.state).toBe('synced');
    expect(book.list()).toHaveLength(2);
    await book.stop();
    await audit.stop();
  });
});
