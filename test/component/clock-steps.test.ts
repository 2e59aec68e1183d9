// Clock steps against windows (CONTRACT §4, §5): the ring and the incident book share one
// ClockSteps, on real files and a real audit log, driven by a ManualClock whose wall clock
// steps while its monotonic clock runs on — as NTP's first sync steps a Pi's clock.
//  - After a forward step, a press's pre-roll takes the footage really recorded before it.
//  - After a backward step, a press extends the open incident (its window moved with the step).
//  - A restart in the same boot finds a step taken while the agent was down; a new boot does not
//    correct the previous boot's footage.
//  - The book comes back from the audit log alone with the moved windows.
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { ManualClock } from '../../src/platform/clock.js';
import { ClockSteps } from '../../src/platform/clock-steps.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring } from '../../src/store/ring.js';
import { segmentEndMs } from '../../src/store/segment.js';
import { recordFake } from '../helpers/fake-recorder.js';
import { listSegments } from '../helpers/segments.js';

const SECOND = 1_000;
const HOUR = 3_600_000;
const CAMERA = 'a';
const POLICY = { preRollMs: 10 * SECOND, postRollMs: 10 * SECOND, maxLengthMs: HOUR };

let dir: string;
let clock: ManualClock;
let running: { stop(): Promise<void> }[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-steps-'));
  clock = new ManualClock();
  running = [];
  await setBoot('boot-1');
});
afterEach(async () => {
  for (const r of running.reverse()) await r.stop();
  await rm(dir, { recursive: true, force: true });
});

async function setBoot(id: string): Promise<void> {
  await mkdir(join(dir, 'proc/sys/kernel/random'), { recursive: true });
  await writeFile(join(dir, 'proc/sys/kernel/random/boot_id'), `${id}\n`);
}

/** The agent's core for this test: one ClockSteps shared by the ring and the book, in start order. */
async function startNode() {
  const log = silentLogger();
  const stateDir = join(dir, 'state');
  const sealedDir = join(dir, 'storage', 'incidents');
  await mkdir(sealedDir, { recursive: true });
  const steps = new ClockSteps({ clock, stateDir, log, procRoot: join(dir, 'proc') });
  const audit = new AuditLog({ stateDir, log, clock });
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: POLICY, enabledCameras: () => [CAMERA], disposeNeedsSync: false,
    clock, log, events: new EventBus(log), audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE), steps,
  });
  const ring = new Ring({
    options: { storagePath: join(dir, 'storage'), maxUsePercent: 90, reserveBytes: 0, segmentSeconds: 1 },
    clock, log, events: new EventBus(log), steps,
    disk: async () => ({ sizeBytes: 1e12, usedBytes: 1e9, freeBytes: 1e12 - 1e9, type: 'ext4' }),
    locks: book, inProgressFiles: () => [], probeDurationMs: async () => SECOND,
    auditDeletion: async () => {}, clockSynced: () => true, pruneIntervalMs: HOUR,
  });
  await steps.start();
  await book.start();
  await audit.start();
  await ring.start();
  const node = { steps, audit, book, ring, async stop() { await ring.stop(); await book.stop(); await audit.stop(); await steps.stop(); } };
  running.push(node);
  return node;
}

/** n 1 s segments as a recorder makes them. */
const record = (ring: Ring, n: number): Promise<number[]> => recordFake(ring, clock, CAMERA, n);

const window = (i: { window: { start: string; end: string } }) => ({ start: Date.parse(i.window.start), end: Date.parse(i.window.end) });

describe('a clock step and the windows drawn on it', () => {
  it('forward: the pre-roll of a press just after the step takes the footage recorded just before it', async () => {
    const node = await startNode();
    const before = await record(node.ring, 20);
    clock.jump(HOUR); // NTP sets the clock an hour on
    const { incident } = await node.book.lock({ ...node.book.triggerTime(), via: 'button' });
    const w = window(incident);
    // The last ten seconds before the press were recorded before the step: they are in the window.
    const taken = node.ring.segmentsBetween(CAMERA, w.start, w.end).map((s) => s.seq);
    expect(taken).toEqual(before.slice(-10));
    // Their files are still found under the stamps they were named with.
    for (const s of node.ring.segmentsBetween(CAMERA, w.start, w.end)) expect(node.ring.pathOf(s)).toMatch(/\.ts$/);
    const onDisk = (await listSegments(join(dir, 'storage'), CAMERA)).map((s) => s.path);
    for (const s of node.ring.segmentsBetween(CAMERA, w.start, w.end)) expect(onDisk).toContain(node.ring.pathOf(s));
    // And the ring locks exactly them.
    expect(node.ring.allSegments().filter((s) => node.book.lockedRanges().some((r) => s.startMs < r.endMs && segmentEndMs(s) > r.startMs)).map((s) => s.seq))
      .toEqual(before.slice(-10));
    expect(node.ring.clockOf({ seq: before[0]! })).toBe('stepped');
    const after = await record(node.ring, 1);
    expect(node.ring.clockOf({ seq: after[0]! })).toBe('synced');
  });

  it('backward: a press after the step extends the open incident, whose window moved with the step', async () => {
    const node = await startNode();
    await record(node.ring, 15);
    const first = await node.book.lock({ ...node.book.triggerTime(), via: 'button' });
    const w1 = window(first.incident);
    await record(node.ring, 5);
    clock.jump(-HOUR);
    const second = await node.book.lock({ ...node.book.triggerTime(), via: 'button' });
    expect(second.extended).toBe(true);
    const w2 = window(second.incident);
    // The window moved back an hour, and the press 5 s later added its post-roll: it really extends.
    expect(w2.start).toBe(w1.start - HOUR);
    expect(w2.end).toBe(w1.end - HOUR + 5 * SECOND);
    // The footage from the window's start to the press (10 s pre-roll, 5 s between the presses) is all in it.
    expect(node.ring.segmentsBetween(CAMERA, w2.start, w2.end)).toHaveLength(15);
    // The step is in the audit log with the window it moved, before the extension.
    const entries = (await import('node:fs')).readFileSync(join(dir, 'state', AUDIT_LOG_FILE), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.map((e) => e['type'])).toEqual(['lock', 'clock', 'extend']);
    expect(entries[1]).toMatchObject({ jumpMs: -HOUR, incidents: [{ incident: first.incident.id, start: new Date(w1.start - HOUR).toISOString(), end: new Date(w1.end - HOUR).toISOString() }] });

    // The book is lost: the log alone gives the moved, extended incident back.
    const book = node.book.list();
    await node.stop();
    running = [];
    await rm(join(dir, 'state', 'incidents.json'));
    const again = await startNode();
    expect(again.book.list()).toEqual(book);
  });

  it('a step while the agent was down, in the same boot, is found at the next start; a new boot is not corrected', async () => {
    const first = await startNode();
    const recorded = await record(first.ring, 10);
    await first.stop();
    running = [];

    clock.jump(HOUR); // while down: the monotonic clock ran on with the wall clock, then the wall clock stepped
    const second = await startNode();
    const { incident } = await second.book.lock({ ...second.book.triggerTime(), via: 'button' });
    const w = window(incident);
    expect(second.ring.segmentsBetween(CAMERA, w.start, w.end).map((s) => s.seq)).toEqual(recorded);
    await second.stop();
    running = [];

    // A reboot: a new boot id, and the monotonic clock starts again. The stamps of the earlier
    // boot stay as they are (corrected as they were, not by what this boot's clock does).
    await setBoot('boot-2');
    clock = new ManualClock(clock.now() + 60 * SECOND, 5_000);
    const third = await startNode();
    const before = third.ring.allSegments().map((s) => s.startMs);
    clock.jump(2 * HOUR);
    const fresh = await record(third.ring, 1);
    expect(third.ring.allSegments().slice(0, recorded.length).map((s) => s.startMs)).toEqual(before);
    expect(third.ring.clockOf({ seq: fresh[0]! })).toBe('synced');
  });

  it('an incident of an earlier boot keeps its window when this boot\'s clock steps', async () => {
    const first = await startNode();
    const recorded = await record(first.ring, 15);
    const { incident } = await first.book.lock({ ...first.book.triggerTime(), via: 'button' });
    const w = window(incident);
    await first.stop();
    running = [];
    // Power lost within the post-roll; the Pi boots with its clock 30 min behind, then NTP steps it.
    await setBoot('boot-2');
    clock = new ManualClock(clock.now() - 30 * 60_000, 5_000);
    const second = await startNode();
    clock.jump(30 * 60_000);
    await record(second.ring, 1); // the ring's check finds the step
    const after = second.book.get(incident.id)!;
    expect(window(after)).toEqual(w);
    // Its pre-roll still locked (and the new footage of its post-roll, stamped after the step).
    expect(second.ring.segmentsBetween(CAMERA, w.start, w.end).map((s) => s.seq)).toEqual(expect.arrayContaining(recorded.slice(-10)));
  });

  it('a step the ring had not written when the agent died is taken in at the next start, and the book\'s windows are not moved twice', async () => {
    const first = await startNode();
    const recorded = await record(first.ring, 12);
    const { incident } = await first.book.lock({ ...first.book.triggerTime(), via: 'button' });
    const before = readFileSync(join(dir, 'storage', 'segments', 'clock.json'), 'utf8');
    clock.jump(HOUR);
    first.book.triggerTime(); // a press finds the step: the book and the ring take it in
    await first.ring.requestPrune(); // everything written...
    await first.book.lock({ ...first.book.triggerTime(), via: 'mqtt' }).catch(() => {});
    const moved = window(first.book.get(incident.id)!);
    // ...then the ring's clock.json as it was before the step: the agent died before writing it.
    writeFileSync(join(dir, 'storage', 'segments', 'clock.json'), before);
    await first.stop().catch(() => {});
    writeFileSync(join(dir, 'storage', 'segments', 'clock.json'), before);
    running = [];
    const second = await startNode();
    expect(window(second.book.get(incident.id)!)).toEqual(moved);
    // The pre-roll footage is found again in the moved window: the ring took the step in.
    expect(second.ring.segmentsBetween(CAMERA, moved.start, moved.end).map((s) => s.seq)).toEqual(expect.arrayContaining(recorded.slice(-10)));
  });

  it('a trigger read just before a step, locked just after it, is put in the new time base', async () => {
    const node = await startNode();
    const recorded = await record(node.ring, 12);
    const t = node.book.triggerTime();
    clock.jump(HOUR);
    await record(node.ring, 1); // the ring finds the step before the lock runs
    const { incident } = await node.book.lock({ ...t, via: 'button' });
    const w = window(incident);
    expect(w.start).toBe(t.atMs + HOUR - POLICY.preRollMs);
    expect(node.ring.segmentsBetween(CAMERA, w.start, w.end).map((s) => s.seq)).toEqual(expect.arrayContaining(recorded.slice(-10)));
  });
});
