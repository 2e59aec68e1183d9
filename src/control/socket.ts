// The local control socket (CONTRACT §3): newline-delimited JSON, request {"id","cmd","args"},
// reply {"id","ok",…}. A transport for the command handlers: on-site tools and the demo.
import { chown, chmod, mkdir, readFile, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Logger } from '../platform/logger.js';
import type { CommandHandlers } from '../commands/handlers.js';

/** Longest request line accepted; a longer one is refused and the connection closed. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export interface ControlSocketDeps {
  path: string;
  handlers: CommandHandlers;
  log: Logger;
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
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
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
    let buffered = '';
    let chain: Promise<void> = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim()) chain = chain.then(() => this.answer(socket, line));
      }
      if (buffered.length > MAX_REQUEST_BYTES) {
        this.deps.log.warn({ bytes: buffered.length }, 'control request too large; connection closed');
        socket.end(`${JSON.stringify({ id: null, ok: false, error: { code: 'bad_request', message: `request larger than ${MAX_REQUEST_BYTES} bytes` } })}\n`);
        buffered = '';
        socket.destroy();
      }
    });
  }

  private async answer(socket: Socket, line: string): Promise<void> {
    let request: { id?: unknown; cmd?: unknown; args?: unknown };
    try {
      request = JSON.parse(line) as typeof request;
      if (typeof request !== 'object' || request === null || Array.isArray(request)) throw new Error('not a JSON object');
    } catch (err) {
      this.deps.log.warn({ reason: (err as Error).message }, 'malformed control request');
      socket.write(`${JSON.stringify({ id: null, ok: false, error: { code: 'bad_request', message: `malformed request: ${(err as Error).message}` } })}\n`);
      return;
    }
    const id = typeof request.id === 'string' || typeof request.id === 'number' ? request.id : null;
    const reply = await this.deps.handlers.handle(request.cmd, request.args ?? {}, { via: 'local' });
    if (!socket.destroyed) socket.write(`${JSON.stringify({ id, ...reply })}\n`);
  }
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
