// Structured logging with pino. Components get child loggers ({component, camera}); nothing
// builds prefixes by hand. Logs go to stderr (journald on a device) or to a file in the demo.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: DestinationStream | number | string } = {}): Logger {
  const level = opts.level ?? process.env['CAMNODE_LOG_LEVEL'] ?? 'info';
  const dest = opts.destination ?? 2;
  const stream = typeof dest === 'object' ? dest : pino.destination({ dest, sync: true });
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, stream);
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
