// `camnode audit verify` and `camnode evidence verify` (CONTRACT §1). Each returns its exit
// code: 0 whole/verified, 1 broken/failed (including a missing log or manifest), 2 bad usage.
// A bad config throws ConfigError, which main.ts turns into exit 2.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { EvidenceUsageError, renderEvidenceReport, resolveTrustedKey, verifyEvidence } from './evidence.js';
import { AUDIT_LOG_FILE } from './log.js';
import { describeAuditResult, verifyAuditLog } from './verify.js';

interface Out { write(s: string): unknown }

export async function auditVerifyCommand(opts: { config?: string }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const config = loadConfig(resolveConfigPath(opts.config));
  const path = join(config.node.stateDir, AUDIT_LOG_FILE);
  try {
    await stat(path);
  } catch (e) {
    err.write(`camnode: no audit log at ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the agent creates it at its first start\n`);
    return 1;
  }
  const result = await verifyAuditLog(path);
  out.write(`${describeAuditResult(path, result)}\n`);
  return result.ok ? 0 : 1;
}

export async function evidenceVerifyCommand(dir: string, opts: { key: string; audit?: string }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let trustedKey: string;
  try {
    trustedKey = await resolveTrustedKey(opts.key);
  } catch (e) {
    if (!(e instanceof EvidenceUsageError)) throw e;
    err.write(`camnode: ${e.message}\n`);
    return 2;
  }
  const report = await verifyEvidence({ dir, trustedKey, ...(opts.audit !== undefined ? { auditPath: opts.audit } : {}) });
  out.write(renderEvidenceReport(dir, report));
  return report.ok ? 0 : 1;
}
