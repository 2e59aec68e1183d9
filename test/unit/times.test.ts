// Times people type in `camnode ctl` (src/ops/times.ts, CONTRACT §6), pure: ISO-8601 with a zone,
// local wall time in a named zone, relative times against an injected now; DST-ambiguous and
// nonexistent wall times refused with their UTC candidates; bad input and unknown zones refused
// naming them; the local-plus-UTC renderings. Zones are always passed, except where the test is
// that the machine's zone is the default.
import { describe, expect, it } from 'vitest';
import { formatLocal, formatLocalAndUtc, machineTimeZone, parseUserTime, TimeInputError } from '../../src/ops/times.js';

const NOW = Date.parse('2026-12-01T15:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const at = (input: string, timeZone = 'UTC'): string => iso(parseUserTime(input, { nowMs: NOW, timeZone }));

/** The TimeInputError that parsing `input` throws (failing the test if it does not throw one). */
function refusal(input: string, timeZone?: string): TimeInputError {
  try {
    parseUserTime(input, { nowMs: NOW, ...(timeZone === undefined ? {} : { timeZone }) });
  } catch (e) {
    expect(e).toBeInstanceOf(TimeInputError);
    return e as TimeInputError;
  }
  throw new Error(`"${input}" was accepted`);
}

describe('parseUserTime: ISO-8601 with a zone', () => {
  it('takes Z, with seconds, without seconds, with milliseconds', () => {
    expect(at('2026-12-01T15:00:00Z')).toBe('2026-12-01T15:00:00.000Z');
    expect(at('2026-12-01T15:00Z')).toBe('2026-12-01T15:00:00.000Z');
    expect(at('2026-12-01T15:00:00.250Z')).toBe('2026-12-01T15:00:00.250Z');
  });

  it('takes an offset, whatever zone is set for local times', () => {
    expect(at('2026-12-01T15:00:00.250+01:00', 'America/New_York')).toBe('2026-12-01T14:00:00.250Z');
    expect(at('2026-12-01T15:00:00-05:00', 'Europe/Berlin')).toBe('2026-12-01T20:00:00.000Z');
    expect(at('2026-12-01T15:00+0530')).toBe('2026-12-01T09:30:00.000Z');
    expect(at('2026-12-01T15:00:00+02')).toBe('2026-12-01T13:00:00.000Z');
  });

  it('cuts fractions beyond milliseconds instead of rounding into the next second', () => {
    expect(at('2026-12-01T15:00:59.999999Z')).toBe('2026-12-01T15:00:59.999Z');
  });

  it('ignores surrounding spaces', () => {
    expect(at('  2026-12-01T15:00:00Z \n')).toBe('2026-12-01T15:00:00.000Z');
  });

  it('refuses an offset that is no offset', () => {
    expect(refusal('2026-12-01T15:00:00+25:00', 'UTC').message).toContain('no offset +25:00');
  });
});

describe('parseUserTime: local wall time', () => {
  it('reads YYYY-MM-DD HH:MM and HH:MM:SS in the zone given (Berlin in winter is UTC+1)', () => {
    expect(at('2026-12-01 16:00', 'Europe/Berlin')).toBe('2026-12-01T15:00:00.000Z');
    expect(at('2026-12-01 16:00:30', 'Europe/Berlin')).toBe('2026-12-01T15:00:30.000Z');
  });

  it('reads T in place of the space the same way, as local time', () => {
    expect(at('2026-12-01T16:00', 'Europe/Berlin')).toBe('2026-12-01T15:00:00.000Z');
    expect(at('2026-12-01T16:00:30', 'Europe/Berlin')).toBe('2026-12-01T15:00:30.000Z');
  });

  it('follows summer time (Berlin in July is UTC+2) and other zones', () => {
    expect(at('2026-07-01 16:00', 'Europe/Berlin')).toBe('2026-07-01T14:00:00.000Z');
    expect(at('2026-12-01 10:00', 'America/New_York')).toBe('2026-12-01T15:00:00.000Z');
    expect(at('2026-01-01 00:00', 'Asia/Kolkata')).toBe('2025-12-31T18:30:00.000Z');
    expect(at('2026-12-01 15:00', 'UTC')).toBe('2026-12-01T15:00:00.000Z');
  });

  it('takes the wall times just outside a DST change as the one instant they are', () => {
    expect(at('2026-03-08 01:59', 'America/New_York')).toBe('2026-03-08T06:59:00.000Z');
    expect(at('2026-03-08 03:00', 'America/New_York')).toBe('2026-03-08T07:00:00.000Z');
    expect(at('2026-11-01 00:59', 'America/New_York')).toBe('2026-11-01T04:59:00.000Z');
    expect(at('2026-11-01 02:00', 'America/New_York')).toBe('2026-11-01T07:00:00.000Z');
  });

  it('reads a leap day in a leap year', () => {
    expect(at('2028-02-29 12:00')).toBe('2028-02-29T12:00:00.000Z');
  });

  it('defaults to the machine zone, read at the call', () => {
    const saved = process.env['TZ'];
    try {
      process.env['TZ'] = 'Asia/Tokyo';
      expect(machineTimeZone()).toBe('Asia/Tokyo');
      expect(iso(parseUserTime('2026-12-01 09:00', { nowMs: NOW }))).toBe('2026-12-01T00:00:00.000Z');
      expect(formatLocal(NOW)).toBe('2026-12-02 00:00:00');
    } finally {
      if (saved === undefined) delete process.env['TZ'];
      else process.env['TZ'] = saved;
    }
  });
});

describe('parseUserTime: DST changes are refused, with the UTC candidates', () => {
  it('refuses a wall time the spring-forward gap skipped (New York, 2026-03-08 02:30)', () => {
    const e = refusal('2026-03-08 02:30', 'America/New_York');
    expect(e.name).toBe('TimeInputError');
    expect(e.message).toBe('"2026-03-08 02:30" does not exist in America/New_York (clocks went forward): '
      + '2026-03-08T06:30:00.000Z (EDT) or 2026-03-08T07:30:00.000Z (EST); give it in UTC');
  });

  it('refuses a wall time the fall-back hour repeats (New York, 2026-11-01 01:30), naming both instants', () => {
    const e = refusal('2026-11-01 01:30', 'America/New_York');
    expect(e.message).toBe('"2026-11-01 01:30" is ambiguous in America/New_York (clocks went back): '
      + '2026-11-01T05:30:00.000Z (EDT) or 2026-11-01T06:30:00.000Z (EST); give it in UTC');
    expect(e.input).toBe('2026-11-01 01:30');
  });

  it('refuses them in Berlin too, where the change is at another hour and day', () => {
    expect(refusal('2026-03-29 02:30', 'Europe/Berlin').message).toContain('does not exist in Europe/Berlin (clocks went forward): 2026-03-29T00:30:00.000Z (CEST) or 2026-03-29T01:30:00.000Z (CET)');
    expect(refusal('2026-10-25 02:30:00', 'Europe/Berlin').message).toContain('is ambiguous in Europe/Berlin (clocks went back): 2026-10-25T00:30:00.000Z (CEST) or 2026-10-25T01:30:00.000Z (CET)');
  });

  it('accepts the same wall time given in UTC or with an offset', () => {
    expect(at('2026-11-01T01:30:00-05:00', 'America/New_York')).toBe('2026-11-01T06:30:00.000Z');
    expect(at('2026-11-01T05:30:00Z', 'America/New_York')).toBe('2026-11-01T05:30:00.000Z');
  });
});

describe('parseUserTime: relative times and now', () => {
  it.each([
    ['-90m', '2026-12-01T13:30:00.000Z'],
    ['-2h', '2026-12-01T13:00:00.000Z'],
    ['-1d', '2026-11-30T15:00:00.000Z'],
    ['-45s', '2026-12-01T14:59:15.000Z'],
    ['-1h30m', '2026-12-01T13:30:00.000Z'],
    ['-1d2h3m4s', '2026-11-30T12:56:56.000Z'],
    ['+10m', '2026-12-01T15:10:00.000Z'],
    ['now', '2026-12-01T15:00:00.000Z'],
    ['NOW', '2026-12-01T15:00:00.000Z'],
  ])('%s is %s when now is 15:00Z', (input, expected) => {
    expect(at(input)).toBe(expected);
  });

  it('does not depend on the zone', () => {
    expect(at('-90m', 'Pacific/Auckland')).toBe('2026-12-01T13:30:00.000Z');
  });

  it.each(['-', '+', '90m', '-1m30h', '-1.5h', '-1w', '- 90m', '-90 m'])('refuses %j', (input) => {
    expect(refusal(input, 'UTC').message).toContain(`"${input}" is not a time`);
  });

  it('refuses a relative time beyond what a date can hold', () => {
    expect(refusal('-999999999999d', 'UTC').message).toContain('out of range');
  });
});

describe('parseUserTime: bad input and unknown zones', () => {
  it('refuses garbage, naming it and the accepted forms', () => {
    const e = refusal('yesterday at three', 'Europe/Berlin');
    expect(e.message).toContain('"yesterday at three" is not a time');
    expect(e.message).toContain('2026-12-01T15:00:00Z');
    expect(e.message).toContain('local time in Europe/Berlin (2026-12-01 16:00 or 2026-12-01 16:00:00)');
    expect(e.message).toContain('-90m');
    expect(e.message).toContain('now');
  });

  it.each([
    ['2026-02-30 10:00', '2026-02 has no day 30'],
    ['2027-02-29 10:00', '2027-02 has no day 29'],
    ['2026-04-31T10:00Z', '2026-04 has no day 31'],
    ['2026-13-01 10:00', 'no month 13'],
    ['2026-00-10 10:00', 'no month 0'],
    ['2026-12-00 10:00', '2026-12 has no day 0'],
    ['2026-12-01 24:00', 'no time of day 24:00:00'],
    ['2026-12-01 10:60', 'no time of day 10:60:00'],
    ['2026-12-01 10:00:60', 'no time of day 10:00:60'],
  ])('refuses %j: %s', (input, why) => {
    const e = refusal(input, 'UTC');
    expect(e.message).toContain(`"${input}" is not a time: ${why}`);
    expect(e.message).toContain('accepted:');
  });

  it.each(['2026-12-01', '16:00', '2026-12-1 16:00', '2026/12/01 16:00', '2026-12-01  16:00', ''])('refuses the incomplete or other form %j', (input) => {
    expect(refusal(input, 'UTC').message).toContain('is not a time');
  });

  it('refuses an unknown zone, naming it, even for input that needs no zone', () => {
    for (const input of ['2026-12-01 16:00', '2026-12-01T15:00:00Z', '-1h', 'now']) {
      const e = refusal(input, 'Europe/Atlantis');
      expect(e.message).toContain('unknown time zone "Europe/Atlantis"');
      expect(e.input).toBe('Europe/Atlantis');
    }
    expect(refusal('now', '').message).toContain('unknown time zone ""');
  });
});

describe('formatLocal and formatLocalAndUtc', () => {
  it('shows local time with the zone short name, then UTC', () => {
    expect(formatLocalAndUtc(NOW, 'Europe/Berlin')).toBe('2026-12-01 16:00:00 CET (2026-12-01T15:00:00.000Z)');
    expect(formatLocalAndUtc(Date.parse('2026-07-01T15:00:00Z'), 'Europe/Berlin')).toBe('2026-07-01 17:00:00 CEST (2026-07-01T15:00:00.000Z)');
    expect(formatLocalAndUtc(NOW, 'America/New_York')).toBe('2026-12-01 10:00:00 EST (2026-12-01T15:00:00.000Z)');
    expect(formatLocalAndUtc(NOW, 'UTC')).toBe('2026-12-01 15:00:00 UTC (2026-12-01T15:00:00.000Z)');
    expect(formatLocalAndUtc(Date.parse('2026-07-01T12:00:00Z'), 'Europe/London')).toBe('2026-07-01 13:00:00 BST (2026-07-01T12:00:00.000Z)');
  });

  it('falls back to GMT±h for a zone without an abbreviation', () => {
    expect(formatLocalAndUtc(NOW, 'Asia/Tokyo')).toBe('2026-12-02 00:00:00 GMT+9 (2026-12-01T15:00:00.000Z)');
  });

  it('formats for axes, with or without seconds, across midnight and at midnight (never 24:00)', () => {
    expect(formatLocal(NOW + 30_000, 'Europe/Berlin')).toBe('2026-12-01 16:00:30');
    expect(formatLocal(NOW + 30_000, 'Europe/Berlin', false)).toBe('2026-12-01 16:00');
    expect(formatLocal(Date.parse('2026-12-01T23:00:00Z'), 'Europe/Berlin')).toBe('2026-12-02 00:00:00');
    expect(formatLocal(Date.parse('2026-12-01T05:30:00Z'), 'America/New_York', false)).toBe('2026-12-01 00:30');
  });

  it('reads back what parseUserTime takes', () => {
    const ms = parseUserTime('2026-12-01 16:00:30', { nowMs: NOW, timeZone: 'Europe/Berlin' });
    expect(formatLocal(ms, 'Europe/Berlin')).toBe('2026-12-01 16:00:30');
  });

  it('refuses an unknown zone', () => {
    expect(() => formatLocal(NOW, 'Mars/Olympus')).toThrow(TimeInputError);
    expect(() => formatLocalAndUtc(NOW, 'Mars/Olympus')).toThrow('unknown time zone "Mars/Olympus"');
  });
});
