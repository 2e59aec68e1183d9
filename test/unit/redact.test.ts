// Secrets never reach logs, state or ctl output (CONTRACT §2), whatever characters a password
// holds: parsed URLs, and the configured secrets themselves blanked in any text. Pure.
import { describe, expect, it } from 'vitest';
import { blank, configSecrets, redactUrl, scrub, urlSecrets } from '../../src/config/redact.js';
import { validateConfig } from '../../src/config/load.js';

// Passwords with every character that means something in a URL, a shell, a log line or JSON.
const PASSWORDS = ["it's-secret", 'qu"ote', 'p@ss@word', 'sl/ash', 'co:lon', 'sp ace', 'pe%rcent', 'ha#sh?q&a=b', 'back\\slash', 'ümlaut€'];

/** As an installer writes it in the config: reserved characters percent-encoded where a URL needs it. */
function sourceWith(password: string): string {
  return `rtsp://admin:${password.replace(/[/#?% ]/g, (c) => encodeURIComponent(c))}@10.0.0.21:554/stream1`;
}

describe('redaction', () => {
  it.each(PASSWORDS)('%s: gone from the URL, from ffmpeg\'s quoting of it, and from a JSON log line', (password) => {
    const source = sourceWith(password);
    const secrets = urlSecrets(source);
    expect(secrets.length).toBeGreaterThan(0);
    const url = redactUrl(source);
    expect(url).toBe('rtsp://admin:***@10.0.0.21:554/stream1');
    // ffmpeg quotes the URL as it was given; an error message may hold the decoded password.
    const stderr = `[rtsp @ 0x55] method DESCRIBE failed: 401 Unauthorized\n${source}: Server returned 401 (password ${password})`;
    const cleaned = scrub(stderr, secrets);
    for (const s of [password, encodeURIComponent(password)]) if (s.length >= 3) expect(cleaned).not.toContain(s);
    expect(cleaned).toContain('401 Unauthorized');
    // A pino line (JSON) keeps its shape: only the secret's own characters change.
    const line = JSON.stringify({ level: 50, msg: 'recorder down', reason: stderr });
    const out = blank(line, secrets);
    expect(() => JSON.parse(out)).not.toThrow();
    expect(out).not.toContain(JSON.stringify(password).slice(1, -1));
  });

  it('configSecrets: every camera and the broker, and nothing from URLs without a password', () => {
    const config = validateConfig({
      node: { id: 'n' }, storage: { path: '/srv' },
      cameras: [
        { id: 'a', source: sourceWith("it's-secret"), zone: 'entrance' },
        { id: 'b', source: 'rtsp://10.0.0.22/stream', zone: 'entrance' },
        { id: 'c', source: 'testsrc', zone: 'entrance' },
      ],
      mqtt: { url: 'mqtt://camnode:br0ker-pw@ops.example.org:1883' },
      fleet: { ca: '/etc/camnode/fleet-ca.crt' },
    });
    const secrets = configSecrets(config);
    expect(secrets).toContain("it's-secret");
    expect(secrets).toContain('br0ker-pw');
    expect(scrub('connecting to mqtt://camnode:br0ker-pw@ops.example.org:1883 as it\'s-secret', secrets)).toBe('connecting to mqtt://camnode:***@ops.example.org:1883 as ***');
  });

  it('leaves text without secrets alone', () => {
    expect(redactUrl('rtsp://10.0.0.21/stream1')).toBe('rtsp://10.0.0.21/stream1');
    expect(redactUrl('-segment_time')).toBe('-segment_time');
    expect(scrub('nothing to see', ['secret'])).toBe('nothing to see');
    expect(urlSecrets('testsrc')).toEqual([]);
    // Too short to blank safely in free text (it would mangle ordinary words); URLs still are.
    expect(urlSecrets('rtsp://u:ab@h/x')).toEqual([]);
    expect(redactUrl('rtsp://u:ab@h/x')).toBe('rtsp://u:***@h/x');
  });
});
