// Every shell script of the project passes shellcheck (Debian's), at its default severity.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function scripts(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = join(dir, e.name);
    if (e.isDirectory()) return scripts(rel);
    return e.name.endsWith('.sh') ? [rel] : [];
  });
}

describe('shell scripts', () => {
  it('pass shellcheck', async () => {
    const all = [...scripts('provisioning'), '.ci/run', 'device/camnode-launcher'];
    expect(all).toContain('provisioning/fleet-ca.sh');
    expect(all).toContain('provisioning/install.sh');
    expect(all).toContain('provisioning/bundle.sh');
    const r = await run('shellcheck', all, { cwd: ROOT }).then(() => ({ out: '' }), (err: { stdout?: string }) => ({ out: err.stdout ?? String(err) }));
    expect(r.out).toBe('');
  });
});
