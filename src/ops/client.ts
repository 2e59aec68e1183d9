// The ops side of the fleet link, used by `camnode ctl`: requests to one node with a reply
// topic under that node's subtree (under reply/<own CN>/, the only one the fleet ACL lets a
// principal read), signed for nodes whose status asks for it; the retained status/state of
// every node, live events.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { ReplyPayload, StatePayload, StatusPayload } from '../fleet/topics.js';
import { Topics } from '../fleet/topics.js';
import type { Signing } from './signer.js';

export interface BrokerOptions {
  url: string;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  protocolVersion: 5 | 4;
  prefix: string;
  timeoutMs: number;
}

/** MQTT.js options for an ops client: a clean session, TLS files read when the URL asks for TLS. */
export async function clientOptions(opts: BrokerOptions, idPrefix: string, reconnectPeriod: number): Promise<IClientOptions> {
  const tls = /^(mqtts|wss):/.test(opts.url);
  return {
    clientId: `${idPrefix}-${randomBytes(6).toString('hex')}`,
    protocolVersion: opts.protocolVersion,
    clean: true,
    reconnectPeriod,
    connectTimeout: opts.timeoutMs,
    ...(tls ? {
      ...(opts.ca ? { ca: await readFile(opts.ca) } : {}),
      ...(opts.cert ? { cert: await readFile(opts.cert) } : {}),
      ...(opts.key ? { key: await readFile(opts.key) } : {}),
      rejectUnauthorized: true,
    } : {}),
  };
}

export class NoAnswer extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoAnswer';
  }
}

export interface NodeView { node: string; status?: StatusPayload; state?: StatePayload }

export class FleetClient {
  readonly topics: Topics;
  /** Each node's retained status, as last seen (whether it wants commands signed). */
  private readonly statuses = new Map<string, StatusPayload>();

  private constructor(private readonly client: MqttClient, private readonly opts: BrokerOptions, private readonly signing: Signing | null) {
    this.topics = new Topics(opts.prefix);
  }

  static async connect(opts: BrokerOptions): Promise<FleetClient> {
    const options = await clientOptions(opts, 'camnode-ctl', 0);
    let client: MqttClient;
    try {
      client = await withTimeout(mqtt.connectAsync(opts.url, options), opts.timeoutMs, `broker ${opts.url} did not accept the connection within ${opts.timeoutMs} ms`);
    } catch (err) {
      if (err instanceof NoAnswer) throw err;
      throw new Error(`cannot connect to the broker ${opts.url}: ${(err as Error).message}`);
    }
    // Requests go back to back on one connection (lock --all): Nagle would hold each ~40 ms.
    (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
    // Our certificate signs commands (over plain mqtt:// too) and names our reply topics.
    let signing: Signing | null = null;
    if (opts.cert && opts.key) {
      const { signingWith } = await import('./signer.js');
      try {
        signing = signingWith({ certPem: await readFile(opts.cert, 'utf8'), keyPem: await readFile(opts.key, 'utf8') });
      } catch (err) {
        await client.endAsync().catch(() => {});
        throw new Error(`--cert/--key cannot sign commands: ${(err as Error).message}`);
      }
    }
    return new FleetClient(client, opts, signing);
  }

  /** A node's retained status: from an earlier listing, else read now (retained, so it is there at once or not at all). */
  private async statusOf(node: string): Promise<StatusPayload | undefined> {
    const known = this.statuses.get(node);
    if (known) return known;
    const topic = this.topics.status(node);
    const got = new Promise<StatusPayload | undefined>((resolve) => {
      const onMessage = (t: string, payload: Buffer): void => {
        if (t !== topic) return;
        this.client.off('message', onMessage);
        try {
          resolve(payload.length > 0 ? JSON.parse(payload.toString('utf8')) as StatusPayload : undefined);
        } catch {
          resolve(undefined);
        }
      };
      this.client.on('message', onMessage);
      setTimeout(() => { this.client.off('message', onMessage); resolve(undefined); }, Math.min(1_500, this.opts.timeoutMs)).unref();
    });
    await this.client.subscribeAsync(topic, { qos: 0 });
    const status = await got;
    await this.client.unsubscribeAsync(topic).catch(() => {});
    if (status) this.statuses.set(node, status);
    return status;
  }

  async close(): Promise<void> {
    await this.client.endAsync().catch(() => {});
  }

  /** One command to one node; resolves with its reply, or rejects NoAnswer after the timeout. */
  async request(node: string, cmd: string, args: Record<string, unknown>): Promise<ReplyPayload> {
    const wantsSigned = (await this.statusOf(node))?.commands === 'signed';
    if (wantsSigned && !this.signing) {
      throw new Error(`node ${node} takes only signed commands: give your ops certificate and key (--cert and --key, or CAMNODE_CTL_CERT / CAMNODE_CTL_KEY)`);
    }
    const replyTopic = this.signing
      ? `${this.topics.principalReplyBase(node, this.signing.cn)}/ctl-${randomBytes(8).toString('hex')}`
      : `${this.topics.replyBase(node)}/ctl-${randomBytes(8).toString('hex')}`;
    const correlation = randomBytes(8);
    const id = correlation.toString('hex');
    const answer = new Promise<ReplyPayload>((resolve) => {
      const onMessage = (topic: string, payload: Buffer): void => {
        if (topic !== replyTopic) return;
        try {
          const body = JSON.parse(payload.toString('utf8')) as ReplyPayload & { id?: unknown };
          if (body.id !== undefined && body.id !== id) return;
          this.client.off('message', onMessage);
          resolve(body);
        } catch { /* not ours */ }
      };
      this.client.on('message', onMessage);
    });
    await this.client.subscribeAsync(replyTopic, { qos: 1 });
    const v5 = this.opts.protocolVersion === 5;
    const signedArgs = wantsSigned ? { jws: await this.signing!.sign(node, cmd, args, replyTopic) } : args;
    const body = v5 ? signedArgs : { ...signedArgs, replyTo: replyTopic, id };
    await this.client.publishAsync(this.topics.command(node, cmd as never), JSON.stringify(body), {
      qos: 1,
      ...(v5 ? { properties: { responseTopic: replyTopic, correlationData: correlation } } : {}),
    });
    try {
      return await withTimeout(answer, this.opts.timeoutMs, `node ${node} did not answer ${cmd} within ${this.opts.timeoutMs} ms (offline, or not subscribed?)`);
    } finally {
      await this.client.unsubscribeAsync(replyTopic).catch(() => {});
    }
  }

  /**
   * The retained status and state of every node. Retained messages follow the subscription;
   * a marker published afterwards on our own reply topic arrives after them on brokers that
   * keep per-client order (Mosquitto does); a quiet spell ends the wait on others.
   */
  async nodes(quietMs = 400): Promise<NodeView[]> {
    const views = new Map<string, NodeView>();
    // Under `<prefix>/_ctl/<CN>/`, where the fleet ACL lets each principal read and write (a
    // marker anywhere else is silently dropped, and every run would wait out the quiet spell).
    // Without a certificate (a test broker), `_ctl/cmd/` as before: `_ctl` is no node id.
    const marker = this.signing
      ? `${this.topics.ctlBase(this.signing.cn)}/nodes-${randomBytes(6).toString('hex')}`
      : `${this.topics.node('_ctl')}/cmd/nodes-${randomBytes(6).toString('hex')}`;
    let last = Date.now();
    let markerSeen = false;
    const onMessage = (topic: string, payload: Buffer): void => {
      if (topic === marker) { markerSeen = true; return; }
      const t = this.topics.parse(topic);
      if (!t || t.rest.length > 0 || (t.kind !== 'status' && t.kind !== 'state') || payload.length === 0) return;
      last = Date.now();
      try {
        const view = views.get(t.node) ?? { node: t.node };
        if (t.kind === 'status') {
          view.status = JSON.parse(payload.toString('utf8')) as StatusPayload;
          this.statuses.set(t.node, view.status);
        }
        else view.state = JSON.parse(payload.toString('utf8')) as StatePayload;
        views.set(t.node, view);
      } catch { /* a node publishing garbage is shown without it */ }
    };
    this.client.on('message', onMessage);
    await this.client.subscribeAsync([this.topics.allStatus(), this.topics.allState()], { qos: 0 });
    await this.client.subscribeAsync(marker, { qos: 0 }).catch(() => {});
    await this.client.publishAsync(marker, '', { qos: 0 }).catch(() => {});
    const deadline = Date.now() + this.opts.timeoutMs;
    while (Date.now() < deadline && !markerSeen && Date.now() - last < Math.max(quietMs, 1500)) {
      await new Promise((r) => setTimeout(r, 25));
    }
    // A few stragglers can follow the marker on a loaded broker; collect briefly.
    const settle = Date.now() + (markerSeen ? 50 : 0);
    while (Date.now() < settle) await new Promise((r) => setTimeout(r, 10));
    this.client.off('message', onMessage);
    return [...views.values()];
  }

  /** Live events of one node (or all): calls back per event until the returned stop is called. */
  async watch(node: string | undefined, onEvent: (node: string, event: Record<string, unknown>) => void): Promise<() => Promise<void>> {
    const topic = node ? this.topics.events(node) : this.topics.allEvents();
    const onMessage = (t: string, payload: Buffer): void => {
      const parsed = this.topics.parse(t);
      if (!parsed || parsed.kind !== 'events') return;
      try {
        onEvent(parsed.node, JSON.parse(payload.toString('utf8')) as Record<string, unknown>);
      } catch { /* skip */ }
    };
    this.client.on('message', onMessage);
    await this.client.subscribeAsync(topic, { qos: 1 });
    return async () => {
      this.client.off('message', onMessage);
      await this.client.unsubscribeAsync(topic).catch(() => {});
    };
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new NoAnswer(message)), ms); }),
  ]);
}
