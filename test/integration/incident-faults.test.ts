// Crash safety of incidents through the real CLI (issue 3; CONTRACT §4, §5): the agent's whole
// process group is SIGKILLed at chosen points (the CAMNODE_FAULT hook) and at random moments,
// then started again without the fault on the same config. Nothing acknowledged is lost,
// sealing resumes and its evidence verifies, and footage in a locked window is never pruned
// before its clip exists — with the ring kept at its quota (storage.maxBytes) the whole time,
// so the pruner is really deleting around the window.
// A SIGKILL keeps the page cache: these tests prove crash safety, not power-loss durability
// (lock-durability.test.ts observes the fsyncs).
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig, type CliResult } from '../helpers/agent.js';
import { listSegments, probeDuration, type SegmentFile } from '../helpers/segments.js';
import { seededRandom } from '../helpers/random.js';

const CAMERAS = ['front', 'back'];
// ~10 s of footage per camera (testsrc is encoded at ~2 Mbit/s): the ring reaches its quota a
// few seconds after start, and by the time a 3 s + 3 s window is due for sealing every older
// segment is gone — the next one the pruner would take is in the window, unless it is locked.
const PRESSURE_BYTES = '5.5MB';
// A segment is stamped when ffmpeg reports it closed, which lands late on a busy machine.
const JITTER_MS = 600;
const SEGMENT_MS = 1_000;
const POLL_MS = 100;

interface Incident {
  id: string;
  triggers: { at: string; via: string; by?: string; reason?: string }[];
  cameras: string[];
  window: { start: string; end: string };
  state: string;
}
interface ManifestFile { name: string; camera: string; bytes: number; start: string; end: string; gaps: { start: string; end: string }[] }
interface Manifest { incident: Incident; files: ManifestFile[] }
interface AuditEntry { seq: number; type: string; incident?: unknown; ts: string; [key: string]: unknown }
interface Reply { id: unknown; ok: boolean; data?: unknown; error?: { code: string; message: string } }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// A node on disk, and the agents run on it.

interface Node {
  dir: string;
  configPath: string;
  storage: string;
  stateDir: string;
  socket: string;
  sealedDir: string;
  agents: RunningAgent[];
  observer?: RingObserver;
}

async function makeNode(opts: { maxBytes?: string } = {}): Promise<Node> {
  const dir = await tempDir('camnode-faults-');
  const cameras = CAMERAS.map((id) => ({ id, source: 'testsrc', zone: 'entrance' }));
  const socket = join(dir, 'control.sock');
  const config = baseConfig(dir, cameras, {
    storage: opts.maxBytes ? { maxBytes: opts.maxBytes } : {},
    // The quota is kept tight on purpose: locks must not be refused for the share they pin.
    incident: { preRoll: '3s', postRoll: '3s', maxLockedPercent: 100 },
    control: { socket },
  });
  const configPath = await writeConfig(dir, config);
  const storage = join(dir, 'storage');
  return { dir, configPath, storage, stateDir: join(dir, 'state'), socket, sealedDir: join(storage, 'incidents'), agents: [] };
}

/** Registers the node's teardown with the running test: agents, stray processes, observer, files. */
function cleanupAfter(node: Node, ctx: TestContext): void {
  // The test's own hook, so each node is torn down with the test that made it.
  ctx.onTestFinished(async () => {
    for (const a of node.agents) a.killGroup();
    await Promise.all(node.agents.map((a) => a.exited));
    for (const pid of await processesUnder(node.storage)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await node.observer?.stop();
    await rm(node.dir, { recursive: true, force: true });
  });
}

function startAgent(node: Node, fault?: string): RunningAgent {
  const agent = RunningAgent.start(node.configPath, { env: fault ? { CAMNODE_FAULT: fault } : { CAMNODE_FAULT: '' } });
  node.agents.push(agent);
  return agent;
}

async function started(agent: RunningAgent): Promise<string> {
  const line = await agent.waitForLog((l) => l.msg === 'agent started', 'agent started', 60_000);
  return String(line['publicKey']);
}

/** Processes (ffmpeg recorders, a sealing ffmpeg) with an argument under this storage. */
async function processesUnder(storage: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(storage)) pids.push(Number(name));
  }
  return pids;
}

/** The agent died by SIGKILL, and nothing of its process group lives on with this storage. */
async function expectGroupDead(node: Node, agent: RunningAgent, fault?: string): Promise<void> {
  const code = await Promise.race([agent.exited, sleep(60_000).then(() => 'still running after 60 s' as const)]);
  expect(code, agent.stderrText).toBeNull();
  expect(agent.proc.signalCode).toBe('SIGKILL');
  if (fault) expect(agent.stderrText, 'the fault point was reached').toContain(`fault injected at ${fault}`);
  await waitFor(async () => (await processesUnder(node.storage)).length === 0, `no process left under ${node.storage}`, 10_000, 100);
}

// ---------------------------------------------------------------------------------------------
// Talking to the agent.

function ctlLock(node: Node, reason: string): Promise<CliResult> {
  return runCli(['ctl', 'lock', '--local', '--config', node.configPath, '--json', '--reason', reason, '--by', 'fault-test', '--timeout', '20s'], { timeoutMs: 40_000 });
}

async function ctlIncidents(node: Node): Promise<Incident[]> {
  const r = await runCli(['ctl', 'incidents', '--local', '--config', node.configPath, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { incidents: Incident[] }).incidents;
}

/** One request over the control socket; resolves with the reply, or null if none came. */
function socketRequest(path: string, cmd: string, args: unknown, timeoutMs: number): Promise<Reply | null> {
  return new Promise((resolve) => {
    const socket = connect(path);
    let buffered = '';
    const done = (r: Reply | null) => { clearTimeout(timer); socket.destroy(); resolve(r); };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 'faults', cmd, args })}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl >= 0) done(JSON.parse(buffered.slice(0, nl)) as Reply);
    });
    socket.on('error', () => done(null));
    socket.on('close', () => done(null));
  });
}

// ---------------------------------------------------------------------------------------------
// What is on disk.

async function readBookFile(node: Node): Promise<Incident[] | null> {
  let text: string;
  try {
    text = await readFile(join(node.stateDir, 'incidents.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return (JSON.parse(text) as { incidents: Incident[] }).incidents;
}

async function auditEntries(node: Node): Promise<AuditEntry[]> {
  const text = await readFile(join(node.stateDir, 'audit.log'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as AuditEntry);
}

const incidentOf = (e: AuditEntry): string | undefined =>
  typeof e.incident === 'string' ? e.incident : (e.incident as { id?: string } | undefined)?.id;

async function sealingDirs(node: Node): Promise<string[]> {
  return (await readdir(node.sealedDir).catch(() => [] as string[])).filter((n) => n.endsWith('.sealing'));
}

/**
 * Watches the ring from the outside, every POLL_MS, for the whole life of a node: every finished
 * segment seen, and per poll which incident folders existed. Within a poll the segments are
 * listed first, so "missing at poll j while the folder was absent at poll j" proves the segment
 * was gone before the clip was in place.
 */
class RingObserver {
  readonly seen = new Map<string, SegmentFile & { camera: string; firstPoll: number; gonePoll?: number }>();
  /** Per incident folder: the first poll that saw it. */
  readonly folderPoll = new Map<string, number>();
  polls = 0;
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(private readonly node: Node) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const poll = ++this.polls;
      const present = new Set<string>();
      for (const camera of CAMERAS) {
        for (const s of await listSegments(this.node.storage, camera)) {
          present.add(s.path);
          if (!this.seen.has(s.path)) this.seen.set(s.path, { ...s, camera, firstPoll: poll });
        }
      }
      for (const s of this.seen.values()) if (s.gonePoll === undefined && !present.has(s.path)) s.gonePoll = poll;
      for (const name of await readdir(this.node.sealedDir).catch(() => [] as string[])) {
        if (!name.endsWith('.sealing') && !this.folderPoll.has(name)) this.folderPoll.set(name, poll);
      }
      await sleep(POLL_MS);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Segments seen on the incident's cameras overlapping its window, ascending start. */
  windowSegments(incident: Incident, camera: string): (SegmentFile & { gonePoll?: number })[] {
    const start = Date.parse(incident.window.start);
    const end = Date.parse(incident.window.end);
    return [...this.seen.values()]
      .filter((s) => s.camera === camera && s.startMs < end && s.startMs + s.durationMs > start)
      .sort((a, b) => a.startMs - b.startMs);
  }

  /** Segments of the window gone before the incident's sealed folder existed. */
  prunedWhileLocked(incident: Incident): string[] {
    const sealedAt = this.folderPoll.get(incident.id) ?? Infinity;
    return incident.cameras.flatMap((c) => this.windowSegments(incident, c))
      .filter((s) => s.gonePoll !== undefined && s.gonePoll < sealedAt)
      .map((s) => `${s.path} (gone at poll ${s.gonePoll}, folder at poll ${sealedAt})`);
  }

  /** Segments of these cameras, outside the window, deleted between two polls. */
  deletedOutside(incident: Incident, fromPoll: number, toPoll: number): number {
    const start = Date.parse(incident.window.start);
    const end = Date.parse(incident.window.end);
    return [...this.seen.values()].filter((s) => incident.cameras.includes(s.camera) && s.gonePoll !== undefined
      && s.gonePoll > fromPoll && s.gonePoll <= toPoll && !(s.startMs < end && s.startMs + s.durationMs > start)).length;
  }
}

function observe(node: Node): RingObserver {
  node.observer = new RingObserver(node);
  return node.observer;
}

// ---------------------------------------------------------------------------------------------
// The end state of one incident: sealed, verified, and holding every locked segment.

async function waitSealed(node: Node, id: string, timeoutMs = 45_000): Promise<Incident> {
  return waitFor(async () => {
    const found = (await readBookFile(node))?.find((i) => i.id === id);
    return found?.state === 'sealed' && found;
  }, `incident ${id} sealed in the book`, timeoutMs, 250);
}

async function evidenceVerify(node: Node, id: string, key: string): Promise<CliResult> {
  return runCli(['evidence', 'verify', join(node.sealedDir, id), '--key', key, '--audit', join(node.stateDir, 'audit.log')]);
}

/**
 * The incident is sealed, its clips play and verify, and its clips hold all the footage the ring
 * had in its window: no locked segment was pruned before the clip existed, the clip starts and
 * ends where the observed footage does, and plays for as long as that footage lasts.
 */
async function expectSealedWhole(node: Node, incident: Incident, key: string): Promise<Manifest> {
  const dir = join(node.sealedDir, incident.id);
  expect(existsSync(dir), dir).toBe(true);
  const verified = await evidenceVerify(node, incident.id, key);
  expect(verified.code, `evidence verify ${incident.id}\n${verified.stdout}${verified.stderr}`).toBe(0);
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  expect(manifest.incident.id).toBe(incident.id);
  expect(manifest.files.map((f) => f.camera).sort()).toEqual([...incident.cameras].sort());

  const observer = node.observer!;
  expect(observer.prunedWhileLocked(incident), `locked segments of ${incident.id} pruned before its seal`).toEqual([]);
  for (const file of manifest.files) {
    // In ring order: a partial adopted after a kill is stamped from its last write, which can
    // put its end a frame before the end of the segment it follows.
    const segments = observer.windowSegments(incident, file.camera).sort((a, b) => a.seq - b.seq);
    const listing = `${file.name} (${file.start} – ${file.end}); segments seen:\n${segments.map((s) => `${basename(s.path)}${s.gonePoll ? ` (gone at poll ${s.gonePoll})` : ''}`).join('\n')}`;
    expect(segments.length, `segments of ${file.camera} seen in the window`).toBeGreaterThan(0);
    // Every segment the ring held in the window went into the clip: it begins with the first and
    // ends with the last, and plays for their total length.
    expect(Date.parse(file.start), `start of ${listing}`).toBe(segments[0]!.startMs);
    expect(Date.parse(file.end), `end of ${listing}`).toBe(segments.at(-1)!.startMs + segments.at(-1)!.durationMs);
    const total = segments.reduce((sum, s) => sum + s.durationMs, 0) / 1000;
    const seconds = await probeDuration(join(dir, file.name));
    expect(seconds, `ffprobe ${file.name}`).not.toBeNull();
    expect(Math.abs(seconds! - total), `${file.name} plays ${seconds} s, its segments total ${total} s`).toBeLessThan(0.6);
  }
  return manifest;
}

/**
 * The footage of a window the agent recorded without interruption is continuous, from the
 * window's start up to its end or `untilMs` (a kill: what ffmpeg was writing then is not
 * finished, so the finished footage ends up to a segment earlier).
 */
function expectContinuous(node: Node, incident: Incident, untilMs = Infinity): void {
  const start = Date.parse(incident.window.start);
  const end = Math.min(Date.parse(incident.window.end), untilMs - SEGMENT_MS);
  for (const camera of incident.cameras) {
    const segments = node.observer!.windowSegments(incident, camera).filter((s) => s.startMs < end);
    expect(segments[0]!.startMs, `${camera}: footage from the window's start`).toBeLessThanOrEqual(start + JITTER_MS);
    for (let i = 1; i < segments.length; i++) {
      const hole = segments[i]!.startMs - (segments[i - 1]!.startMs + segments[i - 1]!.durationMs);
      expect(hole, `${camera}: hole before ${segments[i]!.path}`).toBeLessThanOrEqual(JITTER_MS);
    }
    const last = segments.at(-1)!;
    expect(last.startMs + last.durationMs, `${camera}: footage up to ${new Date(end).toISOString()}`).toBeGreaterThanOrEqual(end - JITTER_MS);
  }
}

/** Waits until the ring is at its quota: the pruner has deleted footage. */
async function underPressure(agent: RunningAgent): Promise<void> {
  await agent.waitForLog((l) => l.msg === 'footage deleted by the ring', 'the ring pruning at its quota', 60_000);
}

/** After the seal, a clean stop, and the audit log whole. */
async function stopAndVerifyAudit(node: Node, agent: RunningAgent): Promise<void> {
  expect(await agent.stop('SIGTERM')).toBe(0);
  expect(await processesUnder(node.storage)).toEqual([]);
  for (const a of node.agents) expect(a.find((l) => l.msg === 'sealing failed; will retry'), 'a seal failed').toBeUndefined();
  const audit = await runCli(['audit', 'verify', '--config', node.configPath]);
  expect(audit.code, `${audit.stdout}${audit.stderr}`).toBe(0);
  expect(await sealingDirs(node), 'no .sealing folder remains').toEqual([]);
}

const bookCorrupt = (agent: RunningAgent) => agent.find((l) => l.msg.startsWith('incident book is corrupt'));

// ---------------------------------------------------------------------------------------------

// One at a time: five agents encoding ten x264 streams at once on two cores made the sub-second
// holes these tests assert depend on how busy the machine was.
describe('a SIGKILL of the process group at a fault point', () => {
  it('lock.returned: the lock was durable before the handler returned, so it survives unanswered', async (ctx) => {
    const node = await makeNode({ maxBytes: PRESSURE_BYTES });
    cleanupAfter(node, ctx);
    const observer = observe(node);
    const first = startAgent(node, 'lock.returned');
    await started(first);
    await underPressure(first);

    const ctl = await ctlLock(node, 'lock-returned');
    await expectGroupDead(node, first, 'lock.returned');
    // The reply never came: ctl says the node did not answer (exit 3), without waiting out --timeout.
    expect(ctl.code, ctl.stderr).toBe(3);
    expect(ctl.stdout).toBe('');
    expect(ctl.stderr).toContain('closed the connection without answering');
    const killPoll = observer.polls;

    // On disk before any restart: the book holds the incident and the audit log its lock.
    const onDisk = await readBookFile(node);
    expect(onDisk, 'incidents.json after the kill').not.toBeNull();
    expect(onDisk!.map((i) => i.state)).toEqual(['active']);
    const incident = onDisk![0]!;
    expect(incident.triggers).toMatchObject([{ via: 'local', by: 'fault-test', reason: 'lock-returned' }]);
    const audit = await auditEntries(node);
    expect(audit.filter((e) => e.type === 'lock').map(incidentOf)).toEqual([incident.id]);
    // Killed right after the lock was made.
    expectContinuous(node, incident, Date.parse(incident.triggers[0]!.at));

    const second = startAgent(node);
    const key = await started(second);
    expect(bookCorrupt(second)).toBeUndefined();
    const listed = await ctlIncidents(node);
    expect(listed.map((i) => i.id)).toEqual([incident.id]);
    expect(listed[0]!.window).toEqual(incident.window);

    const sealed = await waitSealed(node, incident.id);
    await sleep(3 * POLL_MS);
    await expectSealedWhole(node, sealed, key);
    // After the restart the ring went on deleting older footage while the window was held.
    expect(observer.deletedOutside(incident, killPoll, observer.folderPoll.get(incident.id)!), 'pruning after the restart').toBeGreaterThan(0);
    await stopAndVerifyAudit(node, second);
  });

  it('book.write.mid: an unacknowledged lock may be lost, but the book loads cleanly and locks again', async (ctx) => {
    const node = await makeNode({ maxBytes: PRESSURE_BYTES });
    cleanupAfter(node, ctx);
    const observer = observe(node);
    const first = startAgent(node, 'book.write.mid');
    await started(first);
    await underPressure(first);

    const ctl = await ctlLock(node, 'book-write-mid');
    await expectGroupDead(node, first, 'book.write.mid');
    expect(ctl.code, ctl.stderr).toBe(3);
    // Killed between the fsynced temp file and its rename: the temp is left behind.
    const stale = (await readdir(node.stateDir)).filter((n) => /^\.incidents\.json\.\d+\.tmp$/.test(n));
    expect(stale, 'the temp file the kill left').toHaveLength(1);
    const audited = (await auditEntries(node)).filter((e) => e.type === 'lock').map(incidentOf);

    const second = startAgent(node);
    const key = await started(second);
    expect(bookCorrupt(second)).toBeUndefined();
    expect(second.find((l) => l.msg === 'incident book loaded'), 'incident book loaded').toBeDefined();
    // Either outcome is allowed for the unacknowledged lock; whatever the book holds must be whole.
    const before = await ctlIncidents(node);
    expect(before.length).toBeLessThanOrEqual(1);
    // ...but what the audit log holds as locked, the book holds too.
    for (const id of audited) expect(before.map((i) => i.id)).toContain(id);

    // A window recorded wholly by this agent (its pre-roll after the restart).
    const restartedAt = Date.now();
    await waitFor(async () => (await listSegments(node.storage, CAMERAS[0]!)).filter((s) => s.startMs > restartedAt).length >= 4, 'footage after the restart', 30_000);
    const lock = await ctlLock(node, 'after-restart');
    expect(lock.code, lock.stderr).toBe(0);
    const { incident: id } = JSON.parse(lock.stdout) as { incident: string };
    const lockPoll = observer.polls;
    const onDisk = await readBookFile(node);
    expect(onDisk?.find((i) => i.id === id), 'the new lock is in incidents.json').toBeDefined();

    for (const i of before) await waitSealed(node, i.id);
    const sealed = await waitSealed(node, id);
    await sleep(3 * POLL_MS);
    await expectSealedWhole(node, sealed, key);
    for (const i of before) await expectSealedWhole(node, (await readBookFile(node))!.find((b) => b.id === i.id)!, key);
    expectContinuous(node, sealed);
    expect(observer.deletedOutside(sealed, lockPoll, observer.folderPoll.get(id)!), 'pruning while locked').toBeGreaterThan(0);
    await stopAndVerifyAudit(node, second);
  });

  const sealCases = [
    { point: 'seal.mid', corruptBook: false },
    { point: 'seal.before-rename', corruptBook: false },
    // The seal entry is in the audit log but the folder was never renamed into place: a book
    // rebuilt from the log must still seal it, not take the entry for a finished seal.
    { point: 'seal.before-rename', corruptBook: true },
  ] as const;
  for (const { point, corruptBook } of sealCases) {
    const title = corruptBook ? `${point}, then the book found corrupt` : point;
    it(`${title}: sealing resumes after the restart and the evidence verifies`, async (ctx) => {
      const node = await makeNode({ maxBytes: PRESSURE_BYTES });
      cleanupAfter(node, ctx);
      const observer = observe(node);
      const first = startAgent(node, point);
      await started(first);
      await underPressure(first);

      const lock = await ctlLock(node, point);
      expect(lock.code, lock.stderr).toBe(0);
      const { incident: id, extended } = JSON.parse(lock.stdout) as { incident: string; extended: boolean };
      expect(extended).toBe(false);
      const lockPoll = observer.polls;
      await expectGroupDead(node, first, point);

      // What the kill left: the incident `sealing`, a work folder, no sealed folder.
      const incident = (await readBookFile(node))!.find((i) => i.id === id)!;
      expect(incident.state).toBe('sealing');
      expect(existsSync(join(node.sealedDir, id)), 'no sealed folder yet').toBe(false);
      const work = (await readdir(join(node.sealedDir, `${id}.sealing`))).sort();
      const audit = await auditEntries(node);
      if (point === 'seal.mid') {
        // Killed after the first camera's clip: one clip, no manifest, no seal entry.
        expect(work).toEqual([`${incident.cameras[0]}.mp4`]);
        expect(audit.filter((e) => e.type === 'seal')).toEqual([]);
      } else {
        // Killed with everything written and the seal audited, before the folder was renamed.
        expect(work).toEqual([...incident.cameras.map((c) => `${c}.mp4`), 'manifest.json'].sort());
        expect(audit.at(-1)).toMatchObject({ type: 'seal', incident: id });
      }
      expectContinuous(node, incident);
      if (corruptBook) {
        const path = join(node.stateDir, 'incidents.json');
        const text = await readFile(path, 'utf8');
        await writeFile(path, text.slice(0, text.length / 2));
      }

      const second = startAgent(node);
      const key = await started(second);
      if (corruptBook) {
        expect(bookCorrupt(second), 'the corrupt book is reported').toBeDefined();
        expect(second.find((l) => l.msg === 'incidents restored into the book'), 'rebuilt from the audit log').toBeDefined();
      } else {
        expect(bookCorrupt(second)).toBeUndefined();
      }
      const sealed = await waitSealed(node, id);
      // The resumed seal runs behind a started agent: locks are taken meanwhile.
      const order = (msg: string) => second.logs.findIndex((l) => l.msg === msg && (msg !== 'incident sealed' || l['incident'] === id));
      expect(order('incident sealed')).toBeGreaterThan(order('agent started'));
      await sleep(3 * POLL_MS);
      const manifest = await expectSealedWhole(node, sealed, key);
      // Recorded without interruption: the clips have no gaps.
      for (const f of manifest.files) expect(f.gaps, f.name).toEqual([]);
      expect(observer.deletedOutside(incident, lockPoll, observer.folderPoll.get(id)!), 'pruning while locked').toBeGreaterThan(0);
      await stopAndVerifyAudit(node, second);
    });
  }
});

// ---------------------------------------------------------------------------------------------

const ITERATIONS = 8;
const MAX_KILL_DELAY_MS = 4_000;


describe('SIGKILLs of the process group at random moments', () => {
  it(`${ITERATIONS} kills: no acknowledged lock lost, every passed window sealed and verified, the audit log whole`, async (ctx) => {
    const given = process.env['CAMNODE_FAULT_SEED'];
    const seed = given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
    const random = seededRandom(seed);
    const why = (what: string) => `${what} (CAMNODE_FAULT_SEED=${seed})`;
    // No quota here: the sealed clips of a varying number of incidents pile up, and a ring
    // squeezed by them would rightly drop unlocked pre-roll. The pressure is the tests' above.
    const node = await makeNode();
    cleanupAfter(node, ctx);
    // Every clip is checked against the footage seen in its window (expectSealedWhole).
    observe(node);

    const acknowledged: { id: string; reason: string }[] = [];
    const unanswered: string[] = [];
    // When no agent was recording: from a kill until the next agent started.
    const downtimes: { from: number; to: number }[] = [];
    let downSince = -Infinity;
    const kills: string[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const agent = startAgent(node);
      await started(agent);
      downtimes.push({ from: downSince, to: Date.now() });
      expect(bookCorrupt(agent), why(`book of run ${i}`)).toBeUndefined();

      // Short delays are drawn more often: they land in the lock itself and in a seal resumed at
      // start. A run without a lock now and then lets a window pass, so seals are killed too.
      const delay = Math.round(MAX_KILL_DELAY_MS * random() ** 3);
      const reason = `loop-${i}`;
      const locking = random() < 0.75;
      const reply = locking ? socketRequest(node.socket, 'lock', { reason, by: 'fault-loop' }, 30_000) : Promise.resolve(null);
      await sleep(delay);
      downSince = Date.now();
      agent.killGroup();
      await expectGroupDead(node, agent);
      const r = await reply;
      if (r?.ok) acknowledged.push({ id: (r.data as { incident: string }).incident, reason });
      else if (locking) unanswered.push(reason);
      else expect(r, why(`run ${i}: a lock either answered ok or not at all`)).toBeNull();
      const phase = agent.logs.filter((l) => ['sealing', 'incident sealed', 'incident locked', 'incident extended'].includes(l.msg)).map((l) => l.msg).join(', ');
      kills.push(`run ${i}: killed ${delay} ms after ${locking ? `the lock request (${r?.ok ? 'acknowledged' : 'no reply'})` : 'start (no lock)'}; [${phase}]`);
    }
    console.info(`random kills, CAMNODE_FAULT_SEED=${seed}\n${kills.join('\n')}`);

    // One last start, left running until every window has passed and been sealed.
    const last = startAgent(node);
    const key = await started(last);
    downtimes.push({ from: downSince, to: Date.now() });
    expect(bookCorrupt(last), why('book at the last start')).toBeUndefined();
    const book = await waitFor(async () => {
      const incidents = await readBookFile(node);
      return incidents && incidents.every((i) => i.state === 'sealed') && incidents;
    }, why('every incident sealed'), 60_000, 250);
    await sleep(3 * POLL_MS);

    // Nothing acknowledged or durable is lost: every acknowledged lock, and every lock the audit
    // log holds, is an incident with its trigger.
    const ids = new Set(book.map((i) => i.id));
    for (const a of acknowledged) {
      expect(ids.has(a.id), why(`acknowledged ${a.id}`)).toBe(true);
      expect(book.find((i) => i.id === a.id)!.triggers.map((t) => t.reason), why(`triggers of ${a.id}`)).toContain(a.reason);
    }
    for (const e of await auditEntries(node)) {
      if (e.type === 'lock' || e.type === 'extend') expect(ids.has(incidentOf(e)!), why(`audited ${e.type} of ${incidentOf(e)}`)).toBe(true);
    }
    expect(acknowledged.length + book.length, why('some lock was made')).toBeGreaterThan(0);
    const kept = unanswered.filter((reason) => book.some((i) => i.triggers.some((t) => t.reason === reason)));
    console.info(`${acknowledged.length} locks acknowledged, ${unanswered.length} unanswered (${kept.length} of them durable anyway), ${book.length} incidents`);

    for (const incident of book) {
      const manifest = await expectSealedWhole(node, incident, key);
      // Footage is missing only where no agent was running.
      for (const f of manifest.files) {
        for (const gap of f.gaps) {
          const from = Date.parse(gap.start);
          const to = Date.parse(gap.end);
          const explained = downtimes.some((d) => from >= d.from - SEGMENT_MS - JITTER_MS && to <= d.to + 2 * SEGMENT_MS + JITTER_MS);
          expect(explained, why(`${incident.id}/${f.name}: gap ${gap.start} – ${gap.end} outside the downtimes`)).toBe(true);
        }
      }
    }
    await stopAndVerifyAudit(node, last);
  });
});
