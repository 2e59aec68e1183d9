// The watchdog's decisions (CONTRACT §9 Service): the interval from systemd's environment, and
// pings only while no essential part is wedged — they resume when it recovers.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Watchdog, watchdogIntervalMs } from '../../src/platform/sd-notify.js';
import { silentLogger } from '../../src/platform/logger.js';

afterEach(() => { vi.useRealTimers(); });

describe('watchdog', () => {
  it('pings every half WATCHDOG_USEC, only for the process WATCHDOG_PID names', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).toBe(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42)).toBeNull();
    expect(watchdogIntervalMs({}, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 42)).toBeNull();
  });

  it('stops pinging while a part is wedged, says why once, and resumes when it recovers', () => {
    vi.useFakeTimers();
    const sent: string[] = [];
    let problem: string | null = null;
    const dog = new Watchdog({
      notifier: { watchdog: () => sent.push('WATCHDOG=1'), status: (t) => sent.push(`STATUS=${t}`) },
      intervalMs: 1_000, healthy: () => problem, log: silentLogger(),
    });
    dog.start();
    vi.advanceTimersByTime(2_000);
    expect(sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
    problem = 'ring: a prune pass has run for 130 s';
    vi.advanceTimersByTime(3_000);
    expect(sent.slice(3)).toEqual(['STATUS=wedged: ring: a prune pass has run for 130 s']);
    problem = null;
    vi.advanceTimersByTime(1_000);
    expect(sent.at(-1)).toBe('WATCHDOG=1');
    dog.stop();
  });
});
