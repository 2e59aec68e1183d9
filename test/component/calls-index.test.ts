// The journal of calls in the ring and sources taken (CONTRACT §8), on real files: it survives a
// restart, finishes a take a crash cut short after its line, drops one cut short before it, and
// keeps a pruned call's source taken until the source leaves the spool.
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CALLS_INDEX, CallIndex, partialName, type CallRecord } from '../../src/calls/index.js';

let dir: string;
const call = (n: number, bytes = 4): CallRecord => ({
  name: `2026112${n}T120000000Z-out-${n}.wav`, startMs: Date.UTC(2026, 10, 20 + n, 12), durationMs: 60_000, bytes,
  sha256: 'a'.repeat(64), codec: 'pcm_s16le', source: `2026/11/2${n}/out-${n}.wav`, tombstone: `2026/11/2${n}/out-${n}.wav\0${bytes}\0${n}`,
});
const partial = (c: CallRecord): void => writeFileSync(join(dir, partialName(c.name)), Buffer.alloc(c.bytes, 1));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-call-index-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the calls index', () => {
  it('takes a call into place and knows it and its source after a restart', async () => {
    const index = new CallIndex(dir);
    await index.open();
    partial(call(2));
    partial(call(1));
    await index.took(call(2));
    await index.took(call(1));
    await index.close();
    expect(readdirSync(dir).sort()).toEqual([CALLS_INDEX, call(1).name, call(2).name].sort());
    const again = new CallIndex(dir);
    expect(await again.open()).toEqual({ recovered: [], dropped: [], lost: [] });
    expect(again.list().map((c) => c.name)).toEqual([call(1).name, call(2).name]);
    expect(again.isTaken(call(1).tombstone)).toBe(true);
    await again.close();
  });

  it('finishes a take whose line was written before a crash, and drops one whose line was not', async () => {
    const index = new CallIndex(dir);
    await index.open();
    await index.close();
    // Crash after the line, before the rename: the partial is whole.
    partial(call(3));
    appendFileSync(join(dir, CALLS_INDEX), `${JSON.stringify({ op: 'took', ...call(3) })}\n`);
    // Crash before the line: a partial nobody knows, and a torn line.
    partial(call(4));
    appendFileSync(join(dir, CALLS_INDEX), '{"op":"took","name":"x');
    const after = new CallIndex(dir);
    expect(await after.open()).toEqual({ recovered: [call(3).name], dropped: [partialName(call(4).name)], lost: [] });
    expect(after.list().map((c) => c.name)).toEqual([call(3).name]);
    expect(after.isTaken(call(4).tombstone)).toBe(false);
    expect(existsSync(join(dir, call(3).name))).toBe(true);
    expect(readdirSync(dir).filter((n) => n.endsWith('.partial'))).toEqual([]);
    // The journal was rewritten whole: no torn line left.
    expect(readFileSync(join(dir, CALLS_INDEX), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { op: string })).toHaveLength(1);
    await after.close();
  });

  it('keeps a pruned call\'s source taken across restarts until the source has left the spool', async () => {
    const index = new CallIndex(dir);
    await index.open();
    partial(call(5));
    await index.took(call(5));
    await index.gone(call(5).name);
    await index.close();
    const again = new CallIndex(dir);
    await again.open();
    expect(again.list()).toEqual([]);
    expect(again.isTaken(call(5).tombstone)).toBe(true);
    await again.forget(new Set([call(5).source]));
    await again.close();
    const third = new CallIndex(dir);
    await third.open();
    expect(third.isTaken(call(5).tombstone)).toBe(false);
    await third.close();
  });

  it('a journalled call whose file is gone (pruned before its line) is not in the ring, its source still taken', async () => {
    const index = new CallIndex(dir);
    await index.open();
    await index.close();
    appendFileSync(join(dir, CALLS_INDEX), `${JSON.stringify({ op: 'took', ...call(6) })}\n`);
    const after = new CallIndex(dir);
    await after.open();
    expect(after.list()).toEqual([]);
    expect(after.isTaken(call(6).tombstone)).toBe(true);
    await after.close();
  });

  it('finishes setting a file aside when a crash cut its rename after the line; never sets it aside twice', async () => {
    const index = new CallIndex(dir);
    await index.open();
    mkdirSync(join(dir, 'rejected'));
    writeFileSync(join(dir, 'rejected', partialName('20261203T120000000Z-notes.wav')), 'not audio');
    await index.setAside('2026/12/03/notes.wav', 't-notes', '20261203T120000000Z-notes.wav');
    expect(readdirSync(join(dir, 'rejected'))).toEqual(['20261203T120000000Z-notes.wav']);
    await index.close();
    // A crash after the line of a second one, before its rename.
    writeFileSync(join(dir, 'rejected', partialName('20261203T120001000Z-empty.wav')), '');
    appendFileSync(join(dir, CALLS_INDEX), `${JSON.stringify({ op: 'taken', source: '2026/12/03/empty.wav', tombstone: 't-empty', rejected: '20261203T120001000Z-empty.wav' })}\n`);
    const after = new CallIndex(dir);
    expect(await after.open()).toEqual({ recovered: ['rejected/20261203T120001000Z-empty.wav'], dropped: [], lost: [] });
    expect(readdirSync(join(dir, 'rejected')).sort()).toEqual(['20261203T120000000Z-notes.wav', '20261203T120001000Z-empty.wav']);
    expect(after.isTaken('t-empty') && after.isTaken('t-notes')).toBe(true);
    await after.close();
  });
});
