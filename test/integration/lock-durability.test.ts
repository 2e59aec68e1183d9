// A lock is acknowledged only once it is durable (issue 3): a SIGKILL keeps the page cache, so
// kill tests cannot show that. Here the real agent runs under strace, and its system calls show
// the order for each lock over the control socket: the book's temp file opened, written and
// fsynced, renamed over incidents.json, the state directory opened and fsynced; the audit line
// written and fdatasynced — all before the reply is written to the socket.
// node does its file I/O on libuv's threadpool, so the trace follows every thread (-f); fds are
// mapped to paths through openat results, honouring closes, because fds are reused.
import { execFileSync } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { baseConfig, CLI, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';

const SYSCALLS = ['openat', 'write', 'writev', 'pwrite64', 'fsync', 'fdatasync', 'rename', 'renameat', 'renameat2', 'close'];

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const strace = hasStrace();
if (!strace && process.env['CI'] === 'true') throw new Error('strace is required in CI (Debian package strace)');

let agents: RunningAgent[] = [];
let dirs: string[] = [];

afterEach(async () => {
  for (const a of agents) a.killGroup();
  await Promise.all(agents.map((a) => a.exited));
  agents = [];
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

// ---------------------------------------------------------------------------------------------
// Reading strace -f -ttt output.

/** One system call: where its entry and its exit appear in the trace (line numbers). */
interface Call {
  tid: number;
  name: string;
  args: string;
  ret: number | null;
  entry: number;
  exit: number;
  ts: number;
}

const LINE = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/;

/**
 * Threads interleave: a call another thread's event interrupts is split into
 * `name(args <unfinished ...>` and, later on that thread, `<... name resumed>rest) = ret`.
 * ptrace stops every thread at each call, so line order is the order of entries and exits.
 */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<number, Call>();
  text.split('\n').forEach((line, n) => {
    const m = LINE.exec(line);
    if (!m) return;
    const tid = Number(m[1]);
    const rest = m[3]!;
    if (rest.startsWith('---') || rest.startsWith('+++')) return;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest);
    if (resumed) {
      const call = pending.get(tid);
      if (!call || call.name !== resumed[1]) return;
      pending.delete(tid);
      call.args += resumed[2]!.replace(/\)\s+=\s+.*$/, '');
      call.ret = returned(resumed[2]!);
      call.exit = n;
      calls.push(call);
      return;
    }
    const call = /^(\w+)\((.*)$/.exec(rest);
    if (!call) return;
    const unfinished = call[2]!.endsWith(' <unfinished ...>');
    const c: Call = { tid, name: call[1]!, args: '', ret: null, entry: n, exit: n, ts: Number(m[2]) };
    if (unfinished) {
      c.args = call[2]!.slice(0, -' <unfinished ...>'.length);
      pending.set(tid, c);
    } else {
      c.args = call[2]!.replace(/\)\s+=\s+[^)]*$/, '');
      c.ret = returned(call[2]!);
      calls.push(c);
    }
  });
  return calls.sort((a, b) => a.entry - b.entry);
}

function returned(tail: string): number | null {
  const m = /\)\s+=\s+(-?\d+)/.exec(tail);
  return m ? Number(m[1]) : null;
}

/** The C string literals of an argument list, decoded. */
function strings(args: string): string[] {
  const out: string[] = [];
  for (const m of args.matchAll(/"((?:[^"\\]|\\.)*)"/g)) out.push(unescapeC(m[1]!));
  return out;
}

function unescapeC(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== '\\') {
      bytes.push(...Buffer.from(s[i]!, 'utf8'));
      continue;
    }
    const c = s[++i]!;
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, '\\': 92 };
    if (c in simple) bytes.push(simple[c]!);
    else if (c === 'x') {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(c)) {
      const oct = /^[0-7]{1,3}/.exec(s.slice(i))![0];
      bytes.push(parseInt(oct, 8));
      i += oct.length - 1;
    } else bytes.push(c.charCodeAt(0));
  }
  return Buffer.from(bytes).toString('utf8');
}

const fdOf = (c: Call): number => Number(/^(\d+)/.exec(c.args)?.[1] ?? -1);

/** What a write or writev put out. */
function written(c: Call): string {
  return strings(c.args).join('');
}

/** The agent process's calls, with each fd-using call resolved to the path it referred to. */
class Trace {
  readonly calls: Call[];
  constructor(all: Call[], tids: Set<number>) {
    this.calls = all.filter((c) => tids.has(c.tid));
  }

  /** The path an fd named at a call's entry: the latest openat returning it, not closed since. */
  pathAt(fd: number, at: number): string | undefined {
    let open: Call | undefined;
    for (const c of this.calls) {
      if (c.name === 'openat' && c.ret === fd && c.exit < at && (!open || c.exit > open.exit)) open = c;
    }
    if (!open) return undefined;
    const closed = this.calls.some((c) => c.name === 'close' && fdOf(c) === fd && c.entry > open!.exit && c.entry < at);
    return closed ? undefined : strings(open.args)[0];
  }

  on(name: string | string[], path: string): Call[] {
    const names = Array.isArray(name) ? name : [name];
    return this.calls.filter((c) => names.includes(c.name) && this.pathAt(fdOf(c), c.entry) === path);
  }
}

// ---------------------------------------------------------------------------------------------

function lockOverSocket(path: string, args: Record<string, unknown>): Promise<{ reply: { ok: boolean; data?: { incident: string; extended: boolean } }; receivedAt: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 'durability', cmd: 'lock', args })}\n`));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const receivedAt = Date.now();
      socket.end();
      resolve({ reply: JSON.parse(buffered.slice(0, nl)) as { ok: boolean }, receivedAt });
    });
    socket.on('error', reject);
  });
}

async function agentThreads(pid: number): Promise<Set<number>> {
  return new Set((await readdir(`/proc/${pid}/task`)).map(Number));
}

describe.skipIf(!strace)('lock durability, observed with strace', () => {
  it('book fsynced, renamed, directory fsynced, audit line fdatasynced — all before the reply', async () => {
    const dir = await tempDir('camnode-durability-');
    dirs.push(dir);
    const stateDir = join(dir, 'state');
    const socket = join(dir, 'control.sock');
    const config = baseConfig(dir, [{ id: 'front', source: 'testsrc', zone: 'entrance' }], {
      incident: { preRoll: '3s', postRoll: '3s' },
      control: { socket },
    });
    const configPath = await writeConfig(dir, config);
    const log = join(dir, 'strace.log');
    const agent = RunningAgent.start(configPath, {
      command: ['strace', '-f', '-qq', '-ttt', '-s', '65536', '-e', `trace=${SYSCALLS.join(',')}`, '-o', log, process.execPath, CLI],
    });
    agents.push(agent);
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started', 60_000);
    // The agent (not strace, whose child it is) holds the storage's pid file.
    const pid = Number((await readFile(join(dir, 'storage', 'segments', 'agent.pid'), 'utf8')).split(' ')[0]);

    // A lock, then a second one that extends it: the second reuses the fds the first closed.
    const locks = [
      await lockOverSocket(socket, { reason: 'first', by: 'strace' }),
      await lockOverSocket(socket, { reason: 'second', by: 'strace' }),
    ];
    expect(locks.map((l) => [l.reply.ok, l.reply.data?.extended])).toEqual([[true, false], [true, true]]);
    const id = locks[0]!.reply.data!.incident;
    expect(locks[1]!.reply.data!.incident).toBe(id);
    const threads = await agentThreads(pid);

    // A clean stop: strace exits when the agent does, its log complete.
    process.kill(pid, 'SIGTERM');
    expect(await agent.exited).toBe(0);
    const trace = new Trace(parseTrace(await readFile(log, 'utf8')), threads);
    expect(threads.size, 'the agent runs threadpool threads beside its main thread').toBeGreaterThan(1);

    const book = join(stateDir, 'incidents.json');
    const tmp = join(stateDir, `.incidents.json.${pid}.tmp`);
    const audit = join(stateDir, 'audit.log');
    let previousReply = -1;
    for (const [n, { reply, receivedAt }] of locks.entries()) {
      const what = (s: string) => `lock ${n + 1}: ${s}`;
      const reason = n === 0 ? 'first' : 'second';
      // The reply line on the control socket, found by its content.
      const replies = trace.calls.filter((c) => (c.name === 'write' || c.name === 'writev') && fdOf(c) > 2
        && written(c).includes('"ok":true') && written(c).includes(`"incident":"${id}"`) && written(c).includes(`"extended":${reply.data!.extended}`));
      expect(replies, what('one reply written to the socket')).toHaveLength(1);
      const answer = replies[0]!;
      expect(answer.ts * 1000, what('written before the client got it')).toBeLessThanOrEqual(receivedAt + 1);
      const before = (c: Call) => c.exit < answer.entry && c.entry > previousReply;

      // The book: the last rename of the temp file over incidents.json before the reply.
      const renames = trace.calls.filter((c) => ['rename', 'renameat', 'renameat2'].includes(c.name) && c.ret === 0
        && strings(c.args).join('\0') === `${tmp}\0${book}` && before(c));
      expect(renames, what('the temp file renamed over incidents.json')).toHaveLength(1);
      const rename = renames[0]!;
      const opens = trace.calls.filter((c) => c.name === 'openat' && strings(c.args)[0] === tmp && c.ret !== null && c.ret >= 0 && before(c) && c.exit < rename.entry);
      expect(opens, what('the temp file opened')).toHaveLength(1);
      expect(opens[0]!.args).toMatch(/O_WRONLY\|O_CREAT\|O_TRUNC/);
      const during = (c: Call) => c.entry > opens[0]!.exit && c.exit < rename.entry;
      const writes = trace.on(['write', 'writev', 'pwrite64'], tmp).filter(during);
      expect(writes.length, what('the temp file written')).toBeGreaterThan(0);
      const content = JSON.parse(writes.map(written).join('')) as { incidents: { id: string; triggers: { reason?: string }[] }[] };
      expect(content.incidents.find((i) => i.id === id)?.triggers.map((t) => t.reason), what('the written book holds the lock')).toEqual(n === 0 ? ['first'] : ['first', 'second']);
      const syncs = trace.on('fsync', tmp).filter(during).filter((c) => c.entry > writes.at(-1)!.exit && c.ret === 0);
      expect(syncs.length, what('the temp file fsynced after its last write, before the rename')).toBeGreaterThan(0);

      // The directory entry: the state directory opened and fsynced after the rename.
      const dirSyncs = trace.on('fsync', stateDir).filter((c) => c.entry > rename.exit && c.ret === 0 && before(c));
      expect(dirSyncs.length, what('the state directory fsynced after the rename, before the reply')).toBeGreaterThan(0);

      // The audit log: the lock's line written and fdatasynced.
      const type = n === 0 ? 'lock' : 'extend';
      const lines = trace.on('write', audit).filter((c) => before(c) && written(c).includes(`"type":"${type}"`) && written(c).includes(`"reason":"${reason}"`));
      expect(lines, what(`the audit ${type} line written`)).toHaveLength(1);
      expect(written(lines[0]!).endsWith('\n'), what('a whole line')).toBe(true);
      const dataSyncs = trace.on(['fdatasync', 'fsync'], audit).filter((c) => c.entry > lines[0]!.exit && c.ret === 0 && before(c));
      expect(dataSyncs.length, what('the audit log fdatasynced after the line, before the reply')).toBeGreaterThan(0);

      previousReply = answer.exit;
    }

    // What the trace says was written is what is on disk.
    const onDisk = JSON.parse(await readFile(book, 'utf8')) as { incidents: { id: string; triggers: unknown[] }[] };
    expect(onDisk.incidents.map((i) => [i.id, i.triggers.length])).toEqual([[id, 2]]);
    await waitFor(async () => !(await readdir(stateDir)).some((f) => f.endsWith('.tmp')), 'no temp file left', 5_000);
  });
});
