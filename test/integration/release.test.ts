// `npm run release` (CONTRACT §9 Update) for real: the district's Ed25519 key made once (0600),
// a real bundle from `npm run bundle` signed with it and uploaded with its raw 64-byte `.sig` to
// `<prefix>/releases/` on a folder upstream and on an S3 protocol server (s3rver); OpenSSL, not
// camnode, verifies what the store holds; a tampered bundle does not verify; bad inputs are
// refused naming what is wrong.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { releaseSignatureValid } from '../../src/deploy/release-keys.js';
import { VERSION } from '../../src/version.js';
import { tempDir } from '../helpers/agent.js';
import { disposeAllS3rvers, s3Upstream, startS3rver, writeS3Credentials, type S3Server } from '../helpers/s3.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = fileURLToPath(new URL('../../dist/src/ops/release-cli.js', import.meta.url));
const NAME = `camnode-${VERSION}-amd64.tgz`;

interface Ran { code: number; stdout: string; stderr: string }
const release = (...args: string[]): Promise<Ran> => exec(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 }).then(
  (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
  (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));

/** OpenSSL's word on a raw Ed25519 signature over a file. */
async function opensslVerifies(publicPem: string, file: string, sig: string): Promise<boolean> {
  return exec('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', publicPem, '-rawin', '-in', file, '-sigfile', sig]).then((r) => r.stdout.includes('Signature Verified Successfully'), () => false);
}

let dir: string;
let bundle: string;
let key: string;
let publicKey: string;
let s3: S3Server;

beforeAll(async () => {
  dir = await tempDir('camnode-release-');
  await mkdir(join(dir, 'build'));
  await exec('bash', ['provisioning/bundle.sh', '--arch', 'amd64', '--out', join(dir, 'build'), '--no-build'], { cwd: ROOT, maxBuffer: 16 << 20 });
  bundle = join(dir, 'build', NAME);
  s3 = await startS3rver({ buckets: ['district'] });
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await disposeAllS3rvers();
});

describe('npm run release', () => {
  it('keygen: the private key 0600, made once; the public key printed as fleet.releaseKey takes it', async () => {
    key = join(dir, 'district-release.key');
    const r = await release('keygen', '--out', key);
    expect(r.code, r.stderr).toBe(0);
    publicKey = /fleet\.releaseKey: (\S+)/.exec(r.stdout)![1]!;
    expect(publicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect((await stat(key)).mode & 0o777).toBe(0o600);
    // The same public key as OpenSSL derives from the file.
    const der = (await exec('openssl', ['pkey', '-in', key, '-pubout', '-outform', 'DER'], { encoding: 'buffer' })).stdout;
    expect(der.subarray(der.length - 32).toString('base64')).toBe(publicKey);
    await exec('openssl', ['pkey', '-in', key, '-pubout', '-out', join(dir, 'release-pub.pem')]);
    const again = await release('keygen', '--out', key);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists');
  });

  it('publish to a folder upstream: bundle and .sig under <prefix>/releases/, verified by OpenSSL; a tampered copy is not', async () => {
    const share = join(dir, 'share');
    await mkdir(share);
    await writeFile(join(dir, 'dir.yaml'), `upstream:\n  type: dir\n  path: ${share}\n  prefix: district\n`);
    const r = await release('publish', bundle, '--key', key, '--config', join(dir, 'dir.yaml'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${NAME}: SHA-256 verified against ${NAME}.sha256`);
    expect(r.stdout).toContain(`published camnode ${VERSION} for amd64: district/releases/${NAME} and district/releases/${NAME}.sig`);
    const stored = join(share, 'district', 'releases', NAME);
    expect((await readFile(stored)).equals(await readFile(bundle))).toBe(true);
    const sig = await readFile(`${stored}.sig`);
    expect(sig.length).toBe(64);
    expect((await readFile(`${bundle}.sig`)).equals(sig)).toBe(true);
    expect(await opensslVerifies(join(dir, 'release-pub.pem'), stored, `${stored}.sig`)).toBe(true);
    expect(releaseSignatureValid(await readFile(stored), sig, publicKey)).toBe(true);
    const tampered = join(dir, 'tampered.tgz');
    const bytes = await readFile(stored);
    bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 1, bytes.length >> 1);
    await writeFile(tampered, bytes);
    expect(await opensslVerifies(join(dir, 'release-pub.pem'), tampered, `${stored}.sig`)).toBe(false);
    expect(releaseSignatureValid(bytes, sig, publicKey)).toBe(false);
  });

  it('publish to S3 (s3rver): the same objects, byte for byte', async () => {
    const creds = await writeS3Credentials(dir);
    const u = s3Upstream(s3, 'district', creds, { prefix: 'cams' });
    await writeFile(join(dir, 's3.yaml'), `upstream:\n${Object.entries(u).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join('\n')}\n`);
    const r = await release('publish', bundle, '--key', key, '--config', join(dir, 's3.yaml'));
    expect(r.code, r.stderr).toBe(0);
    const got = await s3.get('district', `cams/releases/${NAME}`);
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(await readFile(bundle)).digest('hex'));
    const sig = await s3.get('district', `cams/releases/${NAME}.sig`);
    await writeFile(join(dir, 'from-s3.tgz'), got);
    await writeFile(join(dir, 'from-s3.sig'), sig);
    expect(await opensslVerifies(join(dir, 'release-pub.pem'), join(dir, 'from-s3.tgz'), join(dir, 'from-s3.sig'))).toBe(true);
  });

  it('refuses what is wrong, naming it (exit 2): a damaged, relabelled or unchecked bundle, other bytes under a published name, a key that is not Ed25519 or not the nodes\' key, a bad name, a bad upstream', async () => {
    const cfg = join(dir, 'dir.yaml');
    const damaged = join(dir, 'damaged', NAME);
    await mkdir(join(dir, 'damaged'));
    const bytes = await readFile(bundle);
    bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100);
    await writeFile(damaged, bytes);
    await writeFile(`${damaged}.sha256`, await readFile(`${bundle}.sha256`));
    const d = await release('publish', damaged, '--key', key, '--config', cfg);
    expect([d.code, d.stderr]).toEqual([2, expect.stringContaining('does not match') as unknown]);

    await exec('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(dir, 'ec.key')]);
    const ec = await release('publish', bundle, '--key', join(dir, 'ec.key'), '--config', cfg);
    expect([ec.code, ec.stderr]).toEqual([2, expect.stringContaining('releases are signed with Ed25519') as unknown]);

    const renamed = join(dir, 'camnode-latest.tgz');
    await writeFile(renamed, await readFile(bundle));
    const n = await release('publish', renamed, '--key', key, '--config', cfg);
    expect([n.code, n.stderr]).toEqual([2, expect.stringContaining('not a bundle name') as unknown]);

    await writeFile(join(dir, 'bad.yaml'), 'upstream:\n  type: s3\n  regoin: x\n');
    const b = await release('publish', bundle, '--key', key, '--config', join(dir, 'bad.yaml'));
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('upstream.regoin: unknown key (did you mean "region"?)');
    expect(b.stderr).toContain('upstream.bucket: required for type s3');

    // A bundle renamed to another version, and one without its .sha256 (taken with --no-verify).
    const relabelled = join(dir, 'relabelled', 'camnode-9.9.9-amd64.tgz');
    await mkdir(join(dir, 'relabelled'));
    await writeFile(relabelled, await readFile(bundle));
    await writeFile(`${relabelled}.sha256`, (await readFile(`${bundle}.sha256`, 'utf8')).replace(NAME, 'camnode-9.9.9-amd64.tgz'));
    const v = await release('publish', relabelled, '--key', key, '--config', cfg);
    expect([v.code, v.stderr]).toEqual([2, expect.stringContaining(`the bundle holds camnode ${VERSION}, not 9.9.9`) as unknown]);
    const bare = join(dir, 'bare', NAME);
    await mkdir(join(dir, 'bare'));
    await writeFile(bare, await readFile(bundle));
    const unverified = await release('publish', bare, '--key', key, '--config', cfg);
    expect([unverified.code, unverified.stderr]).toEqual([2, expect.stringContaining('--no-verify') as unknown]);
    expect((await release('publish', bare, '--key', key, '--config', cfg, '--no-verify')).code).toBe(0);

    // Other bytes under a published name: refused, unless --force.
    const repacked = join(dir, 'repacked', NAME);
    await mkdir(join(dir, 'repacked', 'x'), { recursive: true });
    await exec('tar', ['-xzf', bundle, '-C', join(dir, 'repacked', 'x')]);
    await writeFile(join(dir, 'repacked', 'x', 'camnode', 'EXTRA'), 'x');
    await exec('tar', ['-czf', repacked, '-C', join(dir, 'repacked', 'x'), 'camnode']);
    const over = await release('publish', repacked, '--key', key, '--config', cfg, '--no-verify');
    expect([over.code, over.stderr]).toEqual([2, expect.stringContaining('already published with other bytes') as unknown]);
    expect((await release('publish', repacked, '--key', key, '--config', cfg, '--no-verify', '--force')).code).toBe(0);
    expect((await readFile(join(dir, 'share', 'district', 'releases', NAME))).equals(await readFile(repacked))).toBe(true);

    // A config whose fleet.releaseKey is another key's: the nodes would refuse the release.
    await writeFile(join(dir, 'other-key.yaml'), `${await readFile(cfg, 'utf8')}fleet:\n  releaseKey: ${Buffer.alloc(32, 9).toString('base64')}\n`);
    const mismatch = await release('publish', bundle, '--key', key, '--config', join(dir, 'other-key.yaml'), '--force');
    expect([mismatch.code, mismatch.stderr]).toEqual([2, expect.stringContaining('is not fleet.releaseKey') as unknown]);

    await writeFile(join(dir, 'none.yaml'), 'node:\n  id: x\n');
    const none = await release('publish', bundle, '--key', key, '--config', join(dir, 'none.yaml'));
    expect([none.code, none.stderr]).toEqual([2, expect.stringContaining('has no upstream section') as unknown]);
  });
});
