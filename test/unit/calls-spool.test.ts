// The spool's pure decisions (CONTRACT §8): finished only once unchanged for `settle`, taken once
// by (path, size, mtime), safe and collision-free names in the ring, and a call's start time.
import { describe, expect, it } from 'vitest';
import { callFileName, callStart, observe, parseCallFileName, parseStartFrom, sanitiseBasename, startStamp, tombstoneKey, type Watched } from '../../src/calls/spool.js';

describe('a spool file is finished', () => {
  it('only after keeping its size and mtime for settle, counted from when it was seen so', () => {
    const settle = 10_000;
    let w: Watched | undefined;
    const look = (size: number, mtimeMs: number, nowMs: number): boolean => {
      const r = observe(w, { size, mtimeMs }, nowMs, settle);
      w = r.watched;
      return r.finished;
    };
    expect(look(100, 1_000, 1_000)).toBe(false);
    expect(look(200, 5_000, 6_000)).toBe(false); // still growing
    expect(look(200, 5_000, 15_000)).toBe(false); // unchanged 9 s
    expect(look(200, 5_000, 16_000)).toBe(true);
    // Touched again (a writer reopened it): the wait starts over.
    expect(look(200, 20_000, 21_000)).toBe(false);
    expect(look(200, 20_000, 31_000)).toBe(true);
  });

  it('a file copied in with an old mtime still waits one settle of being seen unchanged', () => {
    const first = observe(undefined, { size: 5, mtimeMs: 0 }, 1_000_000, 10_000);
    expect(first.finished).toBe(false);
    expect(observe(first.watched, { size: 5, mtimeMs: 0 }, 1_010_000, 10_000).finished).toBe(true);
  });

  it('is taken once by path, size and mtime', () => {
    expect(tombstoneKey('2026/11/28/a.wav', { size: 10, mtimeMs: 1.4 })).toBe(tombstoneKey('2026/11/28/a.wav', { size: 10, mtimeMs: 1 }));
    expect(tombstoneKey('2026/11/28/a.wav', { size: 10, mtimeMs: 1 })).not.toBe(tombstoneKey('2026/11/28/a.wav', { size: 11, mtimeMs: 1 }));
    expect(tombstoneKey('2026/11/28/a.wav', { size: 10, mtimeMs: 1 })).not.toBe(tombstoneKey('2026/11/29/a.wav', { size: 10, mtimeMs: 1 }));
  });
});

describe('names in the ring', () => {
  it('keep letters, digits and . _ - only, no path, no leading dot, the extension in lower case', () => {
    expect(sanitiseBasename('out-1001-2002-20261128-120000-1732795200.123.WAV')).toBe('out-1001-2002-20261128-120000-1732795200.123.wav');
    expect(sanitiseBasename('../../etc/passwd')).toBe('passwd');
    expect(sanitiseBasename('..\\..\\x.wav')).toBe('x.wav');
    expect(sanitiseBasename('.hidden.mp3')).toBe('hidden.mp3');
    expect(sanitiseBasename('Anruf von Müller (Zentrale).wav')).toBe('Anruf_von_Muller_Zentrale.wav');
    expect(sanitiseBasename('...')).toBe('call');
    expect(sanitiseBasename('$(reboot).wav')).toBe('reboot.wav');
    expect(sanitiseBasename(`${'x'.repeat(300)}.wav`)).toHaveLength(96);
    expect(sanitiseBasename(`${'x'.repeat(300)}.wav`).endsWith('.wav')).toBe(true);
  });

  it('start with the call\'s start and never collide', () => {
    const start = Date.parse('2026-11-28T12:00:00.120Z');
    expect(startStamp(start)).toBe('20261128T120000120Z');
    const taken = new Set<string>();
    const name = (src: string): string => {
      const n = callFileName(start, src, (x) => taken.has(x));
      taken.add(n);
      return n;
    };
    expect(name('2026/11/28/out-100.wav')).toBe('20261128T120000120Z-out-100.wav');
    expect(name('2026/11/29/out-100.wav')).toBe('20261128T120000120Z-out-100-2.wav');
    expect(name('x/out-100.wav')).toBe('20261128T120000120Z-out-100-3.wav');
    expect(parseCallFileName('20261128T120000120Z-out-100-2.wav')).toEqual({ startMs: start, basename: 'out-100-2.wav' });
    expect(parseCallFileName('out-100.wav')).toBeNull();
    expect(parseCallFileName('20261399T120000120Z-x.wav')).toBeNull();
  });
});

describe('when a call started', () => {
  const mtime = Date.parse('2026-11-28T12:05:00Z');
  it('is its mtime less its duration by default', () => {
    expect(callStart(parseStartFrom('mtime'), 'a.wav', mtime, 300_000)).toEqual({ startMs: Date.parse('2026-11-28T12:00:00Z'), fromName: false });
  });

  it('is read from the name by a pattern with an epoch group (seconds or ms) or an iso group', () => {
    const freepbx = parseStartFrom(String.raw`-(?<epoch>\d{10})\.\d+\.wav$`);
    expect(callStart(freepbx, '2026/11/28/out-1001-2002-20261128-120000-1764331200.123.wav', mtime, 1)).toEqual({ startMs: 1_764_331_200_000, fromName: true });
    const ms = parseStartFrom(String.raw`^(?<epoch>\d{13})`);
    expect(callStart(ms, '1764331200123.mp3', mtime, 1).startMs).toBe(1_764_331_200_123);
    const iso = parseStartFrom(String.raw`(?<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)`);
    expect(callStart(iso, 'call_2026-11-28T12:00:00Z.wav', mtime, 1)).toEqual({ startMs: Date.parse('2026-11-28T12:00:00Z'), fromName: true });
    const offset = parseStartFrom(String.raw`_(?<iso>[\d+T-]+)\.wav$`);
    expect(callStart(offset, 'c_20261128T120000+0100.wav', mtime, 1).startMs).toBe(Date.parse('2026-11-28T11:00:00Z'));
    // Without a zone: the node's local time (Asterisk's monitor names).
    const local = parseStartFrom(String.raw`-(?<iso>\d{8}-\d{6})-`);
    expect(callStart(local, 'out-1001-2002-20261128-120000-1.wav', mtime, 1).startMs).toBe(new Date(2026, 10, 28, 12, 0, 0).getTime());
  });

  it('falls back to the mtime, and says so, when the name does not match', () => {
    const how = parseStartFrom(String.raw`-(?<epoch>\d{10})\.wav$`);
    expect(callStart(how, 'voicemail.wav', mtime, 60_000)).toEqual({ startMs: mtime - 60_000, fromName: false });
    const bad = parseStartFrom(String.raw`(?<iso>\S+)\.wav$`);
    expect(callStart(bad, 'not-a-date.wav', mtime, 0)).toEqual({ startMs: mtime, fromName: false });
  });
});
