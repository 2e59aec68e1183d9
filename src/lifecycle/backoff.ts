// Capped exponential backoff with full jitter: a fleet restarted together does not retry in
// lockstep. Pure; `random` is injected.

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** Share of the delay that is randomised (0 = none, 1 = full jitter). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, maxMs: 60_000, jitter: 0.5 };

/** Delay before retry number `attempt` (1 = first retry). */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = exp * (1 - policy.jitter) + exp * policy.jitter * random();
  return Math.round(Math.min(policy.maxMs, jittered));
}
