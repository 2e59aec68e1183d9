// Chaos (issue 19): the whole node under sustained, random abuse, then checked from the outside.
// Four RTSP cameras play a pre-encoded file (no encoder per camera), 2-s segments go to a small
// real ext4 disk, the fleet link runs through a real Mosquitto with TLS and the ACL, sync goes to
// s3rver through a proxy that counts every upload. Meanwhile, at random: the fake button is
// pressed, ops lock and hold over MQTT (signed), cameras are killed and hung, the broker and
// the upstream stop and come back, and the agent is SIGKILLed — alone or with its recorders.
// Afterwards every acknowledged lock and hold must be in the book, sealed once, verified with
// the audit log, uploaded exactly once per file with identical bytes; no segment inside an
// acknowledged window deleted before its seal (inotify's record of every unlink); never two
// recorders for one camera; the audit chain whole; ops' events in order without gaps.
//
// CI runs CHAOS_MINUTES=2 (the default); `npm run chaos -- --minutes N` runs it longer and
// writes the table to bench/results/ (CHAOS_RESULTS). CHAOS_SEED repeats a run's schedule of
// attempts and each fault's choices (each kind draws from its own stream); which attempts fire
// still depends on what is running then, so a seed does not replay a run exactly.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { signingWith, type Signing } from '../../src/ops/signer.js';
import { runCli, RunningAgent, tempDir, waitFor, writeConfig, type LogLine } from '../helpers/agent.js';
import { LineClient } from '../helpers/line-client.js';
import { umount } from '../helpers/mounts.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';
import { startRtspServer, stopAllRtspServers, type RtspServer } from '../helpers/rtsp-server.js';
import { disposeAllS3rvers, startS3rver, writeS3Credentials, type S3Server } from '../helpers/s3.js';
import { killAgentAndRecorders, recorderPids } from '../helpers/segments.js';
import { iso } from '../../src/platform/clock.js';
import { seededRandom } from '../helpers/random.js';
import { OUTBOX_FILE, replayOutbox } from '../../src/fleet/outbox.js';

const exec = promisify(execFile);
const IS_ROOT = process.getuid?.() === 0;
const describeRoot = IS_ROOT || process.env['CI'] ? describe : describe.skip;

const MINUTES = Number(process.env['CHAOS_MINUTES'] ?? '2');
const SEED = Number(process.env['CHAOS_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const RESULTS = process.env['CHAOS_RESULTS'];
/** Mean seconds between SIGKILLs of the agent (each followed by a restart). */
const KILL_MEAN_S = Number(process.env['CHAOS_KILL_MEAN_S'] ?? '8');
if (!(KILL_MEAN_S >= 1)) throw new Error(`CHAOS_KILL_MEAN_S: seconds between kills, 1 or more (got ${process.env['CHAOS_KILL_MEAN_S']})`);
/**
 * The ring's quota grows with the run so that it wraps early and keeps wrapping: footage comes at
 * about 130 KB/s while every camera records, about half that under frequent kills, and the kept
 * clips (some 1 MB an incident, with the 4-s pre- and post-roll below) count against it too.
 */
const QUOTA_MB = Math.max(16, 4 * MINUTES);
const DISK_MB = 2 * QUOTA_MB + 64;
const NODE = 'chaos-1';
const PREFIX = 'camnode';
const BUCKET = 'footage';
const CAMERAS = ['cam-1', 'cam-2', 'cam-3', 'cam-4'];
const SEGMENT_S = 2;
/** After the abuse: every acknowledged incident must reach `synced` within this. */
const SETTLE_MS = 6 * 60_000;

/** A finished ring segment: SEQ_STARTMS_DURMS.ts. */
const SEGMENT_NAME = /^\d{12}_(\d+)_(\d+)\.ts$/;
const SEGMENT_PATH = /\/segments\/([^/]+)\/\d{12}_(\d+)_(\d+)\.ts$/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One pre-encoded camera file: 320x240@10, a keyframe a second, no B-frames, as a camera sends. */
async function makeCameraFile(path: string, seconds: number): Promise<void> {
  await exec('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=10`, '-t', String(seconds),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '10', '-bf', '0', '-pix_fmt', 'yuv420p', '-b:v', '250k', path]);
}

/** What the proxy saw: each upload that succeeded, by object key. */
interface UploadProxy {
  endpoint: string;
  /** Successful whole-object PUTs and completed multipart uploads, per key. */
  uploads: Map<string, number>;
  requests: number;
  /** Connections dropped as they came while the upstream was cut. */
  refused: number;
  /** Requests in flight when a cut came (an upload cut short among them). */
  cutShort: number;
  down: boolean;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of s3rver counting what the node uploaded. `down` makes it drop every
 * connection at once, as an upstream that vanished (s3rver's data stays whole).
 */
async function startUploadProxy(target: S3Server): Promise<UploadProxy> {
  const sockets = new Set<Socket>();
  const inFlight = new Set<object>();
  let down = false;
  const server: Server = createServer((req, res) => {
    state.requests++;
    if (down) {
      req.socket.destroy();
      return;
    }
    inFlight.add(req);
    res.on('close', () => inFlight.delete(req));
    const upstream = httpRequest({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const url = new URL(req.url ?? '/', 'http://proxy');
      const key = decodeURIComponent(url.pathname.replace(/^\/[^/]+\//, ''));
      const ok = (up.statusCode ?? 500) < 300;
      const whole = req.method === 'PUT' && !url.searchParams.has('uploadId') && !req.headers['x-amz-copy-source'];
      const completed = req.method === 'POST' && url.searchParams.has('uploadId');
      // Counted when the store answered it stored, whether or not the node lived to hear it:
      // what must hold is that the store was never given the same key twice.
      up.on('end', () => {
        if (ok && (whole || completed)) state.uploads.set(key, (state.uploads.get(key) ?? 0) + 1);
      });
      res.on('close', () => up.resume());
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    // A request cut short (the node killed, the link dropped) is cut short toward the store too.
    req.on('close', () => { if (!req.complete) upstream.destroy(); });
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    if (down) {
      state.refused++;
      s.destroy();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  const state: UploadProxy = {
    endpoint: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    uploads: new Map(), requests: 0, refused: 0, cutShort: 0,
    get down() { return down; },
    set down(v: boolean) {
      down = v;
      if (v) {
        state.cutShort += inFlight.size;
        inFlight.clear();
        for (const s of sockets) s.destroy();
      }
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return state;
}

/** An incident the node acknowledged (the log line of a press, an ok reply to ops), and when. */
interface Acked { id: string; via: 'button' | 'lock' | 'hold'; at: number }
interface Unlink { at: number; path: string }
interface EventMsg { id: number; type: string; raw: string }

describeRoot('chaos', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => console.error('cleanup:', err));
    await stopAllRtspServers();
    await stopAllMosquittos();
    await disposeAllS3rvers();
  });

  it(`${MINUTES} minutes of random faults, then every invariant checked from the outside`, async () => {
    // The schedule draws from one stream, each kind of fault from its own, all before any await.
    const random = seededRandom(SEED);
    const streamOf = (n: number) => seededRandom((SEED + n * 0x9e3779b9) >>> 0);
    const [holdRandom, killRandom, cameraRandom, brokerRandom, upstreamRandom] = [1, 2, 3, 4, 5].map(streamOf) as [() => number, () => number, () => number, () => number, () => number];
    const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    console.log(`chaos: ${MINUTES} min, seed ${SEED}`);
    const dir = await tempDir('camnode-chaos-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));

    // A small real disk: a loop-mounted ext4 image, as the branch's USB SSD.
    const media = join(dir, 'media');
    await mkdir(media);
    const image = join(dir, 'media.img');
    await exec('truncate', ['-s', `${DISK_MB}M`, image]);
    await exec('mkfs.ext4', ['-q', '-F', image]);
    await exec('mount', ['-o', 'loop', image, media]);
    cleanups.push(() => umount(media));
    const storage = join(media, 'storage');
    const stateDir = join(dir, 'state');

    // Cameras: one file, four servers. Longer runs than the file restart each camera at its end.
    const file = join(dir, 'camera.mkv');
    await makeCameraFile(file, Math.min(MINUTES * 60 + 600, 3600));
    const cameras: RtspServer[] = [];
    for (let i = 0; i < CAMERAS.length; i++) cameras.push(await startRtspServer({ file }));

    const broker: Mosquitto = await startMosquitto({ prefix: PREFIX, nodes: [NODE], ops: ['admin'] });
    const s3 = await startS3rver({ buckets: [BUCKET] });
    const proxy = await startUploadProxy(s3);
    cleanups.push(() => proxy.close());
    const credentials = await writeS3Credentials(dir);
    const admin = broker.certFor('ops:admin');
    const signing: Signing = signingWith({ certPem: await readFile(admin.cert, 'utf8'), keyPem: await readFile(admin.key, 'utf8') });

    const files = broker.certFor(NODE);
    const socket = join(dir, 'control.sock');
    const configPath = await writeConfig(dir, {
      node: { id: NODE, stateDir },
      storage: { path: storage, maxBytes: `${QUOTA_MB}MB`, reserve: '8MB' },
      recording: { segmentSeconds: SEGMENT_S },
      cameras: CAMERAS.map((id, i) => ({ id, source: cameras[i]!.url, zone: 'entrance' })),
      // Sealed clips count against the quota until disposed: let ops lock until 90 % is pinned.
      // Short rolls keep each clip small, so that the clips of a busy run leave the ring room.
      incident: { preRoll: '4s', postRoll: '4s', maxLength: '2m', maxLockedPercent: 90 },
      button: { backend: 'fake' },
      control: { socket },
      mqtt: { url: broker.url, ca: broker.caFile, cert: files.cert, key: files.key, keepalive: '2s', stateInterval: '10s' },
      upstream: { type: 's3', endpoint: proxy.endpoint, region: 'us-east-1', bucket: BUCKET, credentials },
    });

    // Every unlink in the ring, as it happens (finished segments are never renamed away).
    await mkdir(join(storage, 'segments'), { recursive: true });
    const unlinks: Unlink[] = [];
    const inotify: ChildProcess = spawn('inotifywait', ['-m', '-r', '-q', '--format', '%e %w%f', '-e', 'delete', join(storage, 'segments')], { stdio: ['ignore', 'pipe', 'ignore'] });
    cleanups.push(async () => { inotify.kill('SIGTERM'); });
    let inotifyBuf = '';
    inotify.stdout!.on('data', (d: Buffer) => {
      inotifyBuf += d.toString();
      let nl: number;
      while ((nl = inotifyBuf.indexOf('\n')) >= 0) {
        const line = inotifyBuf.slice(0, nl);
        inotifyBuf = inotifyBuf.slice(nl + 1);
        const path = line.slice(line.indexOf(' ') + 1);
        unlinks.push({ at: Date.now(), path });
      }
    });
    await sleep(500); // inotifywait sets its watches

    // Ops: a persistent MQTT 5 session, so events delivered while ops were away are queued.
    const ops: MqttClient = await mqtt.connectAsync(broker.url, {
      ...broker.tls('ops:admin'), protocolVersion: 5, clientId: `ops-chaos-${randomUUID().slice(0, 8)}`, clean: false,
      properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 500, connectTimeout: 5_000, keepalive: 5,
    });
    cleanups.push(() => ops.endAsync(true));
    ops.on('error', () => { /* reconnects by itself while the broker is down */ });
    const events: EventMsg[] = [];
    const replies = new Map<string, Record<string, unknown>>();
    const replyBase = `${PREFIX}/${NODE}/reply/ops:admin`;
    ops.on('message', (topic, payload) => {
      const raw = payload.toString('utf8');
      try {
        const body = JSON.parse(raw) as Record<string, unknown>;
        if (topic === `${PREFIX}/${NODE}/events`) events.push({ id: Number(body['id']), type: String(body['type']), raw });
        else if (topic.startsWith(replyBase)) replies.set(topic, body);
      } catch { /* not JSON: counted nowhere */ }
    });
    await ops.subscribeAsync([`${PREFIX}/${NODE}/events`, `${replyBase}/#`], { qos: 1 });

    // Never two recorders for one camera: ffmpeg processes writing to a camera's folder, and
    // rec-* files growing, sampled every 250 ms.
    const doubles: string[] = [];
    let lastSizes = new Map<string, number>();
    let growingBefore = new Map<string, Set<string>>();
    const sampler = setInterval(() => {
      void (async () => {
        const pids = await recorderPids(storage).catch(() => [] as number[]);
        const perCamera = new Map<string, number>();
        for (const pid of pids) {
          try {
            const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
            const cam = CAMERAS.find((c) => cmd.includes(`/segments/${c}/`));
            if (cam) perCamera.set(cam, (perCamera.get(cam) ?? 0) + 1);
          } catch { /* exited */ }
        }
        for (const [cam, n] of perCamera) if (n > 1) doubles.push(`${new Date().toISOString()} ${cam}: ${n} ffmpeg processes`);
        const sizes = new Map<string, number>();
        const growing = new Map<string, Set<string>>();
        for (const cam of CAMERAS) {
          const camDir = join(storage, 'segments', cam);
          let names: string[] = [];
          try { names = readdirSync(camDir).filter((n) => n.startsWith('rec-')); } catch { continue; }
          for (const n of names) {
            try {
              const size = statSync(join(camDir, n)).size;
              const path = join(camDir, n);
              sizes.set(path, size);
              if ((lastSizes.get(path) ?? -1) >= 0 && size > lastSizes.get(path)!) {
                const set = growing.get(cam) ?? new Set<string>();
                set.add(n);
                growing.set(cam, set);
              }
            } catch { /* renamed meanwhile */ }
          }
        }
        // A rotation makes two files grow in one interval; two writers make them grow in two running.
        for (const [cam, set] of growing) {
          const before = growingBefore.get(cam);
          if (set.size > 1 && before && before.size > 1 && [...set].filter((n) => before.has(n)).length > 1) {
            doubles.push(`${new Date().toISOString()} ${cam}: growing together ${[...set].join(', ')}`);
          }
        }
        lastSizes = sizes;
        growingBefore = growing;
      })();
    }, 250);
    cleanups.push(async () => clearInterval(sampler));

    // The agent, restarted after every kill as systemd would (RestartSec is 2 s; sooner here).
    // Each run of it is kept with its logs and when it was killed: a seal it cut short is redone.
    const generations: { agent: RunningAgent; startedAt: number; killedAt?: number }[] = [];
    const startAgent = (): RunningAgent => {
      const started = RunningAgent.start(configPath, { stdin: 'pipe', env: { CAMNODE_LOG_LEVEL: 'info' } });
      generations.push({ agent: started, startedAt: Date.now() });
      return started;
    };
    let agent = startAgent();
    cleanups.push(() => killAgentAndRecorders(agent, storage));
    const started = await agent.waitForLog((l) => l.msg === 'agent started', 'agent started', 60_000);
    const publicKey = String(started['publicKey']);
    let alive = true;

    const faults = { presses: 0, locks: 0, holds: 0, holdsAtTheEdge: 0, killsAgentAlone: 0, killsGroup: 0, cameraKills: 0, cameraHangs: 0, brokerStops: 0, upstreamStops: 0 };
    const acked: Acked[] = [];
    const refusedCommands: string[] = [];
    /** What became of each command ops sent: acknowledged, refused, no reply in time (the agent killed meanwhile), not sent (no broker). */
    const outcomes = { acked: 0, refused: 0, noReply: 0, notSent: 0 };

    const ackFromLog = async (logs: LogLine[], since: number, via: string): Promise<LogLine | undefined> => {
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        const hit = logs.slice(since).find((l) => (l.msg === 'incident locked' || l.msg === 'incident extended') && l['via'] === via);
        if (hit) return hit;
        await sleep(50);
      }
      return undefined;
    };

    const press = async () => {
      if (!alive) return;
      const logs = agent.logs;
      const since = logs.length;
      agent.press();
      faults.presses++;
      const hit = await ackFromLog(logs, since, 'button');
      if (hit) acked.push({ id: String(hit['incident']), via: 'button', at: Date.now() });
    };
    /** Sends a signed command; resolves with the reply's data if it was acknowledged. */
    const command = async (cmd: 'lock' | 'hold', args: Record<string, unknown>): Promise<{ incident: string; missing?: unknown[] } | undefined> => {
      const replyTo = `${replyBase}/chaos-${randomUUID()}`;
      const jws = await signing.sign(NODE, cmd, args, replyTo);
      try {
        await ops.publishAsync(`${PREFIX}/${NODE}/cmd/${cmd}`, JSON.stringify({ jws }), { qos: 1, properties: { responseTopic: replyTo, correlationData: Buffer.from('c') } });
      } catch {
        outcomes.notSent++;
        return; // the broker is down: never sent, never acknowledged
      }
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !replies.has(replyTo)) await sleep(50);
      const reply = replies.get(replyTo);
      if (!reply) {
        outcomes.noReply++;
        return;
      }
      if (reply['ok'] !== true) {
        outcomes.refused++;
        refusedCommands.push(`${cmd}: ${JSON.stringify(reply['error'])}`);
        return;
      }
      outcomes.acked++;
      const data = reply['data'] as { incident: string; missing?: unknown[] };
      acked.push({ id: String(data.incident), via: cmd, at: Date.now() });
      return data;
    };
    const lock = async () => {
      faults.locks++;
      await command('lock', { reason: 'chaos lock', by: 'chaos' });
    };
    /** A camera's finished segments in the ring, oldest first. */
    const ringSegments = (cam: string): { startMs: number; endMs: number }[] => {
      let names: string[] = [];
      try { names = readdirSync(join(storage, 'segments', cam)); } catch { return []; }
      return names.map((n) => SEGMENT_NAME.exec(n)).filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ startMs: Number(m[1]), endMs: Number(m[1]) + Number(m[2]) })).sort((a, b) => a.startMs - b.startMs);
    };
    /** A window over a camera's third to fifth oldest segments: what the ring deletes next. */
    const edgeWindow = (cam: string): { from: number; to: number } | undefined => {
      const segments = ringSegments(cam);
      return segments.length < 6 ? undefined : { from: segments[2]!.startMs, to: segments[4]!.endMs };
    };
    const hold = async () => {
      faults.holds++;
      // Half of them at the ring's oldest footage, racing its deletion; the rest some way back.
      const atTheEdge = holdRandom() < 0.5;
      const cam = pick(holdRandom, CAMERAS);
      const back = 10_000 + Math.floor(holdRandom() * 40_000);
      const now = Date.now();
      const edge = atTheEdge ? edgeWindow(cam) : undefined;
      if (edge) faults.holdsAtTheEdge++;
      const [from, to] = edge ? [edge.from, edge.to] : [now - back, now - back + 8_000];
      await command('hold', { from: iso(from), to: iso(to), reason: 'chaos hold', by: 'chaos', cameras: [cam] });
    };
    const killAgent = async () => {
      const alone = killRandom() < 0.5;
      const restartAfterMs = 200 + killRandom() * 1_500;
      if (!alive) return;
      alive = false;
      generations.at(-1)!.killedAt = Date.now();
      if (alone) {
        faults.killsAgentAlone++;
        agent.killAgentOnly();
      } else {
        faults.killsGroup++;
        agent.killGroup();
      }
      await agent.exited;
      await sleep(restartAfterMs);
      agent = startAgent();
      await agent.waitForLog((l) => l.msg === 'agent started', 'agent started after a kill', 60_000);
      alive = true;
    };
    const cameraFault = async () => {
      const cam = pick(cameraRandom, cameras);
      const killIt = cameraRandom() < 0.5;
      const outageMs = killIt ? 2_000 + cameraRandom() * 10_000 : 3_000 + cameraRandom() * 12_000;
      if (killIt) {
        faults.cameraKills++;
        await cam.kill();
        await sleep(outageMs);
        await cam.restart();
      } else {
        faults.cameraHangs++;
        cam.pause();
        await sleep(outageMs);
        cam.resume();
      }
    };
    const brokerStop = async () => {
      const outageMs = 3_000 + brokerRandom() * 15_000;
      faults.brokerStops++;
      await broker.stop(); // SIGTERM: Mosquitto keeps ops' queued events
      await sleep(outageMs);
      await broker.restart();
    };
    const upstreamStop = async () => {
      const outageMs = 5_000 + upstreamRandom() * 25_000;
      faults.upstreamStops++;
      proxy.down = true;
      await sleep(outageMs);
      proxy.down = false;
    };

    // First, while everything is up, one press and one signed lock that must be acknowledged:
    // the button and the ops path work, whatever the random schedule then leaves unanswered.
    await agent.waitForLog((l) => l.msg === 'connected to the broker', 'connected to the broker', 60_000);
    await press();
    await lock();
    expect(acked.map((x) => x.via), 'a press and a lock before any fault').toEqual(['button', 'lock']);

    // The schedule: each kind of fault fires at random, at most one of a kind at a time.
    const kinds: { name: string; meanS: number; run: () => Promise<void> }[] = [
      { name: 'press', meanS: 15, run: press },
      { name: 'lock', meanS: 25, run: lock },
      { name: 'hold', meanS: 30, run: hold },
      { name: 'kill', meanS: KILL_MEAN_S, run: killAgent },
      { name: 'camera', meanS: 20, run: cameraFault },
      { name: 'broker', meanS: 60, run: brokerStop },
      { name: 'upstream', meanS: 45, run: upstreamStop },
    ];
    const busy = new Set<string>();
    const running: Promise<void>[] = [];
    const failures: string[] = [];
    const endAt = Date.now() + MINUTES * 60_000;
    let lastReport = Date.now();
    while (Date.now() < endAt) {
      for (const k of kinds) {
        const fires = random() < 0.5 / k.meanS; // ticks of 0.5 s; drawn even when busy, so the schedule stays the seed's
        if (busy.has(k.name) || !fires) continue;
        busy.add(k.name);
        running.push(k.run().catch((err: unknown) => { failures.push(`${k.name}: ${String(err)}`); }).finally(() => busy.delete(k.name)));
      }
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        console.log(`chaos: ${Math.round((endAt - Date.now()) / 1000)} s left; ${JSON.stringify(faults)}; ${acked.length} acknowledged`);
      }
      await sleep(500);
    }
    await Promise.all(running);
    expect(failures, 'the harness itself').toEqual([]);

    // Calm: everything back, the agent running; every acknowledged incident must get to synced.
    for (const cam of cameras) if (cam.pid === -1) await cam.restart();
    if (broker.pid === -1) await broker.restart();
    proxy.down = false;
    if (!alive) throw new Error('agent not running after the schedule');
    // One hold at the ring's oldest footage that must be acknowledged: once it is sealed the ring
    // deletes those segments next, so the deletion check below is made on a window it reached.
    // Taken only if the whole window was still there when it held (else tried again).
    let edgeHold: { id: string; camera: string; startMs: number; endMs: number; ackedAt: number } | undefined;
    const edgeAttempts: string[] = [];
    for (let attempt = 0; attempt < 5 && !edgeHold; attempt++) {
      const w = edgeWindow(CAMERAS[0]!);
      const refusedBefore = refusedCommands.length;
      const data = w ? await command('hold', { from: iso(w.from), to: iso(w.to), reason: 'chaos hold at the ring\'s edge', by: 'chaos', cameras: [CAMERAS[0]] }) : undefined;
      if (w && data && (data.missing ?? []).length === 0) edgeHold = { id: data.incident, camera: CAMERAS[0]!, startMs: w.from, endMs: w.to, ackedAt: Date.now() };
      else {
        edgeAttempts.push(!w ? 'fewer than 6 segments of the camera in the ring' : data ? `held with footage missing: ${JSON.stringify(data.missing)}` : refusedCommands.length > refusedBefore ? refusedCommands.at(-1)! : 'no reply');
        await sleep(2_000);
      }
    }
    const ackedIds = [...new Set(acked.map((a) => a.id))];
    const client = await LineClient.open(socket);
    cleanups.push(async () => client.close());
    let book: { id: string; state: string; cameras: string[]; window: { start: string; end: string } }[] = [];
    const settleStart = Date.now();
    await waitFor(async () => {
      const reply = await client.ask(`${JSON.stringify({ id: 'incidents', cmd: 'incidents', args: {} })}\n`);
      book = (reply.data as { incidents: typeof book }).incidents;
      const states = new Map(book.map((i) => [i.id, i.state]));
      // Every acknowledged one synced, and every other one in the book finished too.
      return ackedIds.every((id) => states.get(id) === 'synced') && book.every((i) => i.state === 'synced' || i.state === 'damaged');
    }, 'every acknowledged incident synced', SETTLE_MS, 2_000).catch(() => undefined);
    const settleS = (Date.now() - settleStart) / 1000;
    // The ring goes on recording, and deletes the edge hold's segments once they are sealed (any
    // it deleted before the hold was acknowledged do not count: the hold kept what was left).
    const edgeReached = () => edgeHold && unlinks.some((u) => {
      if (u.at < edgeHold.ackedAt) return false;
      const m = SEGMENT_PATH.exec(u.path);
      return m !== null && m[1] === edgeHold.camera && Number(m[2]) < edgeHold.endMs && Number(m[2]) + Number(m[3]) > edgeHold.startMs;
    });
    await waitFor(edgeReached, 'the ring deleting the edge hold\'s segments after its seal', 120_000, 1_000).catch(() => undefined);
    const stopCode = await agent.stop();
    inotify.kill('SIGTERM');
    clearInterval(sampler);
    // Every event the broker took (the node's outbox says up to which) must reach ops.
    const outbox = replayOutbox(await readFile(join(stateDir, OUTBOX_FILE), 'utf8').catch(() => ''));
    const lastDelivered = outbox.pending.length > 0 ? outbox.pending[0]!.id - 1 : outbox.nextId - 1;
    const highestReceived = () => events.reduce((max, e) => Math.max(max, e.id), 0);
    await waitFor(() => highestReceived() >= lastDelivered, 'ops receiving every event the broker took', 20_000, 200).catch(() => undefined);

    // The checks.
    const states = new Map(book.map((i) => [i.id, i.state]));
    const notInBook = ackedIds.filter((id) => !states.has(id));
    const notSynced = ackedIds.filter((id) => states.has(id) && states.get(id) !== 'synced');

    const audit = (await readFile(join(stateDir, 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const sealEntries = new Map<string, { at: number; sha: string }[]>();
    for (const e of audit) {
      if (e['type'] !== 'seal') continue;
      const id = String(e['incident']);
      sealEntries.set(id, [...(sealEntries.get(id) ?? []), { at: Date.parse(String(e['ts'])), sha: String(e['manifestSha256']) }]);
    }
    /** When an incident's seal took: its last seal entry (an earlier one was cut short by a kill). */
    const sealedAt = (id: string): number => sealEntries.get(id)?.at(-1)?.at ?? Infinity;
    const allIds = book.map((i) => i.id);
    const sealProblems: string[] = [];
    let reseals = 0;
    for (const id of allIds) {
      const entries = sealEntries.get(id) ?? [];
      if (states.get(id) === 'damaged') continue;
      if (entries.length === 0) { sealProblems.push(`${id}: never sealed`); continue; }
      const manifest = await readFile(join(storage, 'incidents', id, 'manifest.json')).catch(() => null);
      if (!manifest || sha256(manifest) !== entries.at(-1)!.sha) sealProblems.push(`${id}: its manifest is not the one its last seal entry names`);
      // A seal entry is written before the folder is renamed into place; a kill between the two
      // makes the next start seal again. Any earlier entry must have been cut short so: the run
      // of the agent that wrote it was killed before the next entry, and never logged the seal done.
      for (let k = 1; k < entries.length; k++) {
        reseals++;
        const at = entries[k - 1]!.at;
        const run = [...generations].reverse().find((g) => g.startedAt <= at);
        const killedInIt = run?.killedAt !== undefined && run.killedAt >= at && run.killedAt <= entries[k]!.at;
        const finished = run?.agent.logs.some((l) => l.msg === 'incident sealed' && l['incident'] === id) ?? false;
        if (!killedInIt || finished) {
          sealProblems.push(`${id}: sealed again at ${iso(entries[k]!.at)}, though the agent that sealed it at ${iso(at)} ${finished ? 'had finished that seal' : 'was not killed before'}`);
        }
      }
    }

    const verifyFailures: string[] = [];
    for (const id of allIds.filter((i) => states.get(i) !== 'damaged')) {
      const folder = join(storage, 'incidents', id);
      if (!existsSync(folder)) { verifyFailures.push(`${id}: no folder`); continue; }
      const r = await runCli(['evidence', 'verify', folder, '--key', publicKey, '--audit', join(stateDir, 'audit.log')]);
      if (r.code !== 0) verifyFailures.push(`${id}: ${r.stdout}${r.stderr}`.slice(0, 400));
    }

    const uploadProblems: string[] = [];
    let filesChecked = 0;
    for (const id of allIds) {
      const folder = join(storage, 'incidents', id);
      if (!existsSync(folder)) continue;
      for (const name of (await readdir(folder)).filter((n) => n.endsWith('.mp4') || n === 'manifest.json')) {
        filesChecked++;
        const key = `incidents/${NODE}/${id}/${name}`;
        const count = proxy.uploads.get(key) ?? 0;
        if (count !== 1) uploadProblems.push(`${key}: uploaded ${count} times`);
        const head = await s3.head(BUCKET, key);
        if (!head) { uploadProblems.push(`${key}: not stored`); continue; }
        if (sha256(await s3.get(BUCKET, key)) !== sha256(await readFile(join(folder, name)))) uploadProblems.push(`${key}: stored bytes differ`);
      }
    }

    // A segment is named SEQ_STARTMS_DURMS.ts; one inside an acknowledged window must stay until
    // its incident is sealed (the clip is then the evidence and the ring may let it go).
    // Windows as the book has them at the end: a window only ever grows, a hold's is exact.
    const windows = new Map(book.map((i) => [i.id, { cameras: i.cameras, startMs: Date.parse(i.window.start), endMs: Date.parse(i.window.end) }]));
    // The check means something only if the ring deleted segments of such windows at all (after
    // their seal): counted, with the closest a deletion came after a seal.
    const lostSegments: string[] = [];
    let segmentDeletions = 0;
    let windowDeletions = 0;
    let closestAfterSealMs = Infinity;
    for (const u of unlinks) {
      const m = SEGMENT_PATH.exec(u.path);
      if (!m) continue;
      segmentDeletions++;
      const [cam, start, dur] = [m[1]!, Number(m[2]), Number(m[3])];
      let inWindow = false;
      for (const a of acked) {
        const w = windows.get(a.id);
        if (!w || !w.cameras.includes(cam) || u.at < a.at) continue;
        if (start >= w.endMs || start + dur <= w.startMs) continue;
        const sealed = sealedAt(a.id);
        if (u.at < sealed) lostSegments.push(`${u.path} deleted ${iso(u.at)} inside ${a.via} ${a.id} (sealed ${Number.isFinite(sealed) ? iso(sealed) : 'never'})`);
        else {
          inWindow = true;
          closestAfterSealMs = Math.min(closestAfterSealMs, u.at - sealed);
        }
      }
      if (inWindow) windowDeletions++;
    }

    const auditVerify = await runCli(['audit', 'verify', '--config', configPath]);

    // Events: ids rising by one without a gap; a duplicate is the same event.
    const byId = new Map<number, string>();
    const eventProblems: string[] = [];
    for (const e of events) {
      const seen = byId.get(e.id);
      if (seen !== undefined && seen !== e.raw) eventProblems.push(`event ${e.id} delivered twice with different payloads`);
      byId.set(e.id, e.raw);
    }
    if (events.length === 0) eventProblems.push('no events received');
    // Ops subscribed before the node's first start, with a fresh state dir: ids begin at 1.
    else if (Math.min(...events.map((e) => e.id)) !== 1) eventProblems.push(`the first event received is ${Math.min(...events.map((e) => e.id))}, not 1`);
    if (highestReceived() < lastDelivered) eventProblems.push(`the broker took events up to ${lastDelivered}; ops received up to ${highestReceived()}`);
    const ids = [...byId.keys()].sort((a, b) => a - b);
    for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]! + 1) eventProblems.push(`gap: ${ids[i - 1]} then ${ids[i]}`);
    // In order: a new id never arrives after a higher one (a redelivery of an old id may).
    const seenIds = new Set<number>();
    let highest = 0;
    for (const e of events) {
      if (!seenIds.has(e.id) && e.id < highest) eventProblems.push(`out of order: ${e.id} after ${highest}`);
      seenIds.add(e.id);
      highest = Math.max(highest, e.id);
    }

    const kills = faults.killsAgentAlone + faults.killsGroup;
    const invariants = [
      { name: 'every acknowledged lock/hold is in the book', held: notInBook.length === 0, detail: notInBook },
      { name: 'every acknowledged incident synced', held: notSynced.length === 0, detail: notSynced.map((id) => `${id}: ${states.get(id)}`) },
      { name: 'no incident damaged', held: !book.some((i) => i.state === 'damaged'), detail: book.filter((i) => i.state === 'damaged').map((i) => i.id) },
      { name: 'every incident sealed once: its folder\'s manifest is its last seal entry\'s, an earlier entry only where a kill cut that seal short', held: sealProblems.length === 0, detail: sealProblems },
      { name: '`evidence verify --audit` passes', held: verifyFailures.length === 0, detail: verifyFailures },
      { name: 'each sealed file stored upstream exactly once, identical bytes', held: uploadProblems.length === 0, detail: uploadProblems },
      { name: 'no segment of an acknowledged window deleted before its seal', held: lostSegments.length === 0, detail: lostSegments },
      { name: 'the agent stopped cleanly at the end (exit 0)', held: stopCode === 0, detail: stopCode === 0 ? [] : [`exit ${stopCode}`] },
      { name: 'never two recorders for one camera', held: doubles.length === 0, detail: doubles },
      { name: 'audit chain whole (`audit verify`)', held: auditVerify.code === 0, detail: auditVerify.code === 0 ? [] : [auditVerify.stdout + auditVerify.stderr] },
      { name: 'events in order without gaps', held: eventProblems.length === 0, detail: eventProblems },
      {
        name: 'the ring deleted segments of acknowledged windows after their seal (so the deletion check tested something)',
        held: windowDeletions > 0, detail: windowDeletions > 0 ? [] : [edgeHold ? `edge hold ${edgeHold.id}: none of its segments deleted` : `no edge hold: ${edgeAttempts.join('; ')}`],
      },
    ];
    const summary = [
      `# Chaos: ${MINUTES} minutes`,
      '',
      `Seed ${SEED} (\`CHAOS_SEED=${SEED}\` repeats the schedule of attempts); a SIGKILL every ${KILL_MEAN_S} s on average, then a restart. 4 RTSP cameras from a pre-encoded 320x240@10 file, 2-s segments on a ${DISK_MB} MB ext4 loop disk ` +
      `(storage.maxBytes ${QUOTA_MB}MB), TLS Mosquitto with the ACL, s3rver behind a counting proxy. Settle after the faults: ` +
      `${settleS.toFixed(0)} s until every incident in the book was synced.`,
      '',
      '| fault injected | count |',
      '|---|---|',
      `| panic-button presses | ${faults.presses} |`,
      `| MQTT locks (signed) | ${faults.locks} |`,
      `| MQTT holds (signed, in the past) | ${faults.holds} (${faults.holdsAtTheEdge} at the ring's oldest footage) |`,
      `| SIGKILL of the agent alone (recorders orphaned) | ${faults.killsAgentAlone} |`,
      `| SIGKILL of the whole group | ${faults.killsGroup} |`,
      `| camera killed (then back) | ${faults.cameraKills} |`,
      `| camera hung (SIGSTOP, then SIGCONT) | ${faults.cameraHangs} |`,
      `| broker stopped (then back) | ${faults.brokerStops} |`,
      `| upstream cut (connections dropped) | ${faults.upstreamStops} |`,
      '',
      `Acknowledged: ${ackedIds.length} incidents (${acked.filter((a) => a.via === 'button').length} presses, ${acked.filter((a) => a.via === 'lock').length} locks, ${acked.filter((a) => a.via === 'hold').length} holds); ` +
      `commands from ops: ${outcomes.acked} acknowledged, ${outcomes.refused} refused with a reason, ${outcomes.noReply} without a reply in 20 s (the agent killed meanwhile), ${outcomes.notSent} publishes failed; ${allIds.length} incidents in the book, ${reseals} seals redone after a kill; ${filesChecked} files checked upstream; ${segmentDeletions} segments deleted by the ring (inotify), ${windowDeletions} of them inside an acknowledged window after its seal (the closest ${Number.isFinite(closestAfterSealMs) ? `${(closestAfterSealMs / 1000).toFixed(1)} s` : '–'} after it); ` +
      `${events.length} events received (${byId.size} distinct, up to ${highestReceived()}; the node's outbox: delivered up to ${lastDelivered}); ` +
      `${proxy.requests} requests to the upstream, ${proxy.refused} connections refused while it was cut, ${proxy.cutShort} requests cut short.`,
      '',
      '| invariant | held |',
      '|---|---|',
      ...invariants.map((i) => `| ${i.name} | ${i.held ? 'yes' : `**NO** (${i.detail.length})`} |`),
      '',
      ...(refusedCommands.length ? ['Refusals:', '', ...[...new Set(refusedCommands)].slice(0, 10).map((r) => `- ${r}`), ''] : []),
    ].join('\n');
    console.log(summary);
    for (const i of invariants.filter((x) => !x.held)) console.log(`${i.name}:\n  ${i.detail.slice(0, 20).join('\n  ')}`);
    if (RESULTS) {
      await mkdir(RESULTS, { recursive: true });
      await writeFile(join(RESULTS, `${new Date().toISOString().slice(0, 10)}-chaos-${MINUTES}min.md`), summary);
    }
    expect(kills, 'SIGKILLs injected').toBeGreaterThan(0);
    expect(acked.filter((a) => a.via === 'button').length, 'acknowledged presses').toBeGreaterThan(0);
    expect(acked.filter((a) => a.via !== 'button').length, 'acknowledged locks and holds from ops').toBeGreaterThan(0);
    expect(segmentDeletions, 'segments the ring deleted (it must wrap for the deletion check to mean anything)').toBeGreaterThan(0);
    for (const i of invariants) expect(i.detail, i.name).toEqual([]);
  }, (MINUTES * 60 + SETTLE_MS / 1000 + 550) * 1000);
});
