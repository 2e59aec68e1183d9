// The demo's embedded MQTT broker (aedes) on 127.0.0.1: the node's fleet link and `camnode ctl`
// meet here as they would on the district's broker. aedes speaks MQTT 3.1.1 only.
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import type { Component } from '../lifecycle/component.js';

export class EmbeddedBroker implements Component {
  readonly name = 'embedded-broker';
  private broker: Aedes | undefined;
  private server: Server | undefined;
  private boundPort = 0;

  constructor(private readonly port = 0) {}

  async start(): Promise<void> {
    const broker = await Aedes.createBroker();
    const server = createServer(broker.handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : this.port;
    this.broker = broker;
    this.server = server;
  }

  async stop(): Promise<void> {
    const { server, broker } = this;
    this.server = undefined;
    this.broker = undefined;
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()));
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.boundPort}`;
  }
}
