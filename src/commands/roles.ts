// Who may do what (CONTRACT §7, Principals and roles). Pure. A principal is an ops certificate
// of the fleet CA: CN `ops:NAME`, and at most one OU naming its role. Each role may do what the
// one below it may, and more.

export type Role = 'viewer' | 'ops' | 'custodian' | 'admin';
export const ROLES: readonly Role[] = ['viewer', 'ops', 'custodian', 'admin'];

/** What each role adds to the one below it (command names as on the wire, aliases resolved). */
const ADDS: Record<Role, readonly string[]> = {
  viewer: ['state', 'incidents', 'incident', 'footage', 'report', 'ping'],
  ops: ['lock', 'hold', 'note', 'still', 'snapshot', 'sync'],
  custodian: ['dispose', 'disclose'],
  admin: ['config', 'update'],
};

/** The least role that may run a command; undefined for a command no role names. */
export function leastRole(cmd: string): Role | undefined {
  return ROLES.find((r) => ADDS[r].includes(cmd));
}

export function roleAllows(role: Role, cmd: string): boolean {
  const least = leastRole(cmd);
  return least !== undefined && ROLES.indexOf(role) >= ROLES.indexOf(least);
}

/** Roles whose commands need revocation to be known (a CRL configured and current). */
export function needsCurrentCrl(cmd: string): boolean {
  const least = leastRole(cmd);
  return least === 'custodian' || least === 'admin';
}

/**
 * The local socket is trusted by its file permissions with every role but admin and disclose;
 * one exception: `config {reset: true}`, which the local `camnode config reset` sends.
 */
export function localAllows(cmd: string, args: unknown): boolean {
  if (cmd === 'disclose') return false;
  if (cmd === 'config') return typeof args === 'object' && args !== null && (args as { reset?: unknown }).reset === true && Object.keys(args).length === 1;
  const least = leastRole(cmd);
  return least !== undefined && least !== 'admin';
}

export type Principal = { cn: string; role: Role };
export type PrincipalResult = { ok: true; principal: Principal } | { ok: false; reason: string };

const OPS_CN = /^ops:[a-z0-9._-]{1,60}$/;

/** A certificate's subject as a principal: CN `ops:NAME` and no OU (viewer) or exactly one role. */
export function principalOf(cns: readonly string[], ous: readonly string[]): PrincipalResult {
  if (cns.length !== 1 || !OPS_CN.test(cns[0]!)) {
    return { ok: false, reason: `certificate subject CN ${JSON.stringify(cns.join(','))} is not an ops principal (ops:NAME)` };
  }
  if (ous.length > 1) return { ok: false, reason: `certificate names ${ous.length} OUs; a principal has one role` };
  // Certificates issued before roles carry OU=ops: the same word, the same role.
  const role = ous.length === 0 ? 'viewer' : ous[0]!;
  if (!(ROLES as readonly string[]).includes(role)) return { ok: false, reason: `certificate OU ${JSON.stringify(role)} is not a role (${ROLES.join(', ')})` };
  return { ok: true, principal: { cn: cns[0]!, role: role as Role } };
}
