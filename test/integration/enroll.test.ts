// Enrolment (CONTRACT §9) with the real CLI, the fleet CA script and a TLS Mosquitto rendered
// from provisioning/: the key is made on the node (0600, the camnode user's) and never copied;
// the request is signed by `fleet-ca.sh node --csr`; the certificate is installed only if it is
// for this key, this node and from the fleet CA; the node then connects to the broker.
import { execFile } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, runCli, tempDir, writeConfig } from '../helpers/agent.js';
import { startMosquitto, stopAllMosquittos, type Mosquitto } from '../helpers/mosquitto.js';

const exec = promisify(execFile);
const FLEET_CA = fileURLToPath(new URL('../../provisioning/fleet-ca.sh', import.meta.url));
const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;
const NODE = 'branch-enroll';

describeRoot('camnode enroll', () => {
  let broker: Mosquitto;
  let dir: string;
  let configPath: string;
  let otherCa: string;
  const key = (): string => join(dir, 'tls', 'mqtt.key');
  const crt = (): string => join(dir, 'tls', 'mqtt.crt');

  beforeAll(async () => {
    broker = await startMosquitto({ nodes: [], ops: ['admin'] });
    dir = await tempDir('camnode-enroll-');
    await exec('mkdir', ['-p', join(dir, 'tls'), join(dir, 'state')]);
    // The camnode user owns its state folder (install.sh makes it so); nobody stands in here.
    await chown(join(dir, 'state'), 65534, 65534);
    const config = baseConfig(dir, [{ id: 'cam', source: 'testsrc', zone: 'entrance' }], {
      node: { id: NODE },
      mqtt: { url: broker.url, ca: broker.caFile, cert: crt(), key: key() },
    });
    configPath = await writeConfig(dir, config);
    otherCa = await mkdtemp(join(tmpdir(), 'camnode-other-ca-'));
    await exec('bash', [FLEET_CA, 'init', join(otherCa, 'ca')]);
  }, 60_000);

  afterAll(async () => {
    await stopAllMosquittos();
    await rm(dir, { recursive: true, force: true });
    await rm(otherCa, { recursive: true, force: true });
  });

  it('makes the key on the node (0600, the camnode user\'s) and a request for it; again, it keeps the key', async () => {
    const r = await runCli(['enroll', '--config', configPath]);
    expect(r.code, r.stderr).toBe(0);
    const st = await stat(key());
    expect(st.mode & 0o777).toBe(0o600);
    expect([st.uid, st.gid]).toEqual([65534, 65534]);
    const spki = createPublicKey(await readFile(key(), 'utf8')).export({ type: 'spki', format: 'der' });
    const fingerprint = createHash('sha256').update(spki).digest('hex').replace(/(..)(?!$)/g, '$1:');
    expect(r.stdout).toContain(`key made: ${key()}`);
    expect(r.stdout).toContain(`fingerprint: ${fingerprint}`);
    const csr = join(dir, 'tls', 'mqtt.csr');
    expect(r.stdout).toContain(`request:     ${csr}`);
    // openssl reads the request: self-signed, CN = the node id, the same public key.
    const { stdout } = await exec('openssl', ['req', '-in', csr, '-noout', '-verify', '-subject']);
    expect(stdout).toContain(`CN = ${NODE}`);
    const { stdout: pub } = await exec('openssl', ['req', '-in', csr, '-noout', '-pubkey']);
    expect(createPublicKey(pub).export({ type: 'spki', format: 'der' }).equals(spki)).toBe(true);
    const again = await runCli(['enroll', '--config', configPath]);
    expect(again.stdout).toContain(`key kept: ${key()}`);
    expect(createPublicKey(await readFile(key(), 'utf8')).export({ type: 'spki', format: 'der' }).equals(spki)).toBe(true);
  });

  it('refuses a certificate for another key, from another CA, or for another node; a good one is installed and connects', async () => {
    const csr = join(dir, 'tls', 'mqtt.csr');
    // Another key: a certificate fleet-ca.sh made with a key of its own for this node id.
    const other = await broker.issue(NODE);
    let r = await runCli(['enroll', '--config', configPath, '--install-cert', other.cert]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is for another key, not this node\'s');
    // Another CA: this node's request signed by a CA that is not the fleet's.
    const { stdout: foreignOut } = await exec('bash', [FLEET_CA, 'node', join(otherCa, 'ca'), NODE, '--csr', csr]);
    r = await runCli(['enroll', '--config', configPath, '--install-cert', foreignOut.split(' ')[0]!]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not signed by the fleet CA');
    // Another node: this key's request signed for another id.
    const { stdout: wrongOut } = await exec('bash', [FLEET_CA, 'node', broker.caDir, 'branch-other', '--csr', csr]);
    r = await runCli(['enroll', '--config', configPath, '--install-cert', wrongOut.split(' ')[0]!]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not this node (branch-enroll)');
    await expect(stat(crt())).rejects.toThrow();
    // The right one: signed by the fleet CA from this node's request.
    await exec('bash', [FLEET_CA, 'node', broker.caDir, NODE, '--csr', csr, '--renew']);
    const signed = join(broker.caDir, 'nodes', `${NODE}.crt`);
    r = await runCli(['enroll', '--config', configPath, '--install-cert', signed]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`certificate installed at ${crt()}`);
    expect((await stat(crt())).mode & 0o777).toBe(0o644);
    // The broker takes it: the node's key and certificate open a TLS session as the node.
    const client = await mqtt.connectAsync(broker.url, {
      ca: await readFile(broker.caFile), cert: await readFile(crt()), key: await readFile(key()), reconnectPeriod: 0, connectTimeout: 10_000, clientId: NODE,
    });
    await client.publishAsync(`camnode/${NODE}/status`, JSON.stringify({ online: true }), { qos: 1 });
    await client.endAsync();
  }, 60_000);

  it('says what is missing when the config cannot enroll', async () => {
    const bare = await writeConfig(dir, baseConfig(dir, [{ id: 'cam', source: 'testsrc', zone: 'entrance' }], { node: { id: NODE } }), 'bare.yaml');
    const r = await runCli(['enroll', '--config', bare]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the config has no mqtt section');
  });
});
