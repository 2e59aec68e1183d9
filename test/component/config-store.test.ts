// The config in force (CONTRACT §1, §9): the file's, unless a push was committed under the
// file's node.stateDir — stored 0600, read back for every command; a push that no longer loads
// falls back to the file and says why (never quoting a password); reset returns to the file.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfigInForce, PushedConfigs } from '../../src/config/store.js';

let dir: string;
let file: string;
const SHA = 'a'.repeat(64);

const doc = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  node: { id: 'koelbel-01', stateDir: join(dir, 'state') },
  storage: { path: join(dir, 'storage'), maxAge: '30d' },
  cameras: [{ id: 'entrance', source: 'rtsp://viewer:Sekrit-991@10.0.0.21/s', zone: 'entrance' }],
  ...over,
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-store-'));
  file = join(dir, 'config.yaml');
  await writeFile(file, JSON.stringify(doc()));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the config in force', () => {
  it('is the file until a push is committed; then the push, stored 0600; reset returns to the file', async () => {
    expect(loadConfigInForce(file)).toMatchObject({ source: 'file', path: file });
    const store = new PushedConfigs(join(dir, 'state'));
    const stored = await store.save(doc({ storage: { path: join(dir, 'storage'), maxAge: '7d' } }), SHA);
    expect((await stat(stored)).mode & 0o777).toBe(0o600);
    expect((await stat(store.dir)).mode & 0o777).toBe(0o700);
    // Stored, not committed: still the file.
    expect(loadConfigInForce(file).source).toBe('file');
    await store.commit(SHA, Date.parse('2026-12-03T10:00:00Z'));
    const pushed = loadConfigInForce(file);
    expect(pushed.source).toBe('pushed');
    expect(pushed.config.storage.maxAge).toBe(7 * 86_400_000);
    expect(pushed.fallback).toBeUndefined();
    expect(JSON.parse(await readFile(join(store.dir, 'committed.json'), 'utf8'))).toEqual({ sha256: SHA, file: `${SHA}.json`, at: '2026-12-03T10:00:00.000Z' });
    await store.reset();
    expect(loadConfigInForce(file).source).toBe('file');
    await store.reset(); // twice is fine
  });

  it('a committed push that no longer loads falls back to the file, saying why without the password', async () => {
    const store = new PushedConfigs(join(dir, 'state'));
    await store.save({ ...doc(), cameras: [{ id: 'entrance', source: 'rtsp://viewer:Sekrit-991@10.0.0.21/s', zone: 'restroom' }] }, SHA);
    await store.commit(SHA, 0);
    const r = loadConfigInForce(file);
    expect(r.source).toBe('file');
    expect(r.fallback).toMatch(/the committed push aaaaaaaaaaaa does not load \(cameras\[0\]\.zone: "restroom" is a private area/);
    expect(r.fallback).not.toContain('Sekrit-991');

    await writeFile(join(store.dir, 'committed.json'), '{"sha256":"nope"}');
    expect(loadConfigInForce(file).fallback).toMatch(/cannot be read/);

    await store.save(doc({ node: { id: 'another-node', stateDir: join(dir, 'state') } }), SHA);
    await store.commit(SHA, 0);
    expect(loadConfigInForce(file).fallback).toMatch(/another node\.id or node\.stateDir/);
  });

  it('a bad file is refused as ever, push or no push', async () => {
    await writeFile(file, 'node: {id: x}\n');
    expect(() => loadConfigInForce(file)).toThrow(/storage: required|cameras: required/);
  });
});
