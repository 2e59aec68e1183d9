import { describe, expect, it } from 'vitest';
import { leastRole, localAllows, needsCurrentCrl, principalOf, roleAllows, ROLES } from '../../src/commands/roles.js';

describe('roles (CONTRACT §7)', () => {
  it('each role may do what the one below may, and its own', () => {
    const table: Record<string, string[]> = {
      viewer: ['state', 'incidents', 'incident', 'footage', 'report', 'ping'],
      ops: ['lock', 'hold', 'note', 'still', 'snapshot', 'sync'],
      custodian: ['dispose', 'disclose'],
      admin: ['config', 'update'],
    };
    for (const [i, role] of ROLES.entries()) {
      for (const [j, other] of ROLES.entries()) {
        for (const cmd of table[other]!) expect(roleAllows(role, cmd), `${role} ${cmd}`).toBe(j <= i);
      }
    }
    expect(roleAllows('admin', 'explode')).toBe(false);
    expect(leastRole('release')).toBeUndefined(); // aliases are resolved before the check
  });
  it('custodian and admin commands need a current CRL', () => {
    expect(['dispose', 'disclose', 'config', 'update'].every(needsCurrentCrl)).toBe(true);
    expect(['lock', 'state', 'still'].some(needsCurrentCrl)).toBe(false);
  });
  it('the local socket has every role but admin, and no disclose; config only to reset', () => {
    expect(localAllows('dispose', {})).toBe(true);
    expect(localAllows('lock', {})).toBe(true);
    expect(localAllows('disclose', {})).toBe(false);
    expect(localAllows('update', {})).toBe(false);
    expect(localAllows('config', { get: true })).toBe(false);
    expect(localAllows('config', { reset: true })).toBe(true);
    expect(localAllows('config', { reset: true, yaml: 'x' })).toBe(false);
  });
  it('principals: CN ops:NAME, no OU is viewer, one known OU is the role; anything else is refused', () => {
    expect(principalOf(['ops:alice'], [])).toEqual({ ok: true, principal: { cn: 'ops:alice', role: 'viewer' } });
    expect(principalOf(['ops:alice'], ['custodian'])).toEqual({ ok: true, principal: { cn: 'ops:alice', role: 'custodian' } });
    expect(principalOf(['branch-01'], ['nodes'])).toMatchObject({ ok: false, reason: expect.stringMatching(/not an ops principal/) });
    expect(principalOf(['ops:alice'], ['ops', 'admin'])).toMatchObject({ ok: false, reason: expect.stringMatching(/2 OUs/) });
    expect(principalOf(['ops:alice'], ['root'])).toMatchObject({ ok: false, reason: expect.stringMatching(/"root" is not a role/) });
    expect(principalOf(['ops:alice', 'ops:bob'], ['ops'])).toMatchObject({ ok: false });
    expect(principalOf(['ops:Alice'], ['ops'])).toMatchObject({ ok: false });
  });
});
