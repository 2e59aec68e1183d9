// Readable renderings for `camnode ctl` (pure): the fleet table, a node's state, events.
import { formatBytes } from '../config/units.js';
import type { NodeView } from './client.js';
import type { StatePayload } from '../fleet/topics.js';

export interface NodeRow {
  node: string;
  online: boolean;
  camerasUp: number;
  camerasTotal: number;
  retainedSeconds: number | null;
  diskUsedPct: number | null;
  tempC: number | null;
  activeIncidents: number;
  unsyncedIncidents: number;
  lastSeen: string | null;
  version: string | null;
  /** The config in force (CONTRACT §9 status `configSha256`); null from nodes that do not say. */
  configSha256: string | null;
  /** What ops should look at, in a word each (`--problems` lists the nodes with any). */
  problems: string[];
}

export function nodeRow(view: NodeView): NodeRow {
  // A retained state is whatever a node published (an older or newer version, a broken one):
  // read it defensively, so that one bad node cannot break the whole fleet's table.
  const state = record(view.state);
  const storage = record(state?.['storage']);
  const health = record(state?.['health']);
  const incidents = record(state?.['incidents']);
  const cams = Array.isArray(state?.['cameras']) ? (state['cameras'] as unknown[]).map(record).filter((c) => c !== undefined) : [];
  const quota = num(storage?.['quotaBytes']);
  const used = num(storage?.['usedBytes']);
  const online = view.status?.online === true;
  const camerasUp = cams.filter((c) => c['state'] === 'recording').length;
  const camerasTotal = cams.filter((c) => c['state'] !== 'disabled').length;
  const tempC = num(health?.['tempC']);
  const faults = Array.isArray(health?.['faults']) ? (health['faults'] as unknown[]).map(record).map((f) => str(f?.['component'])).filter((c) => c !== undefined) : [];
  const problems = [
    ...(online ? [] : ['offline']),
    ...(camerasUp < camerasTotal ? ['cameras down'] : []),
    ...faults.map((c) => `fault: ${c}`),
    ...(str(record(state?.['sync'])?.['lastError']) ? ['sync failing'] : []),
    ...(health?.['clockSynced'] === false ? ['clock unsynced'] : []),
    ...(health?.['throttled'] === true ? ['throttled'] : []),
    ...(tempC !== null && tempC >= HOT_C ? ['hot'] : []),
    ...((num(incidents?.['damaged']) ?? 0) > 0 ? ['damaged incidents'] : []),
  ];
  return {
    node: view.node,
    online,
    camerasUp,
    camerasTotal,
    retainedSeconds: num(storage?.['retainedSeconds']),
    diskUsedPct: quota && used !== null ? Math.round((used / quota) * 1000) / 10 : null,
    tempC,
    activeIncidents: num(incidents?.['active']) ?? 0,
    unsyncedIncidents: num(incidents?.['unsynced']) ?? 0,
    lastSeen: str(state?.['ts']) ?? str(view.status?.since) ?? null,
    version: str(view.status?.version) ?? null,
    configSha256: str((view.status as Record<string, unknown> | undefined)?.['configSha256']) ?? null,
    problems,
  };
}

/** A temperature ops should look at (the Pi throttles at 80–85 °C). */
const HOT_C = 75;

function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : undefined;
}
function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Offline nodes and nodes with cameras down first (what ops must look at), then by id. */
export function sortRows(rows: NodeRow[]): NodeRow[] {
  const rank = (r: NodeRow): number => (!r.online ? 0 : r.camerasUp < r.camerasTotal ? 1 : 2);
  return [...rows].sort((a, b) => rank(a) - rank(b) || a.node.localeCompare(b.node));
}

export function formatRetention(seconds: number | null): string {
  if (seconds === null) return '-';
  const days = seconds / 86_400;
  return days >= 2 ? `${days.toFixed(1)}d` : `${(seconds / 3600).toFixed(1)}h`;
}

function ago(iso: string | null, nowMs: number): string {
  const at = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(at)) return '-';
  const s = Math.max(0, Math.round((nowMs - at) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

export function renderNodes(rows: NodeRow[], nowMs: number, color: boolean, opts: { problems?: boolean } = {}): string {
  if (rows.length === 0) return 'no nodes have reported on this broker (check --prefix)';
  const paint = (text: string, code: number | null): string => (color && code !== null ? `\x1b[${code}m${text}\x1b[0m` : text);
  const head = ['NODE', 'ONLINE', 'CAMERAS', 'RETENTION', 'DISK', 'TEMP', 'INCIDENTS', 'VERSION', 'CONFIG', 'LAST SEEN', ...(opts.problems ? ['PROBLEMS'] : [])];
  const cells = sortRows(rows).map((r) => {
    const camsDown = r.camerasUp < r.camerasTotal;
    return [
      [r.node, null],
      [r.online ? 'yes' : 'NO', r.online ? 32 : 31],
      [`${r.camerasUp}/${r.camerasTotal}`, camsDown ? 33 : null],
      [formatRetention(r.retainedSeconds), null],
      [r.diskUsedPct === null ? '-' : `${r.diskUsedPct.toFixed(1)}%`, null],
      [r.tempC === null ? '-' : `${r.tempC.toFixed(1)}°C`, r.tempC !== null && r.tempC >= 75 ? 33 : null],
      [`${r.activeIncidents} active, ${r.unsyncedIncidents} unsynced`, r.activeIncidents > 0 ? 33 : null],
      [r.version ?? '-', null],
      // The first 8 hex digits tell configs apart at a glance; --json has the whole hash.
      [r.configSha256 ? r.configSha256.slice(0, 8) : '-', null],
      [ago(r.lastSeen, nowMs), null],
      ...(opts.problems ? [[r.problems.join(', ') || '-', r.problems.length > 0 ? 31 : null]] : []),
    ] as [string, number | null][];
  });
  const widths = head.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]![0].length)));
  const line = (row: [string, number | null][]): string => row.map(([text, code], c) => paint(text.padEnd(widths[c]!), code)).join('  ').trimEnd();
  const online = rows.filter((r) => r.online).length;
  return [line(head.map((h) => [h, null])), ...cells.map(line), `${rows.length} node(s), ${online} online`].join('\n');
}

export function progressBar(done: number, total: number, width = 24): string {
  const share = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(share * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(share * 100)}%`;
}

export function renderState(node: string, s: StatePayload): string {
  const lines = [`${node} at ${s.ts}`];
  lines.push('cameras:');
  for (const c of s.cameras) lines.push(`  ${c.id.padEnd(16)} ${c.state.padEnd(10)} ${c.kbps === null ? '-' : `${c.kbps} kbit/s`}  last segment ${c.lastSegmentAt ?? '-'}  restarts ${c.restarts}`);
  const st = s.storage;
  lines.push(`storage: ${st.usedBytes === null ? '-' : formatBytes(st.usedBytes)} of ${st.quotaBytes === null ? '-' : formatBytes(st.quotaBytes)} quota, ${st.lockedBytes === null ? '-' : formatBytes(st.lockedBytes)} locked, ${st.freeBytes === null ? '-' : formatBytes(st.freeBytes)} free; oldest ${st.oldestAt ?? '-'} (${formatRetention(st.retainedSeconds)} retained)`);
  // "kept": sealed and not disposed of (the state's `held`); damaged ones are set aside.
  lines.push(`incidents: ${s.incidents.active} active, ${s.incidents.held} kept, ${s.incidents.unsynced} unsynced${s.incidents.damaged ? `, ${s.incidents.damaged} DAMAGED (set aside)` : ''}`);
  // Only on nodes that take call recordings (CONTRACT §8).
  if (s.calls) lines.push(`calls: ${s.calls.files} in the ring (${formatBytes(s.calls.bytes)}), oldest ${s.calls.oldest ?? '-'}, ${s.calls.waiting} waiting${s.calls.rejected ? `, ${s.calls.rejected} REJECTED (in calls/rejected)` : ''}`);
  lines.push(`sync: ${s.sync.queued} queued, ${formatBytes(s.sync.bytesPending)} pending${s.sync.lastError ? `, last error: ${s.sync.lastError}` : ''}`);
  if (s.sync.current) {
    const c = s.sync.current;
    lines.push(`  ${c.incident} ${progressBar(c.bytesSent, c.bytesTotal)} ${formatBytes(c.bytesSent)}/${formatBytes(c.bytesTotal)} at ${formatBytes(c.rateBps)}/s${c.etaS !== null ? `, ${c.etaS}s left` : ''}`);
  }
  const h = s.health;
  const fmt = (v: number | null, unit: string): string => (v === null ? '-' : `${v}${unit}`);
  lines.push(`health: load ${fmt(h.load, '')}, memory ${fmt(h.memUsedPct, '%')}, temperature ${fmt(h.tempC, '°C')}, throttled ${h.throttled === null ? '-' : h.throttled ? 'YES' : 'no'}, up ${fmt(h.uptimeS, 's')}, clock ${h.clockSynced === null ? 'unknown' : h.clockSynced ? 'synced' : 'NOT synced'}`);
  // The policy's signage attestation; absent from nodes of earlier releases.
  if (s.policy) lines.push(`policy: signage ${s.policy.signage === 'ok' ? 'ok' : s.policy.signage.toUpperCase()}`);
  // Only when something fails; older nodes' states have no faults member.
  for (const f of h.faults ?? []) lines.push(`FAULT ${f.component}${f.incident ? ` (${f.incident})` : ''} since ${f.since}: ${f.message}`);
  return lines.join('\n');
}

export function renderEvent(node: string, e: Record<string, unknown>): string {
  const { id, type, ts, ...rest } = e;
  const details = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return `${String(ts ?? '')} ${node} #${String(id ?? '?')} ${String(type ?? '?')}${details ? ` ${details}` : ''}`;
}
