// The signage attestation (CONTRACT §7): ok, missing or overdue from the config and the date.
import { describe, expect, it } from 'vitest';
import { signageView } from '../../src/custody/signage.js';

const DAY = 86_400_000;
const now = Date.parse('2026-12-02T12:00:00Z');

describe('signageView', () => {
  it('is missing without an attestation, or when the signs are attested as not posted', () => {
    expect(signageView(undefined, now)).toMatchObject({ status: 'missing', posted: false, checkedAt: null, recheckBy: null });
    expect(signageView({ posted: false, checkedAt: '2026-11-30', recheckEvery: 180 * DAY }, now)).toMatchObject({
      status: 'missing', detail: 'signs attested as not posted (checked 2026-11-30)',
    });
  });

  it('is ok until the recheck is due, overdue the moment after', () => {
    const signage = { posted: true, checkedAt: '2026-06-05', recheckEvery: 180 * DAY };
    // 2026-06-05 + 180 days = 2026-12-02.
    expect(signageView(signage, Date.parse('2026-12-02T00:00:00Z'))).toMatchObject({ status: 'ok', recheckBy: '2026-12-02T00:00:00.000Z' });
    expect(signageView(signage, Date.parse('2026-12-02T00:00:01Z')).status).toBe('overdue');
    expect(signageView(signage, Date.parse('2026-12-05T00:00:01Z'))).toMatchObject({
      status: 'overdue', detail: 'signs last checked 2026-06-05: the recheck was due 2026-12-02 (3 days ago)',
    });
    expect(signageView({ ...signage, recheckEvery: 365 * DAY }, now)).toMatchObject({ status: 'ok', detail: 'signs posted, last checked 2026-06-05, next check by 2027-06-05' });
  });
});
