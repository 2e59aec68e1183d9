// The signage attestation (CONTRACT §7): the policy asks for signs at the entrance telling the
// public about the cameras. The installer attests that they are posted and when they were last
// checked; missing or overdue shows in `check`, the state and the report. Pure.
import type { Config } from '../config/schema.js';

export type SignageStatus = 'ok' | 'missing' | 'overdue';

type Signage = NonNullable<Config['policy']>['signage'];

export interface SignageView {
  status: SignageStatus;
  posted: boolean;
  checkedAt: string | null;
  /** When the signs are next due to be checked (ISO), or null without an attestation. */
  recheckBy: string | null;
  detail: string;
}

export function signageView(signage: Signage | undefined, nowMs: number): SignageView {
  if (!signage) {
    return { status: 'missing', posted: false, checkedAt: null, recheckBy: null, detail: 'no signage attestation (policy.signage) in the config' };
  }
  const checkedMs = Date.parse(signage.checkedAt);
  const recheckBy = new Date(checkedMs + signage.recheckEvery).toISOString();
  const base = { posted: signage.posted, checkedAt: signage.checkedAt, recheckBy };
  if (!signage.posted) return { status: 'missing', ...base, detail: `signs attested as not posted (checked ${signage.checkedAt})` };
  if (checkedMs + signage.recheckEvery < nowMs) {
    const days = Math.floor((nowMs - checkedMs - signage.recheckEvery) / 86_400_000);
    return { status: 'overdue', ...base, detail: `signs last checked ${signage.checkedAt}: the recheck was due ${recheckBy.slice(0, 10)} (${days} day${days === 1 ? '' : 's'} ago)` };
  }
  return { status: 'ok', ...base, detail: `signs posted, last checked ${signage.checkedAt}, next check by ${recheckBy.slice(0, 10)}` };
}
