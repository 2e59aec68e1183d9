// Every feature is a Component: constructors only assign; I/O, timers and listeners start in
// start() and end in stop(). stop() is safe to call twice.
import type { Logger } from '../platform/logger.js';

export interface Component {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

/** Starts components in order, rolls back on failure, stops them in reverse with a timeout each. */
export class ComponentGroup {
  private started: Component[] = [];
  constructor(private readonly components: Component[], private readonly log: Logger, private readonly stopTimeoutMs = 15_000) {}

  async start(signal: AbortSignal): Promise<void> {
    for (const c of this.components) {
      try {
        await c.start(signal);
        this.started.push(c);
      } catch (err) {
        this.log.error({ component: c.name, err }, 'start failed; stopping what started');
        await this.stop();
        throw err;
      }
    }
  }

  async stop(): Promise<void> {
    const toStop = this.started.reverse();
    this.started = [];
    for (const c of toStop) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), this.stopTimeoutMs); });
      try {
        const result = await Promise.race([c.stop().then(() => 'stopped' as const), timeout]);
        if (result === 'timeout') this.log.error({ component: c.name }, 'stop timed out');
      } catch (err) {
        this.log.error({ component: c.name, err }, 'stop failed');
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
