// A press when the state dir cannot be written (read-only, full): the lock is kept in memory,
// where the ring honours it, the press is told it is not durable (the LED shows the error), and
// the book and the audit entry are written as soon as they can be. A command in the same state
// is refused instead — nothing is acknowledged that is not durable.
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook, LockNotDurable } from '../../src/incidents/book.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a lock when the state dir cannot be written', () => {
  it('a press is honoured in memory, refused as not durable, and written once the dir is back; a command is refused', async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-undurable-'));
    const stateDir = join(dir, 'state');
    const sealedDir = join(dir, 'incidents');
    await mkdir(sealedDir, { recursive: true });
    const clock = new ManualClock();
    const log = silentLogger();
    const events = new EventBus(log);
    const seen: string[] = [];
    events.on('incident.locked', ({ incident }) => seen.push(`locked ${incident}`));
    const audit = new AuditLog({ stateDir, log, clock });
    await audit.start();
    let auditBroken = false;
    const book = new IncidentBook({
      stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 60_000, postRollMs: 60_000, maxLengthMs: 3_600_000 },
      enabledCameras: () => ['cam'], disposeNeedsSync: false, clock, log, events,
      audit: { append: (type, payload) => (auditBroken ? Promise.reject(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' })) : audit.append(type, payload)) },
      auditLogPath: join(stateDir, AUDIT_LOG_FILE),
    });
    await book.start();

    // The state dir goes away under the book (a path where a folder was): every write fails.
    await rename(stateDir, `${stateDir}.away`);
    await writeFile(stateDir, 'not a folder');
    auditBroken = true;

    const refused = book.lock({ atMs: clock.now(), via: 'local', reason: 'a command' });
    await expect(refused).rejects.not.toBeInstanceOf(LockNotDurable);
    expect(book.list()).toEqual([]);

    const press = book.lock({ atMs: clock.now(), via: 'button' });
    await expect(press).rejects.toBeInstanceOf(LockNotDurable);
    // Honoured at once: the ring sees the lock.
    expect(book.list()).toHaveLength(1);
    const id = book.list()[0]!.id;
    expect(book.lockedRanges()).toEqual([{ camera: 'cam', startMs: clock.now() - 60_000, endMs: clock.now() + 60_000 }]);
    expect(book.undurable()).toEqual([id]);
    // A second press extends the one in memory.
    clock.advance(5_000);
    await expect(book.lock({ atMs: clock.now(), via: 'button' })).rejects.toBeInstanceOf(LockNotDurable);
    expect(book.list()).toHaveLength(1);
    expect(book.get(id)!.triggers).toHaveLength(2);
    expect(seen).toEqual([]);

    // Back: the retry writes the book and the owed audit entry, then announces it.
    await rm(stateDir);
    await rename(`${stateDir}.away`, stateDir);
    auditBroken = false;
    await until(() => book.undurable().length === 0);
    expect(seen).toEqual([`locked ${id}`]);
    const onDisk = JSON.parse(await readFile(join(stateDir, 'incidents.json'), 'utf8')) as { incidents: { id: string; triggers: unknown[] }[] };
    expect(onDisk.incidents.map((i) => [i.id, i.triggers.length])).toEqual([[id, 2]]);
    const entries = (await readFile(join(stateDir, AUDIT_LOG_FILE), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; incident?: { id: string; triggers: unknown[] } });
    expect(entries.map((e) => [e.type, e.incident?.id, e.incident?.triggers.length])).toEqual([['lock', id, 2]]);
    await book.stop();
    await audit.stop();
  });
});
