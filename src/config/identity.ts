// Which config is in force, as one value (CONTRACT §9 Config push): `sha256` in the status, in
// `config get`, in a push's reply and in the config events. It is the SHA-256 of the JCS of the
// redacted config followed by an HMAC-SHA-256 of its secrets under a key that never leaves the
// node: a changed password changes the value, and without the key the value gives nobody a way
// to test guesses of a password offline. (An admin can test a guess online with `compare`; an
// admin can also change the password outright.)
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import canonicalize from 'canonicalize';
import { writeFileDurable } from '../platform/durable.js';
import { redactUrl } from './redact.js';
import type { Config } from './schema.js';

export type ConfigSource = 'file' | 'pushed';

/** The config in force: what it says, as written (for `config get`) and parsed, and whence. */
export interface ConfigInForce {
  config: Config;
  /** The document as written (YAML parsed to plain values): what `config get` shows, redacted. */
  document: unknown;
  source: ConfigSource;
}

export const CONFIG_HASH_KEY_FILE = 'config-hash.key';

/** The secrets of a config by where they stand: each URL's password. */
export function secretsByPath(config: Pick<Config, 'cameras' | 'mqtt' | 'upstream'>): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (path: string, url: string): void => {
    try {
      const password = new URL(url).password;
      if (password) out[path] = password;
    } catch { /* not a URL: no secret */ }
  };
  config.cameras.forEach((c, i) => add(`cameras[${i}].source`, c.source));
  if (config.mqtt) add('mqtt.url', config.mqtt.url);
  if (config.upstream.endpoint) add('upstream.endpoint', config.upstream.endpoint);
  return out;
}

type Doc = Record<string, unknown>;
const isObject = (v: unknown): v is Doc => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A copy with every URL password as `***` (`rtsp://user:***@host/…`): a parsed config or a
 * document as written alike (each camera's source, the broker's URL, an S3 endpoint's).
 */
export function redactConfig<T>(config: T): T {
  const copy = structuredClone(config) as unknown;
  if (!isObject(copy)) return copy as T;
  if (Array.isArray(copy['cameras'])) {
    for (const c of copy['cameras'] as unknown[]) if (isObject(c) && typeof c['source'] === 'string') c['source'] = redactUrl(c['source']);
  }
  const mqtt = copy['mqtt'];
  if (isObject(mqtt) && typeof mqtt['url'] === 'string') mqtt['url'] = redactUrl(mqtt['url']);
  const upstream = copy['upstream'];
  if (isObject(upstream) && typeof upstream['endpoint'] === 'string') upstream['endpoint'] = redactUrl(upstream['endpoint']);
  return copy as T;
}

/** The one value that names a config (see the top of this file). */
export function configSha256(config: Config, key: Uint8Array): string {
  const redacted = canonicalize(JSON.parse(JSON.stringify(redactConfig(config))) as unknown) ?? '';
  const secrets = createHmac('sha256', key).update(canonicalize(secretsByPath(config)) ?? '').digest();
  return createHash('sha256').update(redacted).update(secrets).digest('hex');
}

/** The node-local key of the HMAC above, made once (32 random bytes, 0600) in node.stateDir. */
export async function loadOrCreateHashKey(stateDir: string): Promise<Buffer> {
  const path = join(stateDir, CONFIG_HASH_KEY_FILE);
  const existing = await readFile(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (existing && existing.length === 32) return existing;
  const key = randomBytes(32);
  await writeFileDurable(path, key);
  return key;
}
