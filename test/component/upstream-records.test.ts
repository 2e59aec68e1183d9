// Upstream records and the node key history (CONTRACT §7) on real folders: records queued in
// the state dir go to the folder target and leave the node only once stored; a target that is
// not there yet is retried; an object already upstream under a record's key is never
// overwritten. Two state dirs stand for two SD cards in one box: the second learns the first's
// key from what is published, and a manifest the first signed still verifies with it.
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEY_HISTORY_FILE, KeyHistory, keyObjectName, keyStamp, mergeKeys, parseKeyObject, stampToIso } from '../../src/audit/key-history.js';
import { loadOrCreateNodeKey, NODE_KEY_FILE } from '../../src/audit/keys.js';
import { signManifest, verifyManifestSignature } from '../../src/audit/manifest.js';
import { silentLogger } from '../../src/platform/logger.js';
import { DirStore } from '../../src/sync/dir-store.js';
import { pendingRecords, queueRecord, RecordPublisher, UPSTREAM_CONFLICTS_DIR, UPSTREAM_DIR } from '../../src/sync/records.js';
import { waitFor } from '../helpers/agent.js';

const PREFIX = 'incidents/branch-7';
let root: string;
let share: string;
const running: RecordPublisher[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-records-'));
  share = join(root, 'share');
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
  await rm(root, { recursive: true, force: true });
});

function publisher(stateDir: string, over: Partial<ConstructorParameters<typeof RecordPublisher>[0]> = {}): RecordPublisher {
  const p = new RecordPublisher({
    stateDir, keyPrefix: PREFIX, openStore: async () => new DirStore(share), log: silentLogger(),
    backoff: { baseMs: 20, maxMs: 50, jitter: 0 }, ...over,
  });
  running.push(p);
  return p;
}

describe('upstream records', () => {
  it('go to the target under <prefix>/<node>/ and leave the node only once stored there', async () => {
    await mkdir(share);
    const stateDir = join(root, 'state');
    await queueRecord(stateDir, '20261201T100000Z-abcd/disclosures/1.json', '{"n":1}\n');
    await queueRecord(stateDir, 'keys/20261201T090000Z.pub', 'PEM\n');
    expect(await pendingRecords(stateDir)).toEqual(['keys/20261201T090000Z.pub', '20261201T100000Z-abcd/disclosures/1.json']);
    const p = publisher(stateDir);
    await p.start();
    await waitFor(async () => (await pendingRecords(stateDir)).length === 0, 'the records sent', 10_000, 20);
    expect(await readFile(join(share, PREFIX, '20261201T100000Z-abcd/disclosures/1.json'), 'utf8')).toBe('{"n":1}\n');
    expect(await readFile(join(share, PREFIX, 'keys/20261201T090000Z.pub'), 'utf8')).toBe('PEM\n');
    // The emptied folders go too.
    expect(await readdir(join(stateDir, UPSTREAM_DIR))).toEqual([]);
    expect(p.status()).toEqual({ waiting: 0, lastError: null });

    // A record queued later is sent when poked.
    await queueRecord(stateDir, '20261201T100000Z-abcd/disclosures/2.json', '{"n":2}\n');
    p.poke();
    await waitFor(async () => (await readFile(join(share, PREFIX, '20261201T100000Z-abcd/disclosures/2.json'), 'utf8').catch(() => '')) === '{"n":2}\n', 'the second record', 10_000, 20);
  });

  it('wait on the node while the target is missing (a share not mounted), and go once it is there', async () => {
    const stateDir = join(root, 'state');
    await queueRecord(stateDir, 'keys/20261201T090000Z.pub', 'PEM\n');
    const p = publisher(stateDir);
    await p.start();
    await waitFor(() => p.status().lastError?.includes('does not exist'), 'the failure reported', 10_000, 20);
    expect(await pendingRecords(stateDir)).toEqual(['keys/20261201T090000Z.pub']);
    await mkdir(share);
    await waitFor(async () => (await pendingRecords(stateDir)).length === 0 && p.status().lastError === null, 'the record sent after the share came back', 10_000, 20);
  });

  it('never overwrite another object upstream: the record is set aside on the node', async () => {
    const stateDir = join(root, 'state');
    await mkdir(join(share, PREFIX, 'x/disclosures'), { recursive: true });
    await writeFile(join(share, PREFIX, 'x/disclosures/1.json'), 'already there\n');
    await queueRecord(stateDir, 'x/disclosures/1.json', 'mine\n');
    const p = publisher(stateDir);
    await p.start();
    await waitFor(async () => (await pendingRecords(stateDir)).length === 0, 'the record handled', 10_000, 20);
    expect(await readFile(join(share, PREFIX, 'x/disclosures/1.json'), 'utf8')).toBe('already there\n');
    expect(await readFile(join(stateDir, UPSTREAM_CONFLICTS_DIR, 'x/disclosures/1.json'), 'utf8')).toBe('mine\n');
  });

  it('the same bytes already upstream are no conflict; a record rewritten while it went up stays for the next pass', async () => {
    const stateDir = join(root, 'state');
    await mkdir(join(share, PREFIX, 'keys'), { recursive: true });
    await writeFile(join(share, PREFIX, 'keys/20261201T090000Z.pub'), 'PEM\n');
    await queueRecord(stateDir, 'keys/20261201T090000Z.pub', 'PEM\n');
    // A store whose "stored" check cannot tell (an ETag that is no MD5): the bytes decide.
    const dir = new DirStore(share);
    const p = publisher(stateDir, { openStore: async () => ({ ...dir, describe: () => dir.describe(), probe: () => dir.probe(), list: (x: string) => dir.list(x), get: (k: string) => dir.get(k), upload: (...a: Parameters<DirStore['upload']>) => dir.upload(...a), isStored: async () => false }) });
    await p.start();
    await waitFor(async () => (await pendingRecords(stateDir)).length === 0, 'the record recognised as stored', 10_000, 20);
    expect(await readdir(join(stateDir, UPSTREAM_CONFLICTS_DIR)).catch(() => [])).toEqual([]);
    await p.stop();

    // Rewritten between upload and removal: the new bytes are not removed unsent.
    await queueRecord(stateDir, 'x/disclosures/1.json', 'first\n');
    let rewrote = false;
    const racing = publisher(stateDir, {
      openStore: async () => ({
        describe: () => dir.describe(), probe: () => dir.probe(), list: (x: string) => dir.list(x), get: (k: string) => dir.get(k), isStored: (...a: Parameters<DirStore['isStored']>) => dir.isStored(...a),
        upload: async (...a: Parameters<DirStore['upload']>) => {
          await dir.upload(...a);
          // As the agent does: queued, then a poke (which must not be lost mid-pass).
          if (!rewrote) { rewrote = true; await queueRecord(stateDir, 'x/disclosures/1.json', 'second\n'); racing.poke(); }
        },
      }),
    });
    await racing.start();
    await waitFor(async () => (await readdir(join(stateDir, UPSTREAM_CONFLICTS_DIR, 'x/disclosures')).catch(() => [])).length > 0, 'the rewritten record set aside, not lost', 10_000, 20);
    expect(await readFile(join(share, PREFIX, 'x/disclosures/1.json'), 'utf8')).toBe('first\n');
    expect(await readFile(join(stateDir, UPSTREAM_CONFLICTS_DIR, 'x/disclosures/1.json'), 'utf8')).toBe('second\n');
  });

  it('refuse keys that would leave <prefix>/<node>/', async () => {
    for (const bad of ['../other/x.json', '/abs', 'a/../../b', '.hidden', 'a//b', '']) {
      await expect(queueRecord(join(root, 'state'), bad, 'x'), bad).rejects.toThrow(/not an upstream record key/);
    }
  });
});

describe('node key history', () => {
  it('a replaced SD card: the new key is published beside the old one, the node learns both, the old manifest verifies with the published key', async () => {
    await mkdir(share);
    // The first card: its key signs a manifest, and is published.
    const cardA = join(root, 'card-a');
    const keyA = await loadOrCreateNodeKey(cardA);
    const historyA = new KeyHistory({ stateDir: cardA, key: keyA, now: () => Date.parse('2026-06-01T08:00:00Z'), log: silentLogger() });
    await historyA.open();
    const manifest = signManifest({ incident: { id: 'x' } as never, files: [], clock: { synced: true }, audit: { seq: 0, head: '0'.repeat(64) }, agent: { version: '1' } }, keyA);
    const pa = publisher(cardA);
    await pa.start();
    await waitFor(async () => (await pendingRecords(cardA)).length === 0, 'key A published', 10_000, 20);
    await pa.stop();

    // The second card: a new key; it learns the first from upstream once its own is sent.
    const cardB = join(root, 'card-b');
    const keyB = await loadOrCreateNodeKey(cardB);
    const historyB = new KeyHistory({ stateDir: cardB, key: keyB, now: () => Date.parse('2026-11-20T09:30:00Z'), log: silentLogger() });
    await historyB.open();
    expect(historyB.list().map((k) => k.publicKey)).toEqual([keyB.publicKeyBase64]);
    let learned = false;
    const pb = publisher(cardB, { onceDrained: async (store) => { learned = await historyB.learnFrom(store, PREFIX); } });
    await pb.start();
    await waitFor(() => learned, 'key A learned', 10_000, 20);
    const keys = historyB.list();
    expect(keys.map((k) => k.publicKey)).toEqual([keyA.publicKeyBase64, keyB.publicKeyBase64]);
    expect(keys.map((k) => k.firstUsed)).toEqual([historyA.own().firstUsed, historyB.own().firstUsed]);
    expect((await readdir(join(share, PREFIX, 'keys'))).sort()).toEqual([keyObjectName(keys[0]!).slice(5), keyObjectName(keys[1]!).slice(5)].sort());
    // Kept: a restart offline still lists both.
    const again = new KeyHistory({ stateDir: cardB, key: keyB, now: () => Date.now(), log: silentLogger() });
    await again.open();
    expect(again.list()).toEqual(keys);

    // The examiner takes key A from the published file, not from the node.
    const published = parseKeyObject(keyObjectName(keys[0]!), await readFile(join(share, PREFIX, keyObjectName(keys[0]!))));
    expect(verifyManifestSignature(manifest, published!.publicKey)).toEqual({ ok: true });
    expect(verifyManifestSignature(manifest, keyB.publicKeyBase64).ok).toBe(false);
  });

  it('a key made before histories were kept is dated by its file', async () => {
    const stateDir = join(root, 'state');
    const key = await loadOrCreateNodeKey(stateDir);
    const made = new Date('2025-03-04T05:06:07.890Z');
    await utimes(join(stateDir, NODE_KEY_FILE), made, made);
    const history = new KeyHistory({ stateDir, key, now: () => Date.now(), log: silentLogger() });
    await history.open();
    expect(history.own()).toEqual({ publicKey: key.publicKeyBase64, firstUsed: '2025-03-04T05:06:07.000Z' });
    expect(JSON.parse(await readFile(join(stateDir, KEY_HISTORY_FILE), 'utf8'))).toEqual({ keys: [history.own()] });
    expect(await pendingRecords(stateDir)).toEqual(['keys/20250304T050607Z.pub']);
  });
});

describe('key history, pure parts', () => {
  it('stamps round-trip; junk is not a key object', () => {
    expect(keyStamp('2026-12-02T11:26:00.000Z')).toBe('20261202T112600Z');
    expect(stampToIso('20261202T112600Z')).toBe('2026-12-02T11:26:00.000Z');
    expect(stampToIso('20261302T112600Z')).toBeNull();
    expect(stampToIso('latest')).toBeNull();
    expect(parseKeyObject('keys/20261202T112600Z.pub', Buffer.from('not a key'))).toBeNull();
    expect(parseKeyObject('keys/soon.pub', Buffer.from('0qMjsRK2rkLQHAboDNCD3qHFjEIiFclfbLadv0eMBS8='))).toBeNull();
    expect(parseKeyObject('keys/20261202T112600Z.pub', Buffer.from('0qMjsRK2rkLQHAboDNCD3qHFjEIiFclfbLadv0eMBS8=\n')))
      .toEqual({ publicKey: '0qMjsRK2rkLQHAboDNCD3qHFjEIiFclfbLadv0eMBS8=', firstUsed: '2026-12-02T11:26:00.000Z' });
  });

  it('merges by key, keeping the earliest first use, oldest first', () => {
    const a = { publicKey: 'A', firstUsed: '2026-01-01T00:00:00.000Z' };
    const b = { publicKey: 'B', firstUsed: '2025-01-01T00:00:00.000Z' };
    expect(mergeKeys([a], [b, { publicKey: 'A', firstUsed: '2026-02-01T00:00:00.000Z' }])).toEqual([b, a]);
  });
});
