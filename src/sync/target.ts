// Building the upstream target from the config: the S3 credentials file, or the environment.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { DirStore } from './dir-store.js';
import type { ObjectStore } from './store.js';

/** KEY=VALUE lines (with optional `export` and quotes), as in /etc/camnode/s3.env. Pure. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    out[m[1]!] = m[2]!.replace(/^(['"])(.*)\1$/, '$2');
  }
  return out;
}

export class UpstreamConfigError extends Error {}

export async function createStore(config: Pick<Config, 'upstream' | 'node'>, env: NodeJS.ProcessEnv = process.env): Promise<{ store: ObjectStore; keyPrefix: string } | null> {
  const u = config.upstream;
  const keyPrefix = `${u.prefix}/${config.node.id}`;
  if (u.type === 'none') return null;
  if (u.type === 'dir') return { store: new DirStore(u.path!), keyPrefix };
  let vars: Record<string, string | undefined> = env;
  if (u.credentials) {
    try {
      vars = parseEnvFile(await readFile(u.credentials, 'utf8'));
    } catch (err) {
      throw new UpstreamConfigError(`upstream.credentials: cannot read ${u.credentials} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const accessKeyId = vars['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = vars['AWS_SECRET_ACCESS_KEY'];
  if (u.credentials && (!accessKeyId || !secretAccessKey)) {
    throw new UpstreamConfigError(`upstream.credentials: ${u.credentials} must set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
  }
  // The S3 SDK is loaded only for an S3 target.
  const { S3Store } = await import('./s3-store.js');
  return {
    store: new S3Store({
      endpoint: u.endpoint, region: u.region, bucket: u.bucket!,
      // Without a file, the SDK's own chain reads the environment (and instance roles on AWS).
      credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
      probePrefix: join(keyPrefix),
    }),
    keyPrefix,
  };
}
