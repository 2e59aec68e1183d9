// Signed commands (CONTRACT §7) against real certificates: the fleet CA, principals and
// revocations come from provisioning/fleet-ca.sh (openssl), a foreign CA and odd certificates
// from openssl directly. The checks run as the node runs them; the signatures are made by the
// signer ctl uses, or by hand where a forgery needs it.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { CompactSign } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplayGuard } from '../../src/commands/replay.js';
import { outerJws, SignedCommands, type SignedCheck } from '../../src/commands/signed.js';
import { FleetRevocation } from '../../src/fleet/revocation.js';
import { ManualClock } from '../../src/platform/clock.js';
import { silentLogger } from '../../src/platform/logger.js';
import { x509 } from '../../src/platform/x509.js';
import { signingWith, type Signing } from '../../src/ops/signer.js';

const run = promisify(execFile);
const FLEET_CA = fileURLToPath(new URL('../../provisioning/fleet-ca.sh', import.meta.url));
const NODE = 'branch-01';
const DAY = 86_400_000;

let dir: string;
let ca: string;
let anchors: x509.X509Certificate[];
const signers = new Map<string, Signing>();

async function fleetCa(...args: string[]): Promise<void> {
  await run('bash', [FLEET_CA, ...args]);
}
function read(path: string): string {
  return readFileSync(path, 'utf8');
}
function signer(name: string): Signing {
  return signers.get(name)!;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'camnode-signed-'));
  ca = join(dir, 'ca');
  await fleetCa('init', ca);
  for (const [name, role] of [['vera', 'viewer'], ['otto', 'ops'], ['cleo', 'custodian'], ['ada', 'admin'], ['eve', 'ops']] as const) {
    await fleetCa('ops', ca, name, '--role', role);
    signers.set(name, signingWith({ certPem: read(join(ca, 'ops', `${name}.crt`)), keyPem: read(join(ca, 'ops', `${name}.key`)) }));
  }
  await fleetCa('node', ca, NODE);
  signers.set('node', signingWith({ certPem: read(join(ca, 'nodes', `${NODE}.crt`)), keyPem: read(join(ca, 'nodes', `${NODE}.key`)) }));
  anchors = [new x509.X509Certificate(read(join(ca, 'ca.crt')))];

  // A CA nobody trusts, issuing a look-alike principal.
  const other = join(dir, 'other');
  await fleetCa('init', other);
  await fleetCa('ops', other, 'otto', '--role', 'admin');
  signers.set('foreign', signingWith({ certPem: read(join(other, 'ops', 'otto.crt')), keyPem: read(join(other, 'ops', 'otto.key')) }));

  // Two OUs, signed by the fleet CA's own key (fleet-ca.sh would never issue it).
  const two = join(dir, 'two');
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${two}.key`]);
  await run('openssl', ['req', '-new', '-key', `${two}.key`, '-subj', '/OU=ops/OU=admin/CN=ops:mallory', '-out', `${two}.csr`]);
  await run('openssl', ['x509', '-req', '-in', `${two}.csr`, '-CA', join(ca, 'ca.crt'), '-CAkey', join(ca, 'ca.key'), '-days', '30', '-out', `${two}.crt`]);
  signers.set('two-ous', signingWith({ certPem: read(`${two}.crt`), keyPem: read(`${two}.key`) }));

  // An Ed25519 principal (EdDSA), also from the fleet CA.
  const ed = join(dir, 'ed');
  await run('openssl', ['genpkey', '-algorithm', 'ED25519', '-out', `${ed}.key`]);
  await run('openssl', ['req', '-new', '-key', `${ed}.key`, '-subj', '/OU=ops/CN=ops:edna', '-out', `${ed}.csr`]);
  await run('openssl', ['x509', '-req', '-in', `${ed}.csr`, '-CA', join(ca, 'ca.crt'), '-CAkey', join(ca, 'ca.key'), '-days', '30', '-out', `${ed}.crt`]);
  signers.set('ed', signingWith({ certPem: read(`${ed}.crt`), keyPem: read(`${ed}.key`) }));
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Node { commands: SignedCommands; clock: ManualClock; revocation: FleetRevocation; stateDir: string; synced: { value: boolean | null } }

async function node(opts: { stateDir?: string; crlFile?: string; clock?: ManualClock } = {}): Promise<Node> {
  const stateDir = opts.stateDir ?? await mkdtemp(join(dir, 'state-'));
  const clock = opts.clock ?? new ManualClock(Date.now(), 1_000);
  const log = silentLogger();
  const revocation = new FleetRevocation({ crlFile: opts.crlFile, stateDir, anchors, clock, log });
  await revocation.start();
  const replay = new ReplayGuard({ stateDir, log });
  await replay.load();
  const synced = { value: true as boolean | null };
  const commands = new SignedCommands({ nodeId: NODE, anchors, revocation, replay, clock, clockSynced: () => synced.value });
  return { commands, clock, revocation, stateDir, synced };
}

const reply = (cn: string): string => `camnode/${NODE}/reply/${cn}/x1`;
async function sign(who: string, cmd: string, args: object = {}, opts: { node?: string; at?: number } = {}): Promise<string> {
  const s = signer(who);
  return s.sign(opts.node ?? NODE, cmd, args, reply(s.cn), opts.at);
}
function refused(r: SignedCheck, pattern: RegExp): void {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  if (!r.ok) expect(r.reason).toMatch(pattern);
}

describe('signed commands', () => {
  it('a principal\'s command passes: by is its CN, with its role and certificate hash; the reply goes under its CN', async () => {
    const n = await node();
    const r = await n.commands.check('lock', await sign('otto', 'lock', { reason: 'fight' }, { at: n.clock.now() }));
    expect(r).toMatchObject({ ok: true, cmd: 'lock', args: { reason: 'fight' }, replyTo: reply('ops:otto'), signer: { cn: 'ops:otto', role: 'ops' } });
    if (r.ok) expect(r.signer.certSha256).toMatch(/^[0-9a-f]{64}$/);
    // EdDSA too.
    expect((await n.commands.check('sync', await sign('ed', 'sync', {}, { at: n.clock.now() }))).ok).toBe(true);
  });

  it('roles: a viewer cannot lock, ops cannot dispose, a custodian can; only an admin may config', async () => {
    const n = await node();
    const at = n.clock.now();
    refused(await n.commands.check('lock', await sign('vera', 'lock', {}, { at })), /ops:vera \(viewer\) may not lock/);
    expect((await n.commands.check('state', await sign('vera', 'state', {}, { at }))).ok).toBe(true);
    refused(await n.commands.check('dispose', await sign('otto', 'dispose', {}, { at })), /\(ops\) may not dispose/);
    expect((await n.commands.check('dispose', await sign('cleo', 'dispose', {}, { at }))).ok).toBe(true);
    // The alias is the same command for the role check, but a signature names the topic's word.
    expect((await n.commands.check('release', await sign('cleo', 'release', {}, { at }))).ok).toBe(true);
    refused(await n.commands.check('dispose', await sign('cleo', 'release', {}, { at })), /signed for command "release", sent as "dispose"/);
    refused(await n.commands.check('config', await sign('cleo', 'config', {}, { at })), /may not config/);
    expect((await n.commands.check('config', await sign('ada', 'config', {}, { at }))).ok).toBe(true);
  });

  it('a replayed command is refused, also after a restart', async () => {
    const n = await node();
    const jws = await sign('otto', 'lock', {}, { at: n.clock.now() });
    expect((await n.commands.check('lock', jws)).ok).toBe(true);
    refused(await n.commands.check('lock', jws), /nonce already used/);
    const again = await node({ stateDir: n.stateDir, clock: n.clock });
    refused(await again.commands.check('lock', jws), /nonce already used/);
    // Two copies racing each other: one passes.
    const twin = await sign('otto', 'lock', {}, { at: n.clock.now() });
    const both = await Promise.all([again.commands.check('lock', twin), again.commands.check('lock', twin)]);
    expect(both.filter((r) => r.ok)).toHaveLength(1);
  });

  it('iat: ±5 min of a synced clock; unsynced, not more than 10 min below the newest accepted', async () => {
    const n = await node();
    const now = n.clock.now();
    refused(await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now - 6 * 60_000 })), /iat is -36\d s from this node's clock/);
    refused(await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now + 6 * 60_000 })), /from this node's clock/);
    expect((await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now + 4 * 60_000 }))).ok).toBe(true);
    n.synced.value = false;
    expect((await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now - 5 * 60_000 }))).ok).toBe(true);
    refused(await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now - 7 * 60_000 })), /below the newest command accepted/);
  });

  it('unsynced: a refused command from a clock far ahead does not lock the others out; an accepted one raises the mark by 5 min at most', async () => {
    const n = await node();
    n.synced.value = false;
    const now = n.clock.now();
    const year = 365 * DAY;
    refused(await n.commands.check('lock', await sign('vera', 'lock', {}, { at: now + year })), /may not lock/);
    expect((await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now }))).ok).toBe(true);
    // An accepted one from a laptop a year ahead moves the mark only 5 min past it.
    expect((await n.commands.check('state', await sign('vera', 'state', {}, { at: now + year }))).ok).toBe(true);
    expect((await n.commands.check('lock', await sign('otto', 'lock', {}, { at: now }))).ok).toBe(true);
  });

  it('for another node, for another command, tampered, from another CA, a node\'s own certificate, two OUs: refused', async () => {
    const n = await node();
    const at = n.clock.now();
    refused(await n.commands.check('lock', await sign('otto', 'lock', {}, { at, node: 'branch-02' })), /signed for node "branch-02"/);
    refused(await n.commands.check('snapshot', await sign('otto', 'lock', {}, { at })), /signed for command "lock", sent as "snapshot"/);
    const [h, p, s] = (await sign('otto', 'lock', { reason: 'a' }, { at })).split('.');
    const tampered = Buffer.from(Buffer.from(p!, 'base64url').toString().replace('"reason":"a"', '"reason":"b"')).toString('base64url');
    refused(await n.commands.check('lock', `${h}.${tampered}.${s}`), /signature does not verify/);
    refused(await n.commands.check('lock', await sign('foreign', 'lock', {}, { at })), /not issued by the fleet CA/);
    refused(await n.commands.check('lock', await sign('node', 'lock', {}, { at })), /CN "branch-01" is not an ops principal/);
    refused(await n.commands.check('lock', await sign('two-ous', 'lock', {}, { at })), /names 2 OUs/);
  });

  it('headers: alg none, other algorithms, crit, jku, kid, no x5c or too long a chain: refused', async () => {
    const n = await node();
    const good = await sign('otto', 'lock', {}, { at: n.clock.now() });
    const [h, p, s] = good.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as { alg: string; x5c: string[] };
    const withHeader = (extra: object): string => `${Buffer.from(JSON.stringify({ ...header, ...extra })).toString('base64url')}.${p}.${s}`;
    refused(await n.commands.check('lock', withHeader({ alg: 'none' })), /alg "none" is not ES256 or EdDSA/);
    refused(await n.commands.check('lock', `${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${p}.`), /alg "none"/);
    refused(await n.commands.check('lock', withHeader({ alg: 'HS256' })), /not ES256 or EdDSA/);
    refused(await n.commands.check('lock', withHeader({ crit: ['b64'], b64: false })), /only alg and x5c \(found crit, b64\)/);
    refused(await n.commands.check('lock', withHeader({ jku: 'https://example.org/keys' })), /found jku/);
    refused(await n.commands.check('lock', withHeader({ kid: '1' })), /found kid/);
    refused(await n.commands.check('lock', withHeader({ x5c: [] })), /x5c must list 1 to 3/);
    refused(await n.commands.check('lock', withHeader({ x5c: [...header.x5c, ...header.x5c, ...header.x5c, ...header.x5c] })), /x5c must list 1 to 3/);
    // A header with a member twice: which alg would count?
    const dupHeader = Buffer.from(`{"alg":"ES256","alg":"none","x5c":${JSON.stringify(header.x5c)}}`).toString('base64url');
    refused(await n.commands.check('lock', `${dupHeader}.${p}.${s}`), /duplicate member "alg"/);
  });

  it('a payload with a member twice is refused even when validly signed', async () => {
    const n = await node();
    const key = createPrivateKey(read(join(ca, 'ops', 'otto.key')));
    const x5c = [Buffer.from(new x509.X509Certificate(read(join(ca, 'ops', 'otto.crt'))).rawData).toString('base64')];
    const iat = Math.floor(n.clock.now() / 1000);
    const text = `{"node":"${NODE}","cmd":"state","cmd":"lock","args":{},"iat":${iat},"nonce":"${randomBytes(18).toString('base64url')}"}`;
    const jws = await new CompactSign(Buffer.from(text)).setProtectedHeader({ alg: 'ES256', x5c }).sign(key);
    refused(await n.commands.check('lock', jws), /duplicate member "cmd"/);
  });

  it('expired and not-yet-valid certificates are refused', async () => {
    const later = await node({ clock: new ManualClock(Date.now() + 400 * DAY, 1_000) });
    refused(await later.commands.check('lock', await sign('otto', 'lock', {}, { at: later.clock.now() })), /leaf certificate .* is not valid now/);
    const earlier = await node({ clock: new ManualClock(Date.now() - 2 * DAY, 1_000) });
    refused(await earlier.commands.check('lock', await sign('otto', 'lock', {}, { at: earlier.clock.now() })), /is not valid now/);
  });

  it('revocation: by the CRL file and by the retained CRL; the highest number wins; an expired CRL stops custodian and admin commands', async () => {
    const crlFile = join(dir, 'fleet.crl');
    writeFileSync(crlFile, read(join(ca, 'crl.pem')));
    const n = await node({ crlFile });
    expect((await n.commands.check('lock', await sign('eve', 'lock', {}, { at: n.clock.now() }))).ok).toBe(true);
    const before = read(join(ca, 'crl.pem'));
    await fleetCa('revoke', ca, 'ops:eve');
    // The retained CRL arrives first: eve is out at once.
    await n.revocation.offer(Buffer.from(read(join(ca, 'crl.pem'))));
    refused(await n.commands.check('lock', await sign('eve', 'lock', {}, { at: n.clock.now() })), /ops:eve.* is revoked/);
    // An older CRL offered later (a stale retained copy) changes nothing.
    await n.revocation.offer(Buffer.from(before));
    refused(await n.commands.check('lock', await sign('eve', 'lock', {}, { at: n.clock.now() })), /is revoked/);
    // A restart keeps the broker's CRL; the file's older one does not win over it.
    const again = await node({ stateDir: n.stateDir, crlFile, clock: n.clock });
    refused(await again.commands.check('lock', await sign('eve', 'lock', {}, { at: n.clock.now() })), /is revoked/);
    // Only the file, updated: found on the next check.
    const fileOnly = await node({ crlFile });
    writeFileSync(crlFile, read(join(ca, 'crl.pem')));
    await (fileOnly.revocation as unknown as { checkFile(): Promise<void> }).checkFile();
    refused(await fileOnly.commands.check('lock', await sign('eve', 'lock', {}, { at: fileOnly.clock.now() })), /is revoked/);

    // 31 days on, the CRL has expired: custodian and admin commands are refused, ops ones still pass.
    const expired = await node({ crlFile, clock: new ManualClock(Date.now() + 31 * DAY, 1_000) });
    const at = expired.clock.now();
    refused(await expired.commands.check('dispose', await sign('cleo', 'dispose', {}, { at })), /needs a current fleet CRL/);
    expect((await expired.commands.check('lock', await sign('otto', 'lock', {}, { at }))).ok).toBe(true);
    // A CRL not signed by the fleet CA is not adopted.
    await expired.revocation.offer(Buffer.from(read(join(dir, 'other', 'crl.pem'))));
    expect(expired.revocation.status()?.source).toBe('file');
  });

  it('the outer payload must be {jws} (3.1.1 id and replyTo beside it); anything else is unsigned', () => {
    expect(outerJws({ jws: 'a.b.c' })).toBe('a.b.c');
    expect(outerJws({ jws: 'a.b.c', id: 3, replyTo: 'x' })).toBe('a.b.c');
    expect(outerJws({ reason: 'x' })).toBeNull();
    expect(outerJws({ jws: 'a.b.c', reason: 'x' })).toBeNull();
    expect(outerJws({ jws: 5 })).toBeNull();
    expect(outerJws('a.b.c')).toBeNull();
  });
});
