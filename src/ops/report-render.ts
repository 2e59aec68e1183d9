// The retention report rendered (CONTRACT §7): plain text for a terminal, and one self-contained
// HTML page for the auditor's file — inline CSS and SVG, no script, nothing fetched — with a
// timeline per camera (retained, locked, kept, holes, deletions) in the node's time zone,
// laid out to print on one or two A4 pages.
import { formatBytes, formatDuration } from '../config/units.js';
import type { Deleted, DeletionReason, Report, ReportCamera } from '../custody/report.js';
import { DELETION_REASONS } from '../custody/report.js';
import { formatLocal, zoneName } from './times.js';

const REASON_TEXT: Record<DeletionReason, string> = {
  quota: 'storage quota (oldest first)',
  age: 'retention limit (storage.maxAge)',
  dispose: 'incident disposed of',
  damaged: 'incident set aside as damaged',
};

const local = (iso: string | null, zone: string, seconds = false): string => (iso ? formatLocal(Date.parse(iso), zone, seconds) : '—');
/** A range in local time: to the second when it is short, the day left out of its end when the same. */
function range(from: string, to: string, zone: string): string {
  const seconds = Date.parse(to) - Date.parse(from) < 600_000;
  const a = local(from, zone, seconds);
  const b = local(to, zone, seconds);
  return `${a}–${a.slice(0, 10) === b.slice(0, 10) ? b.slice(11) : b}`;
}
const syncText = (r: Report, synced: boolean): string => (r.upstream === 'none' ? 'kept on the node (no upstream)' : synced ? 'synced' : 'not synced yet');
const bytesOf = (d: Deleted): string => (d.bytes === null ? 'size not recorded' : formatBytes(d.bytes));
const unit = (reason: DeletionReason, n: number): string => (reason === 'quota' || reason === 'age' ? `${n} segment${n === 1 ? '' : 's'}` : `${n} clip${n === 1 ? '' : 's'}`);

/** Where the audit log's figures begin, if later than the period. */
function coverageNote(r: Report): string | null {
  if (r.coveredFrom === null) return 'The node holds no audit log: deletions, stills and clock steps are not known.';
  if (Date.parse(r.coveredFrom) <= Date.parse(r.from)) return null;
  if (r.auditStart === 'first-start') return `The node's audit log begins ${local(r.coveredFrom, r.timeZone)}, when the node first started: nothing was recorded before it.`;
  return `The node's audit log begins ${local(r.coveredFrom, r.timeZone)}: deletions, stills and clock steps before it are in the log's copy upstream, not in these figures.`;
}

export function renderReportText(r: Report): string {
  const zone = r.timeZone;
  const out: string[] = [];
  out.push(`Retention report: ${r.site} (node ${r.node})`);
  out.push(`Period: ${local(r.from, zone)} to ${local(r.to, zone)} ${zoneName(Date.parse(r.to), zone)} (${zone})`);
  const note = coverageNote(r);
  if (note) out.push(note);
  out.push('');
  out.push('Cameras');
  for (const c of r.cameras) {
    out.push(`  ${c.id}: oldest footage ${local(c.oldest, zone)}, ${formatDuration(c.retainedSeconds * 1000)} retained`);
    for (const reason of DELETION_REASONS) {
      const d = c.deleted[reason];
      if (d.count === 0) continue;
      const ranges = d.ranges.slice(0, 3).map((x) => `${range(x.from, x.to, zone)}${x.incident ? ` (${x.incident})` : ''}`).join(', ');
      out.push(`    deleted, ${REASON_TEXT[reason]}: ${unit(reason, d.count)}, ${bytesOf(d)}; ${ranges}${d.ranges.length > 3 ? `, and ${d.ranges.length - 3} more` : ''}`);
    }
    if (DELETION_REASONS.every((reason) => c.deleted[reason].count === 0)) out.push('    nothing deleted in the period');
  }
  out.push('');
  out.push(`Incidents kept (${r.incidents.length})`);
  for (const i of r.incidents) {
    const who = i.by ? `${i.by} (${i.via})` : i.via;
    const disclosed = i.disclosures.map((d) => `disclosed ${local(d.at, zone)} on ${d.legalBasis} ${d.reference} to ${d.agency}`).join('; ');
    out.push(`  ${i.id}  ${i.kind}  ${formatDuration(i.age * 1000)} old  ${i.state === 'synced' ? 'synced' : `${i.state}, ${syncText(r, i.synced)}`}  by ${who}${i.reason ? `: ${i.reason}` : ''}${disclosed ? `; ${disclosed}` : ''}`);
  }
  if (r.incidents.length === 0) out.push('  none');
  out.push('');
  out.push(`Stills made (${r.stills.length})`);
  for (const s of r.stills) out.push(`  ${local(s.at, zone, true)}  ${s.camera}  ${s.purpose}  by ${s.by}${s.reason ? `: ${s.reason}` : ''}`);
  if (r.stills.length === 0) out.push('  none');
  out.push('');
  out.push(`Signage: ${r.signage.status} (${r.signage.detail})`);
  const steps = r.clock.steps.map((s) => `${s.jumpMs > 0 ? '+' : ''}${(s.jumpMs / 1000).toFixed(1)} s at ${local(s.at, zone)}`);
  out.push(`Clock: ${r.clock.synced === true ? 'synchronised' : r.clock.synced === false ? 'NOT synchronised' : 'unknown'}; ${steps.length === 0 ? 'no steps in the period' : `steps: ${steps.join(', ')}`}`);
  return `${out.join('\n')}\n`;
}

const escape = (s: string): string => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

const W = 1000;
const LABEL = 0;
const COLORS = { recorded: '#4c9a52', locked: '#e08a00', kept: '#2f6fb5', hole: '#c9c9c9', quota: '#c0392b', age: '#8e44ad', dispose: '#6d4c41', damaged: '#111111' } as const;

/** One camera's timeline: lanes for footage, incidents and deletions over the period. */
function timelineSvg(c: ReportCamera, fromMs: number, toMs: number, zone: string): string {
  const span = Math.max(1, toMs - fromMs);
  const x = (ms: number): number => LABEL + Math.min(W, Math.max(0, ((ms - fromMs) / span) * W));
  const rect = (startIso: string, endIso: string, y: number, h: number, color: string, title: string): string => {
    const a = x(Date.parse(startIso));
    const b = x(Date.parse(endIso));
    return `<rect x="${a.toFixed(1)}" y="${y}" width="${Math.max(2, b - a).toFixed(1)}" height="${h}" fill="${color}"><title>${escape(title)}</title></rect>`;
  };
  const parts: string[] = [];
  // Lane 1: footage the ring holds (recorded ranges), holes between them shown grey.
  parts.push(`<rect x="0" y="4" width="${W}" height="14" fill="#f3f3f3"/>`);
  const oldestMs = c.oldest ? Date.parse(c.oldest) : toMs;
  let covered = Math.max(fromMs, oldestMs);
  for (const r of c.recorded) {
    const s = Date.parse(r.start);
    if (s > covered) parts.push(rect(new Date(covered).toISOString(), r.start, 4, 14, COLORS.hole, `hole ${local(new Date(covered).toISOString(), zone, true)} – ${local(r.start, zone, true)}`));
    parts.push(rect(r.start, r.end, 4, 14, COLORS.recorded, `recorded ${local(r.start, zone, true)} – ${local(r.end, zone, true)}`));
    covered = Math.max(covered, Date.parse(r.end));
  }
  // After the newest footage up to the period's end: nothing recorded (a camera down now).
  if (c.oldest && toMs - covered > MINUTE) parts.push(rect(new Date(covered).toISOString(), new Date(toMs).toISOString(), 4, 14, COLORS.hole, `hole ${local(new Date(covered).toISOString(), zone, true)} – ${local(new Date(toMs).toISOString(), zone, true)}`));
  // Lane 2: incidents locked (being recorded or sealed) and kept (sealed clips).
  for (const r of c.locked) parts.push(rect(r.start, r.end, 22, 10, COLORS.locked, `locked ${r.incident}`));
  for (const r of c.kept) parts.push(rect(r.start, r.end, 22, 10, COLORS.kept, `kept ${r.incident}`));
  // Lane 3: deletions by reason.
  for (const reason of DELETION_REASONS) {
    for (const r of c.deleted[reason].ranges) {
      if (!r.from || !r.to) continue;
      parts.push(rect(r.from, r.to, 36, 10, COLORS[reason], `deleted (${REASON_TEXT[reason]}) ${local(r.from, zone, true)} – ${local(r.to, zone, true)}${r.incident ? ` ${r.incident}` : ''}`));
    }
  }
  // Ticks in the node's zone: a step that gives at most a dozen, on local boundaries.
  const step = TICK_STEPS.find((t) => span / t <= 12) ?? TICK_STEPS[TICK_STEPS.length - 1]!;
  const ticks: string[] = [];
  // Each tick found again in local time, so a daylight-saving change does not shift the rest by an hour.
  const next = (t: number): number => localBoundaryAfter(t + (step >= DAY ? step - 3 * 60 * MINUTE : 1), step, zone);
  for (let t = localBoundaryAfter(fromMs, step, zone), i = 0; t < toMs && i < 50; t = next(t), i++) {
    const tx = x(t).toFixed(1);
    const label = step >= 86_400_000 ? formatLocal(t, zone, false).slice(5, 10) : formatLocal(t, zone, false).slice(11, 16);
    ticks.push(`<line x1="${tx}" y1="2" x2="${tx}" y2="50" stroke="#999" stroke-width="0.5"/><text x="${tx}" y="60" font-size="9" text-anchor="${x(t) < 20 ? 'start' : x(t) > W - 20 ? 'end' : 'middle'}">${escape(label)}</text>`);
  }
  return `<svg class="timeline" viewBox="0 0 ${W} 64" width="100%" role="img" aria-label="timeline of ${escape(c.id)}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}${ticks.join('')}</svg>`;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const TICK_STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 60 * MINUTE, 3 * 60 * MINUTE, 6 * 60 * MINUTE, 12 * 60 * MINUTE, DAY, 2 * DAY, 7 * DAY, 30 * DAY];

/** The first time at or after `ms` that is a whole multiple of `step` in local time (days from local midnight). */
function localBoundaryAfter(ms: number, step: number, zone: string): number {
  const text = formatLocal(ms, zone, true);
  const [h, m, sec] = text.slice(11).split(':').map(Number) as [number, number, number];
  const sinceMidnight = ((h * 60 + m) * 60 + sec) * 1000 + (ms % 1000);
  const unit = Math.min(step, 86_400_000);
  const into = sinceMidnight % unit;
  return into === 0 ? ms : ms - into + unit;
}

/**
 * The span a timeline shows: the period, from where the node knows anything (its log's first
 * entry, its oldest footage, the first thing deleted) if that is later — a node installed last
 * week is not drawn as three empty weeks.
 */
export function timelineSpan(r: Report): { fromMs: number; toMs: number } {
  const fromMs = Date.parse(r.from);
  const toMs = Date.parse(r.to);
  const known = [r.coveredFrom, ...r.cameras.flatMap((c) => [c.oldest, ...DELETION_REASONS.flatMap((k) => c.deleted[k].ranges.map((x) => x.from))])]
    .filter((t): t is string => typeof t === 'string' && t !== '').map((t) => Date.parse(t));
  const first = known.length > 0 ? Math.min(...known) : fromMs;
  return { fromMs: Math.min(Math.max(fromMs, first), toMs - MINUTE), toMs };
}

export function renderReportHtml(r: Report): string {
  const zone = r.timeZone;
  const { fromMs, toMs } = timelineSpan(r);
  const note = coverageNote(r);
  const legend = (Object.entries(COLORS) as [keyof typeof COLORS, string][])
    .map(([k, color]) => `<span><i style="background:${color}"></i>${escape(k === 'quota' || k === 'age' || k === 'dispose' || k === 'damaged' ? `deleted: ${REASON_TEXT[k]}` : k)}</span>`).join(' ');
  const cameraBlocks = r.cameras.map((c) => {
    const rows = DELETION_REASONS.map((reason) => {
      const d = c.deleted[reason];
      const ranges = d.ranges.slice(0, 4).map((x) => `${escape(range(x.from, x.to, zone))}${x.incident ? ` (${escape(x.incident)})` : ''}`).join('<br>');
      return `<tr><td>${escape(REASON_TEXT[reason])}</td><td class="n">${d.count === 0 ? '—' : escape(unit(reason, d.count))}</td><td class="n">${d.count === 0 ? '' : escape(bytesOf(d))}</td><td>${ranges}${d.ranges.length > 4 ? `<br>and ${d.ranges.length - 4} more` : ''}</td></tr>`;
    }).join('');
    return `<section class="camera"><h3>${escape(c.id)} <small>oldest footage ${escape(local(c.oldest, zone))} · ${escape(formatDuration(c.retainedSeconds * 1000))} retained</small></h3>
${timelineSvg(c, fromMs, toMs, zone)}
<table><thead><tr><th>deleted in the period, by reason</th><th>how many</th><th>bytes</th><th>when</th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }).join('\n');
  const incidents = r.incidents.map((i) => `<tr><td>${escape(i.id)}</td><td>${escape(i.kind)}</td><td>${escape(local(i.at, zone))}</td><td>${escape(formatDuration(i.age * 1000))}</td><td>${escape(i.by ?? '—')} (${escape(i.via)})</td><td>${escape(i.reason ?? '')}</td><td>${escape(i.state)}</td><td>${escape(syncText(r, i.synced))}</td><td>${i.disclosures.map((d) => `${escape(d.legalBasis)} ${escape(d.reference)}, ${escape(d.agency)}, ${escape(local(d.at, zone))}`).join('<br>') || '—'}</td></tr>`).join('');
  const stills = r.stills.map((s) => `<tr><td>${escape(local(s.at, zone, true))}</td><td>${escape(s.camera)}</td><td>${escape(s.purpose)}</td><td>${escape(s.by)}</td><td>${escape(s.reason ?? '')}</td></tr>`).join('');
  const steps = r.clock.steps.map((s) => `${(s.jumpMs / 1000).toFixed(1)} s at ${local(s.at, zone)}`).join(', ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Retention report: ${escape(r.site)} (${escape(r.node)})</title>
<style>
@page { size: A4; margin: 12mm; }
body { font: 11px/1.35 system-ui, sans-serif; color: #111; margin: 0 auto; max-width: 190mm; }
h1 { font-size: 16px; margin: 0 0 2px; } h2 { font-size: 13px; margin: 12px 0 4px; } h3 { font-size: 12px; margin: 8px 0 2px; }
h3 small { font-weight: normal; color: #444; }
table { border-collapse: collapse; width: 100%; margin: 2px 0 6px; } th, td { border-bottom: 1px solid #ddd; padding: 1px 4px; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; } .note { background: #fff4d6; padding: 3px 6px; }
.legend span { margin-right: 10px; white-space: nowrap; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 3px; vertical-align: -1px; }
.camera { break-inside: avoid; } svg.timeline { display: block; }
.status-ok { color: #2e7d32; } .status-missing, .status-overdue { color: #b00020; font-weight: bold; }
</style></head><body>
<h1>Retention report: ${escape(r.site)} <small>(node ${escape(r.node)})</small></h1>
<div>Period ${escape(local(r.from, zone))} to ${escape(local(r.to, zone))} ${escape(zoneName(toMs, zone))}, time zone ${escape(zone)}. Made ${escape(local(r.to, zone, true))}.</div>
${note ? `<p class="note">${escape(note)}</p>` : ''}
<p>What the node holds, what it deleted and why. Deletions come from the node's hash-chained audit log, written before each file is removed.</p>
<div class="legend">${legend}</div>
${fromMs > Date.parse(r.from) ? `<p>The timelines begin ${escape(local(new Date(fromMs).toISOString(), zone))}, the first the node knows of.</p>` : ''}
<h2>Cameras</h2>
${cameraBlocks}
<h2>Incidents kept (${r.incidents.length})</h2>
${r.incidents.length === 0 ? '<p>None.</p>' : `<table><thead><tr><th>incident</th><th>kind</th><th>at</th><th>age</th><th>by</th><th>why</th><th>state</th><th>synced</th><th>disclosures</th></tr></thead><tbody>${incidents}</tbody></table>`}
<h2>Stills made (${r.stills.length})</h2>
${r.stills.length === 0 ? '<p>None.</p>' : `<table><thead><tr><th>frame at</th><th>camera</th><th>purpose</th><th>by</th><th>why</th></tr></thead><tbody>${stills}</tbody></table>`}
<h2>Signage and clock</h2>
<p>Signage: <span class="status-${escape(r.signage.status)}">${escape(r.signage.status)}</span> — ${escape(r.signage.detail)}.</p>
<p>Clock: ${r.clock.synced === true ? 'synchronised' : r.clock.synced === false ? '<b>not synchronised</b>' : 'unknown'}; ${steps ? `steps: ${escape(steps)}` : 'no steps in the period'}.</p>
</body></html>
`;
}

export function renderReport(r: Report, format: 'text' | 'json' | 'html'): string {
  if (format === 'json') return `${JSON.stringify(r, null, 2)}\n`;
  return format === 'html' ? renderReportHtml(r) : renderReportText(r);
}
