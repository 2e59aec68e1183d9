// One handler per command, shared by every transport: a handler never knows which transport
// carried the request; the transport says only how the request arrived (`via`). Each module
// contributes the handlers of its domain; arguments are validated here, before any handler runs.
import type { Logger } from '../platform/logger.js';
import { BookError } from '../incidents/book.js';
import { localAllows } from './roles.js';
import type { Signer } from './signed.js';
import { CommandError, parseArgs, resolveCommand, type CommandArgs, type CommandName, type Reply } from './protocol.js';

export interface RequestContext {
  via: 'mqtt' | 'local';
  /**
   * Who signed it (CONTRACT §7 Who); null for an unsigned MQTT command where signing is not
   * required (test brokers); absent on the local socket.
   */
  signer?: Signer | null;
  /** The compact JWS as received, kept in the audit entries of dispose, disclose, config, update. */
  jws?: string;
}

/**
 * Who a command's entries name: a signed command's signer CN (a typed `by` kept as
 * onBehalfOf), else the typed `by`. `required`: refuse a command without one (CONTRACT §7:
 * dispose, note, still and hold).
 */
export function whoAsks(ctx: RequestContext, typedBy: string | undefined, required: boolean): { by?: string; onBehalfOf?: string; signer?: Signer | null } {
  if (ctx.signer) return { by: ctx.signer.cn, ...(typedBy !== undefined ? { onBehalfOf: typedBy } : {}), signer: ctx.signer };
  if (required && typedBy === undefined) throw new CommandError('bad_request', 'by: required (who asks)');
  return { ...(typedBy !== undefined ? { by: typedBy } : {}), ...(ctx.signer === null ? { signer: null } : {}) };
}

export type CommandHandler<K extends CommandName> = (args: CommandArgs<K>, ctx: RequestContext) => Promise<unknown>;
export type CommandTable = { [K in CommandName]?: CommandHandler<K> };

export interface CommandDeps {
  log: Logger;
}

export class CommandHandlers {
  private readonly table: CommandTable = {};

  constructor(private readonly deps: CommandDeps) {}

  /** Adds a module's handlers; a command no module answers is "not available on this node". */
  register(table: CommandTable): void {
    Object.assign(this.table, table);
  }

  /** Runs a command; every failure becomes an error reply, never an exception. */
  async handle(name: unknown, args: unknown, ctx: RequestContext): Promise<Reply> {
    const cmd = resolveCommand(name);
    if (cmd === undefined) {
      const shown = typeof name === 'string' ? name.slice(0, 64) : typeof name;
      this.deps.log.warn({ cmd: shown, via: ctx.via }, 'unknown command refused');
      return { ok: false, error: { code: 'bad_request', message: `unknown command ${JSON.stringify(shown)}` } };
    }
    // The local socket is trusted by its file's permissions with every role but admin, and
    // without disclose (CONTRACT §7); MQTT commands were checked against the signer's role.
    if (ctx.via === 'local' && !localAllows(cmd, args)) {
      this.deps.log.warn({ cmd, via: ctx.via }, 'command refused: not on the local socket');
      return { ok: false, error: { code: 'forbidden', message: `${cmd} is not allowed on the local socket; send it signed over MQTT` } };
    }
    try {
      return { ok: true, data: await this.run(cmd, args, ctx) };
    } catch (err) {
      if (err instanceof CommandError || err instanceof BookError) {
        this.deps.log.warn({ cmd, via: ctx.via, code: err.code, reason: err.message }, 'command refused');
        return { ok: false, error: { code: err.code, message: err.message } };
      }
      this.deps.log.error({ cmd, via: ctx.via, err }, 'command failed');
      return { ok: false, error: { code: 'internal', message: `${cmd} failed: ${(err as Error).message}` } };
    }
  }

  private async run<K extends CommandName>(cmd: K, args: unknown, ctx: RequestContext): Promise<unknown> {
    const handler = this.table[cmd] as CommandHandler<K> | undefined;
    if (!handler) throw new CommandError('bad_request', `${cmd}: not available on this node`);
    return handler(parseArgs(cmd, args), ctx);
  }
}
