// The one config schema (CONTRACT §2): types, defaults, ranges and the documentation of each
// field come from here. `docs/config.md` is generated from it (npm run docs:config).
import { isAbsolute, relative, resolve } from 'node:path';
import { z } from 'zod';
import { parseDuration, parseRate, parseSize } from './units.js';
import { parseRecipient } from '../platform/age.js';

/** Zones where policy forbids cameras, and the reason quoted back to the installer. */
export const PRIVATE_ZONES = ['restroom', 'changing-room', 'lactation-room', 'private-office'] as const;
export const PUBLIC_ZONES = [
  'entrance', 'collections', 'seating', 'service-desk', 'delivery', 'parking', 'staff-area', 'other-public',
] as const;
export const PRIVACY_POLICY =
  'district camera policy: cameras are placed only in public areas, never in restrooms, changing rooms, lactation rooms or private offices';

function unit(kind: string, parse: (v: unknown) => number | null, example: string) {
  return z.union([z.string(), z.number()]).meta({ unit: kind }).transform((v, ctx) => {
    const n = parse(v);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `not a ${kind}: ${JSON.stringify(v)} (e.g. ${example})` });
      return z.NEVER;
    }
    return n;
  });
}
/** Milliseconds. */
const duration = () => unit('duration', parseDuration, '90s, 5m, 2h, 30d');
/** Bytes. */
const size = () => unit('size', parseSize, '512MB, 2GiB');
/** Bits per second. */
const rate = () => unit('rate', parseRate, '500kbit, 4Mbit');

/** An age X25519 recipient: "age1" and 58 bech32 characters. */

export const SOURCE_FORMS = 'rtsp://, rtsps://, v4l2:/dev/videoN, file:PATH, testsrc';

export type Source =
  | { kind: 'rtsp'; url: string }
  | { kind: 'v4l2'; device: string }
  | { kind: 'file'; path: string }
  | { kind: 'testsrc' };

/** Parses a camera source string; returns an error message for the field when it is not one. */
export function parseSource(source: string): Source | string {
  if (source === 'testsrc') return { kind: 'testsrc' };
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(source)?.[1]?.toLowerCase();
  if (scheme === 'rtsp' || scheme === 'rtsps') {
    try {
      const url = new URL(source);
      if (!url.hostname) return 'rtsp URL has no host';
    } catch {
      return `not a valid ${scheme} URL`;
    }
    return { kind: 'rtsp', url: source };
  }
  if (scheme === 'v4l2') {
    const device = source.slice('v4l2:'.length);
    if (!/^\/dev\/video\d+$/.test(device)) return `v4l2 source must name a device like v4l2:/dev/video0, got "${device}"`;
    return { kind: 'v4l2', device };
  }
  if (scheme === 'file') {
    const path = source.slice('file:'.length);
    if (!path) return 'file source needs a path, e.g. file:/srv/loop.mp4';
    return { kind: 'file', path };
  }
  if (scheme) return `unsupported scheme "${scheme}" (use ${SOURCE_FORMS})`;
  return `unsupported source "${source}" (use ${SOURCE_FORMS})`;
}

/** Ids that name something else: the phone system's recordings (§8), and upstream/MQTT folders. */
export const RESERVED_CAMERA_IDS = ['calls'] as const;
export const RESERVED_NODE_IDS = ['releases', 'audit', '_fleet', '_ctl'] as const;

const reserved = (kind: string, ids: readonly string[]) => (id: string, ctx: z.RefinementCtx) => {
  if (ids.includes(id)) ctx.addIssue({ code: 'custom', message: `"${id}" is reserved (${kind} ids ${ids.map((i) => `"${i}"`).join(', ')} name something else)` });
};

const camera = z.strictObject({
  id: z.string().regex(/^[a-z0-9-]{1,32}$/, 'must match [a-z0-9-]{1,32}').superRefine(reserved('camera', RESERVED_CAMERA_IDS))
    .describe('Camera id; names its folder and its clips. `calls` is reserved.'),
  name: z.string().optional().describe('Display name. Default: the id.'),
  source: z.string().superRefine((s, ctx) => {
    const parsed = parseSource(s);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  }).describe(`Where the video comes from: ${SOURCE_FORMS}.`),
  zone: z.string().superRefine((zone, ctx) => {
    if ((PRIVATE_ZONES as readonly string[]).includes(zone)) {
      ctx.addIssue({ code: 'custom', message: `"${zone}" is a private area and cannot be recorded (${PRIVACY_POLICY})` });
    } else if (!(PUBLIC_ZONES as readonly string[]).includes(zone)) {
      ctx.addIssue({ code: 'custom', message: `unknown zone "${zone}" (use one of ${PUBLIC_ZONES.join(', ')})` });
    }
  }).describe(`Public area the camera covers: ${PUBLIC_ZONES.join(' | ')}. Private areas (${PRIVATE_ZONES.join(', ')}) are refused.`),
  enabled: z.boolean().default(true).describe('Record this camera.'),
});

const node = z.strictObject({
  id: z.string().regex(/^[a-z0-9-]{1,64}$/, 'must match [a-z0-9-]{1,64}').superRefine(reserved('node', RESERVED_NODE_IDS))
    .describe('Node id: the MQTT identity and the upstream folder. `releases` and `audit` are reserved.'),
  site: z.string().optional().describe('Branch name. Default: the id.'),
  stateDir: z.string().min(1).default('/var/lib/camnode').describe('Incident book, outbox, audit log and keys (kept off the media disk).'),
});

const storage = z.strictObject({
  path: z.string().min(1).describe('Segments and sealed clips (a USB SSD on a Pi).'),
  maxUsePercent: z.number().int().min(10).max(99).default(90).describe('The filesystem\'s used bytes never exceed this share of its size.'),
  reserve: size().prefault('1GiB').describe('Free bytes never fall below this.'),
  maxBytes: size().optional().describe('Optional cap on what camnode itself stores here.'),
  maxAge: duration().optional().describe('Optional: footage older than this is deleted even with room left.'),
});

const recording = z.strictObject({
  segmentSeconds: z.number().int().min(1).max(60).default(10).describe('Length of each ring segment in seconds (1–60).'),
});

const incident = z.strictObject({
  preRoll: duration().prefault('2m').describe('How far back a lock reaches.'),
  postRoll: duration().prefault('5m').refine((ms) => ms > 0, 'must be longer than 0').describe('How long after a trigger it keeps locking (more than 0).'),
  maxLength: duration().prefault('1h').describe('A lock extended by later triggers stops growing here.'),
  maxHold: duration().prefault('24h').describe('The longest range one hold may keep (footage reported after the fact: `ctl hold`).'),
  maxLockedPercent: z.number().min(1).max(100).default(50)
    .describe('Locks, holds and kept clips together may pin at most this share of the quota: a lock or hold command beyond it is refused (conflict); a button press always locks and raises storage.pressure.'),
});

const button = z.strictObject({
  backend: z.enum(['auto', 'onoff', 'gpiod', 'fake', 'none']).default('auto').describe('Panic-button backend.'),
  pin: z.number().int().min(0).max(63).optional().default(17).describe('BCM number of the panic button.'),
  activeLow: z.boolean().default(true).describe('The button pulls the line low when pressed.'),
  debounce: duration().prefault('50ms').describe('Edges closer than this count once.'),
  ledPin: z.number().int().min(0).max(63).optional().describe('Optional BCM number of the status LED.'),
  heartbeat: z.boolean().default(false).describe('A short LED flash every 5 s while the agent records, so staff see the box is alive.'),
});

const mqtt = z.strictObject({
  url: z.string().regex(/^(mqtts?|wss?):\/\/[^/]+/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL').describe('Broker URL.'),
  protocolVersion: z.union([z.literal(5), z.literal('3.1.1')]).default(5).describe('MQTT protocol version: 5 or "3.1.1".'),
  keepalive: duration().prefault('30s').describe('MQTT keepalive.'),
  ca: z.string().optional().describe('CA certificate (required for mqtts:// and wss://).'),
  cert: z.string().optional().describe('Client certificate, CN = node id (required for mqtts:// and wss://).'),
  key: z.string().optional().describe('Client key (required for mqtts:// and wss://).'),
  prefix: z.string().regex(/^[^#+]+$/, 'must not contain MQTT wildcards').default('camnode').describe('Topic prefix.'),
  stateInterval: duration().prefault('60s').describe('Publish the state at least this often.'),
  requireSignedCommands: z.boolean().default(true)
    .describe('Commands over MQTT must be signed by an ops certificate of the fleet CA (false: test brokers only).'),
}).superRefine((m, ctx) => {
  if (/^(mqtts|wss):/.test(m.url)) {
    for (const field of ['ca', 'cert', 'key'] as const) {
      if (!m[field]) ctx.addIssue({ code: 'custom', path: [field], message: `required for ${m.url.split(':')[0]}:// URLs` });
    }
  }
});

const control = z.strictObject({
  socket: z.string().min(1).default('/run/camnode/control.sock').describe('Local control socket (mode 0660).'),
});

const upstream = z.strictObject({
  type: z.enum(['s3', 'dir', 'none']).default('none').describe('Where sealed incidents go.'),
  endpoint: z.string().url().optional().describe('S3 endpoint; omit for AWS.'),
  region: z.string().default('us-east-1').describe('S3 region.'),
  bucket: z.string().optional().describe('S3 bucket (required for type s3).'),
  prefix: z.string().default('incidents').describe('Key prefix.'),
  credentials: z.string().optional().describe('File with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; else the environment.'),
  path: z.string().optional().describe('Folder (required for type dir).'),
  maxRate: rate().optional().describe('Optional bandwidth cap.'),
  window: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$/, 'must be "HH:MM-HH:MM" local time').optional()
    .describe('Optional local-time window for incidents locked with urgent: false.'),
  encryptTo: z.array(z.string().superRefine((r, ctx) => {
    try {
      parseRecipient(r);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  })).max(20).default([])
    .describe('age recipients (age-keygen\'s "age1…" public keys): each sealed clip is encrypted to all of them (`<camera>.mp4.age`); the ring stays plaintext.'),
}).superRefine((u, ctx) => {
  if (u.type === 's3' && !u.bucket) ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'required for type s3' });
  if (u.type === 'dir' && !u.path) ctx.addIssue({ code: 'custom', path: ['path'], message: 'required for type dir' });
});

const fleet = z.strictObject({
  ca: z.string().min(1).optional().describe('CA that issues ops certificates, to verify signed commands. Default: mqtt.ca.'),
  crl: z.string().min(1).optional().describe('Optional revocation list file (PEM), re-read when it changes.'),
  rollbackAfter: duration().prefault('2m').describe('A pushed config or an update must prove itself within this, else it is rolled back.'),
  releaseKey: z.string().superRefine((k, ctx) => {
    if (!/^[A-Za-z0-9+/]{43}=$/.test(k) || Buffer.from(k, 'base64').length !== 32) {
      ctx.addIssue({ code: 'custom', message: 'not a base64 Ed25519 public key (32 bytes, 44 characters)' });
    }
  }).optional().describe('Ed25519 public key (base64) that signs releases.'),
});

const audit = z.strictObject({
  headInterval: duration().prefault('5m').describe('How often the node signs its audit log\'s head upstream.'),
});

const signage = z.strictObject({
  posted: z.boolean().describe('Signs telling the public about the cameras are posted.'),
  checkedAt: z.string().superRefine((d, ctx) => {
    if (!/^\d{4}-\d{2}-\d{2}(T.*)?$/.test(d) || Number.isNaN(Date.parse(d))) ctx.addIssue({ code: 'custom', message: `not a date: ${JSON.stringify(d)} (e.g. 2026-11-02)` });
  }).describe('When the signs were last checked (YYYY-MM-DD).'),
  recheckEvery: duration().prefault('180d').describe('Signs are checked again at least this often.'),
});

const policy = z.strictObject({
  signage: signage.optional().describe('The signage attestation, shown in check, the state and the report.'),
});

const calls = z.strictObject({
  watch: z.string().min(1).describe('Where the phone system writes finished recordings.'),
  pattern: z.string().min(1).default('*.wav').describe('Glob of recordings, sub-folders included.'),
  settle: duration().prefault('10s').describe('A file unchanged this long (size and mtime) is finished.'),
  startFrom: z.string().default('mtime').superRefine((v, ctx) => {
    if (v === 'mtime') return;
    let re: RegExp;
    try {
      re = new RegExp(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a regular expression: ${(err as Error).message}` });
      return;
    }
    if (!/\(\?<(epoch|iso)>/.test(re.source)) ctx.addIssue({ code: 'custom', message: 'a regular expression here needs a named group `epoch` or `iso`' });
  }).describe('How a call\'s start time is found: `mtime` (mtime − duration) or a regex with a named group `epoch` or `iso`.'),
  keepSource: z.boolean().default(true).describe('The phone system keeps its own copy.'),
});

export const configSchema = z.strictObject({
  node: node.describe('This box.'),
  storage: storage.describe('The media disk and the ring\'s quota on it.'),
  recording: recording.prefault({}).describe('How footage is cut.'),
  cameras: z.array(camera).min(1, 'at least one camera is required').superRefine((cams, ctx) => {
    const seen = new Map<string, number>();
    cams.forEach((c, i) => {
      const first = seen.get(c.id);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate camera id "${c.id}" (also cameras[${first}])` });
      else seen.set(c.id, i);
    });
  }).describe('The cameras this node records (at least one, ids unique).'),
  incident: incident.prefault({}).describe('Incident windows (locks).'),
  button: button.prefault({}).describe('The panic button and its LED. Omitted: backend auto.'),
  mqtt: mqtt.optional().describe('The fleet link. Omitted: no fleet link.'),
  control: control.prefault({}).describe('Local commands.'),
  upstream: upstream.prefault({}).describe('Where sealed incidents are synced. Omitted: type none.'),
  fleet: fleet.optional().describe('Who may command this node, and how pushed configs and updates prove themselves (releaseKey: updates are not built yet, ignored).'),
  audit: audit.optional().describe('The audit log leaving the node (with an upstream): chunks, and a signed head every headInterval.'),
  policy: policy.optional().describe('The district policy\'s attestations (signage), shown in check, the state and the report.'),
  calls: calls.optional().describe('The phone system\'s call recordings, kept under the same retention (CONTRACT §8).'),
}).superRefine((c, ctx) => {
  // CONTRACT §7: with signing required (the default), someone must be able to sign.
  // (An mqtts:// URL without mqtt.ca is refused for that already: one line, one fix.)
  if (c.mqtt?.requireSignedCommands && !c.fleet?.ca && !c.mqtt.ca && !/^(mqtts|wss):/.test(c.mqtt.url)) {
    ctx.addIssue({ code: 'custom', path: ['fleet', 'ca'], message: 'required to verify signed commands' });
  }
  // The ring's own folders would be taken as the phone system's recordings, and each call again.
  if (c.calls && insideOrSame(c.calls.watch, c.storage.path)) {
    ctx.addIssue({ code: 'custom', path: ['calls', 'watch'], message: `must not be storage.path or inside it (${c.storage.path}): camnode would take its own copies as new calls` });
  }
});

function insideOrSame(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

export type Config = z.output<typeof configSchema>;
export type CameraConfig = Config['cameras'][number];

/**
 * Keys of the contract's second batch whose features are not built yet and that this config
 * sets to something other than their default: accepted, validated, and ignored with one log
 * line at start. Each feature removes its keys from here when it lands.
 */
export function unbuiltSettings(config: Config): string[] {
  const out: string[] = [];
  if (config.fleet?.releaseKey !== undefined) out.push('fleet.releaseKey');
  return out;
}
export { upstream as upstreamSchema };
