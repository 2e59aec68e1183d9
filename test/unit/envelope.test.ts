// The bounds every command transport enforces before a request is read (CONTRACT §5), and the
// argument rules that refuse what cannot be meant (a lock with no post-roll). Pure.
import { describe, expect, it } from 'vitest';
import { jsonDepth, MAX_REQUEST_BYTES, parseBounded, requestId } from '../../src/commands/envelope.js';
import { parseArgs } from '../../src/commands/protocol.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';

const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

describe('jsonDepth', () => {
  it('counts nesting outside strings only', () => {
    expect(jsonDepth('{}')).toBe(1);
    expect(jsonDepth('1')).toBe(0);
    expect(jsonDepth('{"a":[{"b":[]}]}')).toBe(4);
    expect(jsonDepth('{"a":"[[[[{{{{"}')).toBe(1);
    expect(jsonDepth('{"a":"\\"[[[[\\\\"}')).toBe(1);
    expect(jsonDepth(deep(64))).toBe(64);
    // It stops at the limit: a megabyte of brackets costs no more than 65 of them.
    expect(jsonDepth(deep(1_000_000))).toBe(65);
  });
});

describe('parseBounded', () => {
  it('parses what is within the bounds', () => {
    expect(parseBounded('{"id":1,"cmd":"ping"}')).toEqual({ ok: true, value: { id: 1, cmd: 'ping' } });
    expect(parseBounded(Buffer.from('{"reason":"Bücherei"}'))).toEqual({ ok: true, value: { reason: 'Bücherei' } });
    expect(parseBounded(`{"a":${deep(63)}}`).ok).toBe(true);
  });

  it('refuses too large, too deep, not UTF-8, not JSON — each saying which', () => {
    expect(parseBounded(Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20))).toEqual({ ok: false, reason: `request of ${MAX_REQUEST_BYTES + 1} bytes is larger than ${MAX_REQUEST_BYTES}` });
    expect(parseBounded(`{"a":${deep(64)}}`)).toEqual({ ok: false, reason: 'request nested deeper than 64' });
    expect(parseBounded(`{"id":${deep(100_000)}}`)).toEqual({ ok: false, reason: 'request nested deeper than 64' });
    expect(parseBounded(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]))).toEqual({ ok: false, reason: 'request is not valid UTF-8' });
    expect(parseBounded('{"a":')).toMatchObject({ ok: false, reason: expect.stringMatching(/^malformed JSON: /) });
  });
});

describe('requestId', () => {
  it('echoes short strings and safe integers, and nothing else', () => {
    expect(requestId('abc')).toBe('abc');
    expect(requestId('x'.repeat(128))).toBe('x'.repeat(128));
    expect(requestId('x'.repeat(129))).toBeNull();
    expect(requestId(42)).toBe(42);
    expect(requestId(-7)).toBe(-7);
    for (const bad of [1.5, Number.MAX_SAFE_INTEGER + 2, NaN, Infinity, {}, [], null, true, { toString: 0 }]) expect(requestId(bad)).toBeNull();
  });
});

describe('a lock needs a post-roll', () => {
  it('refuses postRoll 0 in a command and in the config', () => {
    expect(() => parseArgs('lock', { postRoll: 0 })).toThrow('lock: postRoll: must be longer than 0');
    expect(() => parseArgs('lock', { postRoll: '0s' })).toThrow('lock: postRoll: must be longer than 0');
    expect(parseArgs('lock', { postRoll: '1s' }).postRoll).toBe(1_000);
    const config = { node: { id: 'n' }, storage: { path: '/srv' }, cameras: [{ id: 'a', source: 'testsrc', zone: 'entrance' }], incident: { postRoll: 0 } };
    expect(() => validateConfig(config)).toThrow(ConfigError);
    try { validateConfig(config); } catch (err) { expect((err as ConfigError).problems).toEqual(['incident.postRoll: must be longer than 0']); }
  });
});

describe('a disclosure needs its legal basis (CONTRACT §7)', () => {
  const good = { incident: '20261201T100000Z-abcd', legalBasis: 'subpoena', reference: 'SUB-1', agency: 'Sheriff', requestedBy: 'Det. K' };
  it('names each missing or bad field', () => {
    expect(parseArgs('disclose', good)).toEqual(good);
    const { legalBasis: _omit, ...noBasis } = good;
    expect(() => parseArgs('disclose', noBasis)).toThrow('disclose: legalBasis: must be "subpoena" or "court-order" (the legal basis of the request)');
    expect(() => parseArgs('disclose', { ...good, legalBasis: 'asked nicely' })).toThrow('disclose: legalBasis: must be "subpoena" or "court-order"');
    expect(() => parseArgs('disclose', { ...good, reference: '', agency: undefined })).toThrow(/^disclose: reference: must not be empty .*; agency: required$/);
    expect(() => parseArgs('disclose', { ...good, warrant: true })).toThrow('disclose: unknown argument "warrant"');
  });
});

describe('report takes since as a duration back or an ISO time (CONTRACT §7)', () => {
  it('accepts both forms and refuses anything else, naming the field', () => {
    expect(parseArgs('report', {})).toEqual({});
    expect(parseArgs('report', { since: '30d' })).toEqual({ since: { agoMs: 30 * 86_400_000 } });
    expect(parseArgs('report', { since: '2026-11-01T00:00:00-07:00' })).toEqual({ since: { atMs: Date.parse('2026-11-01T07:00:00Z') } });
    const refused = /^report: since: (not an ISO-8601 time with a zone nor a duration back from now|Invalid input|Too big)/;
    for (const since of [{}, [], true, null, { since: { since: {} } }, 'yesterday', '0s', -5, 1e308, '9'.repeat(64), 'x'.repeat(100_000), '3700d']) {
      expect(() => parseArgs('report', { since }), JSON.stringify(since).slice(0, 40)).toThrow(refused);
    }
    expect(() => parseArgs('report', { since: '1d', format: 'html' })).toThrow('report: unknown argument "format"');
  });
});

describe('update and config take only their own shapes (CONTRACT §9)', () => {
  it('update: a version string, bounded; anything else is refused naming the field', () => {
    expect(parseArgs('update', { version: '1.2.0-rc.1' })).toEqual({ version: '1.2.0-rc.1' });
    for (const version of [120, { a: 1 }, ['1.2.0'], null, '1.2', '../../etc/passwd', '1.2.0\nfile=x', `1.2.${'9'.repeat(100)}`]) {
      expect(() => parseArgs('update', { version }), JSON.stringify(version)).toThrow(/^update: version: /);
    }
    expect(() => parseArgs('update', {})).toThrow(/^update: version: /);
    expect(() => parseArgs('update', { version: '1.2.0', file: 'x' })).toThrow(/unknown|unrecognized/i);
  });

  it('config: exactly one form; a config text is a string of at most 128 KiB', () => {
    expect(() => parseArgs('config', { yaml: { node: { id: 'x' } } })).toThrow(/^config: yaml: /);
    expect(() => parseArgs('config', { yaml: 'a'.repeat(200 * 1024) })).toThrow(/^config: yaml: at most 128 KiB/);
    expect(() => parseArgs('config', { reset: 'yes' })).toThrow(/^config: reset: /);
    expect(() => parseArgs('config', { get: true, reset: true })).toThrow(/exactly one of/);
    expect(parseArgs('config', { reset: true })).toEqual({ reset: true });
  });
});
