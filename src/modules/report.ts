// The retention report (CONTRACT §7): `report {since?}` answers what the node kept and deleted
// in the period, for `camnode report` on the node and `ctl report` from central ops.
import type { CommandTable } from '../commands/handlers.js';
import type { Config } from '../config/schema.js';
import type { IncidentBook } from '../incidents/book.js';
import type { CameraFootage } from '../store/footage.js';
import { buildReport, noAuditFacts, readAuditFacts } from '../custody/report.js';
import { signageView } from '../custody/signage.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface ReportDeps extends ModuleBase {
  node: Config['node'];
  policy: Config['policy'];
  upstream: Config['upstream']['type'];
  /** What the ring holds now, per camera. */
  footage(): CameraFootage[];
  book: Pick<IncidentBook, 'list'>;
  /** The node's audit log: deletions, stills and clock steps. */
  auditLogPath: string;
  clockSynced(): boolean | null;
  segmentSeconds: number;
}

/** The period a report covers unless asked otherwise. */
export const DEFAULT_REPORT_MS = 30 * 86_400_000;

export function reportModule(deps: ReportDeps): AgentModule {
  const commands: CommandTable = {
    report: async (a) => {
      const toMs = deps.clock.now();
      const fromMs = a.since === undefined ? toMs - DEFAULT_REPORT_MS : 'atMs' in a.since ? Math.min(a.since.atMs, toMs) : toMs - a.since.agoMs;
      const joinMs = Math.max(5_000, deps.segmentSeconds * 3_000);
      const facts = await readAuditFacts(deps.auditLogPath, fromMs, toMs, joinMs).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return noAuditFacts();
      });
      return buildReport({
        node: deps.node.id, site: deps.node.site ?? deps.node.id, timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone, fromMs, toMs,
        footage: deps.footage(), incidents: deps.book.list(), facts, upstream: deps.upstream,
        signage: signageView(deps.policy?.signage, toMs), clockSynced: deps.clockSynced(),
        joinMs,
      });
    },
  };
  return { name: 'report', components: [], commands };
}
