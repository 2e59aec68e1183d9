// The readable renderings of `camnode ctl` (src/ops/render.ts), pure: a node's row from its
// retained status/state, the fleet table's order (what ops must look at first), retention and
// disk figures, a node's state with and without an upload in progress, one event per line.
import { describe, expect, it } from 'vitest';
import type { NodeView } from '../../src/ops/client.js';
import { formatRetention, nodeRow, progressBar, renderEvent, renderNodes, renderState, sortRows, type NodeRow } from '../../src/ops/render.js';
import type { StatePayload } from '../../src/fleet/topics.js';

const NOW = Date.parse('2026-11-28T17:00:00.000Z');

/** CONTRACT §3's state example, overridable per section. */
function state(over: Partial<StatePayload> = {}): StatePayload {
  return {
    ts: '2026-11-28T16:59:30.000Z',
    cameras: [
      { id: 'entrance', state: 'recording', lastSegmentAt: '2026-11-28T16:59:28.000Z', kbps: 2010, restarts: 0 },
      { id: 'desk', state: 'recording', lastSegmentAt: '2026-11-28T16:59:28.000Z', kbps: 1500, restarts: 2 },
    ],
    storage: {
      quotaBytes: 190_000_000_000, usedBytes: 120_000_000_000, lockedBytes: 2_100_000_000, freeBytes: 60_000_000_000,
      oldestAt: '2026-11-01T08:00:00.000Z', retainedSeconds: 2_365_200,
    },
    incidents: { active: 1, held: 3, unsynced: 1, damaged: 0 },
    sync: { queued: 1, bytesPending: 350_000_000, lastError: null, current: null },
    health: { load: 0.4, memUsedPct: 41.5, tempC: 52.1, throttled: false, uptimeS: 86_400, clockSynced: true, faults: [] },
    ...over,
  };
}

const online = { online: true, version: '1.2.0', since: '2026-11-20T08:00:00.000Z', publicKey: 'AAAA' };

function row(over: Partial<NodeRow> & { node: string }): NodeRow {
  return {
    online: true, camerasUp: 2, camerasTotal: 2, retainedSeconds: 86_400 * 10, diskUsedPct: 50, tempC: 50,
    activeIncidents: 0, unsyncedIncidents: 0, lastSeen: '2026-11-28T16:59:30.000Z', version: '1.2.0', configSha256: null, problems: [],
    ...over,
  };
}

describe('nodeRow', () => {
  it('takes every figure from the retained status and state', () => {
    expect(nodeRow({ node: 'koelbel-01', status: online, state: state() })).toEqual({
      node: 'koelbel-01',
      online: true,
      camerasUp: 2,
      camerasTotal: 2,
      retainedSeconds: 2_365_200,
      diskUsedPct: 63.2, // 120 of 190 GB, one decimal
      tempC: 52.1,
      activeIncidents: 1,
      unsyncedIncidents: 1,
      lastSeen: '2026-11-28T16:59:30.000Z',
      version: '1.2.0',
      configSha256: null,
      problems: [],
    });
    expect(nodeRow({ node: 'n', status: { ...online, configSha256: 'a'.repeat(64) } as never, state: state() }).configSha256).toBe('a'.repeat(64));
  });

  it('lists the problems ops should look at', () => {
    const s = state();
    const r = nodeRow({
      node: 'n', status: { online: false },
      state: state({
        cameras: [{ id: 'a', state: 'stalled', lastSegmentAt: null, kbps: null, restarts: 1 }],
        sync: { ...s.sync, lastError: 'upstream: 503' },
        incidents: { ...s.incidents, damaged: 1 },
        health: { ...s.health, tempC: 81, throttled: true, clockSynced: false, faults: [{ component: 'sync', since: '2026-11-28T16:00:00.000Z', message: 'x' }, { component: 'calls', since: '2026-11-28T16:00:00.000Z', message: 'y' }] },
      }),
    });
    expect(r.problems).toEqual(['offline', 'cameras down', 'fault: sync', 'fault: calls', 'sync failing', 'clock unsynced', 'throttled', 'hot', 'damaged incidents']);
    expect(nodeRow({ node: 'n', status: online, state: state() }).problems).toEqual([]);
  });

  it('counts only recording cameras as up, and leaves disabled ones out of the total', () => {
    const cams: StatePayload['cameras'] = [
      { id: 'a', state: 'recording', lastSegmentAt: null, kbps: 100, restarts: 0 },
      { id: 'b', state: 'stalled', lastSegmentAt: null, kbps: null, restarts: 3 },
      { id: 'c', state: 'connecting', lastSegmentAt: null, kbps: null, restarts: 1 },
      { id: 'd', state: 'error', lastSegmentAt: null, kbps: null, restarts: 9 },
      { id: 'e', state: 'disabled', lastSegmentAt: null, kbps: null, restarts: 0 },
    ];
    const r = nodeRow({ node: 'n', status: online, state: state({ cameras: cams }) });
    expect([r.camerasUp, r.camerasTotal]).toEqual([1, 4]);
  });

  it('says offline when the will was published, keeping the last state it sent', () => {
    const r = nodeRow({ node: 'n', status: { online: false }, state: state() });
    expect(r).toMatchObject({ online: false, camerasUp: 2, version: null, lastSeen: '2026-11-28T16:59:30.000Z' });
  });

  it('a node with a status and no state yet: online, nothing known, last seen when it came online', () => {
    expect(nodeRow({ node: 'n', status: online })).toEqual({
      node: 'n', online: true, camerasUp: 0, camerasTotal: 0, retainedSeconds: null, diskUsedPct: null, tempC: null,
      activeIncidents: 0, unsyncedIncidents: 0, lastSeen: online.since, version: '1.2.0', configSha256: null, problems: [],
    });
  });

  it('a node with a state and no status is not counted online', () => {
    const r = nodeRow({ node: 'n', state: state() });
    expect(r.online).toBe(false);
    expect(r.version).toBeNull();
  });

  it('unknown figures stay unknown: no quota, no usage, no sensor', () => {
    const s = state();
    const unknown = state({
      storage: { ...s.storage, quotaBytes: null, usedBytes: null, retainedSeconds: null },
      health: { ...s.health, tempC: null },
    });
    expect(nodeRow({ node: 'n', status: online, state: unknown })).toMatchObject({ diskUsedPct: null, retainedSeconds: null, tempC: null });
    // A zero quota (a disk filled by others) must not divide by zero.
    const zero = state({ storage: { ...s.storage, quotaBytes: 0, usedBytes: 10 } });
    expect(nodeRow({ node: 'n', status: online, state: zero }).diskUsedPct).toBeNull();
  });

  it('a node whose retained state has the wrong shape still gets a row (one bad node must not break the table)', () => {
    const views = [
      { node: 'str', status: online, state: 'garbage' },
      { node: 'obj', status: online, state: { foo: 1 } },
      { node: 'partial', status: online, state: { ts: '2026-11-28T16:00:00.000Z', cameras: 'x', storage: null, health: 7 } },
    ] as unknown as NodeView[];
    for (const v of views) {
      const r = nodeRow(v);
      expect(r).toMatchObject({ node: v.node, online: true, camerasUp: 0, camerasTotal: 0, diskUsedPct: null, tempC: null, activeIncidents: 0 });
    }
    expect(nodeRow(views[2]!).lastSeen).toBe('2026-11-28T16:00:00.000Z');
    expect(() => renderNodes(views.map(nodeRow), NOW, false)).not.toThrow();
    // Figures of the wrong type are unknown, not passed through.
    const typed = nodeRow({
      node: 'n', status: { online: 'yes', version: 3 },
      state: { ts: 5, cameras: [null, 'x', { state: 'recording' }], storage: { quotaBytes: '100', usedBytes: 5, retainedSeconds: '9' }, health: { tempC: '60' }, incidents: { active: '2', unsynced: 1 } },
    } as unknown as NodeView);
    expect(typed).toEqual({
      node: 'n', online: false, camerasUp: 1, camerasTotal: 1, retainedSeconds: null, diskUsedPct: null, tempC: null,
      activeIncidents: 0, unsyncedIncidents: 1, lastSeen: null, version: null, configSha256: null, problems: ['offline'],
    });
  });
});

describe('sortRows', () => {
  it('offline first, then cameras down, then the healthy; by node id within each group', () => {
    const rows = [
      row({ node: 'c-ok' }),
      row({ node: 'b-down', camerasUp: 1 }),
      row({ node: 'z-off', online: false }),
      row({ node: 'a-ok' }),
      row({ node: 'a-down', camerasUp: 0 }),
      row({ node: 'a-off', online: false, camerasUp: 0 }), // offline wins over cameras down
      row({ node: 'b-nocams', camerasUp: 0, camerasTotal: 0 }), // nothing enabled: not down
    ];
    expect(sortRows(rows).map((r) => r.node)).toEqual(['a-off', 'z-off', 'a-down', 'b-down', 'a-ok', 'b-nocams', 'c-ok']);
  });

  it('does not reorder its input', () => {
    const rows = [row({ node: 'b' }), row({ node: 'a' })];
    sortRows(rows);
    expect(rows.map((r) => r.node)).toEqual(['b', 'a']);
  });
});

describe('formatRetention', () => {
  it.each([
    [null, '-'],
    [0, '0.0h'],
    [1800, '0.5h'],
    [36 * 3600, '36.0h'],
    [2 * 86_400 - 1, '48.0h'],
    [2 * 86_400, '2.0d'],
    [2_365_200, '27.4d'],
  ])('%s s → %s', (seconds, text) => {
    expect(formatRetention(seconds)).toBe(text);
  });
});

describe('progressBar', () => {
  it('fills by share, clamps, and copes with an unknown total', () => {
    expect(progressBar(0, 100, 10)).toBe('[..........] 0%');
    expect(progressBar(50, 100, 10)).toBe('[#####.....] 50%');
    expect(progressBar(150, 100, 10)).toBe('[##########] 100%');
    expect(progressBar(5, 0, 10)).toBe('[..........] 0%');
  });
});

describe('renderNodes', () => {
  const views: NodeView[] = [
    { node: 'koelbel-01', status: online, state: state() },
    { node: 'aachen-02', status: { online: false }, state: state({ ts: '2026-11-28T14:00:00.000Z' }) },
    {
      node: 'bonn-03', status: online,
      state: state({
        cameras: [
          { id: 'a', state: 'recording', lastSegmentAt: null, kbps: 10, restarts: 0 },
          { id: 'b', state: 'stalled', lastSegmentAt: null, kbps: null, restarts: 4 },
        ],
        health: { ...state().health, tempC: 80.25 },
        incidents: { active: 0, held: 0, unsynced: 0, damaged: 0 },
      }),
    },
    { node: 'celle-04', status: online }, // no state yet
  ];

  it('renders a header, one sorted row per node and a summary (no colour)', () => {
    const lines = renderNodes(views.map(nodeRow), NOW, false).split('\n');
    expect(lines).toHaveLength(1 + 4 + 1);
    expect(lines[0]!.split(/\s{2,}/)).toEqual(['NODE', 'ONLINE', 'CAMERAS', 'RETENTION', 'DISK', 'TEMP', 'INCIDENTS', 'VERSION', 'CONFIG', 'LAST SEEN']);
    const cells = lines.slice(1, 5).map((l) => l.split(/\s{2,}/));
    expect(cells).toEqual([
      ['aachen-02', 'NO', '2/2', '27.4d', '63.2%', '52.1°C', '1 active, 1 unsynced', '-', '-', '3h ago'],
      ['bonn-03', 'yes', '1/2', '27.4d', '63.2%', '80.3°C', '0 active, 0 unsynced', '1.2.0', '-', '30s ago'],
      ['celle-04', 'yes', '0/0', '-', '-', '-', '0 active, 0 unsynced', '1.2.0', '-', '8d ago'],
      ['koelbel-01', 'yes', '2/2', '27.4d', '63.2%', '52.1°C', '1 active, 1 unsynced', '1.2.0', '-', '30s ago'],
    ]);
    expect(lines[5]).toBe('4 node(s), 3 online');
    expect(lines.join('\n')).not.toContain('\x1b[');
  });

  it('aligns columns: every cell of a column starts where its header does', () => {
    const lines = renderNodes(views.map(nodeRow), NOW, false).split('\n').slice(0, 5);
    for (const h of ['ONLINE', 'CAMERAS', 'RETENTION', 'DISK', 'TEMP', 'INCIDENTS', 'VERSION', 'CONFIG', 'LAST SEEN']) {
      const at = lines[0]!.indexOf(h);
      for (const l of lines.slice(1)) expect(l[at - 1], `${h} in ${JSON.stringify(l)}`).toBe(' ');
      for (const l of lines.slice(1)) expect(l[at]).not.toBe(' ');
    }
  });

  it('colours what needs attention on a terminal: offline red, online green, cameras down, heat and open incidents yellow', () => {
    const text = renderNodes(views.map(nodeRow), NOW, true);
    const lines = text.split('\n');
    expect(lines[1]).toContain('\x1b[31mNO');
    expect(lines[2]).toContain('\x1b[32myes');
    expect(lines[2]).toContain('\x1b[33m1/2');
    expect(lines[2]).toContain('\x1b[33m80.3°C');
    expect(lines[4]).toContain('\x1b[33m1 active, 1 unsynced');
    expect(lines[4]).not.toContain('\x1b[33m52.1°C');
    // Without the escapes it is the same table.
    expect(text.replace(new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, 'g'), '')).toBe(renderNodes(views.map(nodeRow), NOW, false));
  });

  it('shows the config hash short, and with problems asked for, what each node\'s are', () => {
    const text = renderNodes([row({ node: 'a', configSha256: '0123456789abcdef'.repeat(4) }), row({ node: 'b', online: false, problems: ['offline', 'hot'] })], NOW, false, { problems: true });
    const lines = text.split('\n').map((l) => l.split(/\s{2,}/));
    expect(lines[0]!.at(-1)).toBe('PROBLEMS');
    expect(lines[1]).toEqual(['b', 'NO', '2/2', '10.0d', '50.0%', '50.0°C', '0 active, 0 unsynced', '1.2.0', '-', '30s ago', 'offline, hot']);
    expect(lines[2]!.slice(-3)).toEqual(['01234567', '30s ago', '-']);
  });

  it('says so when no node has reported', () => {
    expect(renderNodes([], NOW, false)).toMatch(/no nodes.*--prefix/);
  });

  it('last seen: seconds, minutes, hours, days; a clock ahead of ours is "0s ago"', () => {
    const at = (iso: string | null) => renderNodes([row({ node: 'n', lastSeen: iso })], NOW, false).split('\n')[1]!.split(/\s{2,}/).pop();
    expect(at('2026-11-28T16:58:01.000Z')).toBe('119s ago');
    expect(at('2026-11-28T16:58:00.000Z')).toBe('2m ago');
    expect(at('2026-11-28T15:00:00.000Z')).toBe('2h ago');
    expect(at('2026-11-25T17:00:00.000Z')).toBe('3d ago');
    expect(at('2026-11-28T17:05:00.000Z')).toBe('0s ago');
    expect(at(null)).toBe('-');
    expect(at('yesterday')).toBe('-');
  });
});

describe('renderState', () => {
  it('lists each fault after the health line, naming the incident a sealer fault is about', () => {
    const s = state();
    const text = renderState('n', state({
      health: { ...s.health, faults: [
        { component: 'sync', since: '2026-11-28T16:00:00.000Z', message: 'upstream.credentials: cannot read /etc/camnode/s3.env (EACCES)' },
        { component: 'sealer', incident: '20261128T165500Z-7kq2', since: '2026-11-28T16:10:00.000Z', message: 'cannot seal 20261128T165500Z-7kq2: ENOSPC' },
      ] },
    }));
    expect(text.split('\n').slice(-2)).toEqual([
      'FAULT sync since 2026-11-28T16:00:00.000Z: upstream.credentials: cannot read /etc/camnode/s3.env (EACCES)',
      'FAULT sealer (20261128T165500Z-7kq2) since 2026-11-28T16:10:00.000Z: cannot seal 20261128T165500Z-7kq2: ENOSPC',
    ]);
  });

  it('renders cameras, storage, incidents, sync and health', () => {
    const text = renderState('koelbel-01', state());
    expect(text.split('\n')).toEqual([
      'koelbel-01 at 2026-11-28T16:59:30.000Z',
      'cameras:',
      `  ${'entrance'.padEnd(16)} ${'recording'.padEnd(10)} 2010 kbit/s  last segment 2026-11-28T16:59:28.000Z  restarts 0`,
      `  ${'desk'.padEnd(16)} ${'recording'.padEnd(10)} 1500 kbit/s  last segment 2026-11-28T16:59:28.000Z  restarts 2`,
      'storage: 120.0 GB of 190.0 GB quota, 2.1 GB locked, 60.0 GB free; oldest 2026-11-01T08:00:00.000Z (27.4d retained)',
      'incidents: 1 active, 3 kept, 1 unsynced',
      'sync: 1 queued, 350.0 MB pending',
      'health: load 0.4, memory 41.5%, temperature 52.1°C, throttled no, up 86400s, clock synced',
    ]);
  });

  it('shows the call recordings on a node that takes them, loud when some were rejected', () => {
    const calls = (rejected: number): string | undefined => renderState('n', state({ calls: { files: 12, bytes: 9_600_000, oldest: '2026-11-01T08:00:00.000Z', waiting: 1, rejected } })).split('\n').find((l) => l.startsWith('calls:'));
    expect(calls(0)).toBe('calls: 12 in the ring (9.6 MB), oldest 2026-11-01T08:00:00.000Z, 1 waiting');
    expect(calls(2)).toBe('calls: 12 in the ring (9.6 MB), oldest 2026-11-01T08:00:00.000Z, 1 waiting, 2 REJECTED (in calls/rejected)');
    expect(renderState('n', state())).not.toContain('calls:');
  });

  it('shows the upload in progress with a bar, rate and time left, and the last error', () => {
    const text = renderState('n', state({
      sync: {
        queued: 1, bytesPending: 350_000_000, lastError: 'upstream: 503 Slow Down',
        current: { incident: '20261128T165500Z-7kq2', bytesSent: 120_000_000, bytesTotal: 470_000_000, rateBps: 500_000, etaS: 700 },
      },
    }));
    const lines = text.split('\n');
    expect(lines[6]).toBe('sync: 1 queued, 350.0 MB pending, last error: upstream: 503 Slow Down');
    expect(lines[7]).toBe(`  20261128T165500Z-7kq2 ${progressBar(120, 470)} 120.0 MB/470.0 MB at 500.0 kB/s, 700s left`);
    expect(lines[7]).toContain('[######..................] 26%');
    expect(lines).toHaveLength(9);
  });

  it('an upload whose end cannot be estimated yet has no time left', () => {
    const text = renderState('n', state({
      sync: { queued: 1, bytesPending: 5, lastError: null, current: { incident: 'x', bytesSent: 0, bytesTotal: 5, rateBps: 0, etaS: null } },
    }));
    expect(text).toContain('  x [........................] 0% 0 B/5 B at 0 B/s\n');
  });

  it('unknown figures are dashes; a throttled Pi and an unsynced clock stand out', () => {
    const s = state();
    const text = renderState('n', state({
      cameras: [{ id: 'entrance', state: 'connecting', lastSegmentAt: null, kbps: null, restarts: 5 }],
      storage: { quotaBytes: null, usedBytes: null, lockedBytes: null, freeBytes: null, oldestAt: null, retainedSeconds: null },
      health: { ...s.health, load: null, memUsedPct: null, tempC: null, throttled: true, uptimeS: null, clockSynced: false },
    }));
    const lines = text.split('\n');
    expect(lines[2]).toBe(`  ${'entrance'.padEnd(16)} ${'connecting'.padEnd(10)} -  last segment -  restarts 5`);
    expect(lines[3]).toBe('storage: - of - quota, - locked, - free; oldest - (- retained)');
    expect(lines.at(-1)).toBe('health: load -, memory -, temperature -, throttled YES, up -, clock NOT synced');
    const unknownClock = renderState('n', state({ health: { ...s.health, throttled: null, clockSynced: null } }));
    expect(unknownClock).toContain('throttled -,');
    // The signage attestation, when the node reports one (nodes of earlier releases do not).
    expect(renderState('n', state({ policy: { signage: 'overdue' } })).split('\n').at(-1)).toBe('policy: signage OVERDUE');
    expect(renderState('n', state({ policy: { signage: 'ok' } }))).toContain('\npolicy: signage ok');
    expect(unknownClock).toContain('clock unknown');
  });
});

describe('renderEvent', () => {
  it('one line: time, node, id, type, then the fields', () => {
    expect(renderEvent('koelbel-01', { id: 42, type: 'incident.locked', ts: '2026-11-28T16:55:00.000Z', incident: '20261128T165500Z-7kq2' }))
      .toBe('2026-11-28T16:55:00.000Z koelbel-01 #42 incident.locked incident=20261128T165500Z-7kq2');
    expect(renderEvent('n', { id: 7, type: 'sync.failed', ts: 't', incident: 'i', reason: 'bucket gone', permanent: true }))
      .toBe('t n #7 sync.failed incident=i reason=bucket gone permanent=true');
    expect(renderEvent('n', { id: 8, type: 'storage.full', ts: 't', shortfallBytes: 1000, extra: { a: 1 } }))
      .toBe('t n #8 storage.full shortfallBytes=1000 extra={"a":1}');
  });

  it('an event without fields, and one missing id, type and time', () => {
    expect(renderEvent('n', { id: 1, type: 'button.pressed', ts: 't' })).toBe('t n #1 button.pressed');
    expect(renderEvent('n', {})).toBe(' n #? ?');
  });
});

describe('printable', () => {
  it('shows control and bidi-override characters as escapes, in every string of a reply', async () => {
    const { printable, printableDeep } = await import('../../src/ops/printable.js');
    expect(printable('cam\u001b]0;owned\u0007 \u001b[2J\r\nline\u202eevil\u0085')).toBe('cam\\u001b]0;owned\\u0007 \\u001b[2J\\u000d\\u000aline\\u202eevil\\u0085');
    expect(printable('Bücherei – Eingang')).toBe('Bücherei – Eingang');
    const data = { incidents: [{ id: 'x', triggers: [{ by: 'ops\u001b[31m', reason: ['a\u0000'] }] }], 'k\u001b': 1, n: 5, ok: true, none: null };
    expect(printableDeep(data)).toEqual({ incidents: [{ id: 'x', triggers: [{ by: 'ops\\u001b[31m', reason: ['a\\u0000'] }] }], 'k\\u001b': 1, n: 5, ok: true, none: null });
    expect(data.incidents[0]!.triggers[0]!.by).toBe('ops\u001b[31m');
  });
});
