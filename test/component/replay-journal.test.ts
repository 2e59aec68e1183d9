// The seen-commands journal (CONTRACT §7 replay protection): appended and fdatasynced per
// command, read back after a restart (a torn last line skipped), compacted once it has grown
// well past the nonces still needed.
import { appendFileSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplayGuard, SEEN_FILE } from '../../src/commands/replay.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

const nonce = (i: number): string => `nonce-${String(i).padStart(12, '0')}`;

describe('the seen-commands journal', () => {
  it('survives a restart and a torn last line; compacts to what is still needed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-replay-'));
    const now = 1_800_000_000;
    const first = new ReplayGuard({ stateDir: dir, log: silentLogger() });
    await first.load();
    for (let i = 0; i < 1_200; i++) expect(await first.accept(now, nonce(i), now, true)).toBeNull();
    await first.confirm(now, now, true);
    expect(await first.accept(now, nonce(5), now, true)).toMatch(/already used/);
    await first.close();
    appendFileSync(join(dir, SEEN_FILE), '{"n":"torn-by-a-cra'); // a crash mid-append

    const second = new ReplayGuard({ stateDir: dir, log: silentLogger() });
    await second.load();
    expect(await second.accept(now, nonce(1_199), now, true)).toMatch(/already used/);
    expect(await second.accept(now, nonce(1_200), now, true)).toBeNull();
    // 20 minutes on, none of those nonces is needed (their iat fails the clock check anyway):
    // the next command compacts the journal to itself.
    const later = now + 20 * 60;
    expect(await second.accept(later, nonce(9_999), later, true)).toBeNull();
    await second.close();
    const lines = readFileSync(join(dir, SEEN_FILE), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ n: nonce(9_999), iat: later });
    const third = new ReplayGuard({ stateDir: dir, log: silentLogger() });
    await third.load();
    expect(await third.accept(later, nonce(9_999), later, true)).toMatch(/already used/);
    await third.close();
  });
});
