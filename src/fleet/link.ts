// The node's MQTT link to central ops (CONTRACT §3): retained status with a retained last
// will, commands in and replies out on the shared handlers, state on change and on an
// interval, events from the durable outbox in order. Reconnects with capped exponential
// backoff and jitter of its own: MQTT.js's fixed period would bring a whole fleet back in
// lockstep after a broker restart.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Config } from '../config/schema.js';
import type { Component } from '../lifecycle/component.js';
import { backoffDelay, type BackoffPolicy } from '../lifecycle/backoff.js';
import type { Logger } from '../platform/logger.js';
import type { CommandHandlers } from '../commands/handlers.js';
import type { EventOutbox } from './outbox.js';
import { parseRequest, type ReplyAddress } from './requests.js';
import { clip } from '../commands/protocol.js';
import { MUST_BE_SIGNED, outerJws, type SignedCommands } from '../commands/signed.js';
import type { FleetRevocation } from './revocation.js';
import { redactUrl } from '../config/redact.js';
import { Topics, type StatePayload, type StatusPayload } from './topics.js';

export type MqttConfig = NonNullable<Config['mqtt']>;

export interface FleetLinkDeps {
  config: MqttConfig;
  nodeId: string;
  handlers: CommandHandlers;
  outbox: EventOutbox;
  /** The state document now. */
  state(): Promise<StatePayload>;
  /** The retained status's fields, read at each connect (the key history can grow meanwhile). */
  status: Omit<StatusPayload, 'online'> | (() => Omit<StatusPayload, 'online'>);
  log: Logger;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Least time between two state publications caused by changes. */
  stateMinIntervalMs?: number;
  /** Signed commands (CONTRACT §7); absent when `mqtt.requireSignedCommands` is false. */
  signed?: {
    commands: SignedCommands;
    revocation: FleetRevocation;
    replay?: { close(): Promise<void> };
    /** A refused command, counted for the audit log. */
    refused(reason: string): void;
  } | undefined;
}

const CLIENT_SUFFIX = randomBytes(4).toString('hex');
const RECONNECT: BackoffPolicy = { baseMs: 1_000, maxMs: 60_000, jitter: 1 };

export async function mqttOptions(config: MqttConfig, nodeId: string, willTopic: string): Promise<IClientOptions> {
  const tls = /^(mqtts|wss):/.test(config.url);
  return {
    // Random per process: a broker does not tie client ids to certificates, so a predictable
    // id would let one node (or a second process on this one) knock this node off.
    clientId: `camnode-${nodeId}-${CLIENT_SUFFIX}`,
    protocolVersion: config.protocolVersion === 5 ? 5 : 4,
    keepalive: Math.max(1, Math.round(config.keepalive / 1000)),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 15_000,
    // Telemetry is dropped while offline, never queued: state is published only when connected.
    queueQoSZero: false,
    will: { topic: willTopic, payload: Buffer.from(JSON.stringify({ online: false })), qos: 1, retain: true },
    ...(tls ? {
      ca: await readFile(config.ca!),
      cert: await readFile(config.cert!),
      key: await readFile(config.key!),
      rejectUnauthorized: true,
    } : {}),
  };
}

export class FleetLink implements Component {
  readonly name = 'fleet';
  readonly topics: Topics;
  private client: MqttClient | undefined;
  private stopping = false;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private stateTimer: NodeJS.Timeout | undefined;
  private pendingState: NodeJS.Timeout | undefined;
  private lastStateAt = 0;
  private sending = false;
  private offAdded: (() => void) | undefined;
  private everConnected = false;
  private lastError: string | null = null;

  constructor(private readonly deps: FleetLinkDeps) {
    this.topics = new Topics(deps.config.prefix);
  }

  /** Starts connecting and returns at once: the agent records with the broker down. */
  async start(): Promise<void> {
    const { config, nodeId, log } = this.deps;
    this.stopping = false;
    await this.deps.signed?.revocation.start();
    const options = await mqttOptions(config, nodeId, this.topics.status(nodeId));
    const client = mqtt.connect(config.url, options);
    this.client = client;
    client.on('connect', () => void this.onConnect());
    client.on('close', () => this.onClose());
    // Said once per outage by onClose (MQTT.js may report one failure more than once).
    client.on('error', (err) => { this.lastError = err.message; });
    client.on('message', (topic, payload, packet) => {
      // Every request's promise is caught here: nothing a requester sends reaches the process.
      this.onMessage(topic, payload, packet.properties?.responseTopic, packet.properties?.correlationData)
        .catch((err: unknown) => log.error({ err, topic: clip(topic) }, 'request failed'));
    });
    this.offAdded = this.deps.outbox.onAdded(() => void this.sendEvents());
    this.stateTimer = setInterval(() => void this.publishState(), config.stateInterval);
    this.stateTimer.unref();
    log.info({ url: redactUrl(config.url), protocolVersion: config.protocolVersion, prefix: config.prefix }, 'connecting to the broker');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.stateTimer);
    clearTimeout(this.pendingState);
    this.offAdded?.();
    await this.deps.signed?.revocation.stop();
    await this.deps.signed?.replay?.close();
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      // A clean stop says so itself; the will covers the unclean ones.
      await client.publishAsync(this.topics.status(this.deps.nodeId), JSON.stringify({ online: false }), { qos: 1, retain: true }).catch(() => {});
    }
    await client.endAsync().catch(() => {});
  }

  connected(): boolean {
    return this.client?.connected === true;
  }

  /** Publishes the state soon (changes come in bursts: at most one per stateMinIntervalMs). */
  stateChanged(): void {
    if (this.pendingState) return;
    const minMs = this.deps.stateMinIntervalMs ?? 2_000;
    const wait = Math.max(0, this.lastStateAt + minMs - Date.now());
    this.pendingState = setTimeout(() => {
      this.pendingState = undefined;
      void this.publishState();
    }, wait);
    this.pendingState.unref();
  }

  async publishState(): Promise<StatePayload | undefined> {
    const client = this.client;
    const state = await this.deps.state();
    if (!client?.connected) return state;
    this.lastStateAt = Date.now();
    await client.publishAsync(this.topics.state(this.deps.nodeId), JSON.stringify(state), { qos: 1, retain: true })
      .catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'state not published'));
    return state;
  }

  /** The retained status again (at each connect, and when its fields change: a key learned). */
  async publishStatus(): Promise<void> {
    const client = this.client;
    if (!client?.connected) return;
    const fields = typeof this.deps.status === 'function' ? this.deps.status() : this.deps.status;
    const status: StatusPayload = { online: true, ...fields };
    await client.publishAsync(this.topics.status(this.deps.nodeId), JSON.stringify(status), { qos: 1, retain: true });
  }

  private async onConnect(): Promise<void> {
    const { nodeId, log } = this.deps;
    const client = this.client!;
    // MQTT.js leaves Nagle's algorithm on: a reply written right after the request's PUBACK
    // then waits for the broker's delayed ACK (~40 ms on Linux) — measured in bench/ping.ts.
    (client.stream as { setNoDelay?: (noDelay: boolean) => unknown } | undefined)?.setNoDelay?.(true);
    this.attempts = 0;
    log.info({ reconnect: this.everConnected }, 'connected to the broker');
    this.everConnected = true;
    try {
      await this.publishStatus();
      const granted = await client.subscribeAsync(this.topics.command(nodeId, '+'), { qos: 1 });
      if (granted.some((g) => g.qos === 128 || g.qos > 2)) log.error({ topic: this.topics.command(nodeId, '+') }, 'the broker refused the command subscription (check its ACL)');
      if (this.deps.signed) {
        const crl = await client.subscribeAsync(this.topics.fleetCrl(), { qos: 1 });
        if (crl.some((g) => g.qos === 128 || g.qos > 2)) log.warn({ topic: this.topics.fleetCrl() }, 'the broker refused the CRL subscription (check its ACL): revocations reach this node only through fleet.crl');
      }
      await this.publishState();
      await this.sendEvents();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not announce on the broker');
    }
  }

  private onClose(): void {
    if (this.stopping) return;
    this.attempts++;
    const delay = backoffDelay(this.attempts, this.deps.backoff ?? RECONNECT, this.deps.random);
    if (this.attempts === 1 || this.attempts % 10 === 0) this.deps.log.warn({ attempt: this.attempts, retryInMs: delay, reason: this.lastError }, 'broker unreachable; retrying');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopping) this.client?.reconnect();
    }, delay);
  }

  /** Delivers the outbox in order, one event at a time, each acknowledged before the next. */
  private async sendEvents(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (;;) {
        const client = this.client;
        const next = this.deps.outbox.pending()[0];
        if (!next || !client?.connected) return;
        await client.publishAsync(this.topics.events(this.deps.nodeId), JSON.stringify(next), { qos: 1 });
        this.deps.outbox.delivered(next.id);
      }
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'event delivery interrupted; will resume');
    } finally {
      this.sending = false;
    }
  }

  private async onMessage(topic: string, payload: Buffer, responseTopic?: string, correlationData?: Buffer): Promise<void> {
    const { nodeId, log, signed } = this.deps;
    if (topic === this.topics.fleetCrl()) {
      if (signed && payload.length > 0) await signed.revocation.offer(payload);
      return;
    }
    const request = parseRequest({ topic, payload, responseTopic, correlationData }, nodeId, this.topics);
    if (!request.ok) {
      if (request.replyRefused) {
        signed?.refused(request.replyRefused);
        log.warn({ topic: clip(topic), reason: clip(request.replyRefused) }, 'request refused: reply topic not allowed; no reply sent');
        return;
      }
      log.warn({ topic: clip(topic), cmd: clip(request.cmd, 64), reason: clip(request.reason) }, 'malformed request');
      if (signed) {
        // Not {"jws": string} (too large, not JSON): an old or foreign sender hears why.
        signed.refused(MUST_BE_SIGNED);
        await this.reply(request.reply, { ok: false, error: { code: 'forbidden', message: MUST_BE_SIGNED } });
      } else {
        await this.reply(request.reply, { ok: false, error: { code: 'bad_request', message: request.reason } });
      }
      return;
    }
    if (!signed) {
      const reply = await this.deps.handlers.handle(request.cmd, request.args, { via: 'mqtt', signer: null });
      if (!request.reply) log.info({ cmd: request.cmd, ok: reply.ok }, 'request without a reply address');
      await this.reply(request.reply, reply);
      return;
    }
    const jws = outerJws(request.args);
    if (jws === null) {
      signed.refused(MUST_BE_SIGNED);
      log.warn({ cmd: clip(request.cmd, 64) }, 'unsigned command refused');
      await this.reply(request.reply, { ok: false, error: { code: 'forbidden', message: MUST_BE_SIGNED } });
      return;
    }
    const check = await signed.commands.check(request.cmd, jws);
    // The JWS's replyTo wins over the MQTT one; either must lie under reply/<signer CN>/.
    const address = (replyTo: string | undefined): ReplyAddress | null => (replyTo !== undefined
      ? { topic: replyTo, ...(request.reply?.correlationData ? { correlationData: request.reply.correlationData } : {}), ...(request.reply?.id !== undefined ? { id: request.reply.id } : {}) }
      : request.reply);
    if (!check.ok) {
      signed.refused(check.reason);
      const to = address(check.replyTo);
      const answerable = check.leafCn !== undefined && to !== null && this.topics.isPrincipalReplyTopic(nodeId, check.leafCn, to.topic);
      log.warn({ cmd: clip(request.cmd, 64), signer: check.leafCn ? clip(check.leafCn, 80) : null, reason: clip(check.reason), replied: answerable }, 'signed command refused');
      if (answerable) await this.reply(to, { ok: false, error: { code: 'forbidden', message: check.reason } });
      return;
    }
    const to = address(check.replyTo);
    if (to && !this.topics.isPrincipalReplyTopic(nodeId, check.signer.cn, to.topic)) {
      const why = `reply topic ${JSON.stringify(clip(to.topic, 120))} is not under ${this.topics.principalReplyBase(nodeId, check.signer.cn)}/`;
      signed.refused(why);
      log.warn({ cmd: check.cmd, signer: check.signer.cn, reason: why }, 'signed command refused; no reply sent');
      return;
    }
    const reply = await this.deps.handlers.handle(check.cmd, check.args, { via: 'mqtt', signer: check.signer, jws: check.jws });
    log.info({ cmd: check.cmd, signer: check.signer.cn, role: check.signer.role, ok: reply.ok }, 'signed command');
    if (!to) log.info({ cmd: check.cmd, ok: reply.ok }, 'request without a reply address');
    await this.reply(to, reply);
  }

  private async reply(address: ReplyAddress | null, body: object): Promise<void> {
    const client = this.client;
    if (!address || !client?.connected) return;
    const payload = JSON.stringify(address.id !== undefined ? { id: address.id, ...body } : body);
    await client.publishAsync(address.topic, payload, {
      qos: 1,
      ...(address.correlationData ? { properties: { correlationData: address.correlationData } } : {}),
    }).catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'reply not published'));
  }
}
