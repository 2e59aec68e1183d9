// Pushed configs on the node (CONTRACT §9 Config push): each stored 0600 in
// `node.stateDir/config/<sha256>.json` (JSON, which is YAML), and `committed.json` naming the one
// in force once it proved itself. The config in force, for every command (`run` included), is the
// last committed push, else the file; `camnode config reset` removes the commitment.
import { readFileSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileDurable } from '../platform/durable.js';
import type { ConfigInForce } from './identity.js';
import { ConfigError, loadConfigWithDocument, parseConfigWithDocument } from './load.js';
import { configSecrets, scrub } from './redact.js';

export const PUSHED_DIR = 'config';
const COMMITTED = 'committed.json';

export interface Committed { sha256: string; file: string; at: string }

export interface InForce extends ConfigInForce {
  /** The node's config file (the source of node.stateDir, and where `config reset` returns). */
  path: string;
  /** Why a committed push was not used (then the file is in force); absent otherwise. */
  fallback?: string;
}

export class PushedConfigs {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, PUSHED_DIR);
  }

  /** Stores a pushed document (secrets and all: 0600), durably; returns its file. */
  async save(document: unknown, sha256: string): Promise<string> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, `${sha256}.json`);
    await writeFileDurable(file, `${JSON.stringify(document, null, 2)}\n`);
    return file;
  }

  /** Makes a stored push the config in force from now on (and at every start). */
  async commit(sha256: string, nowMs: number): Promise<void> {
    const committed: Committed = { sha256, file: `${sha256}.json`, at: new Date(nowMs).toISOString() };
    await writeFileDurable(join(this.dir, COMMITTED), `${JSON.stringify(committed)}\n`);
  }

  /** Back to the file: no push is in force any more. */
  async reset(): Promise<void> {
    await unlink(join(this.dir, COMMITTED)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await fsyncDir(this.dir).catch(() => {});
  }

  /** The commitment, if any (read synchronously: every command starts with the config). */
  committed(): Committed | null {
    let text: string;
    try {
      text = readFileSync(join(this.dir, COMMITTED), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const c = JSON.parse(text) as Partial<Committed>;
    if (typeof c.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(c.sha256) || c.file !== `${c.sha256}.json`) throw new Error(`${COMMITTED} is not a commitment`);
    return c as Committed;
  }
}

/**
 * The config in force (CONTRACT §1): the file's, unless a push committed under the file's
 * node.stateDir is there and still valid. A bad file is a ConfigError as ever; a committed push
 * that no longer loads (damaged, or refused by a newer release's rules) falls back to the file,
 * and says why.
 */
export function loadConfigInForce(path: string): InForce {
  const file = loadConfigWithDocument(path);
  const fromFile: InForce = { ...file, source: 'file', path };
  const store = new PushedConfigs(file.config.node.stateDir);
  let committed: Committed | null;
  try {
    committed = store.committed();
  } catch (err) {
    return { ...fromFile, fallback: `the committed push cannot be read (${(err as Error).message}): the file is in force` };
  }
  if (!committed) return fromFile;
  try {
    const pushed = parseConfigWithDocument(readFileSync(join(store.dir, committed.file), 'utf8'), join(store.dir, committed.file));
    // The node's own settings stay the file's, whatever a stored push says.
    if (pushed.config.node.stateDir !== file.config.node.stateDir || pushed.config.node.id !== file.config.node.id) {
      return { ...fromFile, fallback: 'the committed push names another node.id or node.stateDir than the file: the file is in force' };
    }
    return { ...pushed, source: 'pushed', path };
  } catch (err) {
    // (Blanked: a line may quote a value of the push, a password among them.)
    const why = scrub(err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message, configSecrets(file.config));
    return { ...fromFile, fallback: `the committed push ${committed.sha256.slice(0, 12)} does not load (${why}): the file is in force` };
  }
}
