// `npm run bundle` (CONTRACT §9 Install): the offline bundle, built for real. Its name carries
// the version and the Debian arch; the SHA-256 and the listing beside it match; it holds the
// agent and its production dependencies only, and no compiled addon; unpacked elsewhere, alone,
// it runs: `camnode run` records a test picture from it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

describeRoot('npm run bundle', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('makes camnode-<version>-<arch>.tgz with its SHA-256 and listing, production dependencies only, no addon; unpacked alone it records', async () => {
    const out = await tempDir('camnode-bundle-');
    dirs.push(out);
    const r = await exec('bash', ['provisioning/bundle.sh', '--arch', 'armhf', '--out', out, '--no-build'], { cwd: ROOT, maxBuffer: 16 << 20 });
    const name = `camnode-${VERSION}-armhf`;
    expect(r.stdout).toContain(`${name}.tgz`);
    expect((await readdir(out)).sort()).toEqual([`${name}.contents.txt`, `${name}.tgz`, `${name}.tgz.sha256`]);
    const tgz = join(out, `${name}.tgz`);
    const digest = createHash('sha256').update(await readFile(tgz)).digest('hex');
    expect(await readFile(join(out, `${name}.tgz.sha256`), 'utf8')).toBe(`${digest}  ${name}.tgz\n`);
    const listing = (await exec('tar', ['-tzf', tgz], { maxBuffer: 64 << 20 })).stdout;
    expect(await readFile(join(out, `${name}.contents.txt`), 'utf8')).toBe(listing);
    const entries = listing.split('\n');
    for (const must of ['camnode/dist/src/main.js', 'camnode/package.json', 'camnode/node_modules/mqtt/package.json', 'camnode/node_modules/onoff/package.json', 'camnode/device/camnode.service', 'camnode/provisioning/fleet-ca.sh']) {
      expect(entries, must).toContain(must);
    }
    expect(entries.filter((e) => e.endsWith('.node'))).toEqual([]);
    expect(entries.some((e) => e.startsWith('camnode/node_modules/vitest/'))).toBe(false);
    expect(entries.some((e) => e.startsWith('camnode/dist/bench/') || e.startsWith('camnode/test/'))).toBe(false);

    // Unpacked somewhere else, with nothing of the checkout: it runs and records.
    const site = await tempDir('camnode-bundle-site-');
    dirs.push(site);
    await mkdir(join(site, 'opt'));
    await exec('tar', ['-xzf', tgz, '-C', join(site, 'opt')]);
    const main = join(site, 'opt', 'camnode', 'dist', 'src', 'main.js');
    expect((await exec(process.execPath, [main, '--version'])).stdout.trim()).toBe(VERSION);
    const config = await writeConfig(site, baseConfig(site, [{ id: 'cam', source: 'testsrc', zone: 'entrance' }]));
    const agent = RunningAgent.start(config, { command: [process.execPath, main] });
    try {
      await agent.waitForLog((l) => l.msg === 'agent started', 'the bundled agent started', 30_000);
      await waitFor(async () => (await readdir(join(site, 'storage', 'segments', 'cam')).catch(() => [] as string[])).filter((n) => n.endsWith('.ts')).length >= 2, 'segments recorded from the bundle', 30_000);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 180_000);
});
