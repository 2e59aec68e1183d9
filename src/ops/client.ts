// The ops side of the fleet link, used by `camnode ctl`: requests to one node with a reply
// topic under that node's subtree, the retained status/state of every node, live events.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { ReplyPayload, StatePayload, StatusPayload } from '../fleet/topics.js';
import { Topics } from '../fleet/topics.js';

export interface BrokerOptions {
  url: string;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  protocolVersion: 5 | 4;
  prefix: string;
  timeoutMs: number;
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
  private constructor(private readonly client: MqttClient, private readonly opts: BrokerOptions) {
    this.topics = new Topics(opts.prefix);
  }

  static async connect(opts: BrokerOptions): Promise<FleetClient> {
    const tls = /^(mqtts|wss):/.test(opts.url);
    const options: IClientOptions = {
      clientId: `camnode-ctl-${randomBytes(6).toString('hex')}`,
      protocolVersion: opts.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: opts.timeoutMs,
      ...(tls ? {
        ...(opts.ca ? { ca: await readFile(opts.ca) } : {}),
        ...(opts.cert ? { cert: await readFile(opts.cert) } : {}),
        ...(opts.key ? { key: await readFile(opts.key) } : {}),
        rejectUnauthorized: true,
      } : {}),
    };
    let client: MqttClient;
    try {
      client = await withTimeout(mqtt.connectAsync(opts.url, options), opts.timeoutMs, `broker ${opts.url} did not accept the connection within ${opts.timeoutMs} ms`);
    } catch (err) {
      if (err instanceof NoAnswer) throw err;
      throw new Error(`cannot connect to the broker ${opts.url}: ${(err as Error).message}`);
    }
    // Requests go back to back on one connection (lock --all): Nagle would hold each ~40 ms.
    (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
    return new FleetClient(client, opts);
  }

  async close(): Promise<void> {
    await this.client.endAsync().catch(() => {});
  }

  /** One command to one node; resolves with its reply, or rejects NoAnswer after the timeout. */
  async request(node: string, cmd: string, args: Record<string, unknown>): Promise<ReplyPayload> {
    const replyTopic = `${this.topics.replyBase(node)}/ctl-${randomBytes(8).toString('hex')}`;
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
    const body = v5 ? args : { ...args, replyTo: replyTopic, id };
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
    // Under a command topic: the fleet ACL lets ops write only `<prefix>/+/cmd/#` (a marker on a
    // reply topic is silently dropped, and every run would wait out the quiet spell). `_ctl` is
    // no valid node id, so no node receives it.
    const marker = `${this.topics.node('_ctl')}/cmd/nodes-${randomBytes(6).toString('hex')}`;
    let last = Date.now();
    let markerSeen = false;
    const onMessage = (topic: string, payload: Buffer): void => {
      if (topic === marker) { markerSeen = true; return; }
      const t = this.topics.parse(topic);
      if (!t || t.rest.length > 0 || (t.kind !== 'status' && t.kind !== 'state') || payload.length === 0) return;
      last = Date.now();
      try {
        const view = views.get(t.node) ?? { node: t.node };
        if (t.kind === 'status') view.status = JSON.parse(payload.toString('utf8')) as StatusPayload;
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
