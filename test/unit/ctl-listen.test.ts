// `ctl exporter --listen HOST:PORT`: what it takes, and what it refuses with a usage error (exit 2).
import { describe, expect, it } from 'vitest';
import { CtlExit, parseListen } from '../../src/ops/ctl.js';

describe('--listen', () => {
  it('takes HOST:PORT and [IPv6]:PORT', () => {
    expect(parseListen('127.0.0.1:9108')).toEqual({ host: '127.0.0.1', port: 9108 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('exporter.local:65535')).toEqual({ host: 'exporter.local', port: 65535 });
  });

  it('refuses anything else, naming the option, whatever it is', () => {
    for (const bad of ['9108', ':9108', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:99999999999999', '::1:9108', 'a:b', '', 'x'.repeat(100_000) + ':1', '127.0.0.1:-1']) {
      let err: unknown;
      try { parseListen(bad); } catch (e) { err = e; }
      expect(err, bad).toBeInstanceOf(CtlExit);
      expect((err as CtlExit).exitCode).toBe(2);
      expect((err as Error).message).toMatch(/^--listen: HOST:PORT/);
    }
  });
});
