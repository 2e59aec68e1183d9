import { describe, expect, it } from 'vitest';
import { ConfigError, formatPath, parseConfigText, resolveConfigPath, validateConfig } from '../../src/config/load.js';
import { parseSource, unbuiltSettings } from '../../src/config/schema.js';
import { parseDuration, parseRate, parseSize } from '../../src/config/units.js';
import { redactUrl } from '../../src/config/redact.js';

const minimal = { node: { id: 'koelbel-01' }, storage: { path: '/srv/camnode' }, cameras: [{ id: 'entrance', source: 'testsrc', zone: 'entrance' }] };

function problems(doc: unknown): string[] {
  try {
    validateConfig(doc);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}
const withCamera = (cam: Record<string, unknown>) => ({ ...minimal, cameras: [{ id: 'x', source: 'testsrc', zone: 'entrance', ...cam }] });

describe('units', () => {
  it('sizes: decimal, binary, plain bytes', () => {
    expect(parseSize('512MB')).toBe(512e6);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseSize(1234)).toBe(1234);
    expect(parseSize('1234')).toBe(1234);
    expect(parseSize('1.5kB')).toBe(1500);
    expect(parseSize('12 parsecs')).toBeNull();
    expect(parseSize(-1)).toBeNull();
    expect(parseSize('')).toBeNull();
  });
  it('durations', () => {
    expect(parseDuration('50ms')).toBe(50);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('30d')).toBe(2_592_000_000);
    expect(parseDuration(6)).toBe(6000);
    expect(parseDuration('6')).toBe(6000);
    expect(parseDuration('soon')).toBeNull();
  });
  it('rates', () => {
    expect(parseRate('500kbit')).toBe(500_000);
    expect(parseRate('4Mbit')).toBe(4_000_000);
    expect(parseRate(1000)).toBe(1000);
    expect(parseRate('4MB')).toBeNull();
  });
});

describe('config', () => {
  it('fills every default of CONTRACT §2', () => {
    const c = validateConfig(minimal);
    expect(c.node.stateDir).toBe('/var/lib/camnode');
    expect(c.storage).toEqual({ path: '/srv/camnode', maxUsePercent: 90, reserve: 2 ** 30 });
    expect(c.recording.segmentSeconds).toBe(10);
    expect(c.cameras[0]!.enabled).toBe(true);
    expect(c.incident).toEqual({ preRoll: 120_000, postRoll: 300_000, maxLength: 3_600_000, maxHold: 86_400_000, maxLockedPercent: 50 });
    expect(c.button).toEqual({ backend: 'auto', pin: 17, activeLow: true, debounce: 50, heartbeat: false });
    expect(c.control.socket).toBe('/run/camnode/control.sock');
    expect(c.upstream).toEqual({ type: 'none', region: 'us-east-1', prefix: 'incidents', encryptTo: [] });
    expect(c.mqtt).toBeUndefined();
  });

  it('parses the full example of the contract', () => {
    const c = parseConfigText(`
node: {id: koelbel-01, site: Koelbel Library, stateDir: /var/lib/camnode}
storage: {path: /srv/camnode, maxUsePercent: 90, reserve: 1GiB, maxBytes: 200GB, maxAge: 30d}
recording: {segmentSeconds: 10}
cameras:
  - {id: entrance, name: Main entrance, source: "rtsp://user:pass@10.0.0.21:554/stream1", zone: entrance, enabled: true}
incident: {preRoll: 2m, postRoll: 5m, maxLength: 1h}
button: {backend: auto, pin: 17, activeLow: true, debounce: 50ms, ledPin: 27}
mqtt: {url: "mqtts://ops.example.org:8883", protocolVersion: 5, keepalive: 30s, ca: /a, cert: /b, key: /c, prefix: camnode, stateInterval: 60s}
control: {socket: /run/camnode/control.sock}
upstream: {type: s3, endpoint: "https://s3.ops.example.org", region: us-east-1, bucket: branch-incidents, prefix: incidents, credentials: /etc/camnode/s3.env, maxRate: 4Mbit, window: "19:00-07:00"}
`);
    expect(c.storage.reserve).toBe(2 ** 30);
    expect(c.storage.maxBytes).toBe(200e9);
    expect(c.storage.maxAge).toBe(30 * 86_400_000);
    expect(c.upstream.maxRate).toBe(4e6);
    expect(c.mqtt?.protocolVersion).toBe(5);
  });

  it('accepts JSON', () => {
    expect(parseConfigText(JSON.stringify(minimal)).node.id).toBe('koelbel-01');
  });

  it('rejects unknown keys with a hint', () => {
    expect(problems({ ...minimal, storage: { path: '/x', maxbytes: '1GB' } })).toEqual(['storage.maxbytes: unknown key (did you mean "maxBytes"?)']);
    expect(problems({ ...minimal, recordings: {} })).toEqual(['recordings: unknown key (did you mean "recording"?)']);
    expect(problems(withCamera({ zones: 'entrance' }))).toEqual(['cameras[0].zones: unknown key (did you mean "zone"?)']);
  });

  it('rejects duplicate camera ids naming both', () => {
    const doc = { ...minimal, cameras: [{ id: 'a', source: 'testsrc', zone: 'entrance' }, { id: 'a', source: 'testsrc', zone: 'seating' }] };
    expect(problems(doc)).toEqual(['cameras[1].id: duplicate camera id "a" (also cameras[0])']);
  });

  it('refuses private zones quoting the policy', () => {
    for (const zone of ['restroom', 'changing-room', 'lactation-room', 'private-office']) {
      const [line] = problems(withCamera({ zone }));
      expect(line).toMatch(new RegExp(`^cameras\\[0\\]\\.zone: "${zone}" is a private area`));
      expect(line).toContain('only in public areas');
    }
    expect(problems(withCamera({ zone: 'lobby' }))[0]).toMatch(/^cameras\[0\]\.zone: unknown zone "lobby"/);
  });

  it('rejects bad sources by scheme', () => {
    expect(problems(withCamera({ source: 'ftp://cam/x' }))).toEqual(['cameras[0].source: unsupported scheme "ftp" (use rtsp://, rtsps://, v4l2:/dev/videoN, file:PATH, testsrc)']);
    expect(problems(withCamera({ source: 'v4l2:/dev/sda' }))[0]).toMatch(/^cameras\[0\]\.source: v4l2 source must name a device/);
    expect(problems(withCamera({ source: 'file:' }))[0]).toMatch(/^cameras\[0\]\.source: file source needs a path/);
    expect(problems(withCamera({ source: 'rtsps://' }))[0]).toMatch(/^cameras\[0\]\.source: /);
    expect(problems(withCamera({ source: 'webcam' }))[0]).toMatch(/^cameras\[0\]\.source: unsupported source "webcam"/);
  });

  it('checks ranges and formats', () => {
    expect(problems({ ...minimal, recording: { segmentSeconds: 0 } })[0]).toMatch(/^recording\.segmentSeconds: /);
    expect(problems({ ...minimal, recording: { segmentSeconds: 61 } })[0]).toMatch(/^recording\.segmentSeconds: /);
    expect(problems({ ...minimal, recording: { segmentSeconds: 2.5 } })[0]).toMatch(/^recording\.segmentSeconds: /);
    expect(problems({ ...minimal, storage: { path: '/x', maxUsePercent: 100 } })[0]).toMatch(/^storage\.maxUsePercent: /);
    expect(problems({ ...minimal, storage: { path: '/x', maxUsePercent: 9 } })[0]).toMatch(/^storage\.maxUsePercent: /);
    expect(problems({ ...minimal, storage: { path: '/x', reserve: 'lots' } })).toEqual(['storage.reserve: not a size: "lots" (e.g. 512MB, 2GiB)']);
    expect(problems({ ...minimal, storage: { path: '/x', maxAge: 'forever' } })[0]).toMatch(/^storage\.maxAge: not a duration/);
    expect(problems({ ...minimal, node: { id: 'Koelbel 01' } })[0]).toMatch(/^node\.id: must match/);
    expect(problems(withCamera({ id: 'x'.repeat(33) }))[0]).toMatch(/^cameras\[0\]\.id: must match/);
    expect(problems({ ...minimal, upstream: { type: 'dir', window: '7pm-7am', path: '/x' } })[0]).toMatch(/^upstream\.window: /);
    expect(problems({ ...minimal, button: { backend: 'magic' } })[0]).toMatch(/^button\.backend: /);
  });

  it('requires what the contract requires', () => {
    expect(problems({})).toEqual(['node: required', 'storage: required', 'cameras: required']);
    expect(problems({ ...minimal, node: {} })).toEqual(['node.id: required']);
    expect(problems({ ...minimal, cameras: [] })).toEqual(['cameras: at least one camera is required']);
    expect(problems({ ...minimal, upstream: { type: 's3' } })).toEqual(['upstream.bucket: required for type s3']);
    expect(problems({ ...minimal, upstream: { type: 'dir' } })).toEqual(['upstream.path: required for type dir']);
    expect(problems({ ...minimal, mqtt: { url: 'mqtts://h:8883', ca: '/ca' } })).toEqual(['mqtt.cert: required for mqtts:// URLs', 'mqtt.key: required for mqtts:// URLs']);
    // Commands over MQTT are signed by default: someone must be able to check the signatures.
    expect(problems({ ...minimal, mqtt: { url: 'mqtt://127.0.0.1:1883' } })).toEqual(['fleet.ca: required to verify signed commands']);
    expect(problems({ ...minimal, mqtt: { url: 'mqtt://127.0.0.1:1883' }, fleet: { ca: '/etc/camnode/fleet-ca.crt' } })).toEqual([]);
    expect(problems({ ...minimal, mqtt: { url: 'mqtt://127.0.0.1:1883', requireSignedCommands: false } })).toEqual([]);
    expect(problems({ ...minimal, mqtt: { url: 'http://x' } })[0]).toMatch(/^mqtt\.url: /);
  });

  it('reports YAML syntax errors and duplicate keys with their line', () => {
    expect(() => parseConfigText('node: {id: a}\nnode: {id: b}\n', 'c.yaml')).toThrow(/c\.yaml:2:1: Map keys must be unique/);
    expect(() => parseConfigText('node: [unclosed\n', 'c.yaml')).toThrow(ConfigError);
    expect(() => parseConfigText('', 'c.yaml')).toThrow(/c\.yaml: the file is empty/);
  });

  it('one lookup order: flag, then CAMNODE_CONFIG, then /etc', () => {
    expect(resolveConfigPath('/a', { CAMNODE_CONFIG: '/b' })).toBe('/a');
    expect(resolveConfigPath(undefined, { CAMNODE_CONFIG: '/b' })).toBe('/b');
    expect(resolveConfigPath(undefined, {})).toBe('/etc/camnode/config.yaml');
  });

  it('formats paths as the contract shows', () => {
    expect(formatPath(['cameras', 1, 'source'])).toBe('cameras[1].source');
    expect(formatPath([])).toBe('(config)');
  });
});

describe('sources and secrets', () => {
  it('parses each source form', () => {
    expect(parseSource('rtsp://u:p@10.0.0.1/s')).toEqual({ kind: 'rtsp', url: 'rtsp://u:p@10.0.0.1/s' });
    expect(parseSource('rtsps://cam.local:322/s')).toMatchObject({ kind: 'rtsp' });
    expect(parseSource('v4l2:/dev/video0')).toEqual({ kind: 'v4l2', device: '/dev/video0' });
    expect(parseSource('file:/srv/loop.mp4')).toEqual({ kind: 'file', path: '/srv/loop.mp4' });
    expect(parseSource('testsrc')).toEqual({ kind: 'testsrc' });
  });
  it('redacts stream passwords', () => {
    expect(redactUrl('rtsp://user:s3cret@10.0.0.21:554/stream1')).toBe('rtsp://user:***@10.0.0.21:554/stream1');
    expect(redactUrl("Input #0, rtsp, from 'rtsp://u:p@h/x': and rtsps://a:b@c/")).toBe("Input #0, rtsp, from 'rtsp://u:***@h/x': and rtsps://a:***@c/");
    expect(redactUrl('rtsp://10.0.0.21/stream1')).toBe('rtsp://10.0.0.21/stream1');
  });
});

describe('keys of the second batch (CONTRACT §2, new): parsed and validated before their features land', () => {
  const AGE = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
  const KEY = Buffer.alloc(32, 7).toString('base64');
  const full = {
    ...minimal,
    incident: { maxHold: '12h', maxLockedPercent: 40 },
    button: { heartbeat: true },
    mqtt: { url: 'mqtt://127.0.0.1:1883', requireSignedCommands: false },
    upstream: { type: 'dir', path: '/mnt/nas', encryptTo: [AGE] },
    fleet: { ca: '/etc/camnode/tls/fleet-ca.crt', crl: '/etc/camnode/tls/crl.pem', rollbackAfter: '3m', releaseKey: KEY },
    audit: { headInterval: '10m' },
    policy: { signage: { posted: true, checkedAt: '2026-11-02' } },
    calls: { watch: '/var/spool/asterisk/monitor', startFrom: '(?<epoch>\\d{10})' },
  };

  it('accepts every key with its defaults filled in', () => {
    const c = validateConfig(full);
    expect(c.incident).toMatchObject({ maxHold: 12 * 3_600_000, maxLockedPercent: 40 });
    expect(c.fleet).toEqual({ ca: '/etc/camnode/tls/fleet-ca.crt', crl: '/etc/camnode/tls/crl.pem', rollbackAfter: 180_000, releaseKey: KEY });
    expect(c.audit).toEqual({ headInterval: 600_000 });
    expect(c.policy).toEqual({ signage: { posted: true, checkedAt: '2026-11-02', recheckEvery: 180 * 86_400_000 } });
    expect(c.calls).toEqual({ watch: '/var/spool/asterisk/monitor', pattern: '*.wav', settle: 10_000, startFrom: '(?<epoch>\\d{10})', keepSource: true });
    expect(validateConfig(minimal).mqtt).toBeUndefined();
    expect(validateConfig({ ...minimal, mqtt: { url: 'mqtt://h' }, fleet: { ca: '/ca.crt' } }).mqtt?.requireSignedCommands).toBe(true);
  });

  it('says which are set but not built yet (ignored with one log line at start); defaults are not listed', () => {
    expect(unbuiltSettings(validateConfig(full))).toEqual([
      'fleet.releaseKey',
    ]);
    expect(unbuiltSettings(validateConfig({ ...minimal, mqtt: { url: 'mqtt://h' }, fleet: { ca: '/ca.crt', crl: '/crl.pem' } }))).toEqual([]);
  });

  it('refuses a calls spool that is storage.path or inside it', () => {
    const storage = (minimal as { storage: { path: string } }).storage.path;
    expect(problems({ ...minimal, calls: { watch: `${storage}/calls` } })).toEqual([`calls.watch: must not be storage.path or inside it (${storage}): camnode would take its own copies as new calls`]);
    expect(problems({ ...minimal, calls: { watch: storage } })).toHaveLength(1);
    expect(problems({ ...minimal, calls: { watch: `${storage}-spool` } })).toEqual([]);
  });

  it('names each bad value by its path', () => {
    expect(problems({ ...minimal, incident: { maxHold: 'forever', maxLockedPercent: 0 } })).toEqual([
      'incident.maxHold: not a duration: "forever" (e.g. 90s, 5m, 2h, 30d)',
      'incident.maxLockedPercent: Too small: expected number to be >=1',
    ]);
    // A recipient with one character wrong fails its checksum; an SSH key is named as such.
    const typo = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8q';
    expect(problems({ ...minimal, upstream: { encryptTo: ['age1short', 'ssh-ed25519 AAAA', typo, 'AGE-SECRET-KEY-1XYZ'] } })).toEqual([
      'upstream.encryptTo[0]: not an age recipient: they are 62 characters long, this one 9',
      'upstream.encryptTo[1]: SSH keys are not supported as age recipients; use an X25519 recipient from age-keygen',
      'upstream.encryptTo[2]: not an age recipient: its checksum does not match (a character is wrong)',
      'upstream.encryptTo[3]: this is an age identity (a secret key), not its recipient: give the "public key: age1…" line age-keygen printed, and keep the identity off the node',
    ]);
    expect(problems({ ...minimal, fleet: { releaseKey: 'AAAA', rollbackAfter: 'x', crl: 5 } })).toEqual([
      'fleet.crl: Invalid input: expected string, received number',
      'fleet.rollbackAfter: not a duration: "x" (e.g. 90s, 5m, 2h, 30d)',
      'fleet.releaseKey: not a base64 Ed25519 public key (32 bytes, 44 characters)',
    ]);
    expect(problems({ ...minimal, policy: { signage: { posted: 'yes', checkedAt: 'last week' } } })).toEqual([
      'policy.signage.posted: Invalid input: expected boolean, received string',
      'policy.signage.checkedAt: not a date: "last week" (e.g. 2026-11-02)',
    ]);
    expect(problems({ ...minimal, calls: { pattern: '*.wav' } })).toEqual(['calls.watch: required']);
    expect(problems({ ...minimal, calls: { watch: '/spool', startFrom: '(\\d+)' } })).toEqual(['calls.startFrom: a regular expression here needs a named group `epoch` or `iso`']);
    expect(problems({ ...minimal, calls: { watch: '/spool', startFrom: '(?<epoch>' } })[0]).toMatch(/^calls\.startFrom: not a regular expression: /);
    expect(problems({ ...minimal, audit: { headInterval: '5m', chunk: 1 } })).toEqual(['audit.chunk: unknown key']);
    expect(problems({ ...minimal, mqtt: { url: 'mqtt://h', requireSignedCommands: 'no' }, fleet: { ca: '/ca.crt' } })).toEqual(['mqtt.requireSignedCommands: Invalid input: expected boolean, received string']);
  });

  it('refuses the reserved ids', () => {
    expect(problems(withCamera({ id: 'calls' }))).toEqual(['cameras[0].id: "calls" is reserved (camera ids "calls" name something else)']);
    for (const id of ['releases', 'audit']) {
      expect(problems({ ...minimal, node: { id } })).toEqual([`node.id: "${id}" is reserved (node ids "releases", "audit", "_fleet", "_ctl" name something else)`]);
    }
    // `_fleet` and `_ctl` are outside the id pattern anyway.
    expect(problems({ ...minimal, node: { id: '_fleet' } })[0]).toMatch(/^node\.id: must match/);
  });
});
