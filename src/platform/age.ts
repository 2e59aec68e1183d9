// The age file format (age-encryption.org/v1) for X25519 recipients, on node:crypto.
//
// Why not the maintained JavaScript implementation (typage, `age-encryption`): it streams, but
// its ChaCha20-Poly1305 is pure JavaScript — 138 MB/s against OpenSSL's 1.8 GB/s on the same
// core here, so sealing a gigabyte clip would cost a Pi's shared CPU thirteen times as much —
// and it brings five dependencies (post-quantum included) for one recipient type. This is the
// format's X25519 part only, interoperable both ways with the reference `age` tool (tested).
//
//   header:  age-encryption.org/v1
//            -> X25519 <ephemeral share>          one stanza per recipient
//            <wrapped 16-byte file key>
//            --- <HMAC-SHA-256 of the header up to "---">
//   payload: 16-byte nonce, then the plaintext in 64 KiB chunks, each ChaCha20-Poly1305 under
//            HKDF(file key, nonce, "payload") with a 12-byte nonce of an 11-byte counter and a
//            last-chunk flag.
//
// AgeEncrypter and AgeDecrypter take bytes in any pieces and give back what they can; memory
// stays one chunk however large the file.
import { createCipheriv, createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { bech32 } from '@scure/base';
import { fsyncDir, writeAll } from './durable.js';

const VERSION_LINE = 'age-encryption.org/v1';
const CHUNK = 64 * 1024;
const TAG = 16;
const X25519_INFO = 'age-encryption.org/v1/X25519';
/** DER prefixes that make a raw 32-byte X25519 key a key object node:crypto accepts. */
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'age-secret-key-';
/** A header bigger than this is not one we wrote or can use (a few stanzas are < 1 KiB). */
const MAX_HEADER = 64 * 1024;

export class AgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgeError';
  }
}

export interface AgeIdentity {
  /** The recipient this identity decrypts for (`age1…`). */
  recipient: string;
  readonly secret: KeyObject;
  readonly publicKey: Buffer;
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

/** Canonical unpadded base64, as age requires; anything else is refused. */
function fromB64(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]*$/.test(text) || b64(bytes) !== text) throw new AgeError(`${what} is not canonical unpadded base64`);
  return bytes;
}

const publicKeyObject = (raw: Uint8Array): KeyObject => createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
const rawPublicKey = (key: KeyObject): Buffer => (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'der', type: 'spki' }).subarray(-32);
const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: string): Buffer => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

/** The raw X25519 public key of an `age1…` recipient; the error says what is wrong with it. */
export function parseRecipient(text: string): Buffer {
  if (text.startsWith('age1pq')) throw new AgeError('post-quantum age recipients are not supported; use an X25519 recipient from age-keygen');
  if (/^(ssh-|ecdsa-)/.test(text)) throw new AgeError('SSH keys are not supported as age recipients; use an X25519 recipient from age-keygen');
  if (text.startsWith('AGE-SECRET-KEY-')) throw new AgeError('this is an age identity (a secret key), not its recipient: give the "public key: age1…" line age-keygen printed, and keep the identity off the node');
  if (!text.startsWith('age1')) throw new AgeError('not an age recipient: they start with age1 (age-keygen prints it as "public key")');
  if (text !== text.toLowerCase()) throw new AgeError('not an age recipient: they are lower case');
  if (text.length !== 62) throw new AgeError(`not an age recipient: they are 62 characters long, this one ${text.length}`);
  let decoded: { prefix: string; words: number[] };
  try {
    decoded = bech32.decode(text as `${string}1${string}`);
  } catch {
    throw new AgeError('not an age recipient: its checksum does not match (a character is wrong)');
  }
  const raw = decoded.prefix === RECIPIENT_HRP ? Buffer.from(bech32.fromWords(decoded.words)) : Buffer.alloc(0);
  if (raw.length !== 32) throw new AgeError('not an age recipient: it does not hold a 32-byte X25519 key');
  // A low-order point would make every encryption to it fail (and reveal the file key to anyone).
  try {
    diffieHellman({ privateKey: generateKeyPairSync('x25519').privateKey, publicKey: publicKeyObject(raw) });
  } catch {
    throw new AgeError('not an age recipient: its key is not a usable X25519 point');
  }
  return raw;
}

export function recipientString(rawPublicKey: Uint8Array): string {
  return bech32.encode(RECIPIENT_HRP, bech32.toWords(rawPublicKey));
}

/** One `AGE-SECRET-KEY-1…` line. */
export function parseIdentity(text: string): AgeIdentity {
  let decoded: { prefix: string; words: number[] };
  try {
    decoded = bech32.decode(text.toLowerCase() as `${string}1${string}`);
  } catch (err) {
    throw new AgeError(`not an age identity: ${(err as Error).message}`);
  }
  if (decoded.prefix !== IDENTITY_HRP || text !== text.toUpperCase()) throw new AgeError('not an age identity (AGE-SECRET-KEY-1…, upper case)');
  const raw = Buffer.from(bech32.fromWords(decoded.words));
  if (raw.length !== 32) throw new AgeError(`an age identity holds 32 bytes, this one ${raw.length}`);
  const secret = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
  const publicKey = rawPublicKey(secret);
  return { secret, publicKey, recipient: recipientString(publicKey) };
}

/** An identity file as age-keygen writes it: `#` comments, blank lines, one key per line. */
export function parseIdentityFile(text: string, source = 'identity file'): AgeIdentity[] {
  const out: AgeIdentity[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    if (t.startsWith('-----BEGIN')) throw new AgeError(`${source} line ${i + 1}: an SSH or PEM key is not an age identity; use an age-keygen identity`);
    try {
      out.push(parseIdentity(t));
    } catch (err) {
      throw new AgeError(`${source} line ${i + 1}: ${(err as Error).message}`);
    }
  });
  if (out.length === 0) throw new AgeError(`${source} holds no age identity (AGE-SECRET-KEY-1…)`);
  return out;
}

/** A new identity and its recipient, in age-keygen's format. */
export function generateIdentity(): { identity: string; recipient: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const raw = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  return {
    identity: bech32.encode(IDENTITY_HRP, bech32.toWords(raw)).toUpperCase(),
    recipient: recipientString(rawPublicKey(publicKey)),
  };
}

function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Buffer[] {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  const body = cipher.update(plaintext);
  cipher.final();
  return [body, cipher.getAuthTag()];
}

/** Null when the tag does not verify. */
function open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Buffer | null {
  if (sealed.length < TAG) return null;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  const body = decipher.update(sealed.subarray(0, sealed.length - TAG));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return body;
}

function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

function headerMac(fileKey: Uint8Array, headerUpToDashes: string): Buffer {
  return createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(headerUpToDashes, 'latin1').digest();
}

/** Base64 body lines: 64 columns, the last one always shorter (empty when it would be full). */
function bodyLines(bytes: Uint8Array): string {
  const text = b64(bytes);
  const lines: string[] = [];
  for (let i = 0; i <= text.length; i += 64) lines.push(text.slice(i, i + 64));
  return lines.join('\n');
}

/** Encrypts a stream to X25519 recipients: update() with the plaintext, final() once. */
export class AgeEncrypter {
  private readonly chunk = Buffer.alloc(CHUNK);
  private fill = 0;
  private counter = 0;
  private header: Buffer | undefined;
  private readonly payloadKey: Buffer;
  private finished = false;

  constructor(recipients: readonly string[]) {
    if (recipients.length === 0) throw new AgeError('no age recipient to encrypt to');
    const fileKey = randomBytes(16);
    let header = `${VERSION_LINE}\n`;
    for (const recipient of recipients) {
      const their = parseRecipient(recipient);
      const ephemeral = generateKeyPairSync('x25519');
      const share = rawPublicKey(ephemeral.publicKey);
      const shared = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: publicKeyObject(their) });
      if (shared.every((b) => b === 0)) throw new AgeError(`age recipient ${recipient} is a low-order point`);
      const wrapKey = hkdf(shared, Buffer.concat([share, their]), X25519_INFO);
      header += `-> X25519 ${b64(share)}\n${bodyLines(Buffer.concat(seal(wrapKey, Buffer.alloc(12), fileKey)))}\n`;
    }
    header += '---';
    const nonce = randomBytes(16);
    this.header = Buffer.concat([Buffer.from(`${header} ${b64(headerMac(fileKey, header))}\n`, 'latin1'), nonce]);
    this.payloadKey = hkdf(fileKey, nonce, 'payload');
  }

  update(plaintext: Uint8Array): Buffer[] {
    if (this.finished) throw new AgeError('update after final');
    const out = this.takeHeader();
    let pos = 0;
    while (pos < plaintext.length) {
      // A full chunk is held until more comes: only then is it known not to be the last.
      if (this.fill === CHUNK) out.push(...this.sealChunk(false));
      const n = Math.min(CHUNK - this.fill, plaintext.length - pos);
      this.chunk.set(plaintext.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
    }
    return out;
  }

  final(): Buffer[] {
    if (this.finished) throw new AgeError('final called twice');
    const out = this.takeHeader();
    out.push(...this.sealChunk(true));
    this.finished = true;
    return out;
  }

  private takeHeader(): Buffer[] {
    const header = this.header;
    this.header = undefined;
    return header ? [header] : [];
  }

  private sealChunk(last: boolean): Buffer[] {
    const sealed = seal(this.payloadKey, chunkNonce(this.counter++, last), this.chunk.subarray(0, this.fill));
    this.fill = 0;
    return sealed;
  }
}


interface Stanza { args: string[]; body: Buffer }

/** Decrypts a stream with identities: update() with the ciphertext, final() once; throws AgeError. */
export class AgeDecrypter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private payloadKey: Buffer | undefined;
  private readonly chunk = Buffer.alloc(CHUNK + TAG);
  private fill = 0;
  private counter = 0;
  private finished = false;

  constructor(private readonly identities: readonly AgeIdentity[]) {
    if (identities.length === 0) throw new AgeError('no age identity to decrypt with');
  }

  update(ciphertext: Uint8Array): Buffer[] {
    if (this.finished) throw new AgeError('update after final');
    if (this.payloadKey) return this.payload(ciphertext);
    this.pending.push(Buffer.from(ciphertext));
    this.pendingBytes += ciphertext.length;
    const buffered = Buffer.concat(this.pending);
    const rest = this.readHeader(buffered);
    if (rest === null) {
      if (this.pendingBytes > MAX_HEADER + 16) throw new AgeError('no age header in the first 64 KiB: not an age file');
      this.pending = [buffered];
      return [];
    }
    this.pending = [];
    return this.payload(rest);
  }

  final(): Buffer[] {
    if (this.finished) throw new AgeError('final called twice');
    this.finished = true;
    if (!this.payloadKey) throw new AgeError(this.pendingBytes === 0 ? 'the file is empty: not an age file' : 'the file ends inside its age header');
    if (this.fill < TAG) throw new AgeError('the file is truncated: its last chunk is missing');
    if (this.fill === TAG && this.counter > 0) throw new AgeError('the file ends with an empty chunk: not as age writes it');
    return [this.openChunk(true)];
  }

  private payload(bytes: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < bytes.length) {
      if (this.fill === this.chunk.length) out.push(this.openChunk(false));
      const n = Math.min(this.chunk.length - this.fill, bytes.length - pos);
      this.chunk.set(bytes.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
    }
    return out;
  }

  private openChunk(last: boolean): Buffer {
    const plain = open(this.payloadKey!, chunkNonce(this.counter, last), this.chunk.subarray(0, this.fill));
    if (plain === null) {
      throw new AgeError(last
        ? `chunk ${this.counter} does not authenticate as the last one: the file was altered or truncated`
        : `chunk ${this.counter} does not authenticate: the file was altered`);
    }
    this.counter++;
    this.fill = 0;
    return plain;
  }

  /** The payload after the header and nonce, or null until all of them have arrived. */
  private readHeader(buffered: Buffer): Buffer | null {
    const dashes = indexOfLine(buffered, '--- ');
    if (dashes < 0) {
      if (buffered.length >= 5 && !VERSION_LINE.startsWith(buffered.subarray(0, Math.min(buffered.length, VERSION_LINE.length)).toString('latin1'))) {
        if (buffered.subarray(0, 11).toString('latin1') === '-----BEGIN ') throw new AgeError('an armored (ASCII) age file: decrypt it with `age -d` first');
        throw new AgeError('not an age file (no age-encryption.org/v1 header)');
      }
      return null;
    }
    const eol = buffered.indexOf(0x0a, dashes);
    if (eol < 0 || buffered.length < eol + 1 + 16) return null;
    const headerText = buffered.subarray(0, dashes + 3).toString('latin1');
    const macText = buffered.subarray(dashes + 4, eol).toString('latin1');
    const stanzas = parseStanzas(headerText);
    const fileKey = this.unwrap(stanzas);
    const mac = fromB64(macText, 'the header MAC');
    const expected = headerMac(fileKey, headerText);
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) throw new AgeError('the age header does not authenticate: it was altered');
    const nonce = buffered.subarray(eol + 1, eol + 17);
    this.payloadKey = hkdf(fileKey, nonce, 'payload');
    return buffered.subarray(eol + 17);
  }

  private unwrap(stanzas: Stanza[]): Buffer {
    const x25519 = stanzas.filter((s) => s.args[0] === 'X25519');
    if (x25519.length === 0) throw new AgeError(`the file is encrypted to none of the X25519 recipients camnode reads (stanzas: ${stanzas.map((s) => s.args[0]).join(', ')})`);
    for (const stanza of x25519) {
      if (stanza.args.length !== 2 || stanza.body.length !== 32) throw new AgeError('a malformed X25519 stanza in the age header');
      const share = fromB64(stanza.args[1]!, 'an X25519 share');
      if (share.length !== 32) throw new AgeError('a malformed X25519 share in the age header');
      for (const identity of this.identities) {
        const shared = diffieHellman({ privateKey: identity.secret, publicKey: publicKeyObject(share) });
        if (shared.every((b) => b === 0)) throw new AgeError('an X25519 share in the age header is a low-order point');
        const fileKey = open(hkdf(shared, Buffer.concat([share, identity.publicKey]), X25519_INFO), Buffer.alloc(12), stanza.body);
        if (fileKey !== null && fileKey.length === 16) return fileKey;
      }
    }
    throw new AgeError(`no identity given decrypts this file (it is for ${x25519.length} X25519 recipient${x25519.length === 1 ? '' : 's'}, not ${this.identities.map((i) => i.recipient).join(', ')})`);
  }
}

function indexOfLine(buffer: Buffer, start: string): number {
  const needle = Buffer.from(`\n${start}`, 'latin1');
  const i = buffer.subarray(0, MAX_HEADER + 128).indexOf(needle);
  return i < 0 ? -1 : i + 1;
}

function parseStanzas(header: string): Stanza[] {
  const lines = header.split('\n');
  if (lines[0] !== VERSION_LINE) throw new AgeError('not an age v1 file (its first line is not age-encryption.org/v1)');
  const stanzas: Stanza[] = [];
  let i = 1;
  while (i < lines.length - 1) {
    const line = lines[i]!;
    if (!line.startsWith('-> ')) throw new AgeError(`a malformed age header line: ${JSON.stringify(line.slice(0, 40))}`);
    const args = line.slice(3).split(' ');
    if (args.some((a) => !/^[\x21-\x7e]+$/.test(a))) throw new AgeError('a malformed stanza in the age header');
    const body: string[] = [];
    for (i++; ; i++) {
      if (i >= lines.length - 1) throw new AgeError('an age header stanza without its body');
      const b = lines[i]!;
      if (b.length > 64) throw new AgeError('an age header body line over 64 columns');
      body.push(b);
      if (b.length < 64) break;
    }
    i++;
    stanzas.push({ args, body: fromB64(body.join(''), 'a stanza body') });
  }
  if (lines[lines.length - 1] !== '---') throw new AgeError('a malformed end of the age header');
  if (stanzas.length === 0) throw new AgeError('an age header without recipients');
  return stanzas;
}

export interface Digest { bytes: number; sha256: string }

/**
 * Encrypts a file to `dst` and makes it durable (fsynced, then the folder), hashing both sides
 * in the same pass. Reads and writes 1 MiB at a time.
 */
export async function encryptFile(src: string, dst: string, recipients: readonly string[]): Promise<{ plaintext: Digest; ciphertext: Digest }> {
  const encrypter = new AgeEncrypter(recipients);
  const plain = hashing();
  const cipher = hashing();
  const out = await openFile(dst, 'w');
  try {
    const write = async (buffers: Buffer[]): Promise<void> => {
      if (buffers.length === 0) return;
      for (const b of buffers) cipher.add(b);
      await writeAll(out, buffers);
    };
    for await (const chunk of createReadStream(src, { highWaterMark: 1024 * 1024 })) {
      plain.add(chunk as Buffer);
      await write(encrypter.update(chunk as Buffer));
    }
    await write(encrypter.final());
    await out.sync();
  } finally {
    await out.close();
  }
  await fsyncDir(dirname(dst));
  return { plaintext: plain.digest(), ciphertext: cipher.digest() };
}

/**
 * Decrypts a file, handing each piece of plaintext to `sink` (awaited, so a slow writer holds
 * the reading back); hashes both sides. Throws AgeError when it does not decrypt whole.
 */
export async function decryptFile(src: string, identities: readonly AgeIdentity[], sink?: (plaintext: Buffer) => unknown): Promise<{ plaintext: Digest; ciphertext: Digest }> {
  const decrypter = new AgeDecrypter(identities);
  const plain = hashing();
  const cipher = hashing();
  const take = async (buffers: Buffer[]): Promise<void> => {
    for (const b of buffers) {
      plain.add(b);
      if (sink) await sink(b);
    }
  };
  for await (const chunk of createReadStream(src, { highWaterMark: 1024 * 1024 })) {
    cipher.add(chunk as Buffer);
    await take(decrypter.update(chunk as Buffer));
  }
  await take(decrypter.final());
  return { plaintext: plain.digest(), ciphertext: cipher.digest() };
}

function hashing(): { add(b: Buffer): void; digest(): Digest } {
  const hash = createHash('sha256');
  let bytes = 0;
  return {
    add(b) {
      hash.update(b);
      bytes += b.length;
    },
    digest: () => ({ bytes, sha256: hash.digest('hex') }),
  };
}
