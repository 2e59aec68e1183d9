// Timers, injectable so that waits (LED patterns, retry backoff) can be tested without waiting.

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Resolves after ms, or at once when the signal aborts. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * A signal that aborts when either does (AbortSignal.any is newer than some Node 20 releases),
 * and `dispose` to take its listeners off both again: a loop that waits on a long-lived signal
 * each time round would otherwise pile up one listener per wait.
 */
export function anySignal(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; dispose(): void } {
  const both = new AbortController();
  const abort = (): void => both.abort();
  const dispose = (): void => {
    a.removeEventListener('abort', abort);
    b.removeEventListener('abort', abort);
  };
  if (a.aborted || b.aborted) both.abort();
  else {
    a.addEventListener('abort', abort, { once: true });
    b.addEventListener('abort', abort, { once: true });
  }
  return { signal: both.signal, dispose };
}

/** Sleeps until `ms` pass or either signal aborts, leaving no listener behind. */
export async function sleepUntilEither(sleep: (ms: number, signal: AbortSignal) => Promise<void>, ms: number, a: AbortSignal, b: AbortSignal): Promise<void> {
  const either = anySignal(a, b);
  try {
    await sleep(ms, either.signal);
  } finally {
    either.dispose();
  }
}
