// The one PanicButton: any backend's raw edges through the debounce machine to press listeners.
// Presses are delivered synchronously from the edge callback: nothing between the button and
// the lock waits on a network, so the button works with every link down.
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import { debounceStep, initialDebounceState, type DebounceState } from './debounce.js';
import type { Edge, EdgeSource, Level, PanicButton } from './types.js';

export interface DebouncedButtonDeps {
  source: EdgeSource;
  debounceMs: number;
  clock: Clock;
  log: Logger;
}

export class DebouncedButton implements PanicButton {
  readonly name = 'button';
  private readonly listeners = new Set<(atMs: number) => void>();
  private state: DebounceState = initialDebounceState();
  private running = false;
  private startError: string | null = null;
  private presses = 0;

  constructor(private readonly deps: DebouncedButtonDeps) {}

  onPress(listener: (atMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  /**
   * A line that cannot be opened is logged, kept for problem() and thrown: the agent's
   * supervisor reports the fault and tries again later, and the cameras keep recording.
   */
  async start(_signal?: AbortSignal): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.startError = null;
    try {
      await this.deps.source.start({ edge: (e) => this.onEdge(e), reset: (level) => this.reset(level) });
    } catch (err) {
      this.running = false;
      this.startError = (err as Error).message;
      this.deps.log.error({ err }, 'panic button unavailable; running without it');
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.deps.source.stop();
  }

  /** Why the button cannot press right now, or null. */
  problem(): string | null {
    return this.startError ?? this.deps.source.problem();
  }

  /** Presses delivered since start (tests, demo). */
  pressCount(): number {
    return this.presses;
  }

  private reset(level?: Level): void {
    this.state = initialDebounceState(level ?? 0);
  }

  private onEdge(edge: Edge): void {
    if (!this.running) return;
    const step = debounceStep(this.state, edge, this.deps.debounceMs);
    this.state = step.state;
    if (!step.press) {
      this.deps.log.trace({ level: edge.level }, 'button edge');
      return;
    }
    const atMs = this.deps.clock.now();
    this.presses++;
    this.deps.log.info({ presses: this.presses }, 'panic button pressed');
    for (const listener of [...this.listeners]) {
      try {
        listener(atMs);
      } catch (err) {
        this.deps.log.error({ err }, 'press listener failed');
      }
    }
  }
}
