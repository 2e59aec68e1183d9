// A pushed config and a new release prove themselves the same way (CONTRACT §9): every so often
// the agent says what is still missing; proven as soon as nothing is, missed once the deadline
// passed with something still missing. Returns the cancel.
import type { Clock } from '../platform/clock.js';

export interface ProveDeps {
  clock: Clock;
  /** Null once proven; else what is missing. */
  unproven(): string | null;
  deadlineMs: number;
  everyMs: number;
  onProven(): void;
  onMissed(missing: string): void;
}

export function proveWithin(deps: ProveDeps): () => void {
  let timer: NodeJS.Timeout | undefined;
  const look = (): void => {
    const missing = deps.unproven();
    if (missing === null) deps.onProven();
    else if (deps.clock.now() >= deps.deadlineMs) deps.onMissed(missing);
    else timer = setTimeout(look, deps.everyMs);
  };
  look();
  return () => clearTimeout(timer);
}
