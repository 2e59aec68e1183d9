// The fleet's alert rules (provisioning/prometheus/alerts.yml, CONTRACT §9) checked and unit
// tested by Debian's promtool: each alert fires for the node that should page, after its `for`,
// and not for the healthy, the disabled or the already-offline (alerts.test.yml).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const DIR = fileURLToPath(new URL('../../provisioning/prometheus/', import.meta.url));

describe('alert rules', () => {
  it('pass promtool check rules: every alert has a summary and a runbook link into docs/monitoring.md', async () => {
    const r = await run('promtool', ['check', 'rules', 'alerts.yml'], { cwd: DIR });
    expect(r.stdout).toContain('SUCCESS: 11 rules found');
  });

  it('pass their unit tests (promtool test rules)', async () => {
    const r = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: DIR }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: `${err.stdout ?? ''}${err.stderr ?? ''}` }));
    expect(r.stdout).toContain('SUCCESS');
  });
});

describe('alert runbooks', () => {
  it('every alert links to a section of docs/monitoring.md with its name', async () => {
    const { readFile } = await import('node:fs/promises');
    const rules = await readFile(new URL('alerts.yml', `file://${DIR}`), 'utf8');
    const docs = await readFile(fileURLToPath(new URL('../../docs/monitoring.md', import.meta.url)), 'utf8');
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    const links = [...rules.matchAll(/runbook_url: "docs\/monitoring\.md#(\w+)"/g)].map((m) => m[1]!);
    expect(links).toEqual(alerts.map((a) => a.toLowerCase()));
    for (const a of alerts) expect(docs, a).toContain(`\n### ${a}\n`);
  });
});
