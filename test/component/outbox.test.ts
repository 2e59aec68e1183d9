// The event outbox on a real directory: a journal appended to (not the whole outbox rewritten
// per event), durable before add() resolves, read back after a restart, a line cut short by a
// crash dropped, ids rising across everything, the outbox of earlier releases taken over.
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventOutbox, OUTBOX_FILE, replayOutbox } from '../../src/fleet/outbox.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';

let dir: string;
const clock = new ManualClock();
const outbox = (limit?: number) => new EventOutbox({ stateDir: dir, clock, log: silentLogger(), ...(limit ? { limit } : {}) });

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-outbox-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

describe('the event outbox journal', () => {
  it('appends one line per event, keeps what is undelivered across a restart, and ids keep rising', async () => {
    const a = outbox();
    await a.start();
    const size0 = (await stat(join(dir, OUTBOX_FILE))).size;
    const e1 = await a.add('button.pressed', { at: 'x' });
    const e2 = await a.add('incident.locked', { incident: 'i1' });
    const e3 = await a.add('incident.extended', { incident: 'i1' });
    expect([e1.id, e2.id, e3.id]).toEqual([1, 2, 3]);
    const text = await readFile(join(dir, OUTBOX_FILE), 'utf8');
    // Appended, not rewritten: the start's header, then one line per event.
    expect(text.split('\n').filter(Boolean)).toHaveLength(4);
    expect(text.length).toBeGreaterThan(size0);
    a.delivered(2);
    expect(a.pending().map((e) => e.id)).toEqual([3]);
    await a.stop();

    const b = outbox();
    await b.start();
    expect(b.pending().map((e) => [e.id, e.type])).toEqual([[3, 'incident.extended']]);
    expect((await b.add('camera.up', { camera: 'c' })).id).toBe(4);
    b.delivered(4);
    await b.stop();
    const c = outbox();
    await c.start();
    expect(c.pending()).toEqual([]);
    expect((await c.add('camera.down', { camera: 'c' })).id).toBe(5);
    await c.stop();
  });

  it('a line cut short by a crash is dropped; the rest is kept', async () => {
    const a = outbox();
    await a.start();
    await a.add('button.pressed', { at: '1' });
    await a.add('button.pressed', { at: '2' });
    await a.stop();
    const path = join(dir, OUTBOX_FILE);
    await truncate(path, (await stat(path)).size - 7);
    const b = outbox();
    await b.start();
    expect(b.pending().map((e) => e['at'])).toEqual(['1']);
    // The cut line was never acknowledged, so never published: its id may be used again.
    expect((await b.add('button.pressed', { at: '3' })).id).toBe(2);
    await b.stop();
  });

  it('replay skips damage anywhere and keeps the last `limit` events', () => {
    const lines = [
      JSON.stringify({ n: 10 }),
      JSON.stringify({ e: { id: 10, type: 'camera.up', ts: 't' } }),
      '{"e":{"id":11,',
      JSON.stringify({ e: { id: 12, type: 'camera.up', ts: 't' } }),
      JSON.stringify({ x: 1 }),
      JSON.stringify({ e: { id: 13, type: 'camera.up', ts: 't' } }),
      JSON.stringify({ d: 10 }),
    ].join('\n');
    const r = replayOutbox(lines, 1);
    expect(r).toEqual({ nextId: 14, pending: [{ id: 13, type: 'camera.up', ts: 't' }], damaged: 2 });
  });

  it('takes over the one-document outbox of earlier releases, then removes it', async () => {
    await writeFile(join(dir, 'events-outbox.json'), JSON.stringify({ nextId: 42, pending: [{ id: 41, type: 'incident.sealed', ts: 't', incident: 'i' }] }));
    const a = outbox();
    await a.start();
    expect(a.pending()).toEqual([{ id: 41, type: 'incident.sealed', ts: 't', incident: 'i' }]);
    expect((await a.add('camera.up', { camera: 'c' })).id).toBe(42);
    expect(existsSync(join(dir, 'events-outbox.json'))).toBe(false);
    await a.stop();
  });

  it('a corrupt outbox of an earlier release: ids continue from the clock, never reused', async () => {
    await writeFile(join(dir, 'events-outbox.json'), '{"nextId": 7, "pend');
    const a = outbox();
    await a.start();
    expect(a.pending()).toEqual([]);
    expect((await a.add('camera.up', { camera: 'c' })).id).toBe(Math.floor(clock.now() / 1000));
    await a.stop();
  });
});

const isRoot = process.getuid?.() === 0;

describe('the outbox when the state dir cannot be written', () => {
  // A read-only bind mount of the dir needs root (CI runs as root; off CI it skips).
  it.skipIf(!isRoot && process.env['CI'] !== 'true')('an event that cannot be written rejects add() but stays pending; the next write puts everything down anew', async () => {
    if (!isRoot) throw new Error('needs root for a read-only bind mount (CI runs as root)');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mount', ['--bind', dir, dir]);
    try {
      execFileSync('mount', ['-o', 'remount,bind,ro', dir]);
      const a = outbox();
      await a.start();
      await expect(a.add('camera.up', { camera: 'c' })).rejects.toThrow(/EROFS/);
      await expect(a.add('camera.down', { camera: 'c' })).rejects.toThrow(/EROFS/);
      expect(a.pending().map((e) => e.type)).toEqual(['camera.up', 'camera.down']);
      execFileSync('mount', ['-o', 'remount,bind,rw', dir]);
      await a.add('camera.up', { camera: 'c' });
      await a.stop();
    } finally {
      execFileSync('umount', [dir]);
    }
    const b = outbox();
    await b.start();
    expect(b.pending().map((e) => [e.id, e.type])).toEqual([[1, 'camera.up'], [2, 'camera.down'], [3, 'camera.up']]);
    await b.stop();
  });

  it('replay drops an event written twice', () => {
    const e = { id: 4, type: 'camera.up', ts: 't' };
    expect(replayOutbox([JSON.stringify({ n: 4 }), JSON.stringify({ e }), JSON.stringify({ e })].join('\n')).pending).toEqual([e]);
  });
});
