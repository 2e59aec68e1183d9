// The local control socket (CONTRACT §3): newline-delimited JSON, request {"id","cmd","args"},
// reply {"id","ok",…}. A transport for the command handlers: on-site tools and the demo.
import { chown, chmod, mkdir, readFile, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Logger } from '../platform/logger.js';
import type { CommandHandlers } from '../commands/handlers.js';
import { isObject, MAX_REQUEST_BYTES, parseBounded, requestId } from '../commands/envelope.js';
import type { Reply } from '../commands/protocol.js';


/** CONTRACT §5: requests a connection may have unanswered, and connections at once. */
export const MAX_IN_FLIGHT = 8;
export const MAX_CONNECTIONS = 32;
/** Replies a client leaves unread before it is cut off (a still is ~100 kB of base64). */
const MAX_UNREAD_REPLY_BYTES = 1024 * 1024;
const IDLE_MS = 5 * 60_000;

export interface ControlSocketDeps {
  path: string;
  handlers: CommandHandlers;
  log: Logger;
  /** The listening socket broke (the supervisor builds it again). */
  onFailure?: (err: unknown) => void;
  /** A connection idle this long is closed: idle ones must not hold the 32 places. */
  idleMs?: number;
  /** /etc/group, to give the socket to group camnode where it exists. */
  groupFile?: string;
}

async function groupId(name: string, groupFile: string): Promise<number | null> {
  const text = await readFile(groupFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid) return Number(gid);
  }
  return null;
}

/** A socket file nobody answers on (left by a crash) may be replaced; a live one may not. */
async function removeStaleSocket(path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`control socket ${path} is in use by another process`);
  await unlink(path).catch(() => {});
}

export class ControlSocket implements Component {
  readonly name = 'control';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly deps: ControlSocketDeps) {}

  async start(): Promise<void> {
    const { path, log } = this.deps;
    await mkdir(dirname(path), { recursive: true });
    await removeStaleSocket(path);
    const server = createServer((socket) => this.serve(socket));
    // Past this many, new connections are closed at once; the agent goes on.
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
    });
    // An accept error (EMFILE) after this is the socket's failure, not the process's.
    server.on('error', (err) => {
      log.error({ err }, 'control socket failed');
      this.deps.onFailure?.(err);
    });
    this.server = server;
    await chmod(path, 0o660);
    const gid = await groupId('camnode', this.deps.groupFile ?? '/etc/group');
    if (gid !== null) await chown(path, process.getuid?.() ?? 0, gid).catch((err: unknown) => log.warn({ err }, 'could not give the control socket to group camnode'));
    log.info({ path }, 'control socket listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(this.deps.path).catch(() => {});
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(this.deps.idleMs ?? IDLE_MS, () => socket.destroy());
    const log = this.deps.log;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let inFlight = 0;
    let chain: Promise<void> = Promise.resolve();
    const cutOff = (why: string, fields: Record<string, unknown> = {}): void => {
      log.warn(fields, `control connection closed: ${why}`);
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      let start = 0;
      let nl: number;
      while (!socket.destroyed && (nl = chunk.indexOf(0x0a, start)) >= 0) {
        const line = pendingBytes > 0 ? Buffer.concat([...pending, chunk.subarray(start, nl)]) : chunk.subarray(start, nl);
        pending = [];
        pendingBytes = 0;
        start = nl + 1;
        if (line.length > MAX_REQUEST_BYTES) {
          this.refuseAndClose(socket, `request larger than ${MAX_REQUEST_BYTES} bytes`);
          return;
        }
        if (isBlank(line)) continue;
        // A client may pipeline, but not without bound: it reads its replies or is cut off.
        if (++inFlight > MAX_IN_FLIGHT) {
          cutOff(`more than ${MAX_IN_FLIGHT} requests in flight`);
          return;
        }
        chain = chain
          .then(() => this.answer(socket, line))
          .catch((err: unknown) => log.error({ err }, 'control request failed'))
          .finally(() => { inFlight--; });
      }
      if (socket.destroyed) return;
      const rest = chunk.subarray(start);
      if (rest.length === 0) return;
      pending.push(rest);
      pendingBytes += rest.length;
      if (pendingBytes > MAX_REQUEST_BYTES) this.refuseAndClose(socket, `request larger than ${MAX_REQUEST_BYTES} bytes`);
    });
  }

  private refuseAndClose(socket: Socket, message: string): void {
    // Nothing more is read from it: what follows in the same stream is not carried out.
    socket.pause();
    socket.removeAllListeners('data');
    this.deps.log.warn({ reason: message }, 'control request refused; connection closed');
    socket.end(`${JSON.stringify({ id: null, ok: false, error: { code: 'bad_request', message } })}\n`);
    socket.destroySoon();
  }

  private async answer(socket: Socket, line: Buffer): Promise<void> {
    const parsed = parseBounded(line);
    let reply: Reply;
    let id: string | number | null = null;
    if (!parsed.ok || !isObject(parsed.value)) {
      const reason = parsed.ok ? 'not a JSON object' : parsed.reason;
      this.deps.log.warn({ reason }, 'malformed control request');
      reply = { ok: false, error: { code: 'bad_request', message: `malformed request: ${reason}` } };
    } else {
      const request = parsed.value;
      id = requestId(request['id']);
      reply = await this.deps.handlers.handle(request['cmd'], request['args'] ?? {}, { via: 'local' });
    }
    if (socket.destroyed) return;
    // A client that does not read its replies is cut off rather than buffered for. Counted
    // before this reply: one large reply (a still) to a client that reads is fine.
    if (socket.writableLength > MAX_UNREAD_REPLY_BYTES) {
      this.deps.log.warn({ unread: socket.writableLength }, 'control connection closed: its replies are not being read');
      socket.destroy();
      return;
    }
    socket.write(`${JSON.stringify({ id, ...reply })}\n`);
  }
}

function isBlank(line: Buffer): boolean {
  for (const b of line) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

/** One request over the control socket; rejects with code 'timeout' when nothing answers in time. */
export function requestLocal(path: string, cmd: string, args: unknown, timeoutMs: number): Promise<{ id: unknown; ok: boolean; data?: unknown; error?: { code: string; message: string } }> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const id = `ctl-${process.pid}-${Date.now()}`;
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`no answer from the agent on ${path} within ${timeoutMs} ms`), { code: 'timeout' }));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id, cmd, args })}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(buffered.slice(0, nl)) as { id: unknown; ok: boolean });
      } catch (err) {
        reject(err);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is the agent running?' : err.message;
      reject(Object.assign(new Error(`cannot reach the agent's control socket ${path}: ${why}`), { code: err.code }));
    });
    // The agent died (or stopped) with the request in flight: say so now rather than wait out
    // the timeout. A no-op once answered or after an error.
    socket.on('close', () => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`the agent on ${path} closed the connection without answering; the request may or may not have taken effect`), { code: 'closed' }));
    });
  });
}
