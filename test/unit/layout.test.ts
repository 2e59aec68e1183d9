// The shape ARCHITECTURE.md describes, checked on the sources: the agent never loads the ops
// side (ctl, its rendering, its MQTT client), and each heavy library is imported by one domain.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every module a file imports, statically or with import(), as written. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:^import[^'"]*from\s*|^export[^'"]*from\s*|import\()\s*'([^']+)'/gm)].map((m) => m[1]!);
}

/** Files reachable from `entry` through relative imports (type-only ones included: harmless, and stricter). */
function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of imports(file)) {
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
  }
  return seen;
}

const rel = (f: string) => relative(SRC, f);

/** Files an entry loads at once: static value imports only (not `import type`, not `import()`). */
function loadedAtStart(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)(?!\s+type\b)[^'"]*from\s*'([^']+)'/gm)) {
      if (m[1]!.startsWith('.')) todo.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    }
  }
  return seen;
}

describe('layout', () => {
  it('`camnode run` (the agent and everything it loads) never reaches src/ops/', () => {
    const agent = [...reachable(join(SRC, 'agent.ts'))].map(rel);
    expect(agent.length).toBeGreaterThan(30);
    expect(agent.filter((f) => f.startsWith('ops/'))).toEqual([]);
    // main.ts loads ops/ only for `camnode ctl`.
    const main = readFileSync(join(SRC, 'main.ts'), 'utf8');
    expect([...main.matchAll(/'\.\/ops\/[^']+'/g)].map((m) => m[0])).toEqual(["'./ops/ctl.js'"]);
    expect(main).toMatch(/if \(process\.argv\[2\] === 'ctl'\) \{\n\s+const \{ ctlCommand \} = await import\('\.\/ops\/ctl\.js'\);/);
  });

  it('an agent that takes no signed commands never loads the X.509 and JOSE code (about 9 MB of RSS)', () => {
    const atStart = [...loadedAtStart(join(SRC, 'agent.ts'))].map(rel);
    expect(atStart.length).toBeGreaterThan(30);
    expect(atStart.filter((f) => ['commands/signed.ts', 'platform/x509.ts', 'fleet/trust.ts'].includes(f))).toEqual([]);
  });

  it.each([
    ['onoff', ['button/']],
    ['@aws-sdk/client-s3', ['sync/']],
    ['mqtt', ['fleet/', 'ops/']],
    ['fluent-ffmpeg', ['check.ts']],
  ])('only %s\'s own domain imports it', (library, allowed) => {
    const users = sources().filter((f) => imports(f).some((s) => s === library || s.startsWith(`${library}/`))).map(rel);
    expect(users.length).toBeGreaterThan(0);
    for (const f of users) expect(allowed.some((a) => f.startsWith(a)), f).toBe(true);
  });

  it('the agent lists its modules; each module builds its own components', () => {
    const agent = readFileSync(join(SRC, 'agent.ts'), 'utf8');
    for (const m of ['recordingModule', 'incidentsModule', 'syncModule', 'fleetModule', 'controlModule']) expect(agent).toContain(`${m}(`);
    // No component is constructed in the composition root beyond the shared core (the config's trial among it).
    const built = [...new Set([...agent.matchAll(/new ([A-Z]\w+)\(/g)].map((m) => m[1]!))].filter((n) => !n.endsWith('Error') && n !== 'Set').sort();
    expect(built).toEqual(['AuditLog', 'ClockStatus', 'ClockSteps', 'CommandHandlers', 'ComponentGroup', 'ConfigTrial', 'EventBus', 'Faults', 'Health', 'KeyHistory', 'PushedConfigs', 'Updates']);
  });
});
