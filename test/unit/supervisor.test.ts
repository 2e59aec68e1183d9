// Faults and the supervisor of non-essential parts (CONTRACT §5): a failure to start or a
// failure while running becomes a fault in the state and one component.failed event, the part
// is built afresh and retried with backoff, and component.recovered clears it.
import { describe, expect, it } from 'vitest';
import { EventBus, type AgentEvents } from '../../src/events.js';
import type { Component } from '../../src/lifecycle/component.js';
import { Faults } from '../../src/lifecycle/faults.js';
import { Supervised, type FailHandler } from '../../src/lifecycle/supervisor.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { ManualTimers } from '../helpers/timers.js';

type Seen = { type: 'component.failed' | 'component.recovered'; payload: AgentEvents['component.failed'] };

function rig() {
  const clock = new ManualClock();
  const timers = new ManualTimers(clock);
  const events = new EventBus(silentLogger());
  const seen: Seen[] = [];
  events.on('component.failed', (payload) => seen.push({ type: 'component.failed', payload }));
  events.on('component.recovered', (payload) => seen.push({ type: 'component.recovered', payload }));
  const faults = new Faults({ clock, events, log: silentLogger() });
  return { clock, timers, events, faults, seen };
}

/** A part whose start fails while `failures` lasts; it records every instance built. */
class Part implements Component {
  readonly name = 'sync';
  started = false;
  stops = 0;
  constructor(readonly id: number, private readonly startError: string | null, readonly fail: FailHandler) {}
  async start(): Promise<void> {
    if (this.startError) throw new Error(this.startError);
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stops++;
    this.started = false;
  }
}

function supervise(r: ReturnType<typeof rig>, startErrors: (string | null)[]) {
  const built: Part[] = [];
  const supervised = new Supervised<Part>({
    name: 'sync', faults: r.faults, log: silentLogger(), timers: r.timers, monotonic: () => r.clock.monotonic(),
    backoff: { baseMs: 1_000, maxMs: 8_000, jitter: 0 }, stableMs: 60_000,
    build: (fail) => {
      const part = new Part(built.length, startErrors[built.length] ?? null, fail);
      built.push(part);
      return part;
    },
  });
  return { supervised, built };
}

/** Polls (the problem check runs on a real interval). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** Lets the promise chains of a timer's attempt run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe('Faults', () => {
  it('lists a fault with its time, announces it once, and clears it with one recovered event', () => {
    const r = rig();
    r.faults.report('sync', new Error('upstream.credentials: cannot read /etc/camnode/s3.env (EACCES)'));
    r.clock.advance(5_000);
    r.faults.report('sync', new Error('still EACCES'));
    expect(r.faults.list()).toEqual([{ component: 'sync', since: '2026-11-28T12:00:00.000Z', message: 'still EACCES' }]);
    expect(r.seen.map((s) => s.type)).toEqual(['component.failed']);
    expect(r.seen[0]!.payload).toEqual({ component: 'sync', message: 'upstream.credentials: cannot read /etc/camnode/s3.env (EACCES)' });
    r.faults.clear('sync');
    r.faults.clear('sync');
    expect(r.faults.list()).toEqual([]);
    expect(r.seen.map((s) => s.type)).toEqual(['component.failed', 'component.recovered']);
    expect(r.seen[1]!.payload).toEqual({ component: 'sync', message: 'working again after: still EACCES' });
  });

  it('keeps one fault per incident for the sealer, and cuts long messages', () => {
    const r = rig();
    r.faults.report('sealer', 'cannot seal a', 'a');
    r.faults.report('sealer', 'x'.repeat(5_000), 'b');
    expect(r.faults.list().map((f) => [f.component, f.incident, f.message.length])).toEqual([['sealer', 'a', 13], ['sealer', 'b', 500]]);
    r.faults.clear('sealer', 'a');
    expect(r.faults.failing('sealer')?.incident).toBe('b');
    expect(r.seen.at(-1)).toMatchObject({ type: 'component.recovered', payload: { component: 'sealer', incident: 'a' } });
  });
});

describe('Supervised', () => {
  it('a part that cannot start is reported, not thrown, and retried with doubling backoff on a fresh instance until it starts', async () => {
    const r = rig();
    const { supervised, built } = supervise(r, ['EACCES', 'EACCES', 'EACCES']);
    await supervised.start(new AbortController().signal);
    expect(supervised.current()).toBeUndefined();
    expect(r.faults.list()).toMatchObject([{ component: 'sync', message: 'EACCES' }]);
    // Retries at 1 s, then 2 s more, then 4 s more.
    r.timers.advance(999);
    await settle();
    expect(built).toHaveLength(1);
    r.timers.advance(1);
    await settle();
    expect(built).toHaveLength(2);
    r.timers.advance(1_999);
    await settle();
    expect(built).toHaveLength(2);
    r.timers.advance(1);
    await settle();
    expect(built).toHaveLength(3);
    r.timers.advance(4_000);
    await settle();
    expect(built).toHaveLength(4);
    expect(supervised.current()).toBe(built[3]);
    expect(built[3]!.started).toBe(true);
    expect(r.faults.list()).toEqual([]);
    expect(r.seen.map((s) => s.type)).toEqual(['component.failed', 'component.recovered']);
    expect(r.timers.count()).toBe(0);
    await supervised.stop();
    expect(built[3]!.stops).toBe(1);
  });

  it('a part that fails while running is stopped, reported, and started again later', async () => {
    const r = rig();
    const { supervised, built } = supervise(r, []);
    await supervised.start(new AbortController().signal);
    expect(r.seen).toEqual([]);
    built[0]!.fail(new Error('loop died'));
    expect(supervised.current()).toBeUndefined();
    await settle();
    expect(built[0]!.stops).toBe(1);
    expect(r.faults.list()).toMatchObject([{ component: 'sync', message: 'loop died' }]);
    r.timers.advance(1_000);
    await settle();
    expect(supervised.current()).toBe(built[1]);
    expect(r.faults.list()).toEqual([]);
    // A stale instance's report changes nothing.
    built[0]!.fail(new Error('late'));
    expect(supervised.current()).toBe(built[1]);
    await supervised.stop();
  });

  it('a failure reported while start() still runs counts as a failed start', async () => {
    const r = rig();
    const built: Part[] = [];
    const supervised = new Supervised<Part>({
      name: 'sync', faults: r.faults, log: silentLogger(), timers: r.timers, backoff: { baseMs: 1_000, maxMs: 8_000, jitter: 0 },
      build: (fail) => {
        const part = new Part(built.length, null, fail);
        // The first one's loop breaks at once, inside its start().
        if (built.length === 0) part.start = async () => { part.started = true; fail(new Error('loop broke at once')); };
        built.push(part);
        return part;
      },
    });
    await supervised.start(new AbortController().signal);
    expect(supervised.current()).toBeUndefined();
    expect(built[0]!.stops).toBe(1);
    expect(r.faults.list()).toMatchObject([{ component: 'sync', message: 'loop broke at once' }]);
    r.timers.advance(1_000);
    await settle();
    expect(supervised.current()).toBe(built[1]);
    expect(r.faults.list()).toEqual([]);
    await supervised.stop();
  });

  it('retryNow tries at once (an operator fixed the cause); stop cancels the pending retry', async () => {
    const r = rig();
    const { supervised, built } = supervise(r, ['EACCES']);
    await supervised.start(new AbortController().signal);
    expect(r.timers.count()).toBe(1);
    await supervised.retryNow();
    expect(supervised.current()).toBe(built[1]);
    expect(r.timers.count()).toBe(0);
    await supervised.retryNow(); // running: nothing to do
    expect(built).toHaveLength(2);
    await supervised.stop();

    const again = supervise(r, ['EACCES']);
    await again.supervised.start(new AbortController().signal);
    await again.supervised.stop();
    expect(r.timers.count()).toBe(0);
    r.timers.advance(60_000);
    await settle();
    expect(again.built).toHaveLength(1);
  });

  it('a self-healing part\'s problem is reported while it lasts, without a restart', async () => {
    const r = rig();
    let problem: string | null = null;
    const part = new Part(0, null, () => {});
    const supervised = new Supervised<Part>({
      name: 'button', faults: r.faults, log: silentLogger(), timers: r.timers,
      build: () => part, problem: () => problem, problemIntervalMs: 10,
    });
    await supervised.start(new AbortController().signal);
    problem = 'gpiomon keeps exiting (3 restarts): exited (code 1)';
    await until(() => r.faults.list().length === 1);
    expect(r.faults.list()).toMatchObject([{ component: 'button', message: problem }]);
    problem = null;
    await until(() => r.faults.list().length === 0);
    expect(r.seen.map((s) => s.type)).toEqual(['component.failed', 'component.recovered']);
    expect(part.stops).toBe(0);
    await supervised.stop();
  });
});
