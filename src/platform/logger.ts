// Structured logging with pino. Components get child loggers ({component, camera}); nothing
// builds prefixes by hand. Logs go to stderr (journald on a device) or to a file in the demo.
import { pino, type Logger, type DestinationStream } from 'pino';
import { blank } from '../config/redact.js';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: DestinationStream | number | string; secrets?: readonly string[] } = {}): Logger {
  const level = opts.level ?? process.env['CAMNODE_LOG_LEVEL'] ?? 'info';
  const dest = opts.destination ?? 2;
  const stream = typeof dest === 'object' ? dest : pino.destination({ dest, sync: true });
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, scrubbing(stream, opts.secrets ?? []));
}

/**
 * Every line on its way out has the configured secrets blanked (CONTRACT §2): whatever a
 * component logs — an error from a library, a line of ffmpeg's stderr — no password reaches
 * the journal. A line without a secret in it costs one `includes` per secret form.
 */
function scrubbing(stream: DestinationStream, secrets: readonly string[]): DestinationStream {
  if (secrets.length === 0) return stream;
  return { write: (line: string) => stream.write(blank(line, secrets)) };
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
