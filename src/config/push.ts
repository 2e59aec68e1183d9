// A config sent by central ops (CONTRACT §9 Config push), made ready to compare or apply. Pure.
// It is validated exactly as `camnode run` validates a file (the same `<path>: <message>`
// lines); a secret sent as `***` (what `config get` shows) keeps the value in force; the
// node's identity and where it keeps its state may be omitted or repeated, never changed.
import { ConfigError, formatPath, parseYamlDocument, validateConfig } from './load.js';
import type { ConfigInForce } from './identity.js';
import { configSecrets, scrub } from './redact.js';
import type { Config } from './schema.js';

type Doc = Record<string, unknown>;
const isObject = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Settings only the file on the node sets: a push may omit them or repeat their value. */
export const PINNED: readonly (readonly [string, string])[] = [['node', 'id'], ['node', 'stateDir'], ['control', 'socket'], ['fleet', 'releaseKey']];

const MASK = '***';

export interface PreparedConfig {
  config: Config;
  /** The document as it will be stored: secrets in full, pinned settings filled in. */
  document: Doc;
}

function at(doc: unknown, path: readonly string[]): unknown {
  let v = doc;
  for (const p of path) v = isObject(v) ? v[p] : undefined;
  return v;
}

/** The password part of a URL exactly as typed (percent-encoding and all); null without one. */
function typedPassword(url: string): string | null {
  return /^[a-z][a-z0-9+.-]*:\/\/[^:/@]*:(.*)@[^@]*$/i.exec(url)?.[1] ?? null;
}

/**
 * `***` for a URL's password (or the whole value) → the value in force. A password is kept only
 * for the same scheme, host and port (else an admin could send it to a host of theirs), and only
 * in the schemes that carry one. A string: the value to use; `{problem}`: why not.
 */
function unmask(sent: string, inForce: string | undefined, schemes: readonly string[]): string | { problem: string } {
  if (sent === MASK) return inForce ?? { problem: 'has none on this node' };
  let url: URL;
  try {
    url = new URL(sent);
  } catch {
    return sent;
  }
  if (url.password !== MASK) return sent;
  if (!schemes.includes(url.protocol)) return { problem: `is kept only in ${schemes.map((p) => `${p}//`).join(', ')} URLs` };
  const password = inForce === undefined ? null : typedPassword(inForce);
  if (inForce === undefined || password === null) return { problem: 'has none on this node' };
  const before = new URL(inForce);
  if (before.protocol !== url.protocol || before.host !== url.host) {
    return { problem: `is kept only for the same host and port (${before.protocol}//${before.host} on this node): give the password to point it elsewhere` };
  }
  // Spliced into the URL as sent, exactly as it was typed: only the password is kept.
  return sent.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):\*\*\*@/i, (_m, head: string) => `${head}:${password}@`);
}

/** Parses, fills in, unmasks and validates a pushed config. Throws ConfigError (`<path>: <message>` lines). */
export function preparePush(text: string, inForce: ConfigInForce): PreparedConfig {
  const doc = parseYamlDocument(text, 'config');
  if (!isObject(doc)) throw new ConfigError(['config: must be a mapping of sections (node, storage, cameras, …)']);
  const problems: string[] = [];

  for (const path of PINNED) {
    const current = at(inForce.config, path);
    const sent = at(doc, path);
    if (sent === undefined) {
      const [section, key] = path;
      // A section that is there but no mapping is left for validation to name.
      if (current === undefined || (doc[section] !== undefined && !isObject(doc[section]))) continue;
      const parent = isObject(doc[section]) ? doc[section] : (doc[section] = {});
      (parent as Doc)[key] = current;
    } else if (sent !== current) {
      problems.push(`${formatPath(path)}: cannot be changed by a push (${current === undefined ? 'not set' : `${JSON.stringify(current)}`} on this node; change it in the file on the node)`);
    }
  }

  const camerasInForce = new Map(inForce.config.cameras.map((c) => [c.id, c.source]));
  if (Array.isArray(doc['cameras'])) {
    doc['cameras'].forEach((c: unknown, i) => {
      if (!isObject(c) || typeof c['source'] !== 'string' || !c['source'].includes(MASK)) return;
      const id = typeof c['id'] === 'string' ? c['id'] : '';
      const kept = unmask(c['source'], camerasInForce.get(id), ['rtsp:', 'rtsps:']);
      if (typeof kept === 'string') c['source'] = kept;
      else problems.push(`cameras[${i}].source: "${MASK}" keeps the password in force of camera ${JSON.stringify(id)}, which ${kept.problem}`);
    });
  }
  const mqtt = doc['mqtt'];
  if (isObject(mqtt) && typeof mqtt['url'] === 'string' && mqtt['url'].includes(MASK)) {
    const kept = unmask(mqtt['url'], inForce.config.mqtt?.url, ['mqtt:', 'mqtts:', 'ws:', 'wss:']);
    if (typeof kept === 'string') mqtt['url'] = kept;
    else problems.push(`mqtt.url: "${MASK}" keeps the broker password in force, which ${kept.problem}`);
  }

  let config: Config | undefined;
  try {
    config = validateConfig(doc);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  // Whatever the lines quote, never a secret in force (a reply goes to a terminal).
  const secrets = configSecrets(inForce.config);
  if (problems.length > 0 || !config) throw new ConfigError(problems.map((line) => scrub(line, secrets)));
  return { config, document: doc };
}

/** The paths at which two configs differ (values never shown: secrets are among them). */
export function differingPaths(a: unknown, b: unknown, path: (string | number)[] = []): string[] {
  if (Array.isArray(a) && Array.isArray(b)) {
    const out: string[] = [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= a.length || i >= b.length) out.push(formatPath([...path, i]));
      else out.push(...differingPaths(a[i], b[i], [...path, i]));
    }
    return out;
  }
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => differingPaths(a[k], b[k], [...path, k]));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [formatPath(path)];
}
