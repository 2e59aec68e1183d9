import { describe, expect, it } from 'vitest';
import { extendIncident, incidentId, INCIDENT_ID, isOpen, lockedRanges, openIncident, sealDueAt, type Incident } from '../../src/incidents/incident.js';

const T = Date.UTC(2026, 10, 28, 16, 55, 0, 250);
const policy = { preRollMs: 120_000, postRollMs: 300_000, maxLengthMs: 3_600_000 };
const cams = ['entrance', 'desk'];
const seq = (values: number[]) => { let i = 0; return () => values[i++ % values.length]!; };

describe('incident ids', () => {
  it('are the first trigger UTC time and 4 base32 characters', () => {
    expect(incidentId(T, seq([0, 1, 25, 31]))).toBe('20261128T165500Z-abz7');
    expect(INCIDENT_ID.test(incidentId(T))).toBe(true);
  });
});

describe('incident windows (CONTRACT §4)', () => {
  it('a trigger at T opens [T − preRoll, T + postRoll] on all enabled cameras', () => {
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    expect(i.window).toEqual({ start: new Date(T - 120_000).toISOString(), end: new Date(T + 300_000).toISOString() });
    expect(i.cameras).toEqual(cams);
    expect(i.state).toBe('active');
    expect(i.urgent).toBe(true);
    expect(i.triggers).toEqual([{ at: new Date(T).toISOString(), via: 'button' }]);
    expect(i.node).toBe('n1');
  });

  it('honours per-request rolls, cameras, reason, by and urgency', () => {
    const i = openIncident('n1', { atMs: T, via: 'mqtt', by: 'ops', reason: 'fight', cameras: ['desk', 'desk'], preRollMs: 6_000, postRollMs: 4_000, urgent: false }, policy, cams);
    expect(i.window).toEqual({ start: new Date(T - 6_000).toISOString(), end: new Date(T + 4_000).toISOString() });
    expect(i.cameras).toEqual(['desk']);
    expect(i.urgent).toBe(false);
    expect(i.triggers[0]).toEqual({ at: new Date(T).toISOString(), via: 'mqtt', by: 'ops', reason: 'fight' });
  });

  it('a later trigger sets end = max(end, T2 + postRoll) and adds cameras', () => {
    const i = openIncident('n1', { atMs: T, via: 'button', cameras: ['desk'] }, policy, cams);
    const e = extendIncident(i, { atMs: T + 60_000, via: 'local', cameras: ['entrance'] }, policy, cams).incident;
    expect(e.id).toBe(i.id);
    expect(e.window).toEqual({ start: i.window.start, end: new Date(T + 360_000).toISOString() });
    expect(e.cameras).toEqual(['desk', 'entrance']);
    expect(e.triggers).toHaveLength(2);
    // A trigger whose post-roll ends earlier never shortens the window.
    const shorter = extendIncident(e, { atMs: T + 61_000, via: 'local', postRollMs: 1_000 }, policy, cams).incident;
    expect(shorter.window.end).toBe(e.window.end);
    expect(shorter.cameras).toEqual(['desk', 'entrance']);
  });

  it('stops growing at start + maxLength', () => {
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    const e = extendIncident(i, { atMs: T + 3_500_000, via: 'button' }, policy, cams).incident;
    expect(Date.parse(e.window.end)).toBe(Date.parse(i.window.start) + 3_600_000);
    const capped = openIncident('n1', { atMs: T, via: 'button', postRollMs: 10 * 3_600_000 }, policy, cams);
    expect(Date.parse(capped.window.end) - Date.parse(capped.window.start)).toBe(3_600_000);
  });

  it('a non-urgent trigger never demotes an urgent incident; an urgent one promotes', () => {
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    expect(extendIncident(i, { atMs: T + 1, via: 'mqtt', urgent: false }, policy, cams).incident.urgent).toBe(true);
    const slow = openIncident('n1', { atMs: T, via: 'mqtt', urgent: false }, policy, cams);
    expect(extendIncident(slow, { atMs: T + 1, via: 'button' }, policy, cams).incident.urgent).toBe(true);
  });

  it('is open until its end; locks ranges while active or sealing', () => {
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    expect(isOpen(i, T + 299_999)).toBe(true);
    expect(isOpen(i, T + 300_000)).toBe(false);
    const states: Incident['state'][] = ['active', 'sealing', 'sealed', 'synced', 'disposed'];
    expect(states.map((state) => lockedRanges([{ ...i, state }]).length)).toEqual([2, 2, 0, 0, 0]);
    expect(lockedRanges([i])[0]).toEqual({ camera: 'entrance', startMs: T - 120_000, endMs: T + 300_000 });
  });

  it('is sealed only after the segment covering its end has closed', () => {
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    expect(sealDueAt(i, 10)).toBe(T + 300_000 + 22_000);
  });
});

describe('extension changes (CONTRACT §4)', () => {
  it('a press within 1 s of a press joins it; a command does not; the change replays to the same incident', async () => {
    const { applyExtension } = await import('../../src/incidents/incident.js');
    const i = openIncident('n1', { atMs: T, via: 'button' }, policy, cams);
    const joined = extendIncident(i, { atMs: T + 900, via: 'button' }, policy, cams);
    expect(joined.change).toMatchObject({ incident: i.id, joined: 'press', camerasAdded: [] });
    expect(joined.incident.triggers).toEqual([{ ...i.triggers[0], repeats: 1 }]);
    const command = extendIncident(joined.incident, { atMs: T + 950, via: 'local', reason: 'r', cameras: ['desk'] }, policy, cams);
    expect(command.change.joined).toBeUndefined();
    expect(command.incident.triggers).toHaveLength(2);
    const later = extendIncident(command.incident, { atMs: T + 2_000, via: 'button' }, policy, cams);
    expect(later.change.joined).toBeUndefined();
    expect(applyExtension(applyExtension(applyExtension(i, joined.change), command.change), later.change)).toEqual(later.incident);
  });
});
