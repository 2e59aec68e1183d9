// The systemd unit (device/camnode.service, CONTRACT §9 Service) checked by systemd's own
// parser: `systemd-analyze verify` on it (ExecStart pointed at a binary this machine has, as no
// camnode is installed here) says nothing; and the directives the contract names are there.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const UNIT = fileURLToPath(new URL('../../device/camnode.service', import.meta.url));

describe('the systemd unit', () => {
  it('passes systemd-analyze verify without a word', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'camnode-unit-'));
    try {
      const copy = join(dir, 'camnode.service');
      await writeFile(copy, (await readFile(UNIT, 'utf8')).replace('/usr/bin/camnode', '/bin/true').replace('/opt/camnode/launcher', '/bin/true'));
      const r = await run('systemd-analyze', ['verify', copy]);
      expect(`${r.stdout}${r.stderr}`).toBe('');
      // And it does speak up on a bad line (so silence above means something).
      await writeFile(copy, `${await readFile(copy, 'utf8')}\n[Service]\nType=notifyx\n`);
      const bad = await run('systemd-analyze', ['verify', copy]);
      expect(bad.stderr).toContain('Failed to parse service type');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has what the contract asks of the service', async () => {
    const text = await readFile(UNIT, 'utf8');
    for (const line of ['Type=notify', 'NotifyAccess=all', 'WatchdogSec=30s', 'Restart=always', 'UMask=0027', 'ProtectSystem=strict',
      'NoNewPrivileges=true', 'PrivateTmp=true', 'DevicePolicy=closed', 'DeviceAllow=char-gpiochip rw', 'DeviceAllow=char-video4linux rw', 'CapabilityBoundingSet=']) {
      expect(text.split('\n'), line).toContain(line);
    }
  });
});
