// What an installer sees when the config or the machine is wrong, through the real CLI
// (CONTRACT §1, §5): a bad config is refused with exit 2 and exactly one `<path>: <message>`
// line per problem, a missing ffmpeg or an unwritable disk with exit 1 and a message saying
// what to fix — never a stack trace. `run` and `check` find and judge the config the same way.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { baseConfig, CLI, runCli, tempDir, type CliResult } from '../helpers/agent.js';

const exec = promisify(execFile);
const STACK = '    at ';
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
// Mounting needs root. Off CI such tests skip with a reason; under CI they run and fail loudly.
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;
if (!IS_ROOT && !IN_CI) console.warn('cli-errors.test.ts: read-only storage tests skipped: mounting needs root');

let dir: string;

beforeAll(async () => {
  dir = await tempDir('camnode-cli-errors-');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A config that passes validation; each case breaks one thing in a fresh copy. */
function valid(): Doc {
  return baseConfig(dir, [
    { id: 'a', source: 'testsrc', zone: 'entrance' },
    { id: 'b', source: 'rtsp://admin:hunter2@10.0.0.21:554/stream1', zone: 'seating' },
  ]) as Doc;
}

let fileCounter = 0;
async function writeText(text: string, ext = 'yaml'): Promise<string> {
  const path = join(dir, `config-${++fileCounter}.${ext}`);
  await writeFile(path, text);
  return path;
}

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** `run` and `check` on the same config (or env); both must refuse it the same way. */
async function runAndCheck(args: string[], env?: NodeJS.ProcessEnv, command?: string[]): Promise<{ run: CliResult; check: CliResult }> {
  const [run, check] = await Promise.all([runCli(['run', ...args], { env, command }), runCli(['check', ...args], { env, command })]);
  return { run: run!, check: check! };
}

/** Exit 2, stderr is exactly these lines (one per problem, nothing else), nothing on stdout. */
function expectRefused(r: CliResult, expected: string[]): void {
  expect(r.stderr).not.toContain(STACK);
  expect(lines(r.stderr), r.stderr).toEqual(expected);
  expect(r.stdout).toBe('');
  expect(r.code, r.stderr).toBe(2);
}

interface BadCase { name: string; edit: (c: Doc) => void; expected: string[] }

const cases: BadCase[] = [
  { name: 'unknown key (a typo) with a suggestion', edit: (c) => { c['storage']['maxbytes'] = '10MB'; },
    expected: ['storage.maxbytes: unknown key (did you mean "maxBytes"?)'] },
  { name: 'unknown top-level key', edit: (c) => { c['camera'] = c['cameras']; },
    expected: ['camera: unknown key (did you mean "cameras"?)'] },
  { name: 'unknown key inside a camera', edit: (c) => { c['cameras'][1]['zones'] = 'seating'; },
    expected: ['cameras[1].zones: unknown key (did you mean "zone"?)'] },
  { name: 'duplicate camera ids', edit: (c) => { c['cameras'][1]['id'] = 'a'; },
    expected: ['cameras[1].id: duplicate camera id "a" (also cameras[0])'] },
  { name: 'unsupported source scheme', edit: (c) => { c['cameras'][0]['source'] = 'ftp://10.0.0.5/cam'; },
    expected: ['cameras[0].source: unsupported scheme "ftp" (use rtsp://, rtsps://, v4l2:/dev/videoN, file:PATH, testsrc)'] },
  { name: 'a camera in a private zone', edit: (c) => { c['cameras'][1]['zone'] = 'restroom'; },
    expected: ['cameras[1].zone: "restroom" is a private area and cannot be recorded (district camera policy: cameras are placed only in public areas, never in restrooms, changing rooms, lactation rooms or private offices)'] },
  { name: 'an unknown zone', edit: (c) => { c['cameras'][0]['zone'] = 'lobby'; },
    expected: ['cameras[0].zone: unknown zone "lobby" (use one of entrance, collections, seating, service-desk, delivery, parking, staff-area, other-public)'] },
  { name: 'segmentSeconds 0', edit: (c) => { c['recording']['segmentSeconds'] = 0; },
    expected: ['recording.segmentSeconds: Too small: expected number to be >=1'] },
  { name: 'segmentSeconds 61', edit: (c) => { c['recording']['segmentSeconds'] = 61; },
    expected: ['recording.segmentSeconds: Too big: expected number to be <=60'] },
  { name: 'maxUsePercent 9', edit: (c) => { c['storage']['maxUsePercent'] = 9; },
    expected: ['storage.maxUsePercent: Too small: expected number to be >=10'] },
  { name: 'maxUsePercent 100', edit: (c) => { c['storage']['maxUsePercent'] = 100; },
    expected: ['storage.maxUsePercent: Too big: expected number to be <=99'] },
  { name: 'missing node.id', edit: (c) => { delete c['node']['id']; },
    expected: ['node.id: required'] },
  { name: 'missing storage.path', edit: (c) => { delete c['storage']['path']; },
    expected: ['storage.path: required'] },
  { name: 'bad characters in node.id', edit: (c) => { c['node']['id'] = 'Koelbel_01'; },
    expected: ['node.id: must match [a-z0-9-]{1,64}'] },
  { name: 'an empty camera list', edit: (c) => { c['cameras'] = []; },
    expected: ['cameras: at least one camera is required'] },
  { name: 'no cameras section', edit: (c) => { delete c['cameras']; },
    expected: ['cameras: required'] },
  { name: 'a bad size', edit: (c) => { c['storage']['reserve'] = '5 parsecs'; },
    expected: ['storage.reserve: not a size: "5 parsecs" (e.g. 512MB, 2GiB)'] },
  { name: 'a bad duration', edit: (c) => { c['incident'] = { preRoll: 'forever' }; },
    expected: ['incident.preRoll: not a duration: "forever" (e.g. 90s, 5m, 2h, 30d)'] },
  { name: 'a bad rate', edit: (c) => { c['upstream'] = { type: 'dir', path: join(dir, 'up'), maxRate: '4 Mbps' }; },
    expected: ['upstream.maxRate: not a rate: "4 Mbps" (e.g. 500kbit, 4Mbit)'] },
  { name: 'mqtts without ca, cert and key', edit: (c) => { c['mqtt'] = { url: 'mqtts://ops.example.org:8883' }; },
    expected: ['mqtt.ca: required for mqtts:// URLs', 'mqtt.cert: required for mqtts:// URLs', 'mqtt.key: required for mqtts:// URLs'] },
  { name: 'upstream s3 without a bucket', edit: (c) => { c['upstream'] = { type: 's3', region: 'eu-west-1' }; },
    expected: ['upstream.bucket: required for type s3'] },
  { name: 'upstream dir without a path', edit: (c) => { c['upstream'] = { type: 'dir' }; },
    expected: ['upstream.path: required for type dir'] },
  { name: 'several problems at once, one line each', edit: (c) => {
    c['node']['id'] = 'Bad Id';
    c['storage']['maxUsePercent'] = 5;
    c['cameras'][0]['source'] = 'ftp://x/y';
  },
  expected: [
    'node.id: must match [a-z0-9-]{1,64}',
    'storage.maxUsePercent: Too small: expected number to be >=10',
    'cameras[0].source: unsupported scheme "ftp" (use rtsp://, rtsps://, v4l2:/dev/videoN, file:PATH, testsrc)',
  ] },
];

describe('a bad config is refused with exit 2 and one <path>: <message> line per problem', () => {
  it('the unbroken config passes validation (so each case below fails for its own reason)', async () => {
    // Only validation is asserted here; with the cameras disabled `check` probes no network.
    const config = valid();
    for (const cam of config['cameras']) cam['enabled'] = false;
    const r = await runCli(['check', '--config', await writeText(stringify(config))]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^config\s+pass\s+node test-node, 2 camera\(s\); source: file$/m);
  });

  it.each(cases)('$name (run and check)', async ({ edit, expected }) => {
    const config = valid();
    edit(config);
    const path = await writeText(stringify(config));
    const { run, check } = await runAndCheck(['--config', path]);
    expectRefused(run, expected);
    expectRefused(check, expected);
  });

  it('a private zone quotes the policy', async () => {
    const config = valid();
    config['cameras'][0]['zone'] = 'changing-room';
    const r = await runCli(['run', '--config', await writeText(stringify(config))]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^cameras\[0\]\.zone: .*changing-room/);
    expect(r.stderr).toContain('restroom');
    expect(r.stderr).toContain('public areas');
  });

  it('never echoes a camera password in an error', async () => {
    const config = valid();
    config['cameras'][1]['source'] = 'rtsp://admin:hunter2@:554/stream1'; // the host got lost
    config['cameras'][1]['zone'] = 'private-office';
    const r = await runCli(['run', '--config', await writeText(stringify(config))]);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)[0]).toBe('cameras[1].source: not a valid rtsp URL');
    expect(lines(r.stderr)).toHaveLength(2);
    expect(r.stderr).not.toContain('hunter2');
  });

  it('invalid YAML names the file, line and column', async () => {
    // A tab in the indentation: the classic hand-edited-config mistake.
    const path = await writeText('node:\n  id: test-node\n\tstateDir: /var/lib/camnode\n');
    const { run, check } = await runAndCheck(['--config', path]);
    expectRefused(run, [`${path}:3:1: Tabs are not allowed as indentation`]);
    expectRefused(check, [`${path}:3:1: Tabs are not allowed as indentation`]);
  });

  it('duplicate YAML keys are an error, not "last one wins"', async () => {
    const path = await writeText([
      'node:', '  id: test-node', 'storage:', '  path: /srv/a', '  reserve: 1MB', '  path: /srv/b',
      'cameras:', '  - {id: a, source: testsrc, zone: entrance}', '',
    ].join('\n'));
    const { run, check } = await runAndCheck(['--config', path]);
    expectRefused(run, [`${path}:6:3: Map keys must be unique`]);
    expectRefused(check, [`${path}:6:3: Map keys must be unique`]);
  });

  it('an empty file says so', async () => {
    const path = await writeText('');
    const { run, check } = await runAndCheck(['--config', path]);
    expectRefused(run, [`${path}: the file is empty`]);
    expectRefused(check, [`${path}: the file is empty`]);
  });

  it('JSON is accepted and judged the same way', async () => {
    const config = valid();
    config['storage']['maxAge'] = 'a month';
    const path = await writeText(JSON.stringify(config, null, 2), 'json');
    const { run, check } = await runAndCheck(['--config', path]);
    expectRefused(run, ['storage.maxAge: not a duration: "a month" (e.g. 90s, 5m, 2h, 30d)']);
    expectRefused(check, ['storage.maxAge: not a duration: "a month" (e.g. 90s, 5m, 2h, 30d)']);
  });
});

describe('finding the config: --config, else $CAMNODE_CONFIG, else /etc/camnode/config.yaml', () => {
  it('a missing --config file: exit 2 naming the path', async () => {
    const path = join(dir, 'nowhere', 'config.yaml');
    const { run, check } = await runAndCheck(['--config', path]);
    const expected = [`${path}: not found (give --config PATH or set CAMNODE_CONFIG)`];
    expectRefused(run, expected);
    expectRefused(check, expected);
  });

  it('$CAMNODE_CONFIG is read when --config is absent', async () => {
    const config = valid();
    config['storage']['maxbytes'] = '1GB';
    const path = await writeText(stringify(config));
    const { run, check } = await runAndCheck([], { CAMNODE_CONFIG: path });
    expectRefused(run, ['storage.maxbytes: unknown key (did you mean "maxBytes"?)']);
    expectRefused(check, ['storage.maxbytes: unknown key (did you mean "maxBytes"?)']);
  });

  it('a missing $CAMNODE_CONFIG file is named', async () => {
    const path = join(dir, 'env-missing.yaml');
    const { run, check } = await runAndCheck([], { CAMNODE_CONFIG: path });
    expectRefused(run, [`${path}: not found (give --config PATH or set CAMNODE_CONFIG)`]);
    expectRefused(check, [`${path}: not found (give --config PATH or set CAMNODE_CONFIG)`]);
  });

  it('--config wins over $CAMNODE_CONFIG', async () => {
    const config = valid();
    config['recording']['segmentSeconds'] = 0;
    const path = await writeText(stringify(config));
    const { run, check } = await runAndCheck(['--config', path], { CAMNODE_CONFIG: join(dir, 'not-this-one.yaml') });
    expectRefused(run, ['recording.segmentSeconds: Too small: expected number to be >=1']);
    expectRefused(check, ['recording.segmentSeconds: Too small: expected number to be >=1']);
  });

  it('with neither, /etc/camnode/config.yaml is named (whatever this machine\'s /etc holds)', async (ctx) => {
    // A machine with a real /etc/camnode: the CLI runs in a mount namespace of its own where an
    // empty tmpfs hides it (root only; off CI without root the test skips, under CI it fails).
    let command: string[] | undefined;
    if (existsSync('/etc/camnode')) {
      if (!IS_ROOT && !IN_CI) ctx.skip('/etc/camnode exists here and hiding it needs root');
      command = ['unshare', '--mount', 'sh', '-c', 'mount -t tmpfs camnode-test /etc/camnode && exec "$0" "$@"', process.execPath, CLI];
    }
    const { run, check } = await runAndCheck([], { CAMNODE_CONFIG: undefined }, command);
    expectRefused(run, ['/etc/camnode/config.yaml: not found (give --config PATH or set CAMNODE_CONFIG)']);
    expectRefused(check, ['/etc/camnode/config.yaml: not found (give --config PATH or set CAMNODE_CONFIG)']);
  });
});

describe('bad usage exits 2', () => {
  it.each([
    { args: ['frob'], says: "unknown command 'frob'" },
    { args: ['run', '--bogus'], says: "unknown option '--bogus'" },
    { args: ['check', '--config'], says: "option '--config <path>' argument missing" },
    { args: ['demo', '--seconds', 'soon'], says: 'must be a whole number above 0' },
    { args: [], says: 'Usage: camnode' },
    // ctl update's own arguments are checked before any broker is asked.
    { args: ['ctl', 'update', 'n1', '--version', '1.0.0', '--canary', '-2'], says: '--canary: not a number of nodes: -2' },
    { args: ['ctl', 'update', 'n1', '--version', '1.0.0', '--canary', '2'], says: '--canary goes with --all' },
    { args: ['ctl', 'update', 'n1', '--version', '1.0.0', '--wait', 'forever'], says: '--wait: not a duration: forever' },
    { args: ['ctl', 'update', '--all', 'n1', '--version', '1.0.0'], says: '--all takes no NODE' },
    { args: ['ctl', 'update', 'n1'], says: "required option '--version <version>' not specified" },
    { args: ['config', 'frob'], says: 'the only form is `camnode config reset [--config PATH]`' },
  ])('camnode $args', async ({ args, says }) => {
    const r = await runCli(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(says);
    expect(r.stderr).not.toContain(STACK);
  });

  it.each(['soon', '50', '2.5'])('CAMNODE_PRUNE_INTERVAL_MS=%s is refused with exit 2 before anything starts', async (value) => {
    const path = await writeText(stringify(valid()), 'yaml');
    const r = await runCli(['run', '--config', path], { env: { ...process.env, CAMNODE_PRUNE_INTERVAL_MS: value } });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toBe(`camnode: CAMNODE_PRUNE_INTERVAL_MS: must be a whole number of milliseconds, at least 100 (got "${value}")`);
  });

  it('--version is not an error', async () => {
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('a missing ffmpeg stops the agent with exit 1', () => {
  let emptyBin: string;
  beforeAll(async () => {
    emptyBin = join(dir, 'empty-bin');
    await mkdir(emptyBin, { recursive: true });
  });

  it('run: exit 1, says ffmpeg was not found, no stack trace', async () => {
    const config = valid();
    const storage = join(dir, 'storage-no-ffmpeg');
    config['storage']['path'] = storage;
    // runCli starts node by its absolute path, so PATH can hold nothing at all.
    const r = await runCli(['run', '--config', await writeText(stringify(config))], { env: { PATH: emptyBin } });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^camnode: ffmpeg not found on PATH \(install it: apt-get install ffmpeg\)$/m);
    expect(r.stderr).not.toContain(STACK);
    expect(existsSync(join(storage, 'segments')), 'nothing set up in storage').toBe(false);
  });

  it('check: exit 1 with a failing ffmpeg row', async () => {
    const config = valid();
    config['cameras'][1]['enabled'] = false;
    const r = await runCli(['check', '--config', await writeText(stringify(config))], { env: { PATH: emptyBin } });
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^ffmpeg\s+fail\s+ffmpeg not found on PATH/m);
    expect(r.stdout).toMatch(/^\s+fix: apt-get install ffmpeg$/m);
    expect(r.stderr).not.toContain(STACK);
  });
});

describeRoot('storage on a read-only mount', () => {
  let mnt: string;
  let mounted = false;

  beforeAll(async () => {
    mnt = join(dir, 'ro-disk');
    await mkdir(mnt, { recursive: true });
    // As root, file permissions prove nothing: only a read-only filesystem refuses root.
    await exec('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mnt]).catch((err: Error) => {
      throw new Error(`mounting a read-only tmpfs needs root (CI runs this as root): ${err.message}`);
    });
    mounted = true;
  });

  afterAll(async () => {
    if (mounted) await exec('umount', [mnt]).catch(() => exec('umount', ['-l', mnt]));
  });

  function roConfig(storagePath: string): Doc {
    const config = valid();
    config['storage']['path'] = storagePath;
    // No camera sampling in `check`: the storage row is what is under test.
    for (const cam of config['cameras']) cam['enabled'] = false;
    return config;
  }

  it.each([
    { where: 'the mount point itself', sub: '' },
    { where: 'a folder not yet made on it', sub: 'camnode' },
  ])('run: exit 1 naming storage.path and read-only ($where)', async ({ sub }) => {
    const storage = sub ? join(mnt, sub) : mnt;
    const r = await runCli(['run', '--config', await writeText(stringify(roConfig(storage)))]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^camnode: storage\\.path ${reEscape(storage)} is on a read-only filesystem$`, 'm'));
    expect(r.stderr).not.toContain(STACK);
  });

  it('check: exit 1 with a failing storage row', async () => {
    const r = await runCli(['check', '--config', await writeText(stringify(roConfig(mnt)))]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^storage\\s+fail\\s+storage\\.path ${reEscape(mnt)}\\S* is on a read-only filesystem$`, 'm'));
    expect(r.stdout).toMatch(/^\s+fix: mount a writable disk at storage\.path/m);
    // Only the storage row fails: ffmpeg and the config are fine.
    expect(r.stdout).toMatch(/^config\s+pass/m);
    expect(r.stdout).toMatch(/^ffmpeg\s+pass/m);
    expect(r.stdout.match(/^\S+\s+fail\s/gm)).toHaveLength(1);
    expect(r.stderr).not.toContain(STACK);
  });
});
