// The config's identity and a pushed config made ready (CONTRACT §9 Config push): the sha256
// names the settings and the secrets without showing them; `***` keeps the secret in force; the
// node's own settings are never changed by a push; differences are named by path only.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, parseConfigWithDocument } from '../../src/config/load.js';
import { configSha256, loadOrCreateHashKey, redactConfig, type ConfigInForce } from '../../src/config/identity.js';
import { differingPaths, preparePush } from '../../src/config/push.js';

const FILE = `
node:
  id: koelbel-01
  stateDir: /var/lib/camnode
storage:
  path: /srv/camnode
  maxAge: 30d
cameras:
  - id: entrance
    source: rtsp://viewer:s3cret-pass@10.0.0.21:554/stream1
    zone: entrance
  - id: desk
    source: rtsp://viewer:other%40pass@10.0.0.22/stream1
    zone: service-desk
mqtt:
  url: mqtts://node:broker-pw@broker.example:8883
  ca: /etc/camnode/tls/ca.crt
  cert: /etc/camnode/tls/node.crt
  key: /etc/camnode/tls/node.key
fleet:
  releaseKey: ${Buffer.alloc(32, 7).toString('base64')}
`;

function inForce(text = FILE): ConfigInForce {
  const { config, document } = parseConfigWithDocument(text);
  return { config, document, source: 'file' };
}

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('no ConfigError');
}

describe('the config sha256', () => {
  const key = randomBytes(32);
  it('is the same for the same settings however written, and changes with a setting, a password or the key', () => {
    const a = inForce().config;
    const reordered = inForce(FILE.replace('  path: /srv/camnode\n  maxAge: 30d', '  maxAge: 720h\n  path: /srv/camnode')).config;
    expect(configSha256(reordered, key)).toBe(configSha256(a, key));
    expect(configSha256(inForce(FILE.replace('maxAge: 30d', 'maxAge: 31d')).config, key)).not.toBe(configSha256(a, key));
    expect(configSha256(inForce(FILE.replace('s3cret-pass', 's3cret-pasS')).config, key)).not.toBe(configSha256(a, key));
    expect(configSha256(a, randomBytes(32))).not.toBe(configSha256(a, key));
    expect(configSha256(a, key)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('redacts each URL password, in the parsed config and the document alike', () => {
    const { config, document } = inForce();
    for (const shown of [JSON.stringify(redactConfig(config)), JSON.stringify(redactConfig(document))]) {
      expect(shown).not.toMatch(/s3cret|other%40pass|broker-pw/);
      expect(shown).toContain('rtsp://viewer:***@10.0.0.21:554/stream1');
      expect(shown).toContain('mqtts://node:***@broker.example:8883');
    }
    expect(config.cameras[0]!.source).toContain('s3cret-pass');
  });

  it('keeps its key in node.stateDir, 0600, made once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'camnode-hashkey-'));
    try {
      const first = await loadOrCreateHashKey(dir);
      expect(first.length).toBe(32);
      expect((await stat(join(dir, 'config-hash.key'))).mode & 0o777).toBe(0o600);
      expect((await loadOrCreateHashKey(dir)).equals(first)).toBe(true);
      expect((await readFile(join(dir, 'config-hash.key'))).equals(first)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a pushed config', () => {
  it('what config get shows, pushed back unchanged, is the config in force', () => {
    const shown = stringify(redactConfig(inForce().document));
    const p = preparePush(shown, inForce());
    expect(differingPaths(inForce().config, p.config)).toEqual([]);
    expect(p.config.cameras[1]!.source).toBe('rtsp://viewer:other%40pass@10.0.0.22/stream1');
    expect(p.config.mqtt!.url).toBe('mqtts://node:broker-pw@broker.example:8883');
  });

  it('*** keeps the password as typed, for the same scheme, host and port; a bare *** keeps the whole value', () => {
    const text = FILE.replace('rtsp://viewer:s3cret-pass@10.0.0.21:554/stream1', 'rtsp://admin:***@10.0.0.21:554/stream2')
      .replace('rtsp://viewer:other%40pass@10.0.0.22/stream1', '"***"');
    const p = preparePush(text, inForce());
    expect(p.config.cameras[0]!.source).toBe('rtsp://admin:s3cret-pass@10.0.0.21:554/stream2');
    expect(p.config.cameras[1]!.source).toBe('rtsp://viewer:other%40pass@10.0.0.22/stream1');
    expect(differingPaths(inForce().config, p.config)).toEqual(['cameras[0].source']);
    // Typed unencoded (WHATWG URL would re-encode it): back exactly as typed, so nothing differs.
    const typed = FILE.replace('s3cret-pass', 'pa=ss;w');
    const round = preparePush(stringify(redactConfig(inForce(typed).document)), inForce(typed));
    expect(round.config.cameras[0]!.source).toBe('rtsp://viewer:pa=ss;w@10.0.0.21:554/stream1');
    expect(differingPaths(inForce(typed).config, round.config)).toEqual([]);
  });

  it('*** never carries a password to another host or port, nor into a scheme without one; no line quotes it', () => {
    const elsewhere = problems(() => preparePush(FILE.replace('viewer:s3cret-pass@10.0.0.21:554', 'viewer:***@203.0.113.9:554'), inForce()));
    expect(elsewhere).toEqual(['cameras[0].source: "***" keeps the password in force of camera "entrance", which is kept only for the same host and port (rtsp://10.0.0.21:554 on this node): give the password to point it elsewhere']);
    const scheme = problems(() => preparePush(FILE.replace('rtsp://viewer:s3cret-pass@10.0.0.21:554/stream1', 'v4l2://x:***@h'), inForce()));
    expect(scheme[0]).toContain('is kept only in rtsp://, rtsps:// URLs');
    expect(scheme.join('\n')).not.toContain('s3cret-pass');
    // A line the schema writes quoting a value the node holds is blanked all the same.
    const quoted = problems(() => preparePush(FILE.replace('zone: entrance', 'zone: s3cret-pass'), inForce()));
    expect(quoted.join('\n')).not.toContain('s3cret-pass');
  });

  it('a section that is no mapping is named by validation, not filled in', () => {
    expect(problems(() => preparePush(FILE.replace(/node:\n {2}id: koelbel-01\n {2}stateDir: \/var\/lib\/camnode\n/, 'node: 5\n'), inForce()))[0]).toMatch(/^node: /);
  });

  it('*** for a camera the node does not have is refused, naming the field', () => {
    const text = FILE.replace('id: desk', 'id: lobby').replace('other%40pass', '***');
    expect(problems(() => preparePush(text, inForce()))).toEqual(['cameras[1].source: "***" keeps the password in force of camera "lobby", which has none on this node']);
  });

  it('the node\'s own settings may be omitted or repeated, never changed', () => {
    const omitted = preparePush(FILE.replace('  id: koelbel-01\n  stateDir: /var/lib/camnode\n', '  site: Koelbel\n').replace(/fleet:\n.*\n/, ''), inForce());
    expect(omitted.config.node.id).toBe('koelbel-01');
    expect(omitted.config.fleet?.releaseKey).toBe(inForce().config.fleet?.releaseKey);
    expect(omitted.document['node']).toMatchObject({ id: 'koelbel-01', stateDir: '/var/lib/camnode', site: 'Koelbel' });
    expect(problems(() => preparePush(FILE.replace('id: koelbel-01', 'id: koelbel-02').replace('stateDir: /var/lib/camnode', 'stateDir: /tmp/x')
      .concat('control:\n  socket: /tmp/s.sock\n'), inForce()))).toEqual([
      'node.id: cannot be changed by a push ("koelbel-01" on this node; change it in the file on the node)',
      'node.stateDir: cannot be changed by a push ("/var/lib/camnode" on this node; change it in the file on the node)',
      'control.socket: cannot be changed by a push ("/run/camnode/control.sock" on this node; change it in the file on the node)',
    ]);
  });

  it('is validated as camnode run validates a file: the same lines, all of them', () => {
    const text = FILE.replace('zone: entrance', 'zone: restroom').replace('maxAge: 30d', 'maxAge: soon').replace('  path: /srv/camnode', '  path: /srv/camnode\n  maxbytes: 1GB');
    const lines = problems(() => preparePush(text, inForce()));
    expect(lines).toEqual(problems(() => parseConfigWithDocument(text)));
    expect(lines.some((l) => l.startsWith('cameras[0].zone: "restroom" is a private area'))).toBe(true);
    expect(lines).toContain('storage.maxbytes: unknown key (did you mean "maxBytes"?)');
    expect(problems(() => preparePush('cameras: [', inForce()))[0]).toMatch(/^config:1:\d+: /);
    expect(problems(() => preparePush('- a\n- b\n', inForce()))).toEqual(['config: must be a mapping of sections (node, storage, cameras, …)']);
  });

  it('differences are named by path, by index in lists, values never', () => {
    const a = inForce().config;
    const b = preparePush(FILE.replace('maxAge: 30d', 'maxAge: 7d').replace('  - id: desk\n    source: rtsp://viewer:other%40pass@10.0.0.22/stream1\n    zone: service-desk\n', ''), inForce()).config;
    expect(differingPaths(a, b)).toEqual(['cameras[1]', 'storage.maxAge']);
  });
});

describe('a hostile pushed config', () => {
  it('deep nesting, an alias bomb, wrong types and huge values are refused as bad configs, each naming why', () => {
    for (const text of ['['.repeat(60_000) + ']'.repeat(60_000), `a: ${'{x: '.repeat(30_000)}1${'}'.repeat(30_000)}`, '&a [*a]', '42', 'cameras: 7', `storage: {path: ${'x'.repeat(100_000)}, maxAge: 99999999999999999999d}`]) {
      expect(problems(() => preparePush(text, inForce())).length, text.slice(0, 20)).toBeGreaterThan(0);
    }
  });
});
