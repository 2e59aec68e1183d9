// `ping` round trip over MQTT on loopback: the agent (`camnode run`, its own process, one
// `testsrc` camera recording, so its ffmpeg competes for the CPU as in the field) answering
// 1,000 sequential pings from one MQTT.js client through a private Mosquitto. Each ping is
// signed (CONTRACT §7: a JWS by a principal of a throwaway fleet CA, as `camnode ctl` signs),
// so the node's checks — chain, signature, the nonce written durably — are in the figures; one
// row shows the same node taking them unsigned (`mqtt.requireSignedCommands: false`). Timed from the
// request's publish to the reply's arrival. Over MQTT 5 (Response Topic + Correlation Data, as
// `camnode ctl` sends them) with the node on MQTT 5, then over 3.1.1 (`replyTo` and `id` in the
// payload) with the node configured for 3.1.1. For scale, the same client's round trip through
// the broker alone (it publishes to a topic it subscribes to) is measured too.
//
//   node dist/bench/ping.js [--pings 1000]
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeDemoFleet } from '../src/demo/throwaway-ca.js';
import { signingWith, type Signing } from '../src/ops/signer.js';
import { percentile, startAgent, startBroker } from './fleet-lib.js';
import { machine, machineMarkdown, numberArg, sleep, verdict, writeResults } from './lib.js';

const PINGS = numberArg('--pings', 1_000);
const WARMUP = 20;
/** The side rows (configurations that are not the target's): enough to show their shape. */
const SIDE_PINGS = Math.min(PINGS, 200);
const TARGET_P99_MS = 20;
/** After the camera records and the link is up: start-up is not the steady state. */
const SETTLE_MS = 3_000;
const NODE = 'bench';

interface Summary { n: number; mean: number; p50: number; p90: number; p99: number; max: number }
function summarise(xs: readonly number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1]! };
}
const ms = (v: number): string => v.toFixed(2);

type Version = 5 | 4;

/**
 * Sends `count` requests one at a time and times each to its reply. `send` publishes request
 * number i; `match` says whether a message is the reply to it (and checks it).
 */
async function roundTrips(client: MqttClient, count: number, send: (i: number) => void, match: (i: number, topic: string, payload: Buffer, correlation?: Buffer) => boolean): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        client.off('message', onMessage);
        reject(new Error(`no reply to request ${i + 1} within 5 s`));
      }, 5_000);
      let t0 = 0;
      const onMessage = (topic: string, payload: Buffer, packet: { properties?: { correlationData?: Buffer } }): void => {
        const t1 = performance.now();
        try {
          if (!match(i, topic, payload, packet.properties?.correlationData)) return;
        } catch (err) {
          clearTimeout(timer);
          client.off('message', onMessage);
          reject(err as Error);
          return;
        }
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(t1 - t0);
      };
      client.on('message', onMessage);
      t0 = performance.now();
      send(i);
    });
    times.push(t);
  }
  return times;
}

interface ClientRun {
  name: string;
  count: number;
  /** TCP_NODELAY on the requesting client's socket (MQTT.js leaves Nagle's algorithm on). */
  noDelay: boolean;
  primary: boolean;
}

interface Signer { caFile: string; signing: Signing }

/** One agent on `version`; each of `runs` is a fresh requesting client against it, in turn. `signer` absent: unsigned. */
async function pingAgent(brokerUrl: string, version: Version, runs: ClientRun[], signer?: Signer): Promise<Map<ClientRun, number[]>> {
  const agent = await startAgent({
    cameras: 1,
    mqtt: { url: brokerUrl, protocolVersion: version === 5 ? 5 : '3.1.1', keepalive: '30s', ...(signer ? {} : { requireSignedCommands: false }) },
    ...(signer ? { fleet: { ca: signer.caFile } } : {}),
  });
  const out = new Map<ClientRun, number[]>();
  try {
    await sleep(SETTLE_MS);
    for (const run of runs) {
      const client = await mqtt.connectAsync(brokerUrl, { protocolVersion: version, clean: true, reconnectPeriod: 0 });
      try {
        if (run.noDelay) (client.stream as unknown as Socket).setNoDelay(true);
        out.set(run, await pingRun(client, version, run.count, signer?.signing));
      } finally {
        await client.endAsync().catch(() => {});
      }
      if (agent.exited() || agent.recording.size < 1) throw new Error(`the agent stopped during the run: ${agent.tail()}`);
    }
    return out;
  } finally {
    await agent.stop();
  }
}

async function pingRun(c: MqttClient, version: Version, count: number, signing?: Signing): Promise<number[]> {
  // One reply topic for the whole run, under the node's subtree as CONTRACT §3 requires (and
  // under the signer's CN for signed ones, CONTRACT §7).
  const replyTopic = `camnode/${NODE}/reply/${signing ? `${signing.cn}/` : ''}bench-${randomBytes(6).toString('hex')}`;
  await c.subscribeAsync(replyTopic, { qos: 1 });
  const cmdTopic = `camnode/${NODE}/cmd/ping`;
  const correlation = (i: number): Buffer => Buffer.from(`ping-${i}`);
  // Signed ahead of the timing: what is measured is the node's work and the transport, as a
  // ctl's signing happens before it publishes.
  const total = count + WARMUP;
  const jws = signing ? await Promise.all(Array.from({ length: total }, () => signing.sign(NODE, 'ping', {}, undefined))) : [];
  let next = 0;
  const send = (i: number): void => {
    const body = signing ? { jws: jws[next++]! } : {};
    const payload = version === 5 ? JSON.stringify(body) : JSON.stringify({ ...body, replyTo: replyTopic, id: `ping-${i}` });
    c.publishAsync(cmdTopic, payload, { qos: 1, ...(version === 5 ? { properties: { responseTopic: replyTopic, correlationData: correlation(i) } } : {}) })
      .catch((err: unknown) => console.error(`publish failed: ${(err as Error).message}`));
  };
  const match = (i: number, topic: string, payload: Buffer, corr?: Buffer): boolean => {
    if (topic !== replyTopic) return false;
    const body = JSON.parse(payload.toString('utf8')) as { id?: unknown; ok?: boolean; data?: { version?: unknown } };
    if (version === 5 ? !corr?.equals(correlation(i)) : body.id !== `ping-${i}`) return false;
    if (body.ok !== true || typeof body.data?.version !== 'string') throw new Error(`ping ${i + 1} got ${payload.toString('utf8')}`);
    return true;
  };
  await roundTrips(c, WARMUP, (i) => send(-1 - i), (i, ...rest) => match(-1 - i, ...rest));
  return roundTrips(c, count, send, match);
}

/** The client's own round trip through the broker: the floor under the agent's figures. */
async function brokerEcho(brokerUrl: string): Promise<number[]> {
  const client = await mqtt.connectAsync(brokerUrl, { protocolVersion: 5, clean: true, reconnectPeriod: 0 });
  (client.stream as unknown as Socket).setNoDelay(true);
  try {
    const topic = `bench-echo/${randomBytes(6).toString('hex')}`;
    await client.subscribeAsync(topic, { qos: 1 });
    await roundTrips(client, WARMUP, (i) => void client.publishAsync(topic, `w${i}`, { qos: 1 }), (i, t, p) => t === topic && p.toString() === `w${i}`);
    return await roundTrips(client, PINGS, (i) => void client.publishAsync(topic, `e${i}`, { qos: 1 }), (i, t, p) => t === topic && p.toString() === `e${i}`);
  } finally {
    await client.endAsync().catch(() => {});
  }
}

async function main(): Promise<number> {
  const m = machine();
  console.log(`ping: ${PINGS} sequential pings over MQTT to \`camnode run\` (1 testsrc camera recording), MQTT 5 and 3.1.1`);
  const results: { name: string; s: Summary; primary: boolean }[] = [];
  const report = (name: string, times: number[], primary: boolean): void => {
    const s = summarise(times);
    results.push({ name, s, primary });
    console.log(`  ${name}: p50 ${ms(s.p50)}  p90 ${ms(s.p90)}  p99 ${ms(s.p99)}  max ${ms(s.max)} ms`);
  };
  let mosquittoVersion = '';
  // The broker as we ship it (set_tcp_nodelay true).
  const broker = await startBroker();
  const fleetDir = mkdtempSync(join(tmpdir(), 'camnode-bench-fleet-'));
  try {
    const fleet = await makeDemoFleet(fleetDir);
    const signer: Signer = { caFile: fleet.caFile, signing: signingWith({ certPem: readFileSync(fleet.certFile, 'utf8'), keyPem: readFileSync(fleet.keyFile, 'utf8') }) };
    mosquittoVersion = /mosquitto version (\S+)/.exec(broker.log())?.[1] ?? '';
    for (const version of [5, 4] as const) {
      const label = version === 5 ? 'MQTT 5, signed (Response Topic + Correlation Data)' : 'MQTT 3.1.1, signed (replyTo + id beside the JWS)';
      const runs: ClientRun[] = [{ name: label, count: PINGS, noDelay: true, primary: true }];
      // How much a requester that leaves Nagle on pays for back-to-back requests on one connection.
      if (version === 5) runs.push({ name: `${label}, requester without TCP_NODELAY`, count: SIDE_PINGS, noDelay: false, primary: false });
      for (const [run, times] of await pingAgent(broker.url, version, runs, signer)) report(run.name, times, run.primary);
    }
    for (const [run, times] of await pingAgent(broker.url, 5, [{ name: 'MQTT 5, unsigned (mqtt.requireSignedCommands: false)', count: SIDE_PINGS, noDelay: true, primary: false }])) report(run.name, times, false);
    report('broker alone (client echo, MQTT 5, QoS 1)', await brokerEcho(broker.url), false);
  } finally {
    await broker.stop();
    rmSync(fleetDir, { recursive: true, force: true });
  }
  // Mosquitto's own default (set_tcp_nodelay false), for brokers not configured from provisioning/.
  const stock = await startBroker({ tcpNoDelay: false });
  try {
    const label = 'MQTT 5, broker with Mosquitto\'s default set_tcp_nodelay false';
    for (const [run, times] of await pingAgent(stock.url, 5, [{ name: `${label} (unsigned)`, count: SIDE_PINGS, noDelay: true, primary: false }])) report(run.name, times, false);
  } finally {
    await stock.stop();
  }
  const primary = results.filter((r) => r.primary);
  const ok = primary.every((r) => r.s.p99 <= TARGET_P99_MS);
  for (const r of primary) console.log(`  ${r.name}: p99 ${ms(r.s.p99)} ms (target <= ${TARGET_P99_MS} ms) ${verdict(r.s.p99 <= TARGET_P99_MS)}`);

  const path = writeResults('ping', [
    '# `ping` round trip over MQTT (loopback)',
    '',
    `Measured: ${PINGS} \`ping\` requests to \`camnode run\` (its own process; one \`testsrc\` camera recording 2 s segments, ` +
    'encoded here with libx264 at 640x360@10, so its ffmpeg shares the 2 cores) through a private Mosquitto ' +
    `${mosquittoVersion} on 127.0.0.1 (plain listener; \`set_tcp_nodelay true\` as in provisioning/mosquitto/camnode.conf.template). ` +
    `One MQTT.js client sends them one at a time to \`camnode/${NODE}/cmd/ping\` at QoS 1 and waits for the reply on one reply topic ` +
    'under the node\'s subtree (subscribed at QoS 1; the node replies at QoS 1); each is timed from the publish call to the reply\'s ' +
    'arrival, and each reply is checked (`ok: true`, a version string, the request\'s own Correlation Data or `id`). ' +
    `${WARMUP} unmeasured pings first. Signed rows: each ping a JWS (ES256, x5c) by an admin principal of a throwaway fleet CA (the demo's), made before the timing starts as ctl makes it before it publishes; ` +
    'the node checks the chain, the signature, the iat and the nonce (written durably) before it answers. ' +
    `MQTT 5: the node and the client on MQTT 5, Response Topic + Correlation Data (as \`camnode ctl\` sends them). ` +
    'MQTT 3.1.1: a fresh agent configured with `protocolVersion: "3.1.1"`, the client on 3.1.1, `replyTo` and `id` in the payload. ' +
    'The requesting client sets TCP_NODELAY on its socket (MQTT.js does not): with Nagle\'s algorithm on, a request written right after ' +
    'the PUBACK of the previous reply waits for the broker\'s delayed ACK (~40 ms on Linux) — a cost of the requester, shown in its own row. ' +
    'The node sets TCP_NODELAY on its own broker socket (src/fleet/link.ts): without it every reply, written right after the ' +
    'request\'s PUBACK, waited ~40 ms for the same reason (p50 44 ms when this benchmark was first run). ' +
    'Broker alone: the same kind of client publishing QoS 1 to a topic it subscribes to (no agent): the transport\'s share of the figures. ' +
    `The last row: a broker with Mosquitto's stock \`set_tcp_nodelay false\` (${SIDE_PINGS} pings, a fresh agent).`,
    '',
    machineMarkdown(m),
    '',
    '| path | n | mean ms | p50 ms | p90 ms | p99 ms | max ms |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name} | ${r.s.n} | ${ms(r.s.mean)} | ${ms(r.s.p50)} | ${ms(r.s.p90)} | ${ms(r.s.p99)} | ${ms(r.s.max)} |`),
    '',
    ...primary.map((r) => `- ${r.name}: p99 **${ms(r.s.p99)} ms** (p50 ${ms(r.s.p50)} ms, max ${ms(r.s.max)} ms) — target <= ${TARGET_P99_MS} ms: **${verdict(r.s.p99 <= TARGET_P99_MS)}**`),
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
