// Secrets (stream and broker passwords) never reach logs, state or `ctl` output (CONTRACT §2).
// A regex over "user:pass@" stops at the first quote or @ a password may contain, so URLs are
// parsed, and the configured secrets themselves — as typed, percent-decoded, percent-encoded
// and JSON-escaped — are blanked in any text: ffmpeg's stderr, error messages, log lines.
import type { Config } from './schema.js';

const MASK = '***';

/** `rtsp://user:***@host/…` for one URL; text that is not a URL with a password comes back unchanged. */
export function redactUrl(text: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    try {
      const url = new URL(text);
      if (url.password) {
        url.password = MASK;
        return url.href;
      }
      return text;
    } catch { /* not a URL after all: the text rules below */ }
  }
  // Inside free text (ffmpeg quotes URLs in its messages): up to the last @ before the host.
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):\S*@/gi, `$1:${MASK}@`);
}

/** Every form a URL's password may take in text, longest first; none for a URL without one. */
export function urlSecrets(text: string): string[] {
  let password = '';
  try {
    password = new URL(text).password;
  } catch {
    return [];
  }
  if (!password) return [];
  // As typed in the config: between the user's colon and the last @ before the host.
  const typed = /^[a-z][a-z0-9+.-]*:\/\/[^:/@]*:(.*)@[^@]*$/i.exec(text)?.[1];
  let decoded = password;
  try { decoded = decodeURIComponent(password); } catch { /* a stray % stays as it is */ }
  return variants([password, decoded, encodeURIComponent(decoded), ...(typed ? [typed] : [])]);
}

/** The secrets a config holds: camera stream passwords, the broker's, and one in an S3 endpoint URL. */
export function configSecrets(config: Pick<Config, 'cameras' | 'mqtt'> & { upstream?: Pick<Config['upstream'], 'endpoint'> }): string[] {
  return variants([
    ...config.cameras.flatMap((c) => urlSecrets(c.source)),
    ...(config.mqtt ? urlSecrets(config.mqtt.url) : []),
    ...(config.upstream?.endpoint ? urlSecrets(config.upstream.endpoint) : []),
  ]);
}

function variants(list: string[]): string[] {
  const all = new Set<string>();
  for (const s of list) {
    if (s.length < 3) continue; // too short to blank without mangling ordinary text
    all.add(s);
    all.add(JSON.stringify(s).slice(1, -1)); // as it stands inside a JSON log line
  }
  return [...all].sort((a, b) => b.length - a.length);
}

/** The text with every secret blanked (safe on JSON: only the secrets' own characters change). */
export function blank(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(MASK);
  return out;
}

/** Free text (an ffmpeg line, an error message) with every secret and every URL password blanked. */
export function scrub(text: string, secrets: readonly string[]): string {
  return redactUrl(blank(text, secrets));
}
