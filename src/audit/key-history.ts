// Node key history (CONTRACT §7): every node key ever used is published upstream as
// `<prefix>/<node>/keys/<first-used>.pub` and listed in `status` as `keys`, so a manifest signed
// before an SD card was replaced still verifies against a key the district holds. The node keeps
// what it knows in `<stateDir>/node-keys.json`: its own key(s), and those it found upstream.
import { createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurable } from '../platform/durable.js';
import type { Logger } from '../platform/logger.js';
import { queueRecord } from '../sync/records.js';
import { NODE_KEY_FILE, isPublicKeyBase64, publicKeyBase64, publicKeyFromBase64, type NodeKey } from './keys.js';

export const KEY_HISTORY_FILE = 'node-keys.json';
/** Where the history lives below `<prefix>/<node>/`. */
export const KEYS_PREFIX = 'keys/';

export interface KnownKey {
  /** Standard padded base64 of the raw 32-byte Ed25519 public key (as `status` and `--key`). */
  publicKey: string;
  /** ISO time the node first used it (its key file's time when made before histories were kept). */
  firstUsed: string;
}

/** `20261202T112600Z`: the first-used time as it appears in object names and the audit log-id. */
export function keyStamp(firstUsed: string): string {
  return new Date(firstUsed).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

export function stampToIso(stamp: string): string | null {
  const m = STAMP.exec(stamp);
  if (!m) return null;
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** `keys/<stamp>.pub` below `<prefix>/<node>/`. */
export function keyObjectName(k: KnownKey): string {
  return `${KEYS_PREFIX}${keyStamp(k.firstUsed)}.pub`;
}

/** A key object's text: the SPKI PEM (what openssl and `--key` read). */
export function keyObjectText(publicKey: string): string {
  return publicKeyFromBase64(publicKey).export({ format: 'pem', type: 'spki' }).toString();
}

/** A key object read back: its name gives firstUsed, its PEM the key. Null when it is neither. */
export function parseKeyObject(name: string, bytes: Uint8Array): KnownKey | null {
  const m = /([^/]+)\.pub$/.exec(name);
  const firstUsed = m ? stampToIso(m[1]!) : null;
  if (!firstUsed) return null;
  const text = Buffer.from(bytes).toString('utf8').trim();
  try {
    const publicKey = isPublicKeyBase64(text) ? text : publicKeyBase64(createPublicKey(text));
    return { publicKey, firstUsed };
  } catch {
    return null;
  }
}

/** Union by key, the earliest first use of each, oldest first. Pure. */
export function mergeKeys(a: readonly KnownKey[], b: readonly KnownKey[]): KnownKey[] {
  const byKey = new Map<string, KnownKey>();
  for (const k of [...a, ...b]) {
    const seen = byKey.get(k.publicKey);
    if (!seen || k.firstUsed < seen.firstUsed) byKey.set(k.publicKey, k);
  }
  return [...byKey.values()].sort((x, y) => x.firstUsed.localeCompare(y.firstUsed));
}

async function readHistory(stateDir: string): Promise<KnownKey[]> {
  try {
    const doc = JSON.parse(await readFile(join(stateDir, KEY_HISTORY_FILE), 'utf8')) as { keys?: unknown };
    return Array.isArray(doc.keys)
      ? doc.keys.filter((k): k is KnownKey => typeof k?.publicKey === 'string' && isPublicKeyBase64(k.publicKey) && typeof k.firstUsed === 'string' && !Number.isNaN(Date.parse(k.firstUsed)))
      : [];
  } catch {
    // Missing or torn: rebuilt from the key file and what is upstream.
    return [];
  }
}

export class KeyHistory {
  private keys: KnownKey[] = [];
  private current: KnownKey | undefined;

  constructor(private readonly deps: { stateDir: string; key: Pick<NodeKey, 'publicKeyBase64'>; now: () => number; log: Logger }) {}

  /**
   * Loads the history, adds the node's own key on its first use, and queues its `.pub` for
   * upload at every start (a replaced bucket gets it again; a stored one costs one HEAD).
   */
  async open(): Promise<void> {
    const { stateDir, key } = this.deps;
    this.keys = await readHistory(stateDir);
    let own = this.keys.find((k) => k.publicKey === key.publicKeyBase64);
    const added = !own;
    if (!own) {
      // A key made before histories were kept: its file's time is when it was first used.
      const made = await stat(join(stateDir, NODE_KEY_FILE)).then((s) => s.mtimeMs, () => this.deps.now());
      own = { publicKey: key.publicKeyBase64, firstUsed: new Date(Math.floor(Math.min(made, this.deps.now()) / 1000) * 1000).toISOString() };
      this.keys = mergeKeys(this.keys, [own]);
    }
    this.current = own;
    try {
      // The object first: a history that names the key means its upload was queued.
      await queueRecord(stateDir, keyObjectName(own), keyObjectText(own.publicKey));
      if (added) {
        await this.save();
        this.deps.log.info({ publicKey: own.publicKey, firstUsed: own.firstUsed }, 'node key added to the key history');
      }
    } catch (err) {
      // A state dir that cannot be written must not stop the recording: tried again at the next start.
      this.deps.log.error({ err }, 'key history could not be written; the node key will be published after a restart');
    }
  }

  /** Every key known, oldest first (the `keys` of `status`). */
  list(): KnownKey[] {
    return [...this.keys];
  }

  /** The key signing now, with its first use: its stamp is the audit log's `log-id`. */
  own(): KnownKey {
    if (!this.current) throw new Error('key history not opened');
    return this.current;
  }

  /** Adds keys found upstream; true if any was new. */
  async learn(found: readonly KnownKey[]): Promise<boolean> {
    const next = mergeKeys(this.keys, found);
    if (next.length === this.keys.length && next.every((k, i) => k.firstUsed === this.keys[i]!.firstUsed)) return false;
    this.keys = next;
    await this.save();
    this.deps.log.info({ keys: next.length }, 'key history updated from upstream');
    return true;
  }

  /** Reads `<prefix>/<node>/keys/` through a store's list and get. */
  async learnFrom(store: { list(prefix: string): Promise<string[]>; get(key: string): Promise<Buffer | null> }, keyPrefix: string): Promise<boolean> {
    const found: KnownKey[] = [];
    for (const name of await store.list(`${keyPrefix}/${KEYS_PREFIX}`)) {
      if (this.keys.some((k) => name.endsWith(`/${keyObjectName(k)}`))) continue;
      const bytes = await store.get(name);
      const k = bytes ? parseKeyObject(name, bytes) : null;
      if (k) found.push(k);
      else this.deps.log.warn({ object: name }, 'not a key object; ignored');
    }
    return found.length > 0 ? this.learn(found) : false;
  }

  private async save(): Promise<void> {
    await writeFileDurable(join(this.deps.stateDir, KEY_HISTORY_FILE), `${JSON.stringify({ keys: this.keys }, null, 2)}\n`);
  }
}
