// Waiting on two signals at once (the sync loops: stop, or a poke) must leave no listener on the
// long-lived one: a loop waits thousands of times a day.
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { anySignal, sleepUntilEither } from '../../src/platform/timers.js';

describe('waiting on either of two signals', () => {
  it('leaves no listener behind, whether the wait ends by time, by either signal, or never started', async () => {
    const stopper = new AbortController();
    for (let i = 0; i < 50; i++) {
      const wake = new AbortController();
      const waited = sleepUntilEither((_ms, signal) => new Promise<void>((resolve) => {
        if (i % 2 === 0) setTimeout(resolve, 0);
        else signal.addEventListener('abort', () => resolve(), { once: true });
      }), 10, stopper.signal, wake.signal);
      if (i % 2 === 1) wake.abort();
      await waited;
    }
    expect(getEventListeners(stopper.signal, 'abort')).toHaveLength(0);
    stopper.abort();
    const late = anySignal(stopper.signal, new AbortController().signal);
    expect(late.signal.aborted).toBe(true);
    late.dispose();
  });
});
