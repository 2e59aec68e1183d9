// The demo's and the tests' button: edges are injected (Enter in the demo terminal calls
// press()); they go through the same debounce as a real line. And `none`: a line that never
// changes.
import type { Clock } from '../platform/clock.js';
import type { Edge, EdgeSink, EdgeSource, Level, LedOutput } from './types.js';

export class FakeEdgeSource implements EdgeSource {
  private sink: EdgeSink | undefined;

  constructor(private readonly clock: Clock) {}

  async start(sink: EdgeSink): Promise<void> {
    this.sink = sink;
    sink.reset(0);
  }

  async stop(): Promise<void> {
    this.sink = undefined;
  }

  problem(): string | null {
    return null;
  }

  /**
   * A whole press: down and up at the same instant. Two calls closer than the debounce count
   * once, as two taps on a bouncing contact would. Returns false when the button is not running.
   */
  press(): boolean {
    const atMs = this.clock.monotonic();
    return this.injectEdge(1, atMs) && this.injectEdge(0, atMs);
  }

  /** One raw edge, as a backend would report it (`atMs` on the clock's monotonic base). */
  injectEdge(level: Level, atMs: number = this.clock.monotonic()): boolean {
    if (!this.sink) return false;
    this.sink.edge({ level, atMs } satisfies Edge);
    return true;
  }
}

export class NoEdgeSource implements EdgeSource {
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  problem(): string | null { return null; }
}

/** An LED the demo can print and tests can read: every change with the monotonic time it happened. */
export class FakeLedOutput implements LedOutput {
  readonly history: { on: boolean; atMs: number }[] = [];
  private readonly listeners = new Set<(on: boolean) => void>();
  private lit = false;

  constructor(private readonly clock: Clock) {}

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  set(on: boolean): void {
    if (on === this.lit && this.history.length > 0) return;
    this.lit = on;
    this.history.push({ on, atMs: this.clock.monotonic() });
    for (const listener of this.listeners) listener(on);
  }

  isOn(): boolean {
    return this.lit;
  }

  onChange(listener: (on: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }
}
