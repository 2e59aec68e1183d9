// A noisy button line (CONTRACT §4): 2,000 presses on one incident. Presses within a second of
// the last trigger join it, an incident lists at most 100 triggers (the rest counted in the
// last one's repeats), and each extension is audited as its change only — so the log grows by
// one short line per press, not by the whole incident — and replaying the log alone gives the
// same incident back.
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { MAX_TRIGGERS } from '../../src/incidents/incident.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

const PRESSES = 2_000;
/** A bound on what one press adds to the log: a line of its change, never the incident. */
const BYTES_PER_PRESS = 400;

async function open(stateDir: string, sealedDir: string, clock: ManualClock) {
  const log = silentLogger();
  const audit = new AuditLog({ stateDir, log, clock });
  await audit.start();
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 120_000, postRollMs: 300_000, maxLengthMs: 3_600_000 },
    enabledCameras: () => ['a', 'b'], disposeNeedsSync: false, clock, log, events: new EventBus(log), audit,
    auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  await book.start();
  return { audit, book };
}

describe('2,000 presses on one incident', () => {
  it('join, cap at 100 triggers, audit linearly, and come back identical from the log alone', async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-presses-'));
    const stateDir = join(dir, 'state');
    const sealedDir = join(dir, 'incidents');
    await mkdir(sealedDir, { recursive: true });
    const clock = new ManualClock();
    const { audit, book } = await open(stateDir, sealedDir, clock);
    const sizes: number[] = [];
    for (let i = 0; i < PRESSES; i++) {
      // Bursts: three presses 300 ms apart, then 1.2 s of quiet.
      clock.advance(i % 3 === 0 ? 1_200 : 300);
      await book.lock({ atMs: clock.now(), via: 'button' });
      if (i % 500 === 499) sizes.push((await stat(join(stateDir, AUDIT_LOG_FILE))).size);
    }
    const [incident] = book.list();
    expect(book.list()).toHaveLength(1);
    expect(incident!.triggers).toHaveLength(MAX_TRIGGERS);
    // Every press is counted: listed, joined to its burst's first, or past the cap.
    expect(incident!.triggers.reduce((n, t) => n + 1 + (t.repeats ?? 0), 0)).toBe(PRESSES);
    expect(incident!.triggers[0]!.repeats).toBe(2);
    // Joined or counted, every press still moves the end: the last one's post-roll.
    expect(Date.parse(incident!.window.end)).toBe(clock.now() + 300_000);

    // Linear: each 500 presses add about the same, and little per press.
    const growth = sizes.map((s, i) => s - (sizes[i - 1] ?? 0));
    for (const g of growth) expect(g).toBeLessThan(500 * BYTES_PER_PRESS);
    expect(Math.max(...growth) / Math.min(...growth)).toBeLessThan(1.5);
    await book.stop();
    await audit.stop();

    // The book is lost: it comes back from the audit log alone, identical.
    await rm(join(stateDir, 'incidents.json'));
    const again = await open(stateDir, sealedDir, clock);
    expect(again.book.list()).toEqual([incident]);
    await again.book.stop();
    await again.audit.stop();
  });
});
