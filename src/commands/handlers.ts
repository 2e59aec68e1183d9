// One handler per command, shared by every transport: a handler never knows which transport
// carried the request; the transport says only how the request arrived (`via`).
import type { Logger } from '../platform/logger.js';
import { BookError, type IncidentBook } from '../incidents/book.js';
import type { Incident } from '../incidents/incident.js';
import { faultPoint } from '../platform/fault.js';
import { CommandError, isCommandName, parseArgs, type CommandName, type Reply } from './protocol.js';

export interface RequestContext {
  via: 'mqtt' | 'local';
}

export interface CommandDeps {
  book: IncidentBook;
  clock: { now(): number };
  log: Logger;
  version: string;
  /** Filled in by later capabilities (snapshot, state, sync); absent ones answer "not available". */
  extra?: Partial<Record<CommandName, (args: unknown, ctx: RequestContext) => Promise<unknown>>>;
}

type Handler = (args: unknown, ctx: RequestContext) => Promise<unknown>;

export class CommandHandlers {
  private readonly table: Record<CommandName, Handler>;

  constructor(private readonly deps: CommandDeps) {
    const unavailable = (name: CommandName): Handler => async () => {
      throw new CommandError('bad_request', `${name}: not available on this node yet`);
    };
    // Arguments are validated here for the handlers other capabilities provide too: without it
    // `state`/`sync` answered ok to any arguments (`{"cameras":["x"]}`), unlike every other command.
    const extra = (name: CommandName): Handler => {
      const handler = deps.extra?.[name];
      return handler ? async (a, ctx) => handler(parseArgs(name, a), ctx) : unavailable(name);
    };
    this.table = {
      lock: (a, ctx) => this.lock(a, ctx),
      release: (a) => this.release(a),
      incidents: async (a) => {
        parseArgs('incidents', a);
        return { incidents: this.deps.book.list() };
      },
      incident: async (a) => this.incident(parseArgs('incident', a).incident),
      ping: async (a) => {
        parseArgs('ping', a);
        return { version: this.deps.version };
      },
      snapshot: extra('snapshot'),
      state: extra('state'),
      sync: extra('sync'),
    };
  }

  /** Runs a command; every failure becomes an error reply, never an exception. */
  async handle(cmd: unknown, args: unknown, ctx: RequestContext): Promise<Reply> {
    if (!isCommandName(cmd)) {
      this.deps.log.warn({ cmd: String(cmd).slice(0, 64), via: ctx.via }, 'unknown command refused');
      return { ok: false, error: { code: 'bad_request', message: `unknown command ${JSON.stringify(String(cmd).slice(0, 64))}` } };
    }
    try {
      return { ok: true, data: await this.table[cmd](args, ctx) };
    } catch (err) {
      if (err instanceof CommandError || err instanceof BookError) {
        this.deps.log.warn({ cmd, via: ctx.via, code: err.code, reason: err.message }, 'command refused');
        return { ok: false, error: { code: err.code, message: err.message } };
      }
      this.deps.log.error({ cmd, via: ctx.via, err }, 'command failed');
      return { ok: false, error: { code: 'internal', message: `${cmd} failed: ${(err as Error).message}` } };
    }
  }

  private async lock(raw: unknown, ctx: RequestContext): Promise<{ incident: string; extended: boolean }> {
    const a = parseArgs('lock', raw);
    const { incident, extended } = await this.deps.book.lock({
      atMs: this.deps.clock.now(), via: ctx.via, by: a.by, reason: a.reason, cameras: a.cameras,
      preRollMs: a.preRoll, postRollMs: a.postRoll, urgent: a.urgent,
    });
    faultPoint('lock.returned');
    return { incident: incident.id, extended };
  }

  private async release(raw: unknown): Promise<{ incident: string }> {
    const a = parseArgs('release', raw);
    const released = await this.deps.book.release(a);
    return { incident: released.id };
  }

  private async incident(id: string): Promise<Incident> {
    const incident = this.deps.book.get(id);
    if (!incident) throw new CommandError('not_found', `no incident ${id}`);
    return incident;
  }
}
