// The demo's live status line fits the terminal: a wider line wraps, and each redraw then
// scrolls the screen. Pure.
import { describe, expect, it } from 'vitest';
import { fitParts, statusLine } from '../../src/demo/demo.js';
import type { AgentStatus } from '../../src/agent.js';
import type { Incident } from '../../src/incidents/incident.js';

const T = Date.UTC(2026, 11, 2, 1, 0, 0);
const status: AgentStatus = {
  cameras: [
    { id: 'entrance', state: 'recording', lastSegmentAt: null, kbps: 412, restarts: 0, lastError: null },
    { id: 'desk', state: 'recording', lastSegmentAt: null, kbps: 398, restarts: 0, lastError: null },
  ],
  storage: { quotaBytes: 24e6, usedBytes: 12.3e6, lockedBytes: 0, freeBytes: 1e9, segments: 1204, oldestAt: '2026-12-02T00:57:03.000Z', retainedSeconds: 200, shortfallBytes: 0 },
  incidents: { active: 1, held: 0, unsynced: 0, damaged: 0 },
};
const locked = {
  id: '20261202T005950Z-abcd', state: 'active', window: { start: '2026-12-02T00:59:30.000Z', end: new Date(T + 18_000).toISOString() },
} as Incident;
const upload = { queued: 1, bytesPending: 5e6, lastError: null, current: { incident: locked.id, bytesSent: 2e6, bytesTotal: 5e6, rateBps: 1e6, etaS: 3 } };

describe('the demo status line', () => {
  it('shows everything when there is room', () => {
    const line = statusLine(status, { incident: locked, nowMs: T, led: true, sync: upload });
    expect(line).toBe('LED ● | entrance recording 412k, desk recording 398k | ring 12.3 MB/24.0 MB | 1204 segments | oldest 00:57:03 UTC | 3m kept | LOCKED 20261202T005950Z-abcd 18s left | upload [####......] 40%');
  });

  it.each([40, 79, 100, 159])('never exceeds %i columns, and keeps the lock and the cameras first', (width) => {
    const line = statusLine(status, { incident: locked, nowMs: T, led: false, sync: upload, width });
    expect([...line].length).toBeLessThanOrEqual(width);
    if (width >= 79) expect(line).toContain('LOCKED 20261202T005950Z-abcd 18s left');
    if (width >= 100) expect(line).toContain('entrance recording 412k');
  });

  it('drops the least important part first and keeps the order of the rest', () => {
    const parts = [{ text: 'aaaa', priority: 2 }, { text: 'bbbb', priority: 9 }, { text: 'cccc', priority: 1 }, { text: 'dddd', priority: 5 }];
    expect(fitParts(parts, 100)).toBe('aaaa | bbbb | cccc | dddd');
    expect(fitParts(parts, 20)).toBe('aaaa | cccc | dddd');
    expect(fitParts(parts, 12)).toBe('aaaa | cccc');
    expect(fitParts(parts, 6)).toBe('cccc');
    expect(fitParts(parts, 3)).toBe('cc…');
    expect(fitParts([{ text: 'a very long single part', priority: 1 }], 10)).toBe('a very lo…');
  });
});
