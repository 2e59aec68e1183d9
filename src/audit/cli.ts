// `camnode audit verify` and `camnode evidence verify` (CONTRACT §1). Each returns its exit
// code: 0 whole/verified, 1 broken/failed (including a missing log or manifest), 2 bad usage.
// A bad config throws ConfigError, which main.ts turns into exit 2.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, resolveConfigPath } from '../config/load.js';
import { EvidenceUsageError, readIdentities, renderEvidenceReport, resolveTrustedKey, verifyEvidence } from './evidence.js';
import type { AgeIdentity } from '../platform/age.js';
import { AUDIT_LOG_FILE } from './log.js';
import { describeAuditResult, readHeads, verifyAuditLog } from './verify.js';

interface Out { write(s: string): unknown }

export async function auditVerifyCommand(opts: { config?: string; log?: string; key?: string; heads?: string }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  // A copy checked offline (CONTRACT §7): the node's file or the chunks from upstream, and its signed heads.
  if (opts.log !== undefined || opts.heads !== undefined) return auditVerifyCopy(opts, out, err);
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

async function auditVerifyCopy(opts: { log?: string; key?: string; heads?: string }, out: Out, err: Out): Promise<number> {
  if (opts.log === undefined || opts.key === undefined) {
    err.write('camnode: audit verify of a copy takes --log FILE|DIR and --key PUBKEY (the node\'s key, for its signed heads), and optionally --heads DIR\n');
    return 2;
  }
  let key: string;
  try {
    key = await resolveTrustedKey(opts.key);
  } catch (e) {
    if (!(e instanceof EvidenceUsageError)) throw e;
    err.write(`camnode: ${e.message}\n`);
    return 2;
  }
  try {
    await stat(opts.log);
  } catch (e) {
    err.write(`camnode: cannot read ${opts.log} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})\n`);
    return 1;
  }
  // A series folder holds its heads beside its chunks: taken when --heads is not given.
  const headsDir = opts.heads ?? await stat(join(opts.log, 'heads')).then((s) => (s.isDirectory() ? join(opts.log!, 'heads') : undefined), () => undefined);
  const heads = headsDir !== undefined ? await readHeads(headsDir, key) : undefined;
  const result = await verifyAuditLog(opts.log, heads?.heads);
  const failures = [...(heads?.failures ?? []), ...(result.heads?.failures ?? [])];
  out.write(`${describeAuditResult(opts.log, result)}\n`);
  for (const f of heads?.failures ?? []) out.write(`FAILED: ${f}\n`);
  if (headsDir === undefined) out.write('note: no heads given (--heads DIR): a tail cut off after the last entry cannot be seen\n');
  return result.ok && failures.length === 0 ? 0 : 1;
}

export async function evidenceVerifyCommand(dir: string, opts: { key: string; audit?: string; identity?: string }, out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let trustedKey: string;
  let identities: AgeIdentity[] | undefined;
  try {
    trustedKey = await resolveTrustedKey(opts.key);
    if (opts.identity !== undefined) identities = await readIdentities(opts.identity);
  } catch (e) {
    if (!(e instanceof EvidenceUsageError)) throw e;
    err.write(`camnode: ${e.message}\n`);
    return 2;
  }
  const report = await verifyEvidence({ dir, trustedKey, ...(opts.audit !== undefined ? { auditPath: opts.audit } : {}), ...(identities ? { identities } : {}) });
  out.write(renderEvidenceReport(dir, report));
  return report.ok ? 0 : 1;
}
