// systemd's notify protocol (Type=notify, WatchdogSec; CONTRACT §9 Service): READY once the
// agent records, WATCHDOG while it is healthy, STOPPING on the way out. Node has no unix datagram
// sockets and a native addon cannot ship in the bundle; running `systemd-notify` per ping loses
// messages on systemd 252 (the sender may exit before systemd reads its credentials). So one
// long-lived python3 helper (python3 is on Raspberry Pi OS and Debian) reads lines on its stdin
// and sends each as one datagram to $NOTIFY_SOCKET; the unit sets NotifyAccess=all so systemd
// takes them from a process other than the main one.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from './logger.js';

const HELPER = `
import os, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin.buffer:
    msg = line.rstrip(b"\\n")
    if not msg:
        continue
    try:
        s.sendto(msg, addr)
    except OSError as e:
        sys.stderr.write("sd_notify: %s\\n" % e)
        sys.stderr.flush()
`;

/**
 * How often to ping the watchdog: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises;
 * null without a watchdog, or when WATCHDOG_PID names another process. Pure.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number | null {
  const usec = Number(env['WATCHDOG_USEC']);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  const forPid = env['WATCHDOG_PID'];
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return null;
  return Math.max(100, Math.floor(usec / 2000));
}

export class SystemdNotifier {
  private helper: ChildProcess | undefined;

  private constructor(private readonly log: Logger) {}

  /** A notifier when systemd asked for one ($NOTIFY_SOCKET), else null. */
  static fromEnv(env: NodeJS.ProcessEnv, log: Logger, python = 'python3'): SystemdNotifier | null {
    const socket = env['NOTIFY_SOCKET'];
    if (!socket) return null;
    const n = new SystemdNotifier(log);
    const helper = spawn(python, ['-c', HELPER], { stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: env['PATH'] ?? '/usr/bin:/bin', NOTIFY_SOCKET: socket } });
    helper.on('error', (err) => log.error({ err }, `cannot run ${python} for sd_notify: systemd will not hear READY or the watchdog (install python3)`));
    helper.stderr?.on('data', (d: Buffer) => log.warn({ helper: d.toString().trim() }, 'sd_notify helper'));
    helper.stdin?.on('error', () => {});
    (helper.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    // The helper must not keep the agent alive, nor outlive it (its stdin closes with us).
    helper.unref();
    (helper.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    n.helper = helper;
    return n;
  }

  private send(line: string): void {
    this.helper?.stdin?.write(`${line.replace(/\n/g, ' ')}\n`);
  }

  ready(status: string): void {
    this.send('READY=1');
    this.send(`STATUS=${status}`);
  }

  watchdog(): void {
    this.send('WATCHDOG=1');
  }

  status(text: string): void {
    this.send(`STATUS=${text}`);
  }

  stopping(): void {
    this.send('STOPPING=1');
  }

  close(): void {
    this.helper?.stdin?.end();
  }
}

/**
 * Pings the watchdog every `intervalMs` while `healthy()` says so. A blocked event loop sends
 * nothing by itself; a part that is wedged while the loop turns (`healthy` names it) stops the
 * pings too, and systemd restarts the agent after WatchdogSec.
 */
export class Watchdog {
  private timer: NodeJS.Timeout | undefined;
  private lastProblem: string | null = null;

  constructor(private readonly deps: { notifier: Pick<SystemdNotifier, 'watchdog' | 'status'>; intervalMs: number; healthy(): string | null; log: Logger }) {}

  start(): void {
    const tick = (): void => {
      const problem = this.deps.healthy();
      if (problem === null) {
        if (this.lastProblem !== null) this.deps.log.info('healthy again: watchdog pings resume');
        this.deps.notifier.watchdog();
      } else if (problem !== this.lastProblem) {
        this.deps.log.error({ problem }, 'an essential part is wedged: watchdog pings stop, systemd restarts the agent after WatchdogSec');
        this.deps.notifier.status(`wedged: ${problem}`);
      }
      this.lastProblem = problem;
    };
    tick();
    this.timer = setInterval(tick, this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
