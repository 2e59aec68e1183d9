// The retention report's pure parts (CONTRACT §7): audit entries folded into facts (shapes of
// earlier releases too), the report built from facts, footage and the book, and its rendering.
import { describe, expect, it } from 'vitest';
import { buildReport, foldEntry, mergeRanges, type AuditFacts, type ReportInput } from '../../src/custody/report.js';
import { signageView } from '../../src/custody/signage.js';
import { renderReportHtml, renderReportText, timelineSpan } from '../../src/ops/report-render.js';
import type { Incident } from '../../src/incidents/incident.js';

const emptyFacts = (): AuditFacts => ({ coveredFrom: '2026-11-20T08:00:00.000Z', auditStart: 'first-start', deletions: [], disposed: [], damaged: [], stills: [], steps: [] });

function incident(over: Partial<Incident> & { id: string }): Incident {
  return {
    node: 'n1', triggers: [{ at: '2026-11-28T16:55:00.000Z', via: 'button' }], cameras: ['door', 'desk'],
    window: { start: '2026-11-28T16:50:00.000Z', end: '2026-11-28T17:00:00.000Z' }, state: 'synced', urgent: true, kind: 'lock', notes: [], ...over,
  };
}

function input(facts: AuditFacts, incidents: Incident[] = []): ReportInput {
  return {
    node: 'n1', site: 'Main <Branch>', timeZone: 'America/Denver',
    fromMs: Date.parse('2026-11-02T00:00:00Z'), toMs: Date.parse('2026-12-02T00:00:00Z'),
    footage: [
      { id: 'door', oldest: '2026-11-20T08:00:00.000Z', newest: '2026-12-01T23:59:59.000Z', bytes: 1, ranges: [{ start: '2026-11-20T08:00:00.000Z', end: '2026-12-01T23:59:59.000Z' }], locked: [], kept: [], truncated: false },
      { id: 'desk', oldest: null, newest: null, bytes: 0, ranges: [], locked: [], kept: [], truncated: false },
    ],
    incidents, facts, upstream: 's3', signage: signageView(undefined, 0), clockSynced: true, joinMs: 5_000,
  };
}

describe('the retention report', () => {
  it('folds delete, dispose (with and without sizes), damaged, still and clock entries; other entries are ignored', () => {
    const facts = emptyFacts();
    foldEntry(facts, { ts: '2026-11-21T00:00:00.000Z', type: 'delete', reason: 'quota', cameras: { door: [{ from: '2026-11-20T08:00:00.000Z', to: '2026-11-20T08:00:10.000Z', segments: 5, bytes: 500 }] } });
    foldEntry(facts, { ts: '2026-11-21T00:00:30.000Z', type: 'delete', reason: 'quota', cameras: { door: [{ from: '2026-11-20T08:00:12.000Z', to: '2026-11-20T08:00:20.000Z', segments: 4, bytes: 400 }] } });
    foldEntry(facts, { ts: '2026-11-22T00:00:00.000Z', type: 'delete', reason: 'age', cameras: { desk: [{ from: '2026-10-01T00:00:00.000Z', to: '2026-10-01T01:00:00.000Z', segments: 1800, bytes: 9e8 }] } });
    foldEntry(facts, { ts: '2026-11-29T00:00:00.000Z', type: 'dispose', incident: 'I1', files: [{ camera: 'door', bytes: 1000 }, { camera: 'desk', bytes: 2000 }] });
    foldEntry(facts, { ts: '2026-11-29T01:00:00.000Z', type: 'release', incident: 'I2' });
    foldEntry(facts, { ts: '2026-11-30T00:00:00.000Z', type: 'damaged', incident: 'I3', reason: 'manifest missing', keptAt: '/x' });
    foldEntry(facts, { ts: '2026-11-30T02:00:00.000Z', type: 'still', camera: 'desk', at: '2026-11-30T01:59:00.000Z', frameAt: '2026-11-30T01:58:59.900Z', purpose: 'suspension-notice', reason: 'r', by: 'ops:otto' });
    foldEntry(facts, { ts: '2026-11-30T03:00:00.000Z', type: 'clock', jumpMs: -3600_000, incidents: [] });
    foldEntry(facts, { ts: '2026-11-30T03:00:00.000Z', type: 'lock', incident: {} });
    const incidents = [
      incident({ id: 'I1', state: 'disposed' }),
      incident({ id: 'I2', state: 'disposed', cameras: ['door'] }),
      incident({ id: 'I3', cameras: ['desk'], triggers: [{ at: '2026-11-28T16:55:00.000Z', via: 'mqtt', by: 'ops:otto', reason: 'fight' }] }),
      incident({
        id: 'I4', kind: 'hold', state: 'sealed', cameras: ['door'], triggers: [{ at: '2026-12-01T00:00:00.000Z', via: 'local', by: 'manager', reason: 'reported later' }],
        disclosures: [{ n: 1, at: '2026-12-01T10:00:00.000Z', legalBasis: 'subpoena', reference: 'S-9', agency: 'PD', requestedBy: 'K', by: 'ops:cleo', manifestSha256: 'a'.repeat(64), where: 'local+upstream' }],
      }),
    ];
    const r = buildReport(input(facts, incidents));
    const door = r.cameras.find((c) => c.id === 'door')!;
    const desk = r.cameras.find((c) => c.id === 'desk')!;
    // Two quota runs 2 s apart are one range; counts and bytes add up.
    expect(door.deleted.quota).toEqual({ count: 9, bytes: 900, ranges: [{ from: '2026-11-20T08:00:00.000Z', to: '2026-11-20T08:00:20.000Z' }] });
    expect(desk.deleted.age.count).toBe(1800);
    // I1's sizes come from the entry; I2 (an earlier release's `release`) has none: bytes unknown.
    expect(door.deleted.dispose).toEqual({ count: 2, bytes: null, ranges: [
      { from: '2026-11-28T16:50:00.000Z', to: '2026-11-28T17:00:00.000Z', incident: 'I1' },
      { from: '2026-11-28T16:50:00.000Z', to: '2026-11-28T17:00:00.000Z', incident: 'I2' },
    ] });
    expect(desk.deleted.dispose).toMatchObject({ count: 1, bytes: 2000 });
    expect(desk.deleted.damaged).toMatchObject({ count: 1, bytes: null, ranges: [{ incident: 'I3' }] });
    expect(door.retainedSeconds).toBe(Math.round((Date.parse('2026-12-01T23:59:59Z') - Date.parse('2026-11-20T08:00:00Z')) / 1000));
    // Kept: not the disposed ones, oldest first, with who, why and disclosures.
    expect(r.incidents.map((i) => i.id)).toEqual(['I3', 'I4']);
    expect(r.incidents[0]).toMatchObject({ by: 'ops:otto', via: 'mqtt', reason: 'fight', synced: true, age: 3 * 86_400 + 7 * 3_600 + 5 * 60 });
    expect(r.incidents[1]).toMatchObject({ kind: 'hold', synced: false, disclosures: [{ n: 1, legalBasis: 'subpoena', reference: 'S-9', agency: 'PD', by: 'ops:cleo' }] });
    expect(r.stills).toEqual([{ camera: 'desk', at: '2026-11-30T01:59:00.000Z', frameAt: '2026-11-30T01:58:59.900Z', purpose: 'suspension-notice', by: 'ops:otto', reason: 'r', madeAt: '2026-11-30T02:00:00.000Z' }]);
    expect(r.clock).toEqual({ synced: true, steps: [{ at: '2026-11-30T03:00:00.000Z', jumpMs: -3600_000 }] });
    expect(r).toMatchObject({ from: '2026-11-02T00:00:00.000Z', to: '2026-12-02T00:00:00.000Z', coveredFrom: '2026-11-20T08:00:00.000Z', upstream: 's3', signage: { status: 'missing' } });

    // Text in the node's zone (Denver: UTC−7), with the log's coverage said.
    const text = renderReportText(r);
    expect(text).toContain('Period: 2026-11-01 17:00 to 2026-12-01 17:00 MST (America/Denver)');
    expect(text).toMatch(/I3 {2}lock {2}3.3d old {2}synced {2}by ops:otto \(mqtt\): fight/);
    expect(text).toContain("The node's audit log begins 2026-11-20 01:00, when the node first started");
    expect(text).toContain('deleted, storage quota (oldest first): 9 segments, 900 B; 2026-11-20 01:00:00–01:00:20');
    expect(text).toContain('deleted, incident disposed of: 2 clips, size not recorded;');
    expect(text).toMatch(/I4 {2}hold .* sealed, not synced yet {2}by manager \(local\): reported later; disclosed 2026-12-01 03:00 on subpoena S-9 to PD/);
    expect(text).toContain('Signage: missing');
    expect(text).toContain('Clock: synchronised; steps: -3600.0 s at 2026-11-29 20:00');
  });

  it('counts the clips a dispose entry lists: none for an incident disposed of before it was sealed', () => {
    const facts = emptyFacts();
    // I5 covered door and desk but only door had a clip; I6 was forced away while still active.
    foldEntry(facts, { ts: '2026-11-29T00:00:00.000Z', type: 'dispose', incident: 'I5', files: [{ camera: 'door', bytes: 1000 }] });
    foldEntry(facts, { ts: '2026-11-29T00:00:01.000Z', type: 'dispose.forced', incident: 'I6', state: 'active', files: [] });
    const r = buildReport(input(facts, [incident({ id: 'I5', state: 'disposed' }), incident({ id: 'I6', state: 'disposed' })]));
    expect(r.cameras.find((c) => c.id === 'door')!.deleted.dispose).toMatchObject({ count: 1, bytes: 1000, ranges: [{ incident: 'I5' }] });
    expect(r.cameras.find((c) => c.id === 'desk')!.deleted.dispose).toEqual({ count: 0, bytes: 0, ranges: [] });
  });

  it('merges touching ranges but never incidents', () => {
    expect(mergeRanges([
      { from: '2026-01-01T00:00:10.000Z', to: '2026-01-01T00:00:20.000Z' },
      { from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T00:00:09.000Z' },
      { from: '2026-01-01T00:01:00.000Z', to: '2026-01-01T00:01:10.000Z' },
    ], 5_000)).toEqual([
      { from: '2026-01-01T00:00:00.000Z', to: '2026-01-01T00:00:20.000Z' },
      { from: '2026-01-01T00:01:00.000Z', to: '2026-01-01T00:01:10.000Z' },
    ]);
  });

  it('renders one self-contained page: hostile text escaped, a timeline per camera from what the node knows', () => {
    const facts = emptyFacts();
    foldEntry(facts, { ts: '2026-11-30T02:00:00.000Z', type: 'still', camera: 'desk', at: '2026-11-30T01:59:00.000Z', purpose: 'incident-review', reason: '<script>alert(1)</script>', by: 'x" onmouseover="y' });
    const r = buildReport(input(facts, [incident({ id: 'I9', triggers: [{ at: '2026-11-28T16:55:00.000Z', via: 'local', by: '<b>me</b>', reason: '</td></tr></table><img src=x>' }] })]));
    const html = renderReportHtml(r);
    expect(html).not.toMatch(/<script|<img|<b>me|onmouseover="/);
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).toContain('Main &#60;Branch&#62;');
    expect(html.match(/<svg class="timeline"/g)).toHaveLength(2);
    expect(html).not.toMatch(/(src|href)=["']?https?:/);
    // The node first started on 11-20: the timelines begin there, not three empty weeks earlier.
    expect(timelineSpan(r).fromMs).toBe(Date.parse('2026-11-20T08:00:00Z'));
    expect(html).toContain('The timelines begin 2026-11-20 01:00, the first the node knows of.');
  });

  it('keeps daily ticks on local midnight across a daylight-saving change, and shows a camera down now as a hole', () => {
    // Denver leaves daylight time on 2026-11-01: the days around it are 24, 25 and 24 hours long.
    const facts = { ...emptyFacts(), coveredFrom: '2026-10-28T06:00:00.000Z' };
    const r = buildReport({ ...input(facts), fromMs: Date.parse('2026-10-28T06:00:00Z'), toMs: Date.parse('2026-11-05T07:00:00Z'), footage: [
      { id: 'door', oldest: '2026-10-28T06:00:00.000Z', newest: '2026-11-04T07:00:00.000Z', bytes: 1, ranges: [{ start: '2026-10-28T06:00:00.000Z', end: '2026-11-04T07:00:00.000Z' }], locked: [], kept: [], truncated: false },
    ] });
    const svg = renderReportHtml(r).match(/<svg class="timeline".*?<\/svg>/s)![0];
    const labels = [...svg.matchAll(/<text [^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(labels).toEqual(['10-28', '10-29', '10-30', '10-31', '11-01', '11-02', '11-03', '11-04']);
    expect(svg).toMatch(/<title>hole 2026-11-04 00:00:00 – 2026-11-05 00:00:00<\/title>/);
  });
});
