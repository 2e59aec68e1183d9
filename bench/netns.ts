// A shaped link for benchmarks: a private network namespace joined to the host by a veth pair,
// with a `tbf` qdisc on the host side's egress (the upload direction: host -> namespace). A
// server started inside the namespace is reached only across that link. Root only.
//
// Cleanup is synchronous (it must work from 'exit' and signal handlers) and idempotent. A
// previous run that crashed is cleaned up first; a run still alive (its pid in the lock file)
// is left alone and the new one refuses to start.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

export interface ShapedLinkOptions {
  /** Namespace name, unique to one benchmark (e.g. camnode-bench-up). */
  ns: string;
  /** Interface names (at most 15 characters). */
  hostIf: string;
  nsIf: string;
  /** Addresses of our own /30 (never the machine's real networks). */
  hostAddr: string;
  nsAddr: string;
  prefixLen: number;
  /** tbf parameters as tc spells them: rate '20mbit', burst '32kb', latency '50ms'. */
  rate: string;
  burst: string;
  latency: string;
}

export interface QdiscStats { sentBytes: number; sentPackets: number; dropped: number; overlimits: number }

export interface ShapedLink {
  readonly opts: ShapedLinkOptions;
  /** Bytes sent on the host side of the veth (the shaped direction), link-layer headers included. */
  txBytes(): number;
  /** The tbf qdisc's own counters. */
  qdisc(): QdiscStats;
  /** The qdisc line as tc prints it (for the results file). */
  qdiscLine(): string;
  /** A process inside the namespace; it is SIGKILLed when the link is destroyed. */
  spawnInside(command: string, args: string[], options?: SpawnOptions): ChildProcess;
  destroy(): void;
}

const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const tryRun = (cmd: string, args: string[]): void => {
  try { run(cmd, args); } catch { /* already gone */ }
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const lockFile = (ns: string): string => `/run/${ns}.bench.pid`;

/** Removes what a crashed earlier run left: its processes in the namespace, the namespace, the veth. */
function cleanLeftovers(o: ShapedLinkOptions): void {
  const lock = lockFile(o.ns);
  if (existsSync(lock)) {
    const owner = Number(readFileSync(lock, 'utf8').trim());
    if (owner && owner !== process.pid && alive(owner)) throw new Error(`another benchmark run (pid ${owner}) is using namespace ${o.ns}`);
  }
  const namespaces = run('ip', ['netns', 'list']);
  if (new RegExp(`^${o.ns}(\\s|$)`, 'm').test(namespaces)) {
    // Only a previous run of this benchmark starts processes in this namespace.
    for (const pid of run('ip', ['netns', 'pids', o.ns]).split(/\s+/).filter(Boolean).map(Number)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    tryRun('ip', ['netns', 'del', o.ns]);
  }
  // Deleting the namespace deletes the pair; a veth left on the host side alone goes here.
  if (existsSync(`/sys/class/net/${o.hostIf}`)) tryRun('ip', ['link', 'del', o.hostIf]);
  rmSync(lock, { force: true });
}

export function createShapedLink(o: ShapedLinkOptions): ShapedLink {
  if (process.getuid?.() !== 0) throw new Error('network namespaces need root');
  cleanLeftovers(o);
  writeFileSync(lockFile(o.ns), `${process.pid}\n`);
  const children = new Set<ChildProcess>();
  let destroyed = false;

  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    // Anything else still running in the namespace was started through it by us.
    try {
      for (const pid of run('ip', ['netns', 'pids', o.ns]).split(/\s+/).filter(Boolean).map(Number)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    } catch { /* no namespace */ }
    tryRun('ip', ['netns', 'del', o.ns]);
    if (existsSync(`/sys/class/net/${o.hostIf}`)) tryRun('ip', ['link', 'del', o.hostIf]);
    rmSync(lockFile(o.ns), { force: true });
    process.off('exit', destroy);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  // Ctrl-C or a kill must not leave the namespace, the veth or the server behind.
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: removing namespace ${o.ns}`);
    destroy();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('exit', destroy);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    run('ip', ['netns', 'add', o.ns]);
    run('ip', ['link', 'add', o.hostIf, 'type', 'veth', 'peer', 'name', o.nsIf]);
    run('ip', ['link', 'set', o.nsIf, 'netns', o.ns]);
    run('ip', ['addr', 'add', `${o.hostAddr}/${o.prefixLen}`, 'dev', o.hostIf]);
    run('ip', ['link', 'set', o.hostIf, 'up']);
    run('ip', ['-n', o.ns, 'addr', 'add', `${o.nsAddr}/${o.prefixLen}`, 'dev', o.nsIf]);
    run('ip', ['-n', o.ns, 'link', 'set', o.nsIf, 'up']);
    run('ip', ['-n', o.ns, 'link', 'set', 'lo', 'up']);
    run('tc', ['qdisc', 'add', 'dev', o.hostIf, 'root', 'tbf', 'rate', o.rate, 'burst', o.burst, 'latency', o.latency]);
  } catch (err) {
    destroy();
    const e = err as Error & { stderr?: string };
    throw new Error(`could not set up the shaped link: ${e.stderr?.trim() || e.message}`);
  }

  const qdiscText = (): string => run('tc', ['-s', 'qdisc', 'show', 'dev', o.hostIf]);
  return {
    opts: o,
    txBytes: () => Number(readFileSync(`/sys/class/net/${o.hostIf}/statistics/tx_bytes`, 'utf8')),
    qdisc: () => {
      const m = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(qdiscText());
      if (!m) throw new Error(`unexpected tc output: ${qdiscText()}`);
      return { sentBytes: Number(m[1]), sentPackets: Number(m[2]), dropped: Number(m[3]), overlimits: Number(m[4]) };
    },
    qdiscLine: () => qdiscText().split('\n')[0]!.trim(),
    spawnInside: (command, args, options = {}) => {
      const child = spawn('ip', ['netns', 'exec', o.ns, command, ...args], options);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    destroy,
  };
}
