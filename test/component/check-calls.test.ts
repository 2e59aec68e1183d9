// `check`'s calls row (CONTRACT §8) on real folders: readable, writable when keepSource is false
// (a read-only mount), recordings not yet taken (read from the agent's journal without touching
// it), an NFS mount whose attribute cache outlasts settle, recordings left waiting for an hour.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callsRow } from '../../src/check.js';
import { CALLS_INDEX } from '../../src/calls/index.js';
import { tombstoneKey } from '../../src/calls/spool.js';

const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';

let root: string;
let spool: string;
let storage: string;
const calls = (over: Record<string, unknown> = {}) => ({ watch: spool, pattern: '*.wav', settle: 10_000, startFrom: 'mtime', keepSource: true, ...over });
const noMounts = (): string => join(root, 'no-mounts');

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-check-calls-'));
  spool = join(root, 'monitor');
  storage = join(root, 'storage');
  mkdirSync(join(spool, '2026', '12', '03'), { recursive: true });
  mkdirSync(join(storage, 'calls'), { recursive: true });
  writeFileSync(noMounts(), '');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('check: calls', () => {
  it('passes on a readable spool and counts what the agent has not taken yet, reading its journal as it is', async () => {
    const a = join(spool, '2026', '12', '03', 'a.wav');
    writeFileSync(a, 'a');
    writeFileSync(join(spool, '2026', '12', '03', 'b.wav'), 'bb');
    writeFileSync(join(spool, '2026', '12', '03', 'notes.txt'), 'not a recording');
    const st = (await import('node:fs')).statSync(a);
    const line = `${JSON.stringify({ op: 'taken', source: '2026/12/03/a.wav', tombstone: tombstoneKey('2026/12/03/a.wav', { size: st.size, mtimeMs: st.mtimeMs }) })}\n`;
    writeFileSync(join(storage, 'calls', CALLS_INDEX), line);
    const row = await callsRow(calls(), storage, noMounts());
    expect(row).toEqual({ check: 'calls', verdict: 'pass', detail: `${spool}: readable; 2 recording(s), 1 not yet taken` });
    expect(readFileSync(join(storage, 'calls', CALLS_INDEX), 'utf8')).toBe(line);
  });

  it('fails on a missing spool, naming it', async () => {
    const row = await callsRow(calls({ watch: join(root, 'gone') }), storage, noMounts());
    expect(row.verdict).toBe('fail');
    expect(row.detail).toBe(`${join(root, 'gone')}: missing`);
    expect(row.fix).toContain('docs/calls.md');
  });

  it('warns when recordings have waited over an hour (the agent is not taking them)', async () => {
    const old = join(spool, '2026', '12', '03', 'old.wav');
    writeFileSync(old, 'x');
    const then = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(old, then, then);
    const row = await callsRow(calls(), storage, noMounts());
    expect(row.verdict).toBe('warn');
    expect(row.detail).toContain('1 unchanged for over an hour');
  });

  it('warns when settle is shorter than an NFS mount\'s attribute cache', async () => {
    const mounts = join(root, 'mounts');
    writeFileSync(mounts, `/dev/root / ext4 rw 0 0\npbx:/var/spool/asterisk/monitor ${spool} nfs4 rw,vers=4.2,acregmax=30 0 0\n`);
    const row = await callsRow(calls(), storage, mounts);
    expect(row.verdict).toBe('warn');
    expect(row.detail).toContain('(nfs4 from pbx:/var/spool/asterisk/monitor)');
    expect(row.detail).toContain('settle 10s is shorter than the mount\'s attribute cache (30s)');
    expect(row.fix).toBe('set calls.settle to at least 35s, or mount with actimeo=5');
    expect((await callsRow(calls({ settle: 40_000 }), storage, mounts)).verdict).toBe('pass');
  });

  (IS_ROOT || IN_CI ? it : it.skip)('fails when keepSource is false and the spool cannot be written (a read-only mount)', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', spool]);
    try {
      expect((await callsRow(calls(), storage, noMounts())).verdict).toBe('pass');
      const row = await callsRow(calls({ keepSource: false }), storage, noMounts());
      expect(row.verdict).toBe('fail');
      expect(row.detail).toBe(`${spool}: cannot be read and written (EROFS)`);
    } finally {
      execFileSync('umount', [spool]);
    }
  });
});
