// The audit log and the node key on real files: what is appended is chained and on disk,
// restarts continue the chain, a torn last line is cut off, damage further up is reported by
// `camnode audit verify` (the real CLI, built in dist/), never hidden.
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, sha256Hex } from '../../src/audit/chain.js';
import { loadOrCreateNodeKey, NODE_KEY_FILE, NodeKeyError, readNodePublicKey, verifyEd25519 } from '../../src/audit/keys.js';
import { AUDIT_LOG_FILE, AuditLog } from '../../src/audit/log.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { baseConfig, runCli, writeConfig } from '../helpers/agent.js';

let dir: string;
let stateDir: string;
let logs: AuditLog[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-audit-'));
  stateDir = join(dir, 'state');
  logs = [];
});
afterEach(async () => {
  for (const l of logs) await l.stop();
  await rm(dir, { recursive: true, force: true });
});

async function openLog(clock = new ManualClock()): Promise<AuditLog> {
  const log = new AuditLog({ stateDir, log: silentLogger(), clock });
  logs.push(log);
  await log.start();
  return log;
}

const logPath = (): string => join(stateDir, AUDIT_LOG_FILE);
const lines = (): string[] => readFileSync(logPath(), 'utf8').split('\n').filter((l) => l !== '');
const entries = (): Record<string, unknown>[] => lines().map((l) => JSON.parse(l) as Record<string, unknown>);
const incident = (id: string, reason = 'fight at the desk'): { id: string; triggers: unknown[]; state: string } =>
  ({ id, triggers: [{ at: '2026-11-28T12:00:00.000Z', via: 'button', reason }], state: 'active' });

describe('node key', () => {
  it('is made once with mode 0600, reused after that, and signs under its published public key', async () => {
    const key = await loadOrCreateNodeKey(stateDir);
    const path = join(stateDir, NODE_KEY_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(key.publicKeyBase64).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const again = await loadOrCreateNodeKey(stateDir);
    expect(again.publicKeyBase64).toBe(key.publicKeyBase64);
    expect(await readNodePublicKey(stateDir)).toBe(key.publicKeyBase64);
    const data = Buffer.from('evidence');
    expect(verifyEd25519(data, again.sign(data).toString('base64'), key.publicKeyBase64)).toBe(true);
    expect(readdirSync(stateDir)).toEqual([NODE_KEY_FILE]); // no temporary file left behind
  });

  it('is made once when two starts race for it', async () => {
    const keys = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateNodeKey(stateDir)));
    expect(new Set(keys.map((k) => k.publicKeyBase64)).size).toBe(1);
    expect(readdirSync(stateDir)).toEqual([NODE_KEY_FILE]);
  });

  it('tightens a key file others could read, and never replaces an unreadable one', async () => {
    const key = await loadOrCreateNodeKey(stateDir);
    const path = join(stateDir, NODE_KEY_FILE);
    chmodSync(path, 0o644);
    expect((await loadOrCreateNodeKey(stateDir)).publicKeyBase64).toBe(key.publicKeyBase64);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    writeFileSync(path, 'not a key');
    await expect(loadOrCreateNodeKey(stateDir)).rejects.toThrow(NodeKeyError);
    expect(readFileSync(path, 'utf8')).toBe('not a key');
  });

  it('removes a private key left under a temporary name by a process that died before linking it', async () => {
    mkdirSync(stateDir, { recursive: true });
    const stale = `.${NODE_KEY_FILE}.999999999.0badc0de.tmp`; // no such pid
    writeFileSync(join(stateDir, stale), 'half a key');
    await loadOrCreateNodeKey(stateDir);
    expect(readdirSync(stateDir)).toEqual([NODE_KEY_FILE]);
  });

  it('has no public key to show before the first start', async () => {
    expect(await readNodePublicKey(stateDir)).toBeNull();
  });
});

describe('audit log', () => {
  it('chains entries as CONTRACT §4 says and is whole', async () => {
    const clock = new ManualClock();
    const log = await openLog(clock);
    expect(log.head()).toEqual({ seq: 0, head: GENESIS_PREV });
    const a = await log.append('lock', { incident: incident('20261128T120000Z-aaaa') });
    clock.advance(1234);
    const run = { from: '2026-11-01T00:00:00.000Z', to: '2026-11-01T00:10:00.000Z', segments: 60, bytes: 1000 };
    const b = await log.append('delete', { reason: 'quota', cameras: { entrance: [run] } });
    const raw = lines();
    expect(raw).toHaveLength(2);
    expect(readFileSync(logPath(), 'utf8').endsWith('\n')).toBe(true);
    const [first, second] = entries();
    expect(first).toEqual({ seq: 1, prev: GENESIS_PREV, ts: '2026-11-28T12:00:00.000Z', type: 'lock', incident: incident('20261128T120000Z-aaaa') });
    expect(Object.keys(second!).slice(0, 4)).toEqual(['seq', 'prev', 'ts', 'type']);
    expect(second).toEqual({ seq: 2, prev: sha256Hex(raw[0]!), ts: '2026-11-28T12:00:01.234Z', type: 'delete', reason: 'quota',
      cameras: { entrance: [run] } });
    expect(a).toEqual({ seq: 1, hash: sha256Hex(raw[0]!) });
    expect(b).toEqual({ seq: 2, hash: sha256Hex(raw[1]!) });
    expect(log.head()).toEqual({ seq: 2, head: b.hash });
    expect(await verifyAuditLog(logPath())).toEqual({ ok: true, entries: 2, head: log.head() });
    await expect(log.append('dispose', { incident: 'x', by: 'a', reason: 'b', seq: 9 } as never)).rejects.toThrow(/may not set "seq"/);
  });

  it('writes concurrent appends in call order, each chained to the one before', async () => {
    const log = await openLog();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      log.append('delete', { reason: 'quota', cameras: { [`c${i}`]: [{ from: 'f', to: 't', segments: 1, bytes: i }] } })));
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(entries().map((e) => Object.keys(e['cameras'] as object)[0])).toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`));
    expect(await verifyAuditLog(logPath())).toMatchObject({ ok: true, entries: 50 });
  });

  it('puts nothing between an anchor and the entry built on it', async () => {
    const log = await openLog();
    await log.append('lock', { incident: incident('20261128T120000Z-aaaa') });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const sealed = log.appendAnchored('seal', async (anchor) => {
      await gate; // the manifest is being signed and written meanwhile
      return { incident: '20261128T120000Z-aaaa', manifestSha256: sha256Hex(JSON.stringify(anchor)) };
    });
    const deleted = log.append('delete', { reason: 'quota', cameras: { a: [{ from: 'f', to: 't', segments: 1, bytes: 1 }] } });
    release();
    const [s, d] = await Promise.all([sealed, deleted]);
    expect(s.anchor.seq).toBe(1);
    expect(s.seq).toBe(2);
    expect(d.seq).toBe(3);
    expect(entries().map((e) => e['type'])).toEqual(['lock', 'seal', 'delete']);
    // A build that fails appends nothing and leaves the log usable.
    await expect(log.appendAnchored('seal', async () => { throw new Error('disk gone'); })).rejects.toThrow('disk gone');
    expect((await log.append('dispose', { incident: 'x', by: 'ops', reason: 'done' })).seq).toBe(4);
  });

  it('continues the chain after a restart', async () => {
    const first = await openLog();
    await first.append('lock', { incident: incident('20261128T120000Z-aaaa') });
    await first.append('extend', { incident: '20261128T120000Z-aaaa', trigger: { at: '2026-11-28T12:00:05.000Z', via: 'button' }, end: '2026-11-28T12:05:05.000Z', camerasAdded: [] });
    const head = first.head();
    await first.stop();
    await first.stop(); // safe twice
    const second = await openLog();
    expect(second.head()).toEqual(head);
    expect((await second.append('dispose', { incident: '20261128T120000Z-aaaa', by: 'ops', reason: 'synced' })).seq).toBe(3);
    expect(await verifyAuditLog(logPath())).toMatchObject({ ok: true, entries: 3 });
  });

  it('cuts off a torn last line at start, audits that, and stays whole', async () => {
    const first = await openLog();
    await first.append('lock', { incident: incident('20261128T120000Z-aaaa') });
    const head = first.head();
    await first.stop();
    // A crash mid-write: part of the next line, no newline.
    appendFileSync(logPath(), '{"seq":2,"prev":"' + head.head.slice(0, 20));
    const torn = await verifyAuditLog(logPath());
    expect(torn).toMatchObject({ ok: false, line: 2 });
    expect(!torn.ok && torn.reason).toMatch(/torn/);
    const second = await openLog();
    expect(entries().map((e) => [e['seq'], e['type']])).toEqual([[1, 'lock'], [2, 'repair']]);
    expect(entries()[1]).toMatchObject({ prev: head.head, truncatedBytes: 37, reason: 'torn last line' });
    await second.append('seal', { incident: '20261128T120000Z-aaaa', manifestSha256: sha256Hex('m') });
    expect(await verifyAuditLog(logPath())).toMatchObject({ ok: true, entries: 3 });
  });

  it('cuts off a torn first line too', async () => {
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(logPath(), '{"seq":1,"pr');
    const log = await openLog();
    expect(entries()).toMatchObject([{ seq: 1, prev: GENESIS_PREV, type: 'repair' }]);
    expect(log.head().seq).toBe(1);
    expect((await verifyAuditLog(logPath())).ok).toBe(true);
  });

  it('does not hide damage further up: it appends after it, and verify reports the first broken link', async () => {
    const first = await openLog();
    for (let i = 0; i < 5; i++) await first.append('delete', { reason: 'quota', cameras: { a: [{ from: 'f', to: 't', segments: 1, bytes: i }] } });
    await first.stop();
    const raw = lines();
    raw[2] = raw[2]!.replace('"bytes":2', '"bytes":20'); // seq 3 altered
    writeFileSync(logPath(), `${raw.join('\n')}\n`);
    const second = await openLog();
    expect((await second.append('dispose', { incident: 'x', by: 'ops', reason: 'done' })).seq).toBe(6);
    expect(lines()).toHaveLength(6);
    expect(await verifyAuditLog(logPath())).toMatchObject({ ok: false, line: 4, seq: 4, entries: 3 });
  });

  it('chains on after a last line that is not an entry, numbering after the last good one', async () => {
    const first = await openLog();
    await first.append('lock', { incident: incident('20261128T120000Z-aaaa') });
    await first.stop();
    appendFileSync(logPath(), 'garbage\n');
    const second = await openLog();
    const r = await second.append('dispose', { incident: 'x', by: 'ops', reason: 'done' });
    expect(r.seq).toBe(3);
    expect(entries).toThrow(); // the garbage line is still there, untouched
    expect(JSON.parse(lines()[2]!)).toMatchObject({ seq: 3, prev: sha256Hex('garbage') });
    expect(await verifyAuditLog(logPath())).toMatchObject({ ok: false, line: 2, seq: null, reason: 'not valid JSON' });
  });
});

describe('camnode audit verify', () => {
  async function config(): Promise<string> {
    return writeConfig(dir, baseConfig(dir, [{ id: 'a', source: 'testsrc', zone: 'entrance' }]));
  }

  it('exits 0 on a whole log and 1 naming the first broken link', async () => {
    const cfg = await config();
    const log = await openLog();
    for (let i = 0; i < 4; i++) await log.append('delete', { reason: 'quota', cameras: { a: [{ from: 'f', to: 't', segments: 1, bytes: i }] } });
    await log.stop();
    const whole = await runCli(['audit', 'verify', '--config', cfg]);
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stdout).toContain('whole, 4 entries');
    // It says what a whole chain does not prove: entries cut off after its head.
    expect(whole.stdout).toMatch(/does not prove: that no entries were cut off after the head/);
    const raw = lines();
    raw[1] = raw[1]!.replace('"bytes":1', '"bytes":7'); // seq 2 altered
    writeFileSync(logPath(), `${raw.join('\n')}\n`);
    const broken = await runCli(['audit', 'verify', '--config', cfg]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/BROKEN at line 3 \(seq 3\).*seq 2 was altered/);
  });

  it('finds the config through $CAMNODE_CONFIG; a missing log is 1, a bad config 2', async () => {
    const cfg = await config();
    const missing = await runCli(['audit', 'verify'], { env: { CAMNODE_CONFIG: cfg } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no audit log at ${logPath()}`);
    expect(existsSync(logPath())).toBe(false);
    const bad = await writeConfig(dir, { node: { id: 'Bad Id' } }, 'bad.yaml');
    const r = await runCli(['audit', 'verify', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('node.id');
  });
});
