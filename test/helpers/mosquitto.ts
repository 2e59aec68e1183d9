// A private Mosquitto for one test run, configured the way central ops would: the CA and every
// certificate come from provisioning/fleet-ca.sh, the config and ACL from the templates
// rendered by provisioning/mosquitto/render.sh. Only the port, paths and (optionally) an open
// plain listener differ, so the tests exercise what ships.
//
// Privileges: started as root, Mosquitto drops to the `mosquitto` user before it reads its
// certificates and persistence file, as it does in production. We keep that and give the
// broker's own directory to that user (the CA's key stays root-only in its own directory).
// Only if that user does not exist do we write `user root`, since Mosquitto would otherwise
// fall back to `nobody`, who can read nothing here.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';

const run = promisify(execFile);
const FLEET_CA = fileURLToPath(new URL('../../provisioning/fleet-ca.sh', import.meta.url));
const RENDER = fileURLToPath(new URL('../../provisioning/mosquitto/render.sh', import.meta.url));
const MOSQUITTO = process.env.MOSQUITTO_BIN ?? 'mosquitto';
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;
const LOG_KEEP = 64 * 1024;

export interface MosquittoOptions {
  /** Topic prefix the ACL is rendered for (default `camnode`). */
  prefix?: string;
  /** Node ids to issue certificates for (CN = id). */
  nodes: string[];
  /** Principals to issue certificates for (CN = `ops:NAME`), `NAME` (an admin) or `NAME:ROLE`; the ACL is rendered from the CA's roster (default `['admin']`). */
  ops?: string[];
  /** Also open a plain listener: no TLS, anonymous, no ACL (for tests that need none of that). */
  plain?: boolean;
  /** Override the template's max_packet_size (bytes). */
  maxPacketSize?: number;
}

export interface ClientFiles {
  cert: string;
  key: string;
}

export interface Mosquitto {
  /** mqtts://127.0.0.1:PORT — stable across restart(). */
  url: string;
  port: number;
  /** mqtt://127.0.0.1:PORT of the plain listener, when asked for. */
  plainUrl?: string;
  plainPort?: number;
  prefix: string;
  /** The fleet CA certificate, for clients' `ca`. */
  caFile: string;
  /** The fleet CA directory made by fleet-ca.sh (to issue or revoke more). */
  caDir: string;
  /** Temp directory holding everything; removed by dispose()/stopAllMosquittos(). */
  dir: string;
  /** PID of the current broker process (changes on restart()); -1 when not running. */
  readonly pid: number;
  /** Certificate and key paths for a node id or `ops:NAME`. */
  certFor(name: string): ClientFiles;
  /** `{ca, cert, key}` contents for an MQTT.js client acting as `name`. */
  tls(name: string): { ca: Buffer; cert: Buffer; key: Buffer };
  /** Issue a certificate for another node id (or `ops:NAME`, which the ACL does not know yet). */
  issue(name: string): Promise<ClientFiles>;
  /** Revoke a certificate, install the new CRL and reload the broker (SIGHUP). */
  revoke(name: string): Promise<void>;
  /** The broker's log so far (its last 64 kB). */
  log(): string;
  /** SIGTERM (Mosquitto saves its persistence file) and wait; SIGKILL after 3 s. */
  stop(): Promise<void>;
  /** SIGKILL and wait: nothing is saved. */
  kill(): Promise<void>;
  /** Start again on the same port(s) with the same files; waits until it listens. */
  restart(): Promise<void>;
  /** stop() and delete the temp directory. */
  dispose(): Promise<void>;
}

const running = new Set<Mosquitto>();

// Last resort if a test file forgets stopAllMosquittos(): never leave a broker holding a port.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (alive(c)) c.kill('SIGKILL');
});

export async function startMosquitto(opts: MosquittoOptions): Promise<Mosquitto> {
  const prefix = opts.prefix ?? 'camnode';
  const ops = opts.ops ?? ['admin'];
  const dir = await mkdtemp(join(tmpdir(), 'camnode-mosquitto-'));
  try {
    return await setUp(dir, prefix, opts.nodes, ops, opts);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** For afterAll: stop every broker still running and delete its files. */
/** A node's retained status as the broker holds it, read as `principal` (e.g. `ops:vera`). */
export async function retainedStatus(broker: Mosquitto, node: string, principal: string): Promise<Record<string, unknown>> {
  const client = await mqtt.connectAsync(broker.url, { ...broker.tls(principal), reconnectPeriod: 0 });
  try {
    const got = new Promise<Record<string, unknown>>((resolve) => client.on('message', (_t, p) => resolve(JSON.parse(p.toString()) as Record<string, unknown>)));
    await client.subscribeAsync(`camnode/${node}/status`, { qos: 1 });
    return await got;
  } finally {
    await client.endAsync(true);
  }
}

export async function stopAllMosquittos(): Promise<void> {
  const all = [...running];
  running.clear();
  await Promise.all(all.map((b) => b.dispose()));
}

async function setUp(dir: string, prefix: string, nodes: string[], ops: string[], opts: MosquittoOptions): Promise<Mosquitto> {
  const caDir = join(dir, 'ca');
  const brokerDir = join(dir, 'broker');
  const tlsDir = join(brokerDir, 'tls');
  const dataDir = join(brokerDir, 'data');
  await fleetCa('init', caDir);
  for (const id of nodes) await fleetCa('node', caDir, id);
  for (const spec of ops) {
    const [name, role = 'admin'] = spec.split(':');
    await fleetCa('ops', caDir, name!, '--role', role);
  }
  await fleetCa('server', caDir, 'localhost', '127.0.0.1');

  await mkdir(tlsDir, { recursive: true });
  await mkdir(dataDir, { recursive: true });
  await copyFile(join(caDir, 'ca.crt'), join(tlsDir, 'ca.crt'));
  await copyFile(join(caDir, 'crl.pem'), join(tlsDir, 'crl.pem'));
  await copyFile(join(caDir, 'server/localhost.crt'), join(tlsDir, 'server.crt'));
  await copyFile(join(caDir, 'server/localhost.key'), join(tlsDir, 'server.key'));

  let port = 0;
  let plainPort: number | undefined;
  let child: ChildProcess | undefined;
  let logText = '';
  const confFile = join(brokerDir, 'camnode.conf');

  const writeConf = async (): Promise<void> => {
    await run('bash', [RENDER, prefix, brokerDir, '--roster', join(caDir, 'roster')], {
      env: {
        ...process.env,
        PORT: String(port),
        BIND_ADDRESS: '127.0.0.1',
        TLS_DIR: tlsDir,
        ACL_FILE: join(brokerDir, 'camnode.acl'),
        PERSIST_DIR: dataDir,
        LOG_DEST: 'stderr',
        ...(opts.maxPacketSize ? { MAX_PACKET_SIZE: String(opts.maxPacketSize) } : {}),
      },
    });
    let conf = await readFile(confFile, 'utf8');
    const owner = await brokerOwner();
    if (owner === 'root') conf += '\n# test: no `mosquitto` user on this machine\nuser root\n';
    if (plainPort !== undefined) {
      // Auth settings then belong to the listener they follow; the template writes them after
      // its TLS listener, so that listener keeps its ACL and the plain one gets none.
      conf = `per_listener_settings true\n${conf}\n# test only: an open plain listener\nlistener ${plainPort} 127.0.0.1\nallow_anonymous true\n`;
    }
    await writeFile(confFile, conf);
    if (typeof owner === 'object') {
      await chmod(dir, 0o755);
      await chownTree(brokerDir, owner.uid, owner.gid);
    }
  };

  const launch = async (): Promise<void> => {
    const c = spawn(MOSQUITTO, ['-c', confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(c);
    c.once('exit', () => children.delete(c));
    let own = ''; // this process's log until it is ready
    c.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      logText = (logText + chunk).slice(-LOG_KEEP);
      if (own.length < LOG_KEEP) own += chunk;
    });
    child = c;
    // "running" is logged once every listener is bound.
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!/^\S+: mosquitto version \S+ running$/m.test(own)) {
      if (!alive(c)) {
        await exited(c);
        throw new LaunchError(`mosquitto exited during start (code ${c.exitCode})\n--- log ---\n${own}`, own);
      }
      if (Date.now() > deadline) {
        await terminate(c);
        throw new LaunchError(`mosquitto not running within ${READY_TIMEOUT_MS} ms\n--- log ---\n${own}`, own);
      }
      await sleep(20);
    }
  };

  // A port free a moment ago may be taken by the time the broker binds it: retry with new ones.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    plainPort = opts.plain ? await freePort() : undefined;
    await writeConf();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || !(err instanceof LaunchError) || !/Address already in use/.test(err.log)) throw err;
    }
  }

  const broker: Mosquitto = {
    url: `mqtts://127.0.0.1:${port}`,
    port,
    ...(plainPort !== undefined ? { plainUrl: `mqtt://127.0.0.1:${plainPort}`, plainPort } : {}),
    prefix,
    caFile: join(caDir, 'ca.crt'),
    caDir,
    dir,
    get pid() {
      return child && alive(child) ? child.pid! : -1;
    },
    certFor(name) {
      const base = name.startsWith('ops:') ? join(caDir, 'ops', name.slice(4)) : join(caDir, 'nodes', name);
      return { cert: `${base}.crt`, key: `${base}.key` };
    },
    tls(name) {
      const files = broker.certFor(name);
      return { ca: readFileSync(broker.caFile), cert: readFileSync(files.cert), key: readFileSync(files.key) };
    },
    async issue(name) {
      if (name.startsWith('ops:')) await fleetCa('ops', caDir, name.slice(4), '--role', 'admin');
      else await fleetCa('node', caDir, name);
      return broker.certFor(name);
    },
    async revoke(name) {
      await fleetCa('revoke', caDir, name);
      await copyFile(join(caDir, 'crl.pem'), join(tlsDir, 'crl.pem'));
      await chmod(join(tlsDir, 'crl.pem'), 0o644);
      if (!child || !alive(child)) return;
      const reloads = (logText.match(/Reloading config/g) ?? []).length;
      child.kill('SIGHUP');
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while ((logText.match(/Reloading config/g) ?? []).length <= reloads) {
        if (Date.now() > deadline) throw new Error(`mosquitto did not reload\n--- log ---\n${logText}`);
        await sleep(20);
      }
    },
    log: () => logText,
    async stop() {
      if (child) await terminate(child);
    },
    async kill() {
      if (child && alive(child)) {
        child.kill('SIGKILL');
        await exited(child);
      }
    },
    async restart() {
      if (child) await terminate(child);
      await launch();
      running.add(broker);
    },
    async dispose() {
      running.delete(broker);
      if (child) await terminate(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
  running.add(broker);
  return broker;
}

async function fleetCa(...args: string[]): Promise<void> {
  try {
    await run('bash', [FLEET_CA, ...args]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`fleet-ca.sh ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  }
}

/** Who the broker runs as: the `mosquitto` user when we are root, else ourselves ('self'). */
async function brokerOwner(): Promise<{ uid: number; gid: number } | 'root' | 'self'> {
  if (userInfo().uid !== 0) return 'self';
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('mosquitto:'));
  if (!line) return 'root';
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await run('chown', ['-R', `${uid}:${gid}`, path]);
  await chown(path, uid, gid);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

class LaunchError extends Error {
  constructor(message: string, readonly log: string) {
    super(message);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(c: ChildProcess): boolean {
  return c.pid !== undefined && c.exitCode === null && c.signalCode === null;
}

function exited(c: ChildProcess): Promise<void> {
  if (!alive(c)) return Promise.resolve();
  return new Promise((resolve) => c.once('exit', () => resolve()));
}

async function terminate(c: ChildProcess): Promise<void> {
  if (!alive(c)) return;
  c.kill('SIGTERM');
  c.kill('SIGCONT');
  const timer = setTimeout(() => c.kill('SIGKILL'), STOP_GRACE_MS);
  await exited(c);
  clearTimeout(timer);
}
