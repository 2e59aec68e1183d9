// provisioning/install.sh for real (CONTRACT §9 Install), inside a throwaway Debian 12 root made
// by debootstrap from the mirror this machine's apt uses: from `npm run bundle` and an official-
// layout Node tarball made from this machine's own Node, as an installer at a branch would, with
// apt inside the root fetching ffmpeg and the rest. Then `camnode check` and `camnode run` inside
// it record a test picture; the addon is built once a compiler is there; a further install
// changes nothing at all.
//
// Not exercised here (no systemd runs as PID 1, no GPIO, no internet): systemctl enable/start/
// restart, daemon-reload, the journald restart, udev's reload, the unit's RuntimeDirectory (the
// test makes /run/camnode itself), READY and WATCHDOG under systemd (test/integration/
// sd-notify.test.ts speaks the protocol instead), the online Node paths (nodejs.org on Debian 12,
// Debian 13's nodejs), and a real button. The installed unit is checked by systemd-analyze.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { waitFor } from '../helpers/agent.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

const ARCH = ({ x64: 'amd64', arm64: 'arm64', arm: 'armhf' } as Record<string, string>)[process.arch] ?? process.arch;
const NODE_ARCH = process.arch === 'arm' ? 'armv7l' : process.arch;
const NODE_NAME = `node-${process.version}-linux-${NODE_ARCH}`;
/** A clean environment inside the root: nothing of this machine's leaks in. */
const ROOT_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };

interface Ran { code: number; out: string }

/** The Debian mirror this machine's own apt uses (deb822 or one-line sources). */
function debianMirror(): string {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    for (const stanza of readFileSync(deb822, 'utf8').split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      if (uri && /^Suites:.*\bbookworm\b/m.test(stanza)) return uri;
    }
  }
  const line = existsSync('/etc/apt/sources.list') ? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(readFileSync('/etc/apt/sources.list', 'utf8')) : null;
  if (line?.[1]) return line[1];
  throw new Error('no bookworm mirror in this machine\'s apt sources');
}

/** An official-layout Node tarball (bin/, lib/node_modules/npm, include/node) of this machine's Node. */
async function nodeTarball(into: string): Promise<string> {
  const prefix = dirname(dirname(process.execPath));
  const top = join(into, 'stage', NODE_NAME);
  await mkdir(join(top, 'bin'), { recursive: true });
  await mkdir(join(top, 'lib', 'node_modules'), { recursive: true });
  await mkdir(join(top, 'include'), { recursive: true });
  await cp(process.execPath, join(top, 'bin', 'node'));
  await cp(join(prefix, 'lib', 'node_modules', 'npm'), join(top, 'lib', 'node_modules', 'npm'), { recursive: true, verbatimSymlinks: true });
  await cp(join(prefix, 'include', 'node'), join(top, 'include', 'node'), { recursive: true });
  await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(top, 'bin', 'npm'));
  await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(top, 'bin', 'npx'));
  const file = join(into, `${NODE_NAME}.tar.xz`);
  // xz -0: the format the official downloads use, at a speed a test can afford.
  await exec('tar', ['-I', 'xz -0 -T2', '--owner=1000', '--group=1000', '-C', join(into, 'stage'), '-cf', file, NODE_NAME]);
  await rm(join(into, 'stage'), { recursive: true });
  const sum = createHash('sha256').update(await readFile(file)).digest('hex');
  await writeFile(join(into, 'SHASUMS256.txt'), `${sum}  ${NODE_NAME}.tar.xz\n`);
  return file;
}

/**
 * Every path of the root with its type, mode, owner, inode, size and mtime (a file rewritten or
 * replaced changes one of these); folders by mode and owner only (check probes storage.path).
 */
async function snapshot(root: string): Promise<Map<string, string>> {
  const skip = new Set(['/proc', '/dev', '/sys', '/tmp', '/run', '/var/cache', '/var/log', '/media']);
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(root, rel))) {
      const path = `${rel}/${name}`;
      if (skip.has(path)) continue;
      const s = await lstat(join(root, path));
      const who = `${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid}`;
      if (s.isDirectory()) {
        out.set(path, `dir ${who}`);
        await walk(path);
      } else if (s.isSymbolicLink()) out.set(path, `link ${who} ${await readlink(join(root, path))}`);
      else out.set(path, `file ${who} ${s.ino} ${s.size} ${s.mtimeMs}`);
    }
  };
  await walk('');
  return out;
}

function differences(a: Map<string, string>, b: Map<string, string>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => a.get(k) !== b.get(k)).map((k) => `${k}: ${a.get(k) ?? 'absent'} -> ${b.get(k) ?? 'absent'}`);
}

describeRoot('provisioning/install.sh in a Debian 12 root', () => {
  let work: string;
  let root: string;

  /** A command in the root, in a mount namespace of its own (its /proc goes with it). */
  const inRoot = async (cmd: string[], timeoutMs = 600_000): Promise<Ran> => {
    const r = await exec('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"', root, ...cmd],
      { env: ROOT_ENV, timeout: timeoutMs, maxBuffer: 64 << 20 }).then(
      (ok) => ({ code: 0, out: `${ok.stdout}${ok.stderr}` }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }));
    return r;
  };
  const install = (...args: string[]): Promise<Ran> => inRoot(['/media/camnode/provisioning/install.sh', ...args]);
  const bundleArgs = (): string[] => ['--bundle', `/media/camnode-${VERSION}-${ARCH}.tgz`, '--node-tarball', `/media/${NODE_NAME}.tar.xz`];
  const modeOf = async (path: string): Promise<string> => {
    const s = await stat(join(root, path));
    return `${(s.mode & 0o7777).toString(8)} ${(await inRoot(['stat', '-c', '%U:%G', path])).out.trim()}`;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'camnode-install-'));
    root = join(work, 'root');
    const media = join(root, 'media');
    // The root, the bundle and the Node tarball at once: each takes its own while.
    const [debootstrap] = await Promise.all([
      exec('debootstrap', ['--variant=minbase', '--include=systemd-sysv', 'bookworm', root, debianMirror()], { maxBuffer: 64 << 20, timeout: 900_000 }),
      (async () => {
        await mkdir(join(work, 'bundle'));
        await exec('bash', ['provisioning/bundle.sh', '--arch', ARCH, '--out', join(work, 'bundle'), '--no-build'], { cwd: ROOT, maxBuffer: 16 << 20 });
        await mkdir(join(work, 'node'));
        await nodeTarball(join(work, 'node'));
      })(),
    ]);
    expect(debootstrap.stdout).toContain('Base system installed successfully');
    // What the installer brought on a USB stick: the bundle (with its .sha256), the Node tarball
    // (with SHASUMS256.txt), install.sh taken out of the bundle, and the branch's configs.
    await mkdir(media, { recursive: true });
    for (const f of await readdir(join(work, 'bundle'))) await cp(join(work, 'bundle', f), join(media, f));
    for (const f of await readdir(join(work, 'node'))) await cp(join(work, 'node', f), join(media, f));
    await exec('tar', ['-xzf', join(media, `camnode-${VERSION}-${ARCH}.tgz`), '-C', media, 'camnode/provisioning/install.sh']);
    const branch = ['node:', '  id: branch-install', 'storage:', '  path: /srv/camnode', 'recording:', '  segmentSeconds: 2',
      'cameras:', '  - id: entrance', '    source: testsrc', '    zone: entrance', 'button:', '  backend: none', ''];
    await writeFile(join(media, 'config.yaml'), branch.join('\n'));
    // The same branch joining the fleet: the broker is not reachable yet and no certificate is
    // signed, so check fails on it.
    await exec('bash', [join(ROOT, 'provisioning/fleet-ca.sh'), 'init', join(work, 'ca')]);
    await cp(join(work, 'ca', 'ca.crt'), join(media, 'fleet-ca.crt'));
    await writeFile(join(media, 'fleet.yaml'), [...branch, 'mqtt:', '  url: mqtts://127.0.0.1:1', '  ca: /media/fleet-ca.crt',
      '  cert: /etc/camnode/mqtt.crt', '  key: /etc/camnode/mqtt.key', ''].join('\n'));
    await writeFile(join(media, 'bad.yaml'), branch.join('\n').replace('zone: entrance', 'zone: restroom'));
  }, 1_200_000);

  afterAll(async () => {
    if (!work) return;
    // Nothing is mounted under the root outside its namespaces; refuse to delete if it were.
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    if (mounts.includes(` ${root}/`)) throw new Error(`something is still mounted under ${root}`);
    await rm(work, { recursive: true, force: true });
  });

  it('--dry-run says what it would do and changes nothing', async () => {
    const before = await snapshot(root);
    const r = await install('--config', '/media/config.yaml', ...bundleArgs(), '--dry-run');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('dry run');
    expect(r.out).toMatch(/would: apt-get install .*ffmpeg/);
    expect(r.out).toContain(`would: tar -xf /media/${NODE_NAME}.tar.xz`);
    expect(differences(before, await snapshot(root))).toEqual([]);
  });

  it('refuses a damaged Node tarball, a bundle for another machine and a bad config, changing nothing of camnode\'s', async () => {
    const sums = join(root, 'media', 'SHASUMS256.txt');
    const good = await readFile(sums, 'utf8');
    await writeFile(sums, good.replace(/^[0-9a-f]/, (c) => (c === '0' ? '1' : '0')));
    const damaged = await install('--config', '/media/config.yaml', ...bundleArgs());
    await writeFile(sums, good);
    expect(damaged.code, damaged.out).toBe(2);
    expect(damaged.out).toContain(`${NODE_NAME}.tar.xz: SHA-256`);
    expect(existsSync(join(root, 'opt', 'camnode', 'node', NODE_NAME))).toBe(false);

    // A bundle without its .sha256 is taken only with --no-verify.
    await mkdir(join(root, 'media', 'nosum'));
    await cp(join(root, 'media', `camnode-${VERSION}-${ARCH}.tgz`), join(root, 'media', 'nosum', `camnode-${VERSION}-${ARCH}.tgz`));
    const unverified = await install('--config', '/media/config.yaml', '--bundle', `/media/nosum/camnode-${VERSION}-${ARCH}.tgz`, '--dry-run');
    expect(unverified.code, unverified.out).toBe(2);
    expect(unverified.out).toContain('.sha256 beside');
    expect(unverified.out).toContain('--no-verify');

    const other = ARCH === 'armhf' ? 'arm64' : 'armhf';
    await cp(join(root, 'media', `camnode-${VERSION}-${ARCH}.tgz`), join(root, 'media', `camnode-${VERSION}-${other}.tgz`));
    const foreign = await install('--config', '/media/config.yaml', '--bundle', `/media/camnode-${VERSION}-${other}.tgz`);
    expect(foreign.code, foreign.out).toBe(2);
    expect(foreign.out).toContain(`is for ${other}; this machine is ${ARCH}`);

    // The config is read by the release's own loader, with `camnode run`'s errors, before any
    // user, folder or release of camnode's is made (apt's packages and Node come first).
    const bad = await install('--config', '/media/bad.yaml', ...bundleArgs());
    expect(bad.code, bad.out).toBe(2);
    expect(bad.out).toMatch(/cameras\[0\]\.zone: /);
    expect(existsSync(join(root, 'etc', 'camnode'))).toBe(false);
    expect(existsSync(join(root, 'opt', 'camnode', 'releases'))).toBe(false);
    expect((await inRoot(['getent', 'passwd', 'camnode'])).code).not.toBe(0);
  });

  it('installs a fleet node, makes its key with enroll, and leaves it not started while check fails', async () => {
    const r = await install('--config', '/media/fleet.yaml', ...bundleArgs());
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/broker\s+fail/);
    expect(r.out).toContain('installed but NOT started');
    // enroll ran: the key (0600, the camnode user's) and a request for ops with CN = node.id.
    expect(r.out).toContain('request:     /etc/camnode/mqtt.csr');
    expect(await modeOf('/etc/camnode/mqtt.key')).toBe('600 camnode:camnode');
    const csr = await exec('openssl', ['req', '-in', join(root, 'etc/camnode/mqtt.csr'), '-noout', '-subject']);
    expect(csr.stdout).toContain('CN = branch-install');
  }, 600_000);

  it('installs the branch node: user, folders, release, Node, launcher and unit, and check passes', async () => {
    const r = await install('--config', '/media/config.yaml', ...bundleArgs());
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/config\s+pass\s+node branch-install/);
    expect(r.out).toMatch(/ffmpeg\s+pass/);
    expect(r.out).toContain('systemd is not running here');
    expect(r.out).toContain('no C++ compiler here');
    expect(r.out).toContain(`camnode-${VERSION}-${ARCH}.tgz: SHA-256 verified`);

    expect((await inRoot(['/usr/bin/camnode', '--version'])).out.trim()).toBe(VERSION);
    expect((await inRoot(['id', '-nG', 'camnode'])).out.trim().split(' ').sort()).toEqual(['camnode', 'gpio', 'video']);
    expect((await inRoot(['getent', 'passwd', 'camnode'])).out).toContain(':/var/lib/camnode:/usr/sbin/nologin');
    expect(await modeOf('/etc/camnode')).toBe('750 root:camnode');
    expect(await modeOf('/etc/camnode/config.yaml')).toBe('640 root:camnode');
    expect(await readFile(join(root, 'etc/camnode/config.yaml'), 'utf8')).toBe(await readFile(join(root, 'media/config.yaml'), 'utf8'));
    expect(await modeOf('/var/lib/camnode')).toBe('700 camnode:camnode');
    expect(await modeOf('/srv/camnode')).toBe('750 camnode:camnode');
    expect(await readlink(join(root, 'opt/camnode/current'))).toBe(`releases/${VERSION}`);
    expect(await modeOf(`/opt/camnode/releases/${VERSION}/dist/src/main.js`)).toMatch(/^(644|755) root:root$/);
    expect(await readlink(join(root, 'opt/camnode/node/current'))).toBe(NODE_NAME);
    expect(await modeOf(`/opt/camnode/node/${NODE_NAME}/bin/node`)).toBe('755 root:root');
    expect((await inRoot(['/opt/camnode/launcher'])).out).toContain(`starting release ${VERSION}`);
    expect(await readFile(join(root, 'etc/systemd/system/camnode.service.d/paths.conf'), 'utf8')).toContain('ReadWritePaths=/srv/camnode /var/lib/camnode');
    expect(existsSync(join(root, 'etc/systemd/journald.conf.d/camnode.conf'))).toBe(true);
    // The unit as installed, with its drop-in, the launcher and the command, read by systemd.
    const verify = await exec('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/camnode.service']).then(
      (ok) => `${ok.stdout}${ok.stderr}`, (err: { stdout?: string; stderr?: string }) => `failed: ${err.stdout ?? ''}${err.stderr ?? ''}`);
    expect(verify).toBe('');
    // The root helper of updates and its path unit, with the config's state dir.
    expect(await modeOf('/opt/camnode/update-helper')).toBe('755 root:root');
    expect(await readFile(join(root, 'etc/systemd/system/camnode-update.path'), 'utf8')).toContain('PathExists=/var/lib/camnode/updates/request.env');
    expect(await readFile(join(root, 'etc/systemd/system/camnode.service.d/paths.conf'), 'utf8')).toContain('Environment=CAMNODE_STATE_DIR=/var/lib/camnode');
    const verifyUpdate = await exec('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/camnode-update.path', '/etc/systemd/system/camnode-update.service']).then(
      (ok) => `${ok.stdout}${ok.stderr}`, (err: { stdout?: string; stderr?: string }) => `failed: ${err.stdout ?? ''}${err.stderr ?? ''}`);
    expect(verifyUpdate).toBe('');
  }, 600_000);

  it('records from the installed release as the camnode user', async () => {
    // /run a tmpfs and /run/camnode made as the unit's RuntimeDirectory=camnode would; the agent
    // started as systemd's User=camnode does, by exec all the way (setpriv), so it gets SIGTERM.
    const agent = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount -t proc proc "$0/proc" && mount -t tmpfs tmpfs "$0/run" && chroot "$0" install -d -o camnode -g camnode -m 750 /run/camnode && exec chroot "$0" setpriv --reuid camnode --regid camnode --init-groups /usr/bin/camnode run', root],
    { env: ROOT_ENV, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    agent.stdout.on('data', (b: Buffer) => { log += b.toString(); });
    agent.stderr.on('data', (b: Buffer) => { log += b.toString(); });
    const exited = new Promise<number | null>((resolve) => agent.on('close', (code) => resolve(code)));
    const dir = join(root, 'srv/camnode/segments/entrance');
    try {
      await waitFor(async () => (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.ts')).length >= 2, `two segments recorded in the root (log: ${log.slice(-2000)})`, 60_000);
      expect(log).toContain('"msg":"agent started"');
      expect(log).not.toContain('"level":50');
    } finally {
      try { process.kill(-agent.pid!, 'SIGTERM'); } catch { /* already gone: the log above says why */ }
    }
    expect(await exited).toBe(0);
    expect(log).toContain('"msg":"agent stopped"');
    const segment = (await readdir(dir)).find((n) => n.endsWith('.ts'))!;
    expect(await modeOf(`/srv/camnode/segments/entrance/${segment}`)).toBe('640 camnode:camnode');
    expect(await modeOf('/var/lib/camnode/node-key.pem')).toMatch(/^600 camnode:camnode$/);
  }, 120_000);

  it('a new config whose check fails on a working node: the previous config and unit are put back', async () => {
    const before = await snapshot(root);
    const r = await install('--config', '/media/fleet.yaml', ...bundleArgs());
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/broker\s+fail/);
    expect(r.out).toContain('the previous ones are back in place');
    expect(await readFile(join(root, 'etc/camnode/config.yaml'), 'utf8')).toBe(await readFile(join(root, 'media/config.yaml'), 'utf8'));
    // Everything as it was, but the key enrolment made the first time stays (it is the node's).
    expect(differences(before, await snapshot(root)).filter((d) => !d.startsWith('/etc/camnode/config.yaml:'))).toEqual([]);
    expect(await modeOf('/etc/camnode/config.yaml')).toBe('640 root:camnode');
  }, 600_000);

  it('from a checkout (the online path): the bundle is built in the box with npm and installs the same release', async () => {
    // The checkout as cloned: its files without node_modules or dist.
    const files = (await exec('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, maxBuffer: 16 << 20 })).stdout.split('\0').filter((f) => f && !f.startsWith('node_modules/') && !f.startsWith('dist/') && existsSync(join(ROOT, f)));
    const src = join(root, 'media', 'src');
    for (const f of files) {
      await mkdir(dirname(join(src, f)), { recursive: true });
      await cp(join(ROOT, f), join(src, f), { verbatimSymlinks: true });
    }
    // The registry this machine's npm uses (the box reaches it as the installer's laptop would),
    // and the certificates it trusts for it, if it names any.
    const npmEnv = [`npm_config_registry=${(await exec('npm', ['config', 'get', 'registry'])).stdout.trim()}`];
    const cafile = (await exec('npm', ['config', 'get', 'cafile'])).stdout.trim();
    if (cafile && cafile !== 'null' && cafile !== 'undefined' && existsSync(cafile)) {
      await cp(cafile, join(root, 'media', 'npm-ca.crt'));
      npmEnv.push('npm_config_cafile=/media/npm-ca.crt');
    }
    const r = await inRoot(['env', ...npmEnv, '/media/src/provisioning/install.sh', '--config', '/media/config.yaml'], 900_000);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('building a bundle from the checkout /media/src');
    expect(r.out).toContain(`release ${VERSION} already in place`);
    expect(r.out).toContain('nothing changed');
  }, 900_000);

  it('builds onoff\'s addon once a compiler is there, and a further install changes nothing', async () => {
    const apt = await inRoot(['sh', '-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++ make python3']);
    expect(apt.code, apt.out).toBe(0);
    const built = await install('--config', '/media/config.yaml', ...bundleArgs());
    expect(built.code, built.out).toBe(0);
    expect(built.out).toContain('building onoff\'s addon');
    expect(built.out).toContain(`release ${VERSION} already in place`);
    const load = await inRoot(['/opt/camnode/node/current/bin/node', '-e', 'console.log(typeof require("/opt/camnode/current/node_modules/epoll").Epoll)']);
    expect(load.out.trim()).toBe('function');

    const before = await snapshot(root);
    const again = await install('--config', '/media/config.yaml', ...bundleArgs());
    expect(again.code, again.out).toBe(0);
    expect(again.out).toContain('nothing changed');
    expect(again.out).not.toMatch(/^\+ /m);
    expect(differences(before, await snapshot(root))).toEqual([]);
    const dry = await install('--config', '/media/config.yaml', ...bundleArgs(), '--dry-run');
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toContain('dry run: nothing would change');
    expect(dry.out).not.toMatch(/^would: /m);
  }, 900_000);
});
