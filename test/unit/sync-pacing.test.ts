// Being polite to a small branch uplink (issue 5, CONTRACT §2 `upstream.maxRate`, `window`):
// the token bucket and the local-time window, with an injected clock, checked to the millisecond.
//
// Time zones: every Date here is built from local components (new Date(y, m, d, h, min)), so the
// tests hold in whatever zone the machine is in. One block also runs them under several zones
// (TZ set at run time, restored afterwards), and one pins a DST change to show the window is
// local wall time, not a fixed offset.
import { describe, expect, it } from 'vitest';
import { inWindow, msUntilWindow, parseWindow, TokenBucket } from '../../src/sync/pacing.js';

const KiB = 1024;
const MINUTE = 60_000;
const HOUR = 3_600_000;

/** A bucket on a hand-driven clock. */
function bucket(rate: number, burst: number): { b: TokenBucket; advance(ms: number): void } {
  let t = 5_000_000;
  const b = new TokenBucket(rate, burst, () => t);
  return { b, advance: (ms) => { t += ms; } };
}

describe('TokenBucket', () => {
  it('100 kB/s, burst 256 KiB: the burst is free, then each 64 KiB chunk costs 655.36 ms without drift', () => {
    const { b, advance } = bucket(100_000, 256 * KiB);
    // The full burst goes at once.
    for (let i = 0; i < 4; i++) expect(b.take(64 * KiB)).toBe(0);
    // After it, a sender that sleeps what it is told: the first chunk waits ceil(655.36) …
    const waits: number[] = [];
    for (let k = 1; k <= 20; k++) {
      const w = b.take(64 * KiB);
      waits.push(w);
      advance(w);
    }
    expect(waits[0]).toBe(656);
    // … and every wait is 655 or 656: the rounding up is paid back on the next chunk, so after
    // k chunks the total is exactly ceil(k × 655.36 ms) — the rate holds with no creep.
    for (const w of waits) expect([655, 656]).toContain(w);
    let total = 0;
    waits.forEach((w, i) => {
      total += w;
      expect(total, `after ${i + 1} chunks`).toBe(Math.ceil(((i + 1) * 64 * KiB) / 100));
    });
  });

  it('a sender that does not sleep (the clock stands still) is told to wait ever longer', () => {
    const { b } = bucket(100_000, 256 * KiB);
    for (let i = 0; i < 4; i++) b.take(64 * KiB);
    expect([b.take(64 * KiB), b.take(64 * KiB), b.take(64 * KiB)]).toEqual([656, 1311, 1967]);
  });

  it('a long idle refills only up to the burst', () => {
    const { b, advance } = bucket(100_000, 256 * KiB);
    for (let i = 0; i < 4; i++) b.take(64 * KiB);
    advance(HOUR); // 360 MB worth of time, but the bucket holds 256 KiB
    for (let i = 0; i < 4; i++) expect(b.take(64 * KiB)).toBe(0);
    expect(b.take(64 * KiB)).toBe(656);
  });

  it('a partial refill pays for what it covers', () => {
    const { b, advance } = bucket(100_000, 256 * KiB);
    for (let i = 0; i < 4; i++) b.take(64 * KiB); // empty, exactly
    advance(1_000); // 100,000 bytes
    expect(b.take(64 * KiB)).toBe(0); // 34,464 left
    expect(b.take(64 * KiB)).toBe(311); // 31,072 short → 310.72 ms
  });

  it('a chunk larger than the burst (the folder target sends 1 MiB) waits for the difference', () => {
    const { b } = bucket(100_000, 256 * KiB);
    expect(b.take(1024 * KiB)).toBe(Math.ceil((768 * KiB) / 100)); // 7864.32 → 7865
  });

  it('4 Mbit (500,000 B/s): 10 MB after the burst takes (10 MB − 256 KiB) / rate, within 1 ms', () => {
    const { b, advance } = bucket(500_000, 256 * KiB);
    let total = 0;
    const chunk = 64 * KiB;
    const bytes = 160 * chunk; // 10,485,760
    for (let sent = 0; sent < bytes; sent += chunk) {
      const w = b.take(chunk);
      total += w;
      advance(w);
    }
    const exact = ((bytes - 256 * KiB) / 500_000) * 1000;
    expect(total).toBe(Math.ceil(exact));
  });
});

describe('upstream window (local time)', () => {
  const at = (h: number, m: number, s = 0, ms = 0, day = 28, month = 10, year = 2026) => new Date(year, month, day, h, m, s, ms);

  it('parses HH:MM-HH:MM into minutes since local midnight, refuses anything else', () => {
    expect(parseWindow('19:00-07:00')).toEqual({ from: 19 * 60, to: 7 * 60 });
    expect(parseWindow('08:15-17:45')).toEqual({ from: 8 * 60 + 15, to: 17 * 60 + 45 });
    for (const bad of ['7:00-19:00', '19:00', '19:00–07:00', 'night', '']) expect(() => parseWindow(bad), bad).toThrow(/not a window/);
  });

  function windowChecks(): void {
    it('a window inside a day: start inclusive, end exclusive', () => {
      const w = '08:00-17:00';
      expect(inWindow(at(7, 59, 59, 999), w)).toBe(false);
      expect(inWindow(at(8, 0), w)).toBe(true);
      expect(inWindow(at(12, 0), w)).toBe(true);
      expect(inWindow(at(16, 59, 59, 999), w)).toBe(true);
      expect(inWindow(at(17, 0), w)).toBe(false);
      expect(inWindow(at(23, 0), w)).toBe(false);
      expect(inWindow(at(0, 0), w)).toBe(false);
    });

    it('a window wrapping midnight ("19:00-07:00")', () => {
      const w = '19:00-07:00';
      expect(inWindow(at(18, 59, 59, 999), w)).toBe(false);
      expect(inWindow(at(19, 0), w)).toBe(true);
      expect(inWindow(at(23, 59, 59, 999), w)).toBe(true);
      expect(inWindow(at(0, 0), w)).toBe(true);
      expect(inWindow(at(6, 59, 59, 999), w)).toBe(true);
      expect(inWindow(at(7, 0), w)).toBe(false);
      expect(inWindow(at(12, 0), w)).toBe(false);
    });

    it('a window whose ends are equal is always open', () => {
      for (const w of ['00:00-00:00', '12:30-12:30']) {
        for (const d of [at(0, 0), at(12, 29), at(12, 30), at(23, 59, 59, 999)]) {
          expect(inWindow(d, w)).toBe(true);
          expect(msUntilWindow(d, w)).toBe(0);
        }
      }
    });

    it('msUntilWindow: 0 inside, else until the next local opening (same day or the next)', () => {
      const day = '08:00-17:00';
      expect(msUntilWindow(at(8, 0), day)).toBe(0);
      expect(msUntilWindow(at(16, 59, 59, 999), day)).toBe(0);
      expect(msUntilWindow(at(7, 30), day)).toBe(30 * MINUTE);
      expect(msUntilWindow(at(7, 59, 59, 999), day)).toBe(1);
      // Closed at 17:00 sharp: it opens again at 08:00 the next day (local).
      expect(msUntilWindow(at(17, 0), day)).toBe(at(8, 0, 0, 0, 29).getTime() - at(17, 0).getTime());
      expect(msUntilWindow(at(20, 15, 30, 500), day)).toBe(at(8, 0, 0, 0, 29).getTime() - at(20, 15, 30, 500).getTime());

      const night = '19:00-07:00';
      expect(msUntilWindow(at(23, 0), night)).toBe(0);
      expect(msUntilWindow(at(3, 0), night)).toBe(0);
      expect(msUntilWindow(at(12, 0), night)).toBe(at(19, 0).getTime() - at(12, 0).getTime());
      expect(msUntilWindow(at(7, 0), night)).toBe(at(19, 0).getTime() - at(7, 0).getTime());
      expect(msUntilWindow(at(18, 59, 59, 999), night)).toBe(1);
    });

    it('msUntilWindow across the end of a month and a year', () => {
      const dec31 = new Date(2026, 11, 31, 20, 0);
      expect(msUntilWindow(dec31, '08:00-17:00')).toBe(new Date(2027, 0, 1, 8, 0).getTime() - dec31.getTime());
      const nov30 = new Date(2026, 10, 30, 12, 0);
      expect(msUntilWindow(nov30, '19:00-07:00')).toBe(new Date(2026, 10, 30, 19, 0).getTime() - nov30.getTime());
    });
  }

  describe('in the machine\'s own time zone', () => {
    windowChecks();
  });

  // The same checks in other zones (half-hour and 45-minute offsets included): nothing in
  // them depends on where the machine is. TZ is read by V8 whenever it changes.
  // Zone and its UTC offset on 28 Nov 2026 (getTimezoneOffset: minutes west of UTC).
  for (const [tz, offset] of [['UTC', 0], ['America/New_York', 300], ['Asia/Kathmandu', -345], ['Australia/Adelaide', -630]] as const) {
    describe(`in ${tz}`, () => {
      let saved: string | undefined;
      // Set per test (not per describe): vitest collects all describes before running any.
      const inZone = (fn: () => void) => () => {
        saved = process.env['TZ'];
        process.env['TZ'] = tz;
        try {
          fn();
        } finally {
          if (saved === undefined) delete process.env['TZ'];
          else process.env['TZ'] = saved;
        }
      };
      it('boundaries and waits hold', inZone(() => {
        // The zone really is in effect (else this would only repeat the block above).
        expect(at(19, 0).getTimezoneOffset()).toBe(offset);
        expect(inWindow(at(19, 0), '19:00-07:00')).toBe(true);
        expect(inWindow(at(7, 0), '19:00-07:00')).toBe(false);
        expect(msUntilWindow(at(12, 0), '19:00-07:00')).toBe(7 * HOUR); // no DST change on 28 Nov 2026 in these zones
        expect(msUntilWindow(at(17, 0), '08:00-17:00')).toBe(15 * HOUR);
      }));
    });
  }

  it('the window is local wall time: across a DST change the wait is an hour shorter', () => {
    const saved = process.env['TZ'];
    process.env['TZ'] = 'America/New_York';
    try {
      // Clocks spring forward at 02:00 on Sunday 8 March 2026: 20:00 → 08:00 is 11 real hours.
      const sat = new Date(2026, 2, 7, 20, 0);
      expect(sat.getTimezoneOffset()).toBe(300);
      expect(msUntilWindow(sat, '08:00-17:00')).toBe(11 * HOUR);
      expect(inWindow(new Date(sat.getTime() + 11 * HOUR), '08:00-17:00')).toBe(true);
    } finally {
      if (saved === undefined) delete process.env['TZ'];
      else process.env['TZ'] = saved;
    }
  });
});
