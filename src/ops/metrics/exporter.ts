// `camnode ctl exporter` (CONTRACT §9 Metrics): one MQTT connection to the district broker,
// subscribed to every node's retained status and state, its events and the fleet CRL, and an
// HTTP server for Prometheus on /metrics. The nodes listen on no port; the exporter runs
// beside Prometheus at central ops and reconnects on its own when the broker goes away.
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import mqtt, { type MqttClient } from 'mqtt';
import type { Component } from '../../lifecycle/component.js';
import type { Logger } from '../../platform/logger.js';
import { x509 } from '../../platform/x509.js';
import { Topics } from '../../fleet/topics.js';
import { clientOptions, type BrokerOptions } from '../client.js';
import { FleetModel } from './model.js';
import { fleetRegistry } from './registry.js';

export interface ExporterOptions {
  broker: BrokerOptions;
  listen: { host: string; port: number };
  /** A node silent this long is dropped (CONTRACT §9: `--forget-after`, default 7 d). */
  forgetAfterMs: number;
  /** A CRL file to watch besides the retained one on the broker. */
  crlFile?: string | undefined;
  log: Logger;
  now?: () => number;
}

/** The CRL's nextUpdate (epoch ms), from PEM or DER; null if it has none or is not a CRL. */
export function crlNextUpdate(bytes: Buffer): number | null {
  try {
    const text = bytes.toString('latin1');
    const crl = text.includes('-----BEGIN X509 CRL-----') ? new x509.X509Crl(text) : new x509.X509Crl(bytes);
    return crl.nextUpdate?.getTime() ?? null;
  } catch {
    return null;
  }
}

export class MetricsExporter implements Component {
  readonly name = 'exporter';
  readonly model: FleetModel;
  private client: MqttClient | undefined;
  private server: Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private crl = { broker: null as number | null, file: null as number | null };
  private subscribed = false;
  private readonly topics: Topics;
  private readonly now: () => number;

  constructor(private readonly opts: ExporterOptions) {
    this.model = new FleetModel({ forgetAfterMs: opts.forgetAfterMs });
    this.topics = new Topics(opts.broker.prefix);
    this.now = opts.now ?? Date.now;
  }

  /** Where it listens (the port the OS gave when 0 was asked for). */
  address(): { host: string; port: number } {
    const a = this.server?.address();
    return typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : this.opts.listen;
  }

  async start(): Promise<void> {
    const { opts } = this;
    const registry = fleetRegistry(this.model, {
      brokerConnected: () => this.client?.connected === true,
      subscribed: () => this.client?.connected === true && this.subscribed,
      crlNextUpdateMs: () => ({ ...this.crl }),
    });
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/metrics') {
        registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text);
        }, (err: unknown) => {
          opts.log.error({ err }, 'metrics could not be collected');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n');
        });
        return;
      }
      if (path === '/') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`camnode fleet exporter: ${this.model.size} node(s); metrics at /metrics\n`);
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(opts.listen.port, opts.listen.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
    await this.readCrlFile();
    this.timer = setInterval(() => {
      const gone = this.model.forget(this.now());
      if (gone > 0) opts.log.info({ nodes: gone }, 'nodes silent for longer than --forget-after dropped');
      void this.readCrlFile();
    }, 60_000);
    this.timer.unref();
    this.client = await this.connect();
    opts.log.info({ listen: this.address(), broker: opts.broker.url }, 'fleet exporter serving /metrics');
  }

  private async connect(): Promise<MqttClient> {
    const { broker, log } = this.opts;
    // Reconnects on its own (every 5 s) when the broker goes away: it runs for months.
    const options = await clientOptions(broker, 'camnode-exporter', 5_000);
    const client = mqtt.connect(broker.url, options);
    const subscriptions = [this.topics.allStatus(), this.topics.allState(), this.topics.allEvents(), this.topics.fleetCrl()];
    // Every (re)connection subscribes again (a clean session): the retained messages come anew.
    client.on('connect', () => {
      log.info({ broker: broker.url }, 'exporter connected to the broker');
      this.subscribed = false;
      // MQTT.js rejects when the broker refuses any of them (0x80, or 0x87 under MQTT 5).
      client.subscribeAsync(subscriptions, { qos: 1 }).then(() => { this.subscribed = true; }, (err: unknown) => {
        log.error({ err }, 'the broker refused the exporter\'s subscriptions: check the ACL (the exporter needs a viewer principal)');
      });
    });
    client.on('close', () => {
      this.subscribed = false;
      log.warn({ broker: broker.url }, 'exporter lost the broker; reconnecting');
    });
    client.on('error', (err) => log.warn({ err: err.message }, 'broker connection error'));
    client.on('message', (topic, payload, packet) => {
      if (topic === this.topics.fleetCrl()) {
        this.crl.broker = payload.length > 0 ? crlNextUpdate(payload) : null;
        return;
      }
      const t = this.topics.parse(topic);
      if (!t || t.rest.length > 0 || (t.kind !== 'status' && t.kind !== 'state' && t.kind !== 'events')) return;
      this.model.apply(t.kind, t.node, payload, this.now(), packet.retain);
    });
    return client;
  }

  private async readCrlFile(): Promise<void> {
    if (!this.opts.crlFile) return;
    try {
      this.crl.file = crlNextUpdate(await readFile(this.opts.crlFile));
    } catch (err) {
      this.crl.file = null;
      this.opts.log.warn({ err, file: this.opts.crlFile }, 'the CRL file cannot be read');
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.client?.endAsync().catch(() => {});
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
