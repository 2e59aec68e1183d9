// What `ctl config` prints (CONTRACT §9 Config push). Pure; every string from a node is made
// printable by the caller.
import { stringify } from 'yaml';

export interface ConfigGetReply { config: unknown; source: 'file' | 'pushed'; sha256: string }
export interface ConfigCompareReply { differs: string[]; sha256: string; candidateSha256: string }

const from = (source: string): string => (source === 'pushed' ? 'pushed by central ops' : 'from its file');

/** The config in force as YAML, under a comment naming the node, its source and sha256. */
export function renderConfigGet(node: string, d: ConfigGetReply): string {
  return `# ${node}: the config in force, ${from(d.source)}; sha256 ${d.sha256}\n# secrets are shown as ***: a push that keeps *** keeps the value in force\n${stringify(d.config, { lineWidth: 0 }).trimEnd()}`;
}

export function renderConfigCompare(node: string, file: string, d: ConfigCompareReply): string {
  if (d.differs.length === 0) return `${node}: ${file} is the config in force (sha256 ${d.sha256})`;
  return [`${node}: ${file} differs from the config in force at ${d.differs.length} path(s):`, ...d.differs.map((p) => `  ${p}`)].join('\n');
}

/** The reply to a push or a reset (CONTRACT §9): a trial, or nothing to change. */
export interface TrialReply { sha256: string; trialUntil: string | null; unchanged?: true }

export function renderTrial(node: string, d: TrialReply, follow: string): string {
  if (d.trialUntil === null) return `${node}: config ${d.sha256} is already the one in force; nothing to try`;
  return `${node}: config ${d.sha256} on trial until ${d.trialUntil}; it is committed once every enabled camera records and the broker link is up, else rolled back (config.committed or config.rolledBack: ${follow})`;
}

export type ConfigRow = { node: string; get?: ConfigGetReply; compare?: ConfigCompareReply; error?: string };

/** `ctl config --all`: one line per online node. */
export function renderConfigTable(rows: readonly ConfigRow[]): string {
  const table: string[][] = [['NODE', 'SOURCE', 'SHA256', 'DIFFERS']];
  for (const r of rows) {
    if (r.error !== undefined) table.push([r.node, '-', '-', `error: ${r.error}`]);
    else if (r.compare) table.push([r.node, '-', r.compare.sha256.slice(0, 12), r.compare.differs.length === 0 ? 'no' : `${r.compare.differs.length}: ${r.compare.differs.slice(0, 3).join(', ')}${r.compare.differs.length > 3 ? ', …' : ''}`]);
    else if (r.get) table.push([r.node, r.get.source, r.get.sha256.slice(0, 12), '-']);
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  const lines = table.map((row) => row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
  // (Every node's sha256 is its own — its node.id and its hash key differ — so no two are compared.)
  const answered = rows.filter((r) => r.error === undefined).length;
  const differ = rows.filter((r) => r.compare && r.compare.differs.length > 0).length;
  lines.push(`${rows.length} node(s) online, ${answered} answered${rows.some((r) => r.compare) ? `, ${differ} differ from the file` : ''}`);
  return lines.join('\n');
}
