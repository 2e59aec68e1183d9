// `camnode check`: the config and the environment, one row per check with a one-line fix.
// Each capability adds its rows.
import { openDirs, privateDirs } from './platform/private-dirs.js';
import { signageView } from './custody/signage.js';
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import ffmpeg from 'fluent-ffmpeg';
import type { Config } from './config/schema.js';
import { parseSource } from './config/schema.js';
import { redactUrl } from './config/redact.js';
import { formatBytes } from './config/units.js';
import { clockSynced, deviceModel } from './platform/device.js';
import { diskUsage, FRAGILE_FILESYSTEMS } from './platform/disk.js';
import { ffmpegVersion, MIN_FFMPEG, versionAtLeast } from './platform/ffmpeg.js';
import { probeWritable } from './platform/storage.js';
import { buildSampleArgs, chooseH264Encoder, type H264Encoder } from './recorder/args.js';
import { quotaBytes } from './store/eviction.js';
import { createButton } from './button/index.js';
import { readNodePublicKey } from './audit/keys.js';
import { readTakenTombstones } from './calls/index.js';
import { SpoolScanner } from './calls/scan.js';
import { tombstoneKey } from './calls/spool.js';
import { attributeCacheSeconds, mountOf } from './platform/mounts.js';
import { decodeThrottled, findSensors, parseThrottled } from './fleet/health.js';
import { silentLogger } from './platform/logger.js';
import { createStore } from './sync/target.js';

export type Verdict = 'pass' | 'warn' | 'fail';
export interface CheckRow { check: string; verdict: Verdict; detail: string; fix?: string }

export interface CheckDeps {
  ffmpegPath?: string;
  deviceRoot?: string;
  /** How long each camera is sampled for its bitrate. */
  sampleSeconds?: number;
  /** The mount table (tests give their own). */
  mountsPath?: string;
  /** Root of sysfs (tests give a fake tree with a Pi's firmware files). */
  sysfsRoot?: string;
  /** Whence the config in force (CONTRACT §1): the file, or a committed push. */
  configSource?: 'file' | 'pushed';
  /** Why a committed push is not in force, if one is there but does not load. */
  configFallback?: string;
}

interface CameraProbe { codec: string; width: number; height: number }

function ffprobeStream(input: string, inputOptions: string[]): Promise<CameraProbe> {
  return new Promise((resolve, reject) => {
    ffmpeg.ffprobe(input, inputOptions, (err, data) => {
      if (err) return reject(err instanceof Error ? err : new Error(String(err)));
      const video = data.streams.find((s) => s.codec_type === 'video');
      if (!video) return reject(new Error('no video stream'));
      resolve({ codec: video.codec_name ?? 'unknown', width: video.width ?? 0, height: video.height ?? 0 });
    });
  });
}

/** Bits per second measured from a short sample of the stream as the recorder would store it. */
function sampleBitrate(args: string[], seconds: number, ffmpegPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const child = execFile(ffmpegPath, args, { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024, timeout: (seconds + 20) * 1000 }, (err, _out, stderr) => {
      if (err) return reject(new Error(redactUrl(stderr.toString().trim().split('\n').pop() || err.message)));
      resolve((bytes * 8) / seconds);
    });
    child.stdout?.on('data', (chunk: Buffer) => { bytes += chunk.length; });
  });
}

function probeInput(source: ReturnType<typeof parseSource>): { input: string; options: string[] } | null {
  if (typeof source === 'string') return null;
  switch (source.kind) {
    case 'rtsp': return { input: source.url, options: ['-rtsp_transport', 'tcp', '-timeout', '5000000'] };
    case 'file': return { input: source.path, options: [] };
    case 'v4l2': return { input: source.device, options: ['-f', 'v4l2'] };
    case 'testsrc': return null;
  }
}

async function cameraRows(config: Config, deps: CheckDeps, encoder: H264Encoder): Promise<{ rows: CheckRow[]; bitrate: number }> {
  const rows: CheckRow[] = [];
  let bitrate = 0;
  const ffmpegPath = deps.ffmpegPath ?? 'ffmpeg';
  const seconds = deps.sampleSeconds ?? 3;
  await Promise.all(config.cameras.map(async (camera) => {
    const name = `camera ${camera.id}`;
    if (!camera.enabled) { rows.push({ check: name, verdict: 'pass', detail: 'disabled' }); return; }
    const source = parseSource(camera.source);
    if (typeof source === 'string') return;
    try {
      const probeIn = probeInput(source);
      const probe = probeIn ? await ffprobeStream(probeIn.input, probeIn.options) : { codec: 'h264', width: 640, height: 360 };
      const bps = await sampleBitrate(buildSampleArgs({ source, segmentSeconds: config.recording.segmentSeconds, rtspTimeoutMs: 5_000, encoder }, seconds), seconds, ffmpegPath);
      bitrate += bps;
      const encoded = source.kind === 'v4l2' || source.kind === 'testsrc' ? `, encoded with ${encoder}` : '';
      const verdict: Verdict = probe.codec === 'h264' || probe.codec === 'hevc' ? 'pass' : 'warn';
      rows.push({
        check: name, verdict,
        detail: `${redactUrl(camera.source)}: ${probe.codec} ${probe.width}x${probe.height}, ${Math.round(bps / 1000)} kbit/s${encoded}`,
        ...(verdict === 'warn' ? { fix: 'set the camera to H.264 or H.265' } : {}),
      });
    } catch (err) {
      // fluent-ffmpeg puts ffprobe's stderr after its own first line; the last line says why.
      const lines = (err as Error).message.split('\n').map((l) => l.trim()).filter(Boolean);
      rows.push({ check: name, verdict: 'fail', detail: `${redactUrl(camera.source)}: ${redactUrl((lines[lines.length - 1] ?? 'no answer').replace(`${camera.source}: `, ''))}`, fix: 'check the camera is powered, reachable and the URL/credentials are right' });
    }
  }));
  rows.sort((a, b) => a.check.localeCompare(b.check));
  return { rows, bitrate };
}

export async function runChecks(config: Config, deps: CheckDeps = {}): Promise<CheckRow[]> {
  const source = deps.configSource === 'pushed' ? 'pushed by central ops (camnode config reset returns to the file)' : 'file';
  const rows: CheckRow[] = [deps.configFallback
    ? { check: 'config', verdict: 'warn', detail: `node ${config.node.id}, ${config.cameras.length} camera(s); ${deps.configFallback}`, fix: 'push a valid config again, or camnode config reset' }
    : { check: 'config', verdict: 'pass', detail: `node ${config.node.id}, ${config.cameras.length} camera(s); source: ${source}` }];

  let ffmpegOk = false;
  try {
    const version = await ffmpegVersion(deps.ffmpegPath);
    ffmpegOk = versionAtLeast(version, MIN_FFMPEG);
    rows.push(ffmpegOk
      ? { check: 'ffmpeg', verdict: 'pass', detail: `ffmpeg ${version}` }
      : { check: 'ffmpeg', verdict: 'fail', detail: `ffmpeg ${version} is older than ${MIN_FFMPEG.join('.')}`, fix: 'install ffmpeg 5.0 or newer' });
  } catch (err) {
    rows.push({ check: 'ffmpeg', verdict: 'fail', detail: (err as Error).message, fix: 'apt-get install ffmpeg' });
  }

  let quota: number | null = null;
  try {
    const full = await probeWritable(join(config.storage.path, 'segments')) === 'full';
    const disk = await diskUsage(config.storage.path);
    const fragile = FRAGILE_FILESYSTEMS.has(disk.type);
    rows.push({
      check: 'storage', verdict: fragile || full ? 'warn' : 'pass',
      detail: `${config.storage.path}: ${full ? 'writable but FULL' : 'writable'}, ${disk.type}, ${formatBytes(disk.sizeBytes)} (${formatBytes(disk.freeBytes)} free)`,
      ...(full ? { fix: 'the agent frees its own oldest footage at start; if other files fill the disk, move them off it' }
        : fragile ? { fix: `reformat the media disk as ext4: ${disk.type} has no journal and loses more than the last write on power loss` } : {}),
    });
    quota = quotaBytes({ sizeBytes: disk.sizeBytes, usedBytes: disk.usedBytes, ownBytes: 0, maxUsePercent: config.storage.maxUsePercent, reserveBytes: config.storage.reserve, maxBytes: config.storage.maxBytes });
  } catch (err) {
    rows.push({ check: 'storage', verdict: 'fail', detail: (err as Error).message, fix: 'mount a writable disk at storage.path (ext4 recommended)' });
  }

  rows.push(await sdCardRow(config.storage.path, deps.mountsPath ?? '/proc/self/mounts'));
  rows.push(...await mediaRows(config));
  if (config.calls) rows.push(await callsRow(config.calls, config.storage.path, deps.mountsPath ?? '/proc/self/mounts'));

  const encoder = chooseH264Encoder(await deviceModel(deps.deviceRoot));
  if (ffmpegOk) {
    const cams = await cameraRows(config, deps, encoder);
    rows.push(...cams.rows);
    if (quota !== null && cams.bitrate > 0) {
      const days = quota / (cams.bitrate / 8) / 86_400;
      const maxAgeDays = config.storage.maxAge === undefined ? null : config.storage.maxAge / 86_400_000;
      const short = maxAgeDays !== null && days < maxAgeDays;
      rows.push({
        check: 'retention', verdict: short ? 'warn' : 'pass',
        detail: `quota ${formatBytes(quota)} holds ${days >= 2 ? `${days.toFixed(1)} days` : `${(days * 24).toFixed(1)} hours`} at ${Math.round(cams.bitrate / 1000)} kbit/s`,
        ...(short ? { fix: `maxAge is ${maxAgeDays} days but the disk holds fewer: add storage or lower camera bitrates` } : {}),
      });
    }
  }

  try {
    const button = (await createButton(config.button, { log: silentLogger() })).describe();
    rows.push({
      check: 'button', verdict: button.status,
      detail: `${button.backend}${button.line ? ` on ${button.line}` : ''}${button.led ? `, LED on ${button.led}` : ''}: ${button.note}`,
      ...(button.fix ? { fix: button.fix } : {}),
    });
  } catch (err) {
    rows.push({ check: 'button', verdict: 'fail', detail: (err as Error).message, fix: 'see docs/button.md' });
  }

  if (config.mqtt) {
    const { probeBroker } = await import('./fleet/probe.js');
    const broker = await probeBroker(config.mqtt, config.node.id);
    rows.push({ check: 'broker', verdict: broker.ok ? 'pass' : 'fail', detail: broker.detail, ...(broker.fix ? { fix: broker.fix } : {}) });
    if (config.mqtt.requireSignedCommands) rows.push(...await commandTrustRows(config));
    else rows.push({ check: 'commands', verdict: 'warn', detail: 'mqtt.requireSignedCommands is false: anyone who can publish on the broker commands this node', fix: 'remove mqtt.requireSignedCommands (test brokers only)' });
  } else {
    rows.push({ check: 'broker', verdict: 'pass', detail: 'no mqtt section: no fleet link' });
  }

  if (config.upstream.type === 'none') {
    rows.push({ check: 'upstream', verdict: 'pass', detail: 'none: incidents stay on the node until disposed of' });
  } else {
    try {
      const target = await createStore(config);
      rows.push({ check: 'upstream', verdict: 'pass', detail: await target!.store.probe() });
    } catch (err) {
      rows.push({ check: 'upstream', verdict: 'fail', detail: (err as Error).message, fix: config.upstream.type === 's3' ? 'check upstream.endpoint, bucket and the credentials (see docs/sync.md)' : 'mount the share at upstream.path and make it writable' });
    }
  }

  const publicKey = await readNodePublicKey(config.node.stateDir).then((k) => k, (err: unknown) => err as Error);
  if (typeof publicKey === 'string') rows.push({ check: 'node key', verdict: 'pass', detail: `Ed25519 public key ${publicKey}` });
  else if (publicKey === null) rows.push({ check: 'node key', verdict: 'pass', detail: `none yet: generated under ${config.node.stateDir} on the first start` });
  else rows.push({ check: 'node key', verdict: 'fail', detail: publicKey.message, fix: `restore ${config.node.stateDir}/node-key.pem from backup; the key is the node's identity` });

  rows.push(await powerRow(deps.sysfsRoot ?? '/sys'));

  const synced = await clockSynced();
  rows.push(synced === true
    ? { check: 'clock', verdict: 'pass', detail: 'synchronised (NTP)' }
    : synced === false
      ? { check: 'clock', verdict: 'warn', detail: 'not synchronised', fix: 'enable NTP (timedatectl set-ntp true); until then footage time is uncertain' }
      : { check: 'clock', verdict: 'warn', detail: 'the OS does not report whether the clock is synchronised', fix: 'run systemd-timesyncd or chrony' });
  return rows;
}

/** Who can read the footage (CONTRACT §7), whether sealed clips are encrypted, and the signage. */
async function mediaRows(config: Config): Promise<CheckRow[]> {
  const dirs = privateDirs(config.storage.path, config.node.stateDir);
  const open = await openDirs(dirs);
  // The agent narrows the folders its user owns when it starts (its user: the state folder's owner).
  const agentUid = await stat(config.node.stateDir).then((s) => s.uid, () => process.getuid?.() ?? -1);
  const narrowed = open.every((o) => o.uid === agentUid);
  const recipients = config.upstream.encryptTo.length;
  const signage = signageView(config.policy?.signage, Date.now());
  return [
    open.length === 0
      ? { check: 'media access', verdict: 'pass', detail: 'footage, sealed incidents and state: the camnode user and group only' }
      : {
        check: 'media access', verdict: narrowed ? 'warn' : 'fail',
        detail: `${open.map((o) => `${o.path} (mode ${o.mode})`).join(', ')}: other users can read footage or the node's key` +
          (narrowed ? '; the agent narrows them when it starts (its user owns them)' : '; the agent cannot narrow a folder another user owns'),
        fix: `chmod o-rwx ${open.map((o) => o.path).join(' ')}`,
      },
    { check: 'encryption', verdict: 'pass', detail: recipients > 0
      ? `sealed clips are encrypted to ${recipients} age recipient${recipients === 1 ? '' : 's'}; the ring stays plaintext for its retention`
      : 'sealed clips are kept in plaintext (no upstream.encryptTo); the ring is plaintext for its retention' },
    signage.status === 'ok'
      ? { check: 'signage', verdict: 'pass', detail: signage.detail }
      : { check: 'signage', verdict: 'warn', detail: signage.detail, fix: 'post the signs, check them, and set policy.signage {posted: true, checkedAt: <date>}' },
  ];
}

/**
 * CONTRACT §9: footage on the SD card wears it out and fills the system's own disk. Warns when
 * storage.path is on an SD/MMC device or on the root filesystem (the SD card on a Pi).
 */
export async function sdCardRow(storagePath: string, mountsPath: string): Promise<CheckRow> {
  const check = 'media disk';
  const mount = mountOf(storagePath, await readFile(mountsPath, 'utf8').catch(() => ''));
  if (!mount) return { check, verdict: 'pass', detail: `${storagePath}: its mount is not known here` };
  const sd = /^\/dev\/mmcblk/.test(mount.source);
  if (sd || mount.point === '/') {
    return {
      check, verdict: 'warn',
      detail: `${storagePath} is on ${sd ? `the SD card (${mount.source})` : `the root filesystem (${mount.source})`}: continuous recording wears an SD card out and fills the system's disk`,
      fix: 'record onto a USB SSD mounted at storage.path (ext4, mounted with noatime)',
    };
  }
  return { check, verdict: 'pass', detail: `${storagePath} on ${mount.source} (${mount.type}${mount.options.includes('noatime') ? ', noatime' : ''})` };
}

/** CONTRACT §9: a Raspberry Pi's firmware on under-voltage and throttling, now and since boot. */
export async function powerRow(sysfsRoot: string): Promise<CheckRow> {
  const check = 'power';
  const { getThrottled } = await findSensors(sysfsRoot);
  const text = getThrottled ? await readFile(getThrottled, 'utf8').catch(() => null) : null;
  const bits = text === null ? null : parseThrottled(text);
  if (bits === null) return { check, verdict: 'pass', detail: 'no Raspberry Pi firmware report here (get_throttled)' };
  const { now, occurred } = decodeThrottled(bits);
  if (now.length === 0 && occurred.length === 0) return { check, verdict: 'pass', detail: 'no under-voltage or throttling since boot' };
  const under = now.includes('under-voltage') || occurred.includes('under-voltage');
  return {
    check, verdict: 'warn',
    detail: `${now.length > 0 ? `now: ${now.join(', ')}` : 'not now'}; since boot: ${occurred.join(', ') || 'none'} (get_throttled 0x${bits.toString(16)})`,
    fix: under ? 'use the official power supply (Pi 4: 5.1 V 3 A, Pi 5: 5.1 V 5 A) and power a USB SSD from it, not from a weak hub' : 'cool the Pi (case with airflow, heatsink or fan)',
  };
}

/** A spool file not taken this long after its last write: the agent is not taking calls. */
const STALE_WAITING_MS = 3_600_000;

/**
 * CONTRACT §8: the phone system's spool — readable, writable when camnode removes what it took,
 * the files still waiting, and a network mount's attribute cache against `settle`.
 */
export async function callsRow(calls: NonNullable<Config['calls']>, storagePath: string, mountsPath: string): Promise<CheckRow> {
  const check = 'calls';
  const want = constants.R_OK | constants.X_OK | (calls.keepSource ? 0 : constants.W_OK);
  try {
    if (!(await stat(calls.watch)).isDirectory()) return { check, verdict: 'fail', detail: `${calls.watch} is not a folder`, fix: 'set calls.watch to the folder the phone system records into' };
    await access(calls.watch, want);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return {
      check, verdict: 'fail', detail: `${calls.watch}: ${code === 'ENOENT' ? 'missing' : `cannot be ${calls.keepSource ? 'read' : 'read and written'} (${code})`}`,
      fix: code === 'ENOENT' ? 'mount the phone system\'s recordings at calls.watch (see docs/calls.md)'
        : `let camnode's user ${calls.keepSource ? 'read' : 'read and delete in'} it (group membership or the share's options; see docs/calls.md)`,
    };
  }
  // Files the agent has not taken yet (still being written, settling, or the agent is not running).
  const scan = await new SpoolScanner(calls.watch, calls.pattern).pass(true);
  const taken = await readTakenTombstones(join(storagePath, 'calls'));
  let waiting = 0;
  let stale = 0;
  for (const rel of scan.added) {
    const st = await stat(join(calls.watch, rel)).catch(() => null);
    if (!st || taken.has(tombstoneKey(rel, { size: st.size, mtimeMs: st.mtimeMs }))) continue;
    waiting++;
    if (Date.now() - st.mtimeMs > STALE_WAITING_MS) stale++;
  }
  const mount = mountOf(calls.watch, await readFile(mountsPath, 'utf8').catch(() => ''));
  const cacheS = mount ? attributeCacheSeconds(mount) : null;
  const parts = [
    `${calls.watch}: readable${calls.keepSource ? '' : ' and writable'}${mount && cacheS !== null ? ` (${mount.type} from ${mount.source})` : ''}`,
    `${scan.added.length} recording(s), ${waiting} not yet taken`,
    ...(scan.unreadable.length > 0 ? [`${scan.unreadable.length} sub-folder(s) unreadable`] : []),
  ];
  if (cacheS !== null && calls.settle < cacheS * 1000) {
    return {
      check, verdict: 'warn', detail: `${parts.join('; ')}; settle ${calls.settle / 1000}s is shorter than the mount's attribute cache (${cacheS}s): a call still being written can look finished`,
      fix: `set calls.settle to at least ${cacheS + 5}s, or mount with actimeo=${Math.max(1, Math.floor(calls.settle / 2000))}`,
    };
  }
  if (stale > 0 || scan.unreadable.length > 0) {
    return {
      check, verdict: 'warn', detail: `${parts.join('; ')}${stale > 0 ? `; ${stale} unchanged for over an hour` : ''}`,
      fix: stale > 0 ? 'start the agent (systemctl start camnode); it takes finished recordings on its next pass' : 'let camnode\'s user read every sub-folder of calls.watch',
    };
  }
  return { check, verdict: 'pass', detail: parts.join('; ') };
}

/** CONTRACT §7: the fleet CA that signed commands are checked against, and revocation. */
async function commandTrustRows(config: Config): Promise<CheckRow[]> {
  const rows: CheckRow[] = [];
  const caFile = config.fleet?.ca ?? config.mqtt?.ca;
  const { readAnchors } = await import('./fleet/trust.js');
  let anchors: Awaited<ReturnType<typeof readAnchors>> = [];
  try {
    anchors = await readAnchors(caFile!);
    rows.push({ check: 'fleet CA', verdict: 'pass', detail: `commands must be signed by a principal of ${anchors.map((a) => `"${a.subject}"`).join(', ')} (${caFile})` });
  } catch (err) {
    rows.push({ check: 'fleet CA', verdict: 'fail', detail: (err as Error).message, fix: 'install the fleet CA certificate (ca.crt from fleet-ca.sh) and name it in fleet.ca or mqtt.ca' });
    return rows;
  }
  const crlFile = config.fleet?.crl;
  if (crlFile === undefined) {
    rows.push({ check: 'fleet CRL', verdict: 'warn', detail: 'no fleet.crl: the node checks revocations only from the CRL the broker publishes (if any)', fix: 'copy the CA\'s crl.pem to the node and set fleet.crl' });
    return rows;
  }
  try {
    const { readCrl, crlNumber } = await import('./fleet/revocation.js');
    const crl = await readCrl(await readFile(crlFile), anchors);
    const next = crl.nextUpdate;
    if (next && next.getTime() <= Date.now()) {
      rows.push({ check: 'fleet CRL', verdict: 'fail', detail: `${crlFile} (number ${crlNumber(crl)}) expired ${next.toISOString()}: custodian and admin commands are refused`, fix: 'run fleet-ca.sh crl DIR --publish and copy the new crl.pem here' });
    } else {
      rows.push({ check: 'fleet CRL', verdict: 'pass', detail: `${crlFile}: number ${crlNumber(crl)}, ${crl.entries.length} revoked, valid until ${next?.toISOString() ?? 'no date'}` });
    }
  } catch (err) {
    rows.push({ check: 'fleet CRL', verdict: 'fail', detail: `${crlFile}: ${(err as Error).message}`, fix: 'copy the CA\'s crl.pem (fleet-ca.sh crl DIR) to fleet.crl' });
  }
  return rows;
}

export function renderChecks(rows: readonly CheckRow[], color: boolean): string {
  const paint = (v: Verdict): string => {
    if (!color) return v;
    return v === 'pass' ? `\x1b[32m${v}\x1b[0m` : v === 'warn' ? `\x1b[33m${v}\x1b[0m` : `\x1b[31m${v}\x1b[0m`;
  };
  const width = Math.max(...rows.map((r) => r.check.length), 5);
  const lines = [`${'CHECK'.padEnd(width)}  RESULT  DETAIL`];
  for (const r of rows) {
    lines.push(`${r.check.padEnd(width)}  ${paint(r.verdict)}${' '.repeat(6 - r.verdict.length)}  ${r.detail}`);
    if (r.fix) lines.push(`${' '.repeat(width)}          fix: ${r.fix}`);
  }
  return lines.join('\n');
}
