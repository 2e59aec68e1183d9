// Finding recordings in a real spool folder (CONTRACT §8): the pattern over sub-folders, dated
// folders listed again only when they change, files added and removed between passes.
import { mkdirSync, rmSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpoolScanner } from '../../src/calls/scan.js';

let root: string;
const put = (rel: string, body = 'x'): void => {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), body);
};
/** Sets a folder's times to an hour ago, the same instant each time. */
const HOUR_AGO = new Date(Date.now() - 3_600_000);
const age = (rel: string): void => utimesSync(join(root, rel), HOUR_AGO, HOUR_AGO);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-spool-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the spool scanner', () => {
  it('finds files by pattern in every sub-folder, case-insensitively, skipping dot files', async () => {
    put('2026/11/28/out-1001.wav');
    put('2026/11/28/q-200.WAV');
    put('2026/11/28/notes.txt');
    put('2026/11/28/.partial.wav');
    put('top.wav');
    const scanner = new SpoolScanner(root, '*.wav');
    const pass = await scanner.pass();
    expect(pass.added.sort()).toEqual(['2026/11/28/out-1001.wav', '2026/11/28/q-200.WAV', 'top.wav']);
    expect(pass.removed).toEqual([]);
    // A pattern with a folder part matches the path.
    expect((await new SpoolScanner(root, '2026/**/*.{wav,mp3}').pass()).added.sort()).toEqual(['2026/11/28/out-1001.wav', '2026/11/28/q-200.WAV']);
  });

  it('reports what was added and removed since the last pass, listing unchanged old folders from memory', async () => {
    put('2026/11/27/a.wav');
    put('2026/11/28/b.wav');
    for (const d of ['2026/11/27', '2026/11/28', '2026/11', '2026', '.']) age(d);
    const scanner = new SpoolScanner(root, '*.wav');
    expect((await scanner.pass()).added.sort()).toEqual(['2026/11/27/a.wav', '2026/11/28/b.wav']);
    // A file slipped into an old folder without changing its mtime is not seen until a full pass...
    put('2026/11/27/late.wav');
    age('2026/11/27');
    expect((await scanner.pass()).added).toEqual([]);
    expect((await scanner.pass(true)).added).toEqual(['2026/11/27/late.wav']);
    // ...while a new day's folder and a removal are seen at once.
    put('2026/11/29/c.wav');
    rmSync(join(root, '2026/11/28/b.wav'));
    const pass = await scanner.pass();
    expect(pass.added).toEqual(['2026/11/29/c.wav']);
    expect(pass.removed).toEqual(['2026/11/28/b.wav']);
    expect([...scanner.files()].sort()).toEqual(['2026/11/27/a.wav', '2026/11/27/late.wav', '2026/11/29/c.wav']);
  });

  // Root reads every folder: run as another user.
  it.skipIf(process.getuid?.() === 0)('names a folder it cannot read and does not count its files as removed', async () => {
    put('locked/a.wav');
    const scanner = new SpoolScanner(root, '*.wav');
    expect((await scanner.pass()).added).toEqual(['locked/a.wav']);
    chmodSync(join(root, 'locked'), 0o000);
    try {
      const pass = await scanner.pass(true);
      expect(pass.unreadable).toEqual([{ path: join(root, 'locked'), code: 'EACCES' }]);
      expect(pass.removed).toEqual([]);
    } finally {
      chmodSync(join(root, 'locked'), 0o755);
    }
  });

  it('names a spool that is not there', async () => {
    const pass = await new SpoolScanner(join(root, 'nope'), '*.wav').pass();
    expect(pass.unreadable).toEqual([{ path: join(root, 'nope'), code: 'ENOENT' }]);
  });
});
