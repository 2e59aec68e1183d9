// The bounds every command transport enforces before anything else reads a request (CONTRACT
// §5): at most 256 KiB, valid UTF-8, JSON nested at most 64 deep, and an `id` that is a string
// of at most 128 characters or a safe integer. Pure. Deep nesting is refused before JSON.parse
// sees it: the reply's JSON.stringify recurses, and a request nested tens of thousands deep
// would throw there, outside any handler.

export const MAX_REQUEST_BYTES = 256 * 1024;
export const MAX_DEPTH = 64;
export const MAX_ID_CHARS = 128;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** How deep a JSON text nests, read without parsing it; stops counting past `limit`. */
export function jsonDepth(text: string, limit = MAX_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return max;
}

export type Parsed = { ok: true; value: unknown } | { ok: false; reason: string };

/** A request's bytes as JSON within the bounds, or why not. */
export function parseBounded(bytes: Uint8Array | string): Parsed {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > MAX_REQUEST_BYTES) return { ok: false, reason: `request of ${size} bytes is larger than ${MAX_REQUEST_BYTES}` };
  let text: string;
  if (typeof bytes === 'string') {
    text = bytes;
  } else {
    try {
      text = utf8.decode(bytes);
    } catch {
      return { ok: false, reason: 'request is not valid UTF-8' };
    }
  }
  if (jsonDepth(text) > MAX_DEPTH) return { ok: false, reason: `request nested deeper than ${MAX_DEPTH}` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, reason: `malformed JSON: ${(err as Error).message}` };
  }
}

/** A request id echoed in replies: a short string or a safe integer, else null. */
export function requestId(id: unknown): string | number | null {
  if (typeof id === 'string' && id.length <= MAX_ID_CHARS) return id;
  if (typeof id === 'number' && Number.isSafeInteger(id)) return id;
  return null;
}

/** A plain JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The leaf certificate (base64 DER, x5c[0]) of a JWS already checked; undefined if it has none.
 * Here, not beside the verifier: reading a header must not load the X.509 and JOSE libraries
 * into an agent that takes no signed commands.
 */
export function leafCertificateOf(jws: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as unknown;
    const x5c = isObject(header) ? header['x5c'] : undefined;
    return Array.isArray(x5c) && typeof x5c[0] === 'string' ? x5c[0] : undefined;
  } catch {
    return undefined;
  }
}
