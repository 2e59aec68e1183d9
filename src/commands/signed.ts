// Signed commands (CONTRACT §7). Over MQTT a command is `{"jws": "<compact JWS>"}`: a protected
// header of exactly `alg` (ES256 or EdDSA) and `x5c` (leaf first, at most 3 certificates), and a
// payload of exactly {node, cmd, args, iat, nonce, replyTo?}. The node checks, in this order:
// the signature and the chain to the fleet CA, validity dates, revocation; that `node` and `cmd`
// are the topic's; `iat`; the nonce; the role. Every refusal is `forbidden`.
import { createHash } from 'node:crypto';
import { compactVerify, importX509 } from 'jose';
import type { Clock } from '../platform/clock.js';
import { parseJsonStrict } from '../platform/json.js';
import { x509 } from '../platform/x509.js';
import type { RevocationView } from '../fleet/revocation.js';
import { isObject, jsonDepth, MAX_DEPTH } from './envelope.js';
import { resolveCommand } from './protocol.js';
import type { ReplayGuard } from './replay.js';
import { leastRole, needsCurrentCrl, principalOf, roleAllows, type Principal } from './roles.js';

export const MUST_BE_SIGNED = 'commands must be signed';
const ALGS = new Set(['ES256', 'EdDSA']);
const MAX_CHAIN = 3;
/** Distinct x5c values kept parsed and verified (principals active at once, and then some). */
const CHAIN_CACHE = 64;

interface KnownChain {
  chain?: x509.X509Certificate[];
  links: x509.X509Certificate[];
  leafCn?: string | undefined;
  structural: string | null;
  /** The leaf's key, imported for JWS verification, per alg. */
  keys: Map<string, Awaited<ReturnType<typeof importX509>>>;
  parseError?: string;
}
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Who signed a command, as entries record it (CONTRACT §7 Who). */
export interface Signer { cn: string; role: Principal['role']; certSha256: string }

export type SignedCheck =
  | { ok: true; signer: Signer; cmd: string; args: Record<string, unknown>; replyTo?: string; jws: string }
  | {
    ok: false;
    reason: string;
    /** The leaf certificate's CN when it could be read: a refusal is sent only under reply/<CN>/. */
    leafCn?: string;
    /** The reply topic the (possibly forged) payload asks for, when it could be read. */
    replyTo?: string;
  };

export interface SignedCommandDeps {
  nodeId: string;
  /** The fleet CA certificate(s). */
  anchors: readonly x509.X509Certificate[];
  revocation: RevocationView;
  replay: Pick<ReplayGuard, 'accept' | 'confirm'>;
  clock: Clock;
  clockSynced(): boolean | null;
}

function b64urlJson(part: string): unknown {
  if (!B64URL.test(part)) throw new SyntaxError('not base64url');
  return parseJsonStrict(Buffer.from(part, 'base64url').toString('utf8'));
}

/** The outer payload: `{jws}` (with the 3.1.1 `id` and `replyTo` beside it). Else null. */
export function outerJws(body: unknown): string | null {
  if (!isObject(body) || typeof body['jws'] !== 'string') return null;
  for (const k of Object.keys(body)) if (k !== 'jws' && k !== 'id' && k !== 'replyTo') return null;
  return body['jws'];
}

export class SignedCommands {
  constructor(private readonly deps: SignedCommandDeps) {}

  /** Checks a signed command that arrived on `cmd/<topicCmd>`. Never throws. */
  async check(topicCmd: string, jws: string): Promise<SignedCheck> {
    try {
      return await this.run(topicCmd, jws);
    } catch (err) {
      return { ok: false, reason: `signed command not readable: ${(err as Error).message}` };
    }
  }

  private async run(topicCmd: string, jws: string): Promise<SignedCheck> {
    const { deps } = this;
    const parts = jws.split('.');
    if (parts.length !== 3) return { ok: false, reason: 'not a compact JWS (three base64url parts)' };
    let header: unknown;
    try {
      header = b64urlJson(parts[0]!);
    } catch (err) {
      return { ok: false, reason: `JWS header: ${(err as Error).message}` };
    }
    if (!isObject(header)) return { ok: false, reason: 'JWS header is not an object' };
    // The leaf's CN and the payload's replyTo first, read unverified, only to know where a
    // refusal may be answered (under reply/<leaf CN>/); everything else is checked after.
    const x5c = header['x5c'];
    const known = Array.isArray(x5c) && x5c.length >= 1 && x5c.length <= MAX_CHAIN && x5c.every((c) => typeof c === 'string')
      ? await this.known(x5c as string[]) : undefined;
    const chain = known?.chain;
    const chainError = known?.parseError;
    const leafCn = known?.leafCn;
    let claimed: unknown;
    try {
      claimed = b64urlJson(parts[1]!);
    } catch { /* checked after the signature */ }
    const replyTo = isObject(claimed) && typeof claimed['replyTo'] === 'string' ? claimed['replyTo'] : undefined;
    const refuse = (reason: string): SignedCheck => ({ ok: false, reason, ...(leafCn ? { leafCn } : {}), ...(replyTo !== undefined ? { replyTo } : {}) });

    const extra = Object.keys(header).filter((k) => k !== 'alg' && k !== 'x5c');
    if (extra.length > 0) return refuse(`JWS header may hold only alg and x5c (found ${extra.slice(0, 5).join(', ')})`);
    const alg = header['alg'];
    if (typeof alg !== 'string' || !ALGS.has(alg)) return refuse(`JWS alg ${JSON.stringify(alg)} is not ES256 or EdDSA`);
    if (chainError) return refuse(chainError);
    if (!chain) return refuse(`JWS x5c must list 1 to ${MAX_CHAIN} certificates, leaf first`);
    const leaf = chain[0]!;

    // Signature and chain to the fleet CA, validity dates, revocation.
    const now = new Date(deps.clock.now());
    const chainProblem = known!.structural ?? this.temporalProblem(known!.links, now);
    if (chainProblem) return refuse(chainProblem);
    const who = principalOf(leaf.subjectName.getField('CN'), leaf.subjectName.getField('OU'));
    if (!who.ok) return refuse(who.reason);
    let payloadBytes: Uint8Array;
    try {
      let key = known!.keys.get(alg);
      if (!key) {
        key = await importX509(leaf.toString('pem'), alg);
        known!.keys.set(alg, key);
      }
      ({ payload: payloadBytes } = await compactVerify(jws, key, { algorithms: [alg] }));
    } catch (err) {
      return refuse(`JWS signature does not verify with the leaf certificate's key (${(err as Error).message})`);
    }
    let payload: unknown;
    const payloadText = Buffer.from(payloadBytes).toString('utf8');
    // The bounds of every request (CONTRACT §5) hold inside the signature too.
    if (jsonDepth(payloadText) > MAX_DEPTH) return refuse(`JWS payload: request nested deeper than ${MAX_DEPTH}`);
    try {
      payload = parseJsonStrict(payloadText);
    } catch (err) {
      return refuse(`JWS payload: ${(err as Error).message}`);
    }
    if (!isObject(payload)) return refuse('JWS payload is not an object');
    const unknown = Object.keys(payload).filter((k) => !['node', 'cmd', 'args', 'iat', 'nonce', 'replyTo'].includes(k));
    if (unknown.length > 0) return refuse(`JWS payload has unknown members (${unknown.slice(0, 5).join(', ')})`);
    const { node, cmd, args, iat, nonce } = payload;
    if (payload['replyTo'] !== undefined && typeof payload['replyTo'] !== 'string') return refuse('JWS payload: replyTo is not a string');
    if (!isObject(args)) return refuse('JWS payload: args is not an object');
    // The topic's, before aliases: a command signed for `release` is not one for `dispose`.
    if (node !== deps.nodeId) return refuse(`signed for node ${JSON.stringify(node)}, not this one`);
    if (cmd !== topicCmd) return refuse(`signed for command ${JSON.stringify(cmd)}, sent as ${JSON.stringify(topicCmd)}`);
    if (typeof iat !== 'number' || typeof nonce !== 'string') return refuse('JWS payload: iat (seconds) and nonce (string) are required');
    const replay = await deps.replay.accept(iat, nonce, Math.floor(deps.clock.now() / 1000), deps.clockSynced() === true);
    if (replay) return refuse(replay);
    // A command that no role names (and no node knows) is answered `bad_request` by the handlers,
    // which run nothing for it; every other is the role's to allow.
    const resolved = resolveCommand(cmd) ?? cmd;
    const named = leastRole(resolved) !== undefined || resolveCommand(cmd) !== undefined;
    if (named && !roleAllows(who.principal.role, resolved)) return refuse(`${who.principal.cn} (${who.principal.role}) may not ${resolved}`);
    if (named && needsCurrentCrl(resolved) && deps.revocation.configured && !deps.revocation.current(now.getTime())) {
      return refuse(`${resolved} needs a current fleet CRL, and the one configured is expired or was never loaded`);
    }
    await deps.replay.confirm(iat, Math.floor(deps.clock.now() / 1000), deps.clockSynced() === true);
    const certSha256 = createHash('sha256').update(Buffer.from(leaf.rawData)).digest('hex');
    return {
      ok: true, signer: { ...who.principal, certSha256 }, cmd, args, jws,
      ...(replyTo !== undefined ? { replyTo } : {}),
    };
  }

  /**
   * An x5c as parsed and checked once: the certificates, the links to verify each time (the CA
   * itself, if sent, is an anchor, not a link), and why the chain does not lead to the fleet CA
   * whatever the date (signatures, CA flags). Kept for the last few distinct x5c values: a
   * principal sends the same certificate every time, and parsing and verifying it is most of
   * the cost of a command. Dates and revocation are checked on every command.
   */
  private async known(x5c: string[]): Promise<KnownChain> {
    const cacheKey = x5c.join('.');
    const hit = this.chains.get(cacheKey);
    if (hit) return hit;
    let entry: KnownChain;
    try {
      const chain = x5c.map((c) => new x509.X509Certificate(Buffer.from(c, 'base64')));
      const links = chain.filter((c, i) => !(i > 0 && this.deps.anchors.some((a) => a.equal(c))));
      entry = { chain, links, leafCn: chain[0]!.subjectName.getField('CN')[0], structural: await this.structuralProblem(links), keys: new Map() };
    } catch (err) {
      entry = { links: [], structural: null, keys: new Map(), parseError: `x5c: not a certificate (${(err as Error).message})` };
    }
    this.chains.set(cacheKey, entry);
    if (this.chains.size > CHAIN_CACHE) this.chains.delete(this.chains.keys().next().value!);
    return entry;
  }

  private readonly chains = new Map<string, KnownChain>();

  /** Why the links do not lead to the fleet CA (signatures, CA flags), or null. */
  private async structuralProblem(links: x509.X509Certificate[]): Promise<string | null> {
    const { anchors } = this.deps;
    for (let i = 0; i < links.length; i++) {
      const cert = links[i]!;
      const name = i === 0 ? 'leaf certificate' : `certificate ${i + 1} of x5c`;
      if (i > 0) {
        const bc = cert.getExtension(x509.BasicConstraintsExtension);
        if (!bc?.ca) return `${name} "${cert.subject}" is not a CA certificate`;
      }
      const next = links[i + 1];
      if (next) {
        if (cert.issuer !== next.subject || !(await cert.verify({ publicKey: await next.publicKey.export(), signatureOnly: true }))) {
          return `${name} "${cert.subject}" is not signed by the next certificate in x5c`;
        }
      } else {
        let anchored = false;
        for (const a of anchors) {
          if (cert.issuer === a.subject && await cert.verify({ publicKey: await a.publicKey.export(), signatureOnly: true })) anchored = true;
        }
        if (!anchored) return `${name} "${cert.subject}" is not issued by the fleet CA`;
      }
    }
    return null;
  }

  /** Why a link is not valid now or is revoked, or null: checked on every command. */
  private temporalProblem(links: x509.X509Certificate[], now: Date): string | null {
    for (let i = 0; i < links.length; i++) {
      const cert = links[i]!;
      const name = i === 0 ? 'leaf certificate' : `certificate ${i + 1} of x5c`;
      if (now < cert.notBefore || now > cert.notAfter) {
        return `${name} "${cert.subject}" is not valid now (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`;
      }
      if (this.deps.revocation.isRevoked(cert)) return `${name} "${cert.subject}" is revoked`;
    }
    return null;
  }
}
