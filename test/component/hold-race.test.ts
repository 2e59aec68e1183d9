// Holds taken while the pruner deletes under pressure (CONTRACT §6): the hold is in the book —
// where the pruner reads its locks — before its first await, and `missing` is read after every
// in-flight unlink has finished. Real files on a real filesystem, the real ring, book, audit log
// and `hold` handler; the hold lands at a random point of a pass, hundreds of times. No segment
// inside an acknowledged range may go unless `missing` says so, and `missing` never leaves out
// footage that is gone.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { loadOrCreateNodeKey } from '../../src/audit/keys.js';
import type { CommandHandler } from '../../src/commands/handlers.js';
import { EventBus } from '../../src/events.js';
import { Faults } from '../../src/lifecycle/faults.js';
import { incidentsModule, type HoldReply, type IncidentsModule } from '../../src/modules/incidents.js';
import { ManualClock } from '../../src/platform/clock.js';
import type { StepSource } from '../../src/platform/clock-steps.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring } from '../../src/store/ring.js';
import { segmentEndMs, segmentFileName } from '../../src/store/segment.js';
import { recordFake } from '../helpers/fake-recorder.js';

const SEGMENTS = 40;
const BYTES = 1_000;
const ROUNDS = 200;
let root: string;

beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'camnode-hold-race-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** Waits `n` turns of the event loop (each unlink of the pass takes at least one). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

const noSteps: StepSource = { check: () => 0, onStep: () => () => {}, bootId: () => 'boot', stepCount: () => 0, stepsAfter: () => [] };

/**
 * The real ring, audit log, book and `hold` handler on `dir`, wired as the agent wires them (the
 * ring reads the book's locks through a closure); only the book is started (the sealer would seal
 * a hold at once and hand it to the clips). The ring is left for the caller to start.
 */
async function openNode(dir: string, clock: ManualClock, steps: StepSource, size: () => number): Promise<{ ring: Ring; incidents: IncidentsModule; audit: AuditLog }> {
  const log = silentLogger();
  const events = new EventBus(log);
  const stateDir = join(dir, 'state');
  const audit = new AuditLog({ stateDir, log, clock });
  await audit.start();
  const wired: { book?: { lockedRanges(): readonly { camera: string; startMs: number; endMs: number }[] } } = {};
  const ring = new Ring({
    auditDeletion: async (e) => void await audit.append('delete', e),
    options: { storagePath: dir, maxUsePercent: 99, reserveBytes: 0, segmentSeconds: 1 },
    clock, log, events, steps,
    disk: async () => ({ sizeBytes: size(), usedBytes: SEGMENTS * BYTES, freeBytes: size() - SEGMENTS * BYTES, type: 'ext4' }),
    locks: { lockedRanges: () => wired.book?.lockedRanges() ?? [] },
    inProgressFiles: () => [],
    probeDurationMs: async () => 1_000,
    clockSynced: () => true,
    pruneIntervalMs: 3_600_000,
  });
  const incidents = await incidentsModule({
    clock, log, events, faults: new Faults({ clock, events, log }), signal: new AbortController().signal,
    node: { id: 'n', stateDir }, incident: { preRoll: 60_000, postRoll: 60_000, maxLength: 3_600_000, maxHold: 86_400_000, maxLockedPercent: 100 },
    panel: { presses: { attach: () => () => {} }, led: { during: (work) => work(), isOn: () => false }, fake: null },
    enabledCameras: ['cam'], configuredCameras: ['cam'], writing: () => false,
    sealedDir: join(dir, 'incidents'), segmentSeconds: 1, disposeNeedsSync: false,
    ring, audit, key: await loadOrCreateNodeKey(stateDir), steps,
    clockSynced: () => true, kbps: () => 0, downIntervals: () => [], upstreamPrefix: null,
  });
  wired.book = incidents.book;
  for (const c of incidents.early ?? []) await c.start(new AbortController().signal);
  return { ring, incidents, audit };
}

describe('holds and the pruner', () => {
  it(`${ROUNDS} rounds: nothing inside an acknowledged hold goes unless missing says so`, async () => {
    let raced = 0;
    const outcomes = { all: 0, some: 0, none: 0, notFound: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const dir = join(root, String(round));
      const camDir = join(dir, 'segments', 'cam');
      mkdirSync(camDir, { recursive: true });
      const clock = new ManualClock();
      const t0 = clock.now() - SEGMENTS * 1_000 - 5_000;
      const segs = Array.from({ length: SEGMENTS }, (_, i) => ({ seq: i + 1, startMs: t0 + i * 1_000, durationMs: 1_000 }));
      const pathOf = (s: (typeof segs)[number]): string => join(camDir, segmentFileName(s));
      for (const s of segs) writeFileSync(pathOf(s), Buffer.alloc(BYTES));
      let size = 1e9;
      const { ring, incidents, audit } = await openNode(dir, clock, noSteps, () => size);
      await ring.start();
      size = (SEGMENTS / 4) * BYTES / 0.99;
      // A range of a few segments among the oldest three quarters, which the pass would delete.
      const first = Math.floor(Math.random() * (SEGMENTS * 3) / 4 - 4);
      const from = segs[Math.max(0, first)]!.startMs + 300;
      const to = segs[Math.max(0, first) + 3]!.startMs + 700;
      const pass = ring.requestPrune();
      // Land the hold anywhere in the pass: after a random number of its unlinks, plus a few turns.
      const unlinks = Math.floor(Math.random() * (first + 6));
      for (let i = 0; i < 10_000 && segs.filter((s) => !existsSync(pathOf(s))).length < unlinks; i++) await turns(1);
      await turns(Math.floor(Math.random() * 4));
      const hold = incidents.commands!.hold as CommandHandler<'hold'>;
      let reply: HoldReply;
      try {
        reply = await hold({ from, to, reason: 'reported later', by: 'desk' }, { via: 'local' }) as HoldReply;
      } catch (err) {
        // Everything in the range was already gone when it came: not_found, and truly nothing left.
        expect((err as { code?: string }).code, `round ${round}: ${(err as Error).message}`).toBe('not_found');
        outcomes.notFound++;
        expect(segs.filter((s) => s.startMs < to && segmentEndMs(s) > from).every((s) => !existsSync(pathOf(s)))).toBe(true);
        await pass;
        await ring.stop();
        await audit.stop();
        continue;
      }
      const inMissing = (s: (typeof segs)[number]): boolean => reply.missing.some((m) => Date.parse(m.start) <= Math.max(s.startMs, from) && Math.min(segmentEndMs(s), to) <= Date.parse(m.end));
      const inRange = segs.filter((s) => s.startMs < to && segmentEndMs(s) > from);
      const presentAtReply = new Set(inRange.filter((s) => existsSync(pathOf(s))).map((s) => s.seq));
      await pass;
      await ring.requestPrune();
      for (const s of inRange) {
        const there = existsSync(pathOf(s));
        // Never under-reported: gone means named missing.
        if (!there) expect(inMissing(s), `round ${round}: seq ${s.seq} gone but not in missing ${JSON.stringify(reply.missing)}`).toBe(true);
        // Present at the reply and not named missing: kept for good.
        if (presentAtReply.has(s.seq)) expect(there, `round ${round}: seq ${s.seq} deleted after the hold was acknowledged`).toBe(true);
        // Missing is the truth from the files: what was there at the reply is not named missing.
        if (presentAtReply.has(s.seq)) expect(inMissing(s), `round ${round}: seq ${s.seq} is there but named missing`).toBe(false);
      }
      if (presentAtReply.size > 0 && presentAtReply.size < inRange.length) raced++;
      outcomes[presentAtReply.size === inRange.length ? 'all' : presentAtReply.size === 0 ? 'none' : 'some']++;
      await ring.stop();
      for (const c of incidents.early ?? []) await c.stop();
      await audit.stop();
      await rm(dir, { recursive: true, force: true });
    }
    // Some holds came while the pass was inside their range: the race really was run.
    expect(raced, JSON.stringify(outcomes)).toBeGreaterThan(ROUNDS / 10);
  }, 120_000);
});

/** A clock that steps when told: listeners hear it at the next check, as ClockSteps does. */
class SteppingClock implements StepSource {
  private readonly listeners: ((deltaMs: number, step: { n: number; deltaMs: number }) => void)[] = [];
  private readonly steps: { n: number; deltaMs: number }[] = [];
  private pending = 0;
  step(deltaMs: number): void { this.pending += deltaMs; }
  check(): number {
    const delta = this.pending;
    if (delta === 0) return 0;
    this.pending = 0;
    const step = { n: this.steps.length + 1, deltaMs: delta };
    this.steps.push(step);
    for (const l of this.listeners) l(delta, step);
    return delta;
  }
  onStep(l: (deltaMs: number, step: { n: number; deltaMs: number }) => void): () => void { this.listeners.push(l); return () => {}; }
  bootId(): string { return 'boot'; }
  stepCount(): number { return this.steps.length; }
  stepsAfter(n: number): { n: number; deltaMs: number }[] { return this.steps.filter((s) => s.n > n); }
}

describe('a hold over footage stamped before a clock step', () => {
  it('names it uncertain, per camera, and only it', async () => {
    const dir = join(root, 'uncertain');
    const clock = new ManualClock();
    const steps = new SteppingClock();
    const { ring, incidents, audit } = await openNode(dir, clock, steps, () => 1e9);
    await ring.start();
    await recordFake(ring, clock, 'cam', 10);
    // The clock was an hour behind; NTP steps it forward. What was recorded so far is corrected.
    steps.step(3_600_000);
    clock.advance(3_600_000);
    const after = await recordFake(ring, clock, 'cam', 5);
    const segments = ring.allSegments();
    const before = segments.filter((s) => !after.includes(s.seq));
    expect(before.every((s) => ring.clockOf(s) === 'stepped')).toBe(true);
    const hold = incidents.commands!.hold as CommandHandler<'hold'>;
    const from = segments[0]!.startMs;
    const to = clock.now() - 100;
    const reply = await hold({ from, to, reason: 'reported later', by: 'desk' }, { via: 'local' }) as HoldReply;
    const last = before[before.length - 1]!;
    // Corrected, the footage before the step meets the footage after it: nothing is missing.
    expect(reply.missing).toEqual([]);
    expect(reply.uncertain).toEqual([{ camera: 'cam', start: new Date(before[0]!.startMs).toISOString(), end: new Date(segmentEndMs(last)).toISOString() }]);
    await ring.stop();
    for (const c of incidents.early ?? []) await c.stop();
    await audit.stop();
  });
});
