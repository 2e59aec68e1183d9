// `camnode evidence verify` on a real incident folder, built the way the sealer builds one:
// clips hashed, a manifest signed with the node's key and anchored in the real audit log, the
// seal entry appended right after the anchor. Then each kind of tampering must fail (exit 1).
import { generateKeyPairSync, sign } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/audit/chain.js';
import { verifyEvidence } from '../../src/audit/evidence.js';
import { loadOrCreateNodeKey, publicKeyBase64, type NodeKey } from '../../src/audit/keys.js';
import { AUDIT_LOG_FILE, AuditLog } from '../../src/audit/log.js';
import { manifestSha256, serializeManifest, signManifest, type Manifest, type ManifestFile } from '../../src/audit/manifest.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { keyObjectText } from '../../src/audit/key-history.js';
import { signedRecordText } from '../../src/incidents/records.js';
import { ManualClock } from '../../src/platform/clock.js';
import { writeFileDurable } from '../../src/platform/durable.js';
import { silentLogger } from '../../src/platform/logger.js';
import { runCli } from '../helpers/agent.js';

const ID = '20261128T120000Z-7kq2';
let root: string;
let folder: string;
let auditPath: string;
let key: NodeKey;

const incident = (reason: string): Record<string, unknown> & { id: string } => ({
  id: ID, node: 'koelbel-01', triggers: [{ at: '2026-11-28T12:00:00.000Z', via: 'button', reason }],
  cameras: ['entrance', 'desk'], window: { start: '2026-11-28T11:58:00.000Z', end: '2026-11-28T12:05:00.000Z' }, state: 'sealing', urgent: true,
});

/** Some bytes standing in for an MP4 (hashing does not care what they are). */
function clip(seed: number, size: number): Buffer {
  return Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + seed * 7) & 0xff));
}

/** An incident folder and audit log as the sealer makes them: lock, footage deleted meanwhile, seal, a later dispose. */
async function buildIncident(): Promise<void> {
  const stateDir = join(root, 'state');
  key = await loadOrCreateNodeKey(stateDir);
  const log = new AuditLog({ stateDir, log: silentLogger(), clock: new ManualClock() });
  await log.start();
  try {
    await log.append('lock', { incident: incident('fight at the desk') });
    await log.append('delete', { reason: 'quota', cameras: { entrance: [{ from: '2026-11-01T00:00:00.000Z', to: '2026-11-01T00:05:00.000Z', segments: 30, bytes: 5000 }] } });
    await mkdir(folder, { recursive: true });
    const files: ManifestFile[] = [];
    for (const [i, camera] of ['entrance', 'desk'].entries()) {
      const bytes = clip(i, 4096 + i * 100);
      writeFileSync(join(folder, `${camera}.mp4`), bytes);
      files.push({ name: `${camera}.mp4`, camera, bytes: bytes.length, sha256: sha256Hex(bytes), start: '2026-11-28T11:58:00.000Z', end: '2026-11-28T12:05:00.000Z', gaps: i === 1 ? [{ start: '2026-11-28T12:01:00.000Z', end: '2026-11-28T12:01:04.000Z' }] : [] });
    }
    await log.appendAnchored('seal', async (anchor) => {
      const manifest = signManifest({ incident: incident('fight at the desk'), files, clock: { synced: true }, audit: anchor, agent: { version: '1.2.0' } }, key);
      const text = serializeManifest(manifest);
      await writeFileDurable(join(folder, 'manifest.json'), text);
      return { incident: ID, manifestSha256: manifestSha256(text) };
    });
    await log.append('dispose', { incident: ID, by: 'ops', reason: 'synced' });
  } finally {
    await log.stop();
  }
}

const readManifest = (): Manifest => JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as Manifest;
const writeManifest = (m: unknown): void => writeFileSync(join(folder, 'manifest.json'), JSON.stringify(m));
const failed = async (opts: { audit?: boolean; trustedKey?: string } = {}): Promise<string[]> => {
  const report = await verifyEvidence({ dir: folder, trustedKey: opts.trustedKey ?? key.publicKeyBase64, ...(opts.audit ? { auditPath } : {}) });
  return report.checks.filter((c) => !c.ok).map((c) => `${c.check}: ${c.detail}`);
};
const cli = (...extra: string[]): ReturnType<typeof runCli> => runCli(['evidence', 'verify', folder, '--key', key.publicKeyBase64, ...extra]);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'camnode-evidence-'));
  folder = join(root, 'incidents', ID);
  auditPath = join(root, 'state', AUDIT_LOG_FILE);
  await buildIncident();
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('evidence verify: a good folder', () => {
  it('passes every check, with and without the audit log', async () => {
    const report = await verifyEvidence({ dir: folder, trustedKey: key.publicKeyBase64, auditPath });
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.check)).toEqual(['manifest', 'key', 'signature', 'file entrance.mp4', 'file desk.mp4', 'audit anchor', 'audit chain', 'audit seal']);
    const r = await cli('--audit', auditPath);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {6}signature: /m);
    expect(r.stdout).toMatch(/^ok {6}audit seal: seq 3 seals incident/m);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(`evidence ${folder}: verified`);
    expect((await cli()).code).toBe(0);
  });

  it('takes --key as a file holding the key', async () => {
    const keyFile = join(root, 'node.pub');
    writeFileSync(keyFile, `${key.publicKeyBase64}\n`);
    const r = await runCli(['evidence', 'verify', folder, '--key', keyFile]);
    expect(r.code, r.stdout).toBe(0);
  });

  it('takes --key as a PEM public key file (as published under keys/)', async () => {
    const keyFile = join(root, 'node.pem');
    writeFileSync(keyFile, keyObjectText(key.publicKeyBase64));
    const r = await runCli(['evidence', 'verify', folder, '--key', keyFile]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('checks disclosure records: signed, for this incident, numbered as their file, naming this manifest', async () => {
    const manifestSha = sha256Hex(readFileSync(join(folder, 'manifest.json')));
    const record = (n: number, over: Record<string, unknown> = {}): string => signedRecordText({
      incident: ID, node: 'koelbel-01', n, at: '2026-12-01T10:00:00.000Z', manifestSha256: manifestSha, legalBasis: 'subpoena', reference: 'SUB-1',
      agency: 'Sheriff \u001b[2J', requestedBy: 'Det. K', custodian: { cn: 'ops:cleo', role: 'custodian', certSha256: 'a'.repeat(64) }, agent: { version: '1' }, ...over,
    }, key).text;
    await mkdir(join(folder, 'disclosures'));
    writeFileSync(join(folder, 'disclosures', '1.json'), record(1));
    expect(await failed()).toEqual([]);
    const shown = await cli();
    expect(shown.code).toBe(0);
    // What a record says is shown, never interpreted by the terminal.
    expect(shown.stdout).toContain('Sheriff \\u001b[2J');
    expect(shown.stdout).not.toContain('\u001b');

    writeFileSync(join(folder, 'disclosures', '2.json'), record(3));
    writeFileSync(join(folder, 'disclosures', '3.json'), record(3, { manifestSha256: 'b'.repeat(64) }));
    writeFileSync(join(folder, 'disclosures', '4.json'), record(4, { incident: '20261128T120000Z-aaaa' }));
    writeFileSync(join(folder, 'disclosures', '5.json'), record(5).replace('SUB-1', 'SUB-2'));
    writeFileSync(join(folder, 'disclosures', 'extra.txt'), 'x');
    const problems = await failed();
    expect(problems).toEqual([
      expect.stringMatching(/^disclosure disclosures\/2\.json: it is numbered 3, its file 2\.json$/),
      expect.stringMatching(/^disclosure disclosures\/3\.json: it names manifest SHA-256 "b{64}", this manifest\.json is [0-9a-f]{64}$/),
      expect.stringMatching(/^disclosure disclosures\/4\.json: it is for incident "20261128T120000Z-aaaa"/),
      expect.stringMatching(/^disclosure disclosures\/5\.json: the signature does not verify under the trusted key: the record was altered/),
      'disclosure disclosures/extra.txt: not a disclosure record (disclosures/<n>.json): not covered by any signature',
    ]);
  });

  it('verifies after later audit entries and a torn tail past the seal', async () => {
    appendFileSync(auditPath, '{"seq":5,"prev":"ab');
    expect(await failed({ audit: true })).toEqual([]);
  });
});

describe('evidence verify: tampering fails', () => {
  it('a flipped byte in a clip', async () => {
    const path = join(folder, 'desk.mp4');
    const bytes = readFileSync(path);
    bytes[1000] = bytes[1000]! ^ 0x01;
    writeFileSync(path, bytes);
    expect(await failed()).toEqual([expect.stringMatching(/^file desk\.mp4: SHA-256 [0-9a-f]{64}, the manifest says/)]);
    const r = await cli();
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAILED {2}file desk\.mp4: SHA-256/m);
    expect(r.stdout).toMatch(/^ok {6}file entrance\.mp4/m);
  });

  it('a missing clip, a truncated clip, an unlisted clip', async () => {
    rmSync(join(folder, 'entrance.mp4'));
    expect(await failed()).toEqual(['file entrance.mp4: missing']);
    expect((await cli()).code).toBe(1);
    writeFileSync(join(folder, 'entrance.mp4'), clip(0, 4000));
    expect(await failed()).toEqual(['file entrance.mp4: size 4000 bytes, the manifest says 4096']);
    writeFileSync(join(folder, 'entrance.mp4'), clip(0, 4096));
    writeFileSync(join(folder, 'extra.mp4'), clip(5, 10));
    expect(await failed()).toEqual(['file extra.mp4: not listed in the manifest: not covered by the signature']);
  });

  it('any unlisted file: it could be taken for part of the evidence', async () => {
    writeFileSync(join(folder, 'README.txt'), 'the suspect is …');
    expect(await failed()).toEqual(['file README.txt: not listed in the manifest: not covered by the signature']);
  });

  it('a manifest with a member twice (JSON.parse would keep the last; the signature covers one)', async () => {
    const path = join(folder, 'manifest.json');
    const text = readFileSync(path, 'utf8');
    // The signed manifest, with a second `incident` member inserted after the first one.
    const doubled = text.replace(/^\{/, `{"incident": ${JSON.stringify(incident('nothing happened'))},`);
    writeFileSync(path, doubled);
    expect(await failed()).toEqual([expect.stringMatching(/^manifest: manifest\.json is not valid JSON, or is ambiguous \(duplicate member "incident"\)/)]);
    // Reordered members of the same document are fine (the signature is over the canonical form).
    const m = JSON.parse(text) as Record<string, unknown>;
    const reordered = Object.fromEntries(Object.entries(m).reverse());
    expect(Object.keys(reordered)[0]).toBe('signature');
    writeFileSync(path, JSON.stringify(reordered));
    expect(await failed()).toEqual([]);
  });

  it('a manifest edited and re-signed with another key', async () => {
    const m = readManifest();
    const { privateKey } = generateKeyPairSync('ed25519');
    const forger = { publicKeyBase64: publicKeyBase64(privateKey), sign: (d: Uint8Array) => sign(null, d, privateKey) };
    const { signature: _s, ...unsigned } = m;
    unsigned.incident = incident('nothing happened');
    writeManifest(signManifest(unsigned, forger));
    const problems = await failed();
    expect(problems).toEqual([expect.stringMatching(/^key: the manifest names public key .*, not the trusted key/), expect.stringMatching(/^signature: /)]);
    const r = await cli();
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('not the trusted key');
    // Under the forger's own key the signature holds: trust comes only from --key.
    expect(await failed({ trustedKey: forger.publicKeyBase64 })).toEqual([]);
  });

  it('a manifest edited without re-signing (a clip swapped and its hash updated)', async () => {
    const path = join(folder, 'entrance.mp4');
    const swapped = clip(9, 4096);
    writeFileSync(path, swapped);
    const m = readManifest();
    m.files[0]!.sha256 = sha256Hex(swapped);
    writeManifest(m);
    expect(await failed()).toEqual([expect.stringMatching(/^signature: the signature does not verify/)]);
    expect((await cli()).code).toBe(1);
  });

  it('a manifest re-signed with the node key itself no longer matches its seal entry', async () => {
    const m = readManifest();
    const { signature: _s, ...unsigned } = m;
    unsigned.incident = incident('nothing happened');
    writeManifest(signManifest(unsigned, key));
    expect(await failed()).toEqual([]); // the key alone cannot tell
    expect(await failed({ audit: true })).toEqual([expect.stringMatching(/^audit seal: the seal entry records manifest SHA-256 .*, this manifest.json is/)]);
  });

  it('(with --audit) a log rewritten after the seal, with every later prev recomputed', async () => {
    const lines = readFileSync(auditPath, 'utf8').trimEnd().split('\n');
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { incident?: { triggers: { reason: string }[] } });
    entries[0]!.incident!.triggers[0]!.reason = 'staff member tripped';
    const rewritten: string[] = [];
    for (const [i, e] of entries.entries()) {
      if (i > 0) e['prev'] = sha256Hex(rewritten[i - 1]!);
      rewritten.push(JSON.stringify(e));
    }
    writeFileSync(auditPath, `${rewritten.join('\n')}\n`);
    expect((await verifyAuditLog(auditPath)).ok).toBe(true); // the chain alone looks whole
    expect(await failed()).toEqual([]); // and the folder itself is untouched
    expect(await failed({ audit: true })).toEqual([expect.stringMatching(/^audit anchor: seq 2's line hashes to [0-9a-f]{64}, the manifest says [0-9a-f]{64}: the log was rewritten/)]);
    const r = await cli('--audit', auditPath);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAILED {2}audit anchor: /m);
  });

  it('(with --audit) a seal entry rewritten, a broken chain, a log cut before the anchor', async () => {
    const lines = readFileSync(auditPath, 'utf8').trimEnd().split('\n');
    const seal = JSON.parse(lines[2]!) as Record<string, unknown>;
    seal['manifestSha256'] = sha256Hex('another manifest');
    writeFileSync(auditPath, `${[...lines.slice(0, 2), JSON.stringify(seal), lines[3]].join('\n')}\n`);
    expect(await failed({ audit: true })).toEqual([expect.stringMatching(/^audit seal: the seal entry records manifest SHA-256/)]);

    const edited = [lines[0]!.replace('fight at the desk', 'fight at the door'), ...lines.slice(1)];
    writeFileSync(auditPath, `${edited.join('\n')}\n`);
    expect(await failed({ audit: true })).toEqual([expect.stringMatching(/^audit chain: broken at line 2 \(seq 2\), before the seal entry: .*seq 1 was altered/)]);

    writeFileSync(auditPath, `${lines[0]}\n`);
    expect(await failed({ audit: true })).toEqual(['audit anchor: seq 2 is not in the log (it ends at seq 1)']);
    writeFileSync(auditPath, `${lines.slice(0, 2).join('\n')}\n`);
    expect(await failed({ audit: true })).toEqual(['audit seal: no entry follows the anchor: the seal entry is missing']);
  });
});

describe('evidence export: names the bundle could not hold apart', () => {
  it('refuses a clip named like one of the bundle\'s own files, writing nothing', async () => {
    // Signed by the node key itself: the names are checked even when the signature is good.
    const m = readManifest();
    const { signature: _s, ...unsigned } = m;
    renameSync(join(folder, 'entrance.mp4'), join(folder, 'README.txt'));
    unsigned.files = unsigned.files.map((f) => (f.name === 'entrance.mp4' ? { ...f, name: 'README.txt' } : f));
    writeManifest(signManifest(unsigned, key));
    const out = join(root, 'bundle');
    const r = await runCli(['evidence', 'export', folder, '--out', out, '--key', key.publicKeyBase64]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('"README.txt" twice or as one of the bundle\'s own files; no bundle was written');
    expect(existsSync(out)).toBe(false);
  });
});

describe('evidence with call recordings (calls/<name>, kind call)', () => {
  /** Adds a call to the folder and re-signs the manifest with the node key (as a seal naming calls would). */
  const addCall = (name: string, bytes: Buffer): void => {
    const { signature: _s, ...unsigned } = readManifest();
    mkdirSync(join(folder, 'calls'), { recursive: true });
    writeFileSync(join(folder, 'calls', name), bytes);
    unsigned.files = [...unsigned.files, { name: `calls/${name}`, camera: 'calls', kind: 'call', bytes: bytes.length, sha256: sha256Hex(bytes), start: '2026-11-28T11:59:00.000Z', end: '2026-11-28T12:01:00.000Z', gaps: [] }];
    writeManifest(signManifest(unsigned, key));
  };

  it('verifies a call and exports it under calls/; an unlisted file in calls/ or a flipped byte fails', async () => {
    const call = clip(9, 3000);
    addCall('20261128T115900000Z-out-2001.wav', call);
    expect(await failed()).toEqual([]);
    const out = join(root, 'bundle');
    const r = await runCli(['evidence', 'export', folder, '--out', out, '--key', key.publicKeyBase64]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(out, 'calls', '20261128T115900000Z-out-2001.wav')).equals(call)).toBe(true);
    expect(readFileSync(join(out, 'SHA256SUMS'), 'utf8')).toContain(`${sha256Hex(call)}  calls/20261128T115900000Z-out-2001.wav`);
    writeFileSync(join(folder, 'calls', 'planted.wav'), 'x');
    expect(await failed()).toEqual(['file calls/planted.wav: not listed in the manifest: not covered by the signature']);
    rmSync(join(folder, 'calls', 'planted.wav'));
    const flipped = Buffer.from(call);
    flipped[100] = flipped[100]! ^ 1;
    writeFileSync(join(folder, 'calls', '20261128T115900000Z-out-2001.wav'), flipped);
    expect((await failed())[0]).toMatch(/^file calls\/20261128T115900000Z-out-2001\.wav: SHA-256 [0-9a-f]{64}, the manifest says/);
  });

  it('refuses a name that leaves calls/ or the folder', async () => {
    for (const name of ['calls/../../x.wav', 'calls/', 'calls/a/b.wav', 'other/x.wav']) {
      const { signature: _s, ...unsigned } = readManifest();
      unsigned.files = [...unsigned.files, { name, camera: 'calls', bytes: 1, sha256: 'a'.repeat(64), start: '2026-11-28T11:59:00.000Z', end: '2026-11-28T12:01:00.000Z', gaps: [] }];
      writeManifest(signManifest(unsigned, key));
      expect(await failed(), name).toEqual(['manifest: files[2].name is not a plain file name']);
    }
  });
});

describe('evidence verify: usage', () => {
  it('exits 2 without --key or with a --key that is no key; 1 for a folder without a manifest', async () => {
    expect((await runCli(['evidence', 'verify', folder])).code).toBe(2);
    const noKey = await runCli(['evidence', 'verify', folder, '--key', 'not-a-key']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('--key "not-a-key": not a base64 Ed25519 public key');
    const empty = join(root, 'empty');
    await mkdir(empty);
    const r = await runCli(['evidence', 'verify', empty, '--key', key.publicKeyBase64]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAILED {2}manifest: cannot read .*manifest\.json \(ENOENT\)/m);
    const missingLog = await cli('--audit', join(root, 'nope.log'));
    expect(missingLog.code).toBe(1);
    expect(missingLog.stdout).toMatch(/^FAILED {2}audit chain: cannot read/m);
  });
});
