// The command protocol shared by every transport (CONTRACT §3): argument schemas per command,
// and the reply shapes.
import { z } from 'zod';
import { parseDuration } from '../config/units.js';
import { VERSION_RE } from '../deploy/release-keys.js';

/** A requester's text, cut short for replies and logs (a key name can be 250 kB long). */
export function clip(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

export type ErrorCode = 'bad_request' | 'not_found' | 'conflict' | 'forbidden' | 'internal';
export type Reply = { ok: true; data: unknown } | { ok: false; error: { code: ErrorCode; message: string } };

export class CommandError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Longer than any window a lock can hold (maxLength caps it anyway). */
const MAX_DURATION_MS = 366 * 86_400_000;

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms !== null && ms > MAX_DURATION_MS) {
    ctx.addIssue({ code: 'custom', message: `longer than a year: ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (e.g. "6s", "5m" or a number of seconds)` });
    return z.NEVER;
  }
  return ms;
});
const text = (max: number) => z.string().max(max);
/** Who asks: a signed command's signer CN names it; a local or unsigned one must (the handler checks). */
const by = text(200).min(1, 'must not be empty').optional();
const cameraId = z.string().regex(/^[a-z0-9-]{1,32}$/, 'not a camera id');
/** Times on the wire are ISO-8601 with a zone (`Z` or an offset), milliseconds optional. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const time = z.string().max(64).transform((v, ctx) => {
  const ms = ISO_TIME.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(ms)) {
    ctx.addIssue({ code: 'custom', message: `not an ISO-8601 time with a zone: ${JSON.stringify(clip(v, 40))} (e.g. "2026-12-01T15:00:00Z")` });
    return z.NEVER;
  }
  return ms;
});
/** `report`'s `since`: an ISO time, or a duration back from now (CONTRACT §7). */
const since = z.union([z.string().max(64), z.number()]).transform((v, ctx): { atMs: number } | { agoMs: number } => {
  if (typeof v === 'string' && ISO_TIME.test(v) && !Number.isNaN(Date.parse(v))) return { atMs: Date.parse(v) };
  const ms = parseDuration(v);
  if (ms !== null && ms > 0 && ms <= 10 * 366 * 86_400_000) return { agoMs: ms };
  ctx.addIssue({ code: 'custom', message: `not an ISO-8601 time with a zone nor a duration back from now: ${JSON.stringify(typeof v === 'string' ? clip(v, 40) : v)} (e.g. "30d" or "2026-11-01T00:00:00Z")` });
  return z.NEVER;
});
/** A config sent in a command: a branch's config is a few KiB; signed, it must fit in a 256 KiB request. */
const MAX_CONFIG_TEXT = 128 * 1024;
const incidentId = z.string().regex(/^\d{8}T\d{6}Z-[a-z2-7]{4}$/, 'not an incident id (YYYYMMDDTHHMMSSZ-xxxx)');

export const commandArgs = {
  lock: z.strictObject({
    reason: text(500).optional(),
    by: text(200).optional(),
    preRoll: duration.optional(),
    // A lock that reaches no further than its trigger keeps nothing of what happens next.
    postRoll: duration.refine((ms) => ms > 0, 'must be longer than 0').optional(),
    cameras: z.array(cameraId).max(64).optional(),
    urgent: z.boolean().optional(),
    // With a range it is a hold (CONTRACT §6).
    from: time.optional(),
    to: time.optional(),
  }).superRefine((a, ctx) => {
    if ((a.from === undefined) !== (a.to === undefined)) ctx.addIssue({ code: 'custom', path: [a.from === undefined ? 'from' : 'to'], message: 'required with ' + (a.from === undefined ? 'to' : 'from') + ' (a hold names both ends)' });
    if (a.from === undefined) return;
    if (a.reason === undefined || a.reason.length === 0) ctx.addIssue({ code: 'custom', path: ['reason'], message: 'required for a hold' });
    for (const k of ['preRoll', 'postRoll', 'urgent'] as const) if (a[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'not with from/to (a hold keeps exactly its range)' });
  }),
  hold: z.strictObject({
    from: time,
    to: time,
    cameras: z.array(cameraId).max(64).optional(),
    reason: text(500).min(1, 'required'),
    by,
  }),
  footage: z.strictObject({
    camera: cameraId.optional(),
    from: time.optional(),
    to: time.optional(),
  }),
  still: z.strictObject({
    camera: cameraId,
    at: time,
    purpose: z.enum(['incident-review', 'suspension-notice']),
    reason: text(500).min(1, 'required'),
    by,
  }),
  note: z.strictObject({
    incident: incidentId,
    text: text(2_000).min(1, 'must not be empty'),
    by,
  }),
  dispose: z.strictObject({
    incident: incidentId,
    // A signed command's `by` is its signer's CN (a typed one is kept as onBehalfOf); a local or
    // unsigned one must say who asks (checked by the handler, which knows the sender).
    by,
    reason: text(500).min(1, 'required'),
    force: z.boolean().optional(),
  }),
  disclose: z.strictObject({
    incident: incidentId,
    // CONTRACT §7: footage leaves the library only on a subpoena or a court order.
    legalBasis: z.enum(['subpoena', 'court-order'], { message: 'must be "subpoena" or "court-order" (the legal basis of the request)' }),
    reference: text(200).min(1, 'must not be empty (the subpoena\'s or order\'s number)'),
    agency: text(200).min(1, 'must not be empty'),
    requestedBy: text(200).min(1, 'must not be empty (the officer who asked)'),
    by,
  }),
  // CONTRACT §9 Config push: exactly one form.
  config: z.strictObject({
    get: z.literal(true).optional(),
    compare: z.string().max(MAX_CONFIG_TEXT, `at most ${MAX_CONFIG_TEXT / 1024} KiB`).optional(),
    yaml: z.string().max(MAX_CONFIG_TEXT, `at most ${MAX_CONFIG_TEXT / 1024} KiB`).optional(),
    reset: z.literal(true).optional(),
  }).refine((a) => [a.get, a.compare, a.yaml, a.reset].filter((v) => v !== undefined).length === 1,
    'give exactly one of get: true, compare: <yaml>, yaml: <yaml>, reset: true'),
  // CONTRACT §9 Update: the release to fetch, check and install.
  update: z.strictObject({ version: z.string().max(40).regex(VERSION_RE, 'must be a version such as 1.2.0') }),
  incidents: z.strictObject({}),
  incident: z.strictObject({ incident: incidentId }),
  report: z.strictObject({ since: since.optional() }),
  snapshot: z.strictObject({ camera: cameraId }),
  state: z.strictObject({}),
  sync: z.strictObject({}),
  ping: z.strictObject({}),
} as const;

export type CommandName = keyof typeof commandArgs;

/** Old names still answered (CONTRACT §3): `release` is `dispose`. */
export const COMMAND_ALIASES: Readonly<Record<string, CommandName>> = { release: 'dispose' };

/** The command a name stands for, aliases resolved; undefined for an unknown name. */
export function resolveCommand(name: unknown): CommandName | undefined {
  if (isCommandName(name)) return name;
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(COMMAND_ALIASES, name) ? COMMAND_ALIASES[name] : undefined;
}
export type CommandArgs<K extends CommandName> = z.output<(typeof commandArgs)[K]>;
export const COMMAND_NAMES = Object.keys(commandArgs) as CommandName[];

export function isCommandName(name: unknown): name is CommandName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(commandArgs, name);
}

/** Validates a command's arguments; throws CommandError('bad_request') naming each bad field. */
export function parseArgs<K extends CommandName>(name: K, args: unknown): CommandArgs<K> {
  const result = commandArgs[name].safeParse(args ?? {});
  if (!result.success) {
    const lines = result.error.issues.map((i) => {
      const path = i.path.map(String).join('.');
      if (i.code === 'unrecognized_keys') {
        const shown = i.keys.slice(0, 5).map((k) => JSON.stringify(clip(k, 40)));
        return `unknown argument ${shown.join(', ')}${i.keys.length > 5 ? ` and ${i.keys.length - 5} more` : ''}`;
      }
      return `${path || 'args'}: ${i.code === 'invalid_type' && i.message.endsWith('received undefined') ? 'required' : i.message}`;
    });
    throw new CommandError('bad_request', `${name}: ${lines.join('; ')}`);
  }
  return result.data as CommandArgs<K>;
}
