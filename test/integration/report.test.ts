// The retention report (CONTRACT §7) after an accelerated recorded "day" on the real agent: two
// cameras with 1-s segments on a small quota and a short maxAge, a lock, a hold, a still, a
// custodian's signed disclosure over a real Mosquitto (TLS, roster ACL) and a dispose. Every
// unlink is seen from outside by inotifywait (Debian's inotify-tools) and every finished
// segment's size by a poller; the report's deletion figures must equal what was seen, and the
// rest must equal the files and the book. The HTML is opened in headless Chromium: no console
// errors, one SVG timeline per camera, and a PNG screenshot kept in test-artifacts/.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { killAgentAndRecorders, listSegments } from '../helpers/segments.js';
import { requestLocal } from '../../src/control/socket.js';
import type { Report } from '../../src/custody/report.js';

const run = promisify(execFile);
const NODE = 'branch-9';
const CAMERAS = ['door', 'desk'];
const ARTIFACTS = join(import.meta.dirname, '..', '..', 'test-artifacts');
const FINISHED = /^(\d{12})_(\d{1,15})_(\d{1,9})\.ts$/;

let broker: Mosquitto;
let dir: string;
let storage: string;
let agent: RunningAgent | undefined;
let watcher: ChildProcess;
let unlinks = '';
/** Every finished segment seen, by path: its size (finished segments never change). */
const sizes = new Map<string, number>();
let polling = true;
let poller: Promise<void>;

function config(over: { storage: Record<string, unknown> }): Record<string, unknown> {
  return baseConfig(dir, CAMERAS.map((id) => ({ id, source: 'testsrc', zone: id === 'door' ? 'entrance' : 'service-desk' })), {
    node: { id: NODE, site: 'Koelbel Library' },
    storage: { reserve: '1MB', ...over.storage },
    incident: { preRoll: '2s', postRoll: '1s', maxLockedPercent: 100 },
    control: { socket: join(dir, 'control.sock') },
    mqtt: { url: broker.url, ca: broker.caFile, cert: broker.certFor(NODE).cert, key: broker.certFor(NODE).key, keepalive: '2s', stateInterval: '60s' },
    upstream: { type: 'dir', path: join(dir, 'upstream') },
    policy: { signage: { posted: true, checkedAt: new Date().toISOString().slice(0, 10) } },
  });
}

async function startAgent(configPath: string): Promise<RunningAgent> {
  const a = RunningAgent.start(configPath);
  await a.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker', 60_000);
  return a;
}

function ctlAs(cn: string, ...args: string[]): Promise<CliResult> {
  const files = broker.certFor(cn);
  return runCli(['ctl', ...args], { env: { CAMNODE_CTL_BROKER: broker.url, CAMNODE_CTL_CA: broker.caFile, CAMNODE_CTL_CERT: files.cert, CAMNODE_CTL_KEY: files.key }, timeoutMs: 60_000 });
}

async function local(cmd: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const reply = await requestLocal(join(dir, 'control.sock'), cmd, args, 20_000);
  if (!reply.ok) throw new Error(`${cmd}: ${JSON.stringify(reply.error)}`);
  return reply.data as Record<string, unknown>;
}

async function pollSizes(): Promise<void> {
  while (polling) {
    for (const camera of CAMERAS) for (const s of await listSegments(storage, camera)) if (!sizes.has(s.path)) sizes.set(s.path, s.bytes);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  broker = await startMosquitto({ nodes: [NODE], ops: ['cleo:custodian', 'vera:viewer'] });
  dir = await tempDir('camnode-report-');
  storage = join(dir, 'storage');
  await mkdir(join(storage, 'segments'), { recursive: true });
  await mkdir(join(storage, 'incidents'), { recursive: true });
  await mkdir(join(dir, 'upstream'));
  await mkdir(ARTIFACTS, { recursive: true });
  watcher = spawn('inotifywait', ['-m', '-r', '-e', 'delete', '--format', '%w%f', storage], { stdio: ['ignore', 'pipe', 'pipe'] });
  watcher.stdout!.on('data', (b: Buffer) => { unlinks += b.toString(); });
  await new Promise<void>((resolve, reject) => {
    watcher.stderr!.on('data', (b: Buffer) => { if (b.toString().includes('Watches established')) resolve(); });
    watcher.on('error', reject);
  });
  poller = pollSizes();
}, 90_000);

afterAll(async () => {
  polling = false;
  await poller;
  watcher?.kill();
  if (agent) await killAgentAndRecorders(agent, storage);
  await rm(dir, { recursive: true, force: true });
  await stopAllMosquittos();
});

describe('the retention report after an accelerated day', () => {
  it('deletions equal every unlink seen from outside; footage, incidents, stills and disclosures equal the files and the book', async () => {
    // The "day": a quota of ~25 s of footage and a 20 s maxAge, so the ring deletes all along.
    const dayConfig = await writeConfig(dir, config({ storage: { maxBytes: '12MB', maxAge: '20s' } }));
    agent = await startAgent(dayConfig);
    await waitFor(async () => (await listSegments(storage, 'desk')).length >= 6, 'footage on both cameras', 60_000);

    // A lock, synced, disclosed by a custodian's signed command.
    const locked = (await local('lock', { reason: 'patron fell', by: 'desk staff' }))['incident'] as string;
    await waitFor(async () => (await local('incident', { incident: locked }))['state'] === 'synced', 'the lock synced', 90_000, 250);
    const disclosed = await ctlAs('ops:cleo', 'disclose', NODE, locked, '--legal-basis', 'court-order', '--reference', 'CO-77', '--agency', 'State Police', '--requested-by', 'Sgt. Vale');
    expect(disclosed.code, disclosed.stderr).toBe(0);
    // A hold over footage already recorded, then synced and disposed of.
    const now = Date.now();
    const held = (await local('lock', { from: new Date(now - 8_000).toISOString(), to: new Date(now - 5_000).toISOString(), reason: 'reported later', by: 'manager', cameras: ['door'] }))['incident'] as string;
    await waitFor(async () => (await local('incident', { incident: held }))['state'] === 'synced', 'the hold synced', 90_000, 250);
    const heldManifest = JSON.parse(await readFile(join(storage, 'incidents', held, 'manifest.json'), 'utf8')) as { files: { name: string; camera: string; bytes: number }[] };
    await local('dispose', { incident: held, by: 'manager', reason: 'reviewed: nothing happened' });
    // A still, on the record.
    const still = await runCli(['ctl', 'still', '--local', '--config', dayConfig, 'desk', '--at', '-3s', '--purpose', 'incident-review', '--reason', 'who was at the desk', '--by', 'manager', '-o', join(dir, 'still.jpg')], { timeoutMs: 60_000 });
    expect(still.code, still.stderr).toBe(0);
    // The day goes on until the ring has deleted plenty of each camera's footage.
    const deletedOf = (camera: string): number => unlinks.split('\n').filter((p) => p.startsWith(join(storage, 'segments', camera) + '/')).length;
    await waitFor(() => CAMERAS.every((c) => deletedOf(c) >= 20), 'the ring deleting footage', 120_000, 500);

    // The day ends: the node is started again with room to spare and no maxAge, so nothing more
    // is deleted while the report is asked for and compared.
    await agent.stop();
    const calmConfig = await writeConfig(dir, config({ storage: { maxBytes: '2GB' } }), 'calm.yaml');
    agent = await startAgent(calmConfig);
    const asked = await ctlAs('ops:vera', 'report', NODE, '--format', 'json');
    expect(asked.code, asked.stderr).toBe(0);
    const report = JSON.parse(asked.stdout) as Report;
    polling = false;
    await poller;
    await new Promise((r) => setTimeout(r, 500));

    // Deletions by the ring: per camera, exactly the finished segments unlinked, and their bytes.
    const seen = unlinks.split('\n').filter(Boolean);
    for (const camera of CAMERAS) {
      const gone = seen.filter((p) => p.startsWith(join(storage, 'segments', camera) + '/') && FINISHED.test(p.split('/').at(-1)!));
      const c = report.cameras.find((x) => x.id === camera)!;
      const counted = c.deleted.quota.count + c.deleted.age.count;
      expect(counted, `${camera}: segments the report says were deleted vs unlinks seen`).toBe(gone.length);
      expect(gone.length, `${camera}: the ring deleted footage during the day`).toBeGreaterThan(10);
      const bytes = gone.reduce((n, p) => n + sizes.get(p)!, 0);
      expect(gone.every((p) => sizes.has(p)), 'every deleted segment was seen before it went').toBe(true);
      expect((c.deleted.quota.bytes ?? 0) + (c.deleted.age.bytes ?? 0), `${camera}: bytes`).toBe(bytes);
      // Each deleted segment lies inside a range the report gives for it.
      const ranges = [...c.deleted.quota.ranges, ...c.deleted.age.ranges].map((r) => [Date.parse(r.from), Date.parse(r.to)] as const);
      for (const p of gone) {
        const [, , startMs, durMs] = FINISHED.exec(p.split('/').at(-1)!)!.map(Number) as [number, number, number, number];
        expect(ranges.some(([a, b]) => startMs >= a && startMs + durMs <= b), `${p} within a reported range`).toBe(true);
      }
      // The oldest footage is the oldest file on disk (nothing is deleted now).
      const files = await listSegments(storage, camera);
      expect(c.oldest).toBe(new Date(Math.min(...files.map((f) => f.startMs))).toISOString());
      expect(c.retainedSeconds).toBeGreaterThan(10);
    }

    // The disposed hold: its clip, with the size its manifest gave, and inotify saw it go.
    const door = report.cameras.find((c) => c.id === 'door')!;
    expect(door.deleted.dispose).toEqual({ count: 1, bytes: heldManifest.files[0]!.bytes, ranges: [expect.objectContaining({ incident: held })] });
    expect(report.cameras.find((c) => c.id === 'desk')!.deleted.dispose.count).toBe(0);
    expect(seen).toContain(join(storage, 'incidents', held, heldManifest.files[0]!.name));

    // Incidents kept: the book's, with who, why, synced and the disclosure.
    const book = JSON.parse(await readFile(join(dir, 'state', 'incidents.json'), 'utf8')) as { incidents: { id: string; state: string }[] };
    expect(report.incidents.map((i) => i.id)).toEqual(book.incidents.filter((i) => i.state !== 'disposed').map((i) => i.id).sort());
    expect(report.incidents.find((i) => i.id === locked)).toMatchObject({
      kind: 'lock', by: 'desk staff', via: 'local', reason: 'patron fell', state: 'synced', synced: true,
      disclosures: [{ n: 1, legalBasis: 'court-order', reference: 'CO-77', agency: 'State Police', by: 'ops:cleo' }],
    });
    expect(report.stills).toEqual([expect.objectContaining({ camera: 'desk', purpose: 'incident-review', by: 'manager', reason: 'who was at the desk' })]);
    expect(report.signage.status).toBe('ok');
    expect(report.auditStart).toBe('first-start');
    const firstEntry = JSON.parse((await readFile(join(dir, 'state', 'audit.log'), 'utf8')).split('\n')[0]!) as { ts: string };
    expect(report.coveredFrom).toBe(firstEntry.ts);
    expect(report).toMatchObject({ node: NODE, site: 'Koelbel Library', upstream: 'dir' });

    // Rendered: text on the node itself, and the HTML in a real browser.
    const text = await runCli(['report', '--config', calmConfig]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^Retention report: Koelbel Library \(node branch-9\)/);
    expect(text.stdout).toMatch(/disclosed .* on court-order CO-77 to State Police/);
    const html = join(ARTIFACTS, 'report.html');
    const written = await ctlAs('ops:vera', 'report', NODE, '--format', 'html', '-o', html);
    expect(written.code, written.stderr).toBe(0);
    const page = await readFile(html, 'utf8');
    expect(page).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    const png = join(ARTIFACTS, 'report.png');
    await rm(png, { force: true });
    const shot = await run('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr', '--v=0', `--screenshot=${png}`, '--window-size=1200,1600', `file://${html}`], { timeout: 120_000 });
    expect(shot.stderr).not.toMatch(/CONSOLE\(\d+\)|Uncaught|Failed to load resource/);
    expect((await stat(png)).size).toBeGreaterThan(10_000);
    const dom = (await run('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${html}`], { timeout: 120_000, maxBuffer: 16 << 20 })).stdout;
    expect(dom.match(/<svg class="timeline"/g)).toHaveLength(CAMERAS.length);
    expect(dom).toContain('CO-77');
    console.log(`report screenshot: ${png}`);
  }, 600_000);
});
