// The panic button outlives a pushed config: the incidents module that turns a press into a lock
// may be rebuilt (seconds), the button is not. A press while no module listens is kept, with the
// moment it was pressed, and handed to the next one that attaches — never dropped.
import type { DebouncedButton } from './index.js';

/** When a press happened, in the time base of the clock's steps (as the book's triggerTime). */
export interface PressTime { atMs: number; step: number }

export class PressRelay {
  private handler: ((at: PressTime) => void) | undefined;
  private readonly waiting: PressTime[] = [];

  constructor(source: Pick<DebouncedButton, 'onPress'>, private readonly triggerTime: () => PressTime) {
    source.onPress(() => this.press());
  }

  private press(): void {
    const at = this.triggerTime();
    if (this.handler) this.handler(at);
    else this.waiting.push(at);
  }

  /** The module that locks on a press; presses kept meanwhile come first. Returns the detach. */
  attach(handler: (at: PressTime) => void): () => void {
    this.handler = handler;
    for (const at of this.waiting.splice(0)) handler(at);
    return () => {
      if (this.handler === handler) this.handler = undefined;
    };
  }
}
