// Calls (CONTRACT §8): the phone system's call recordings under the video's retention. The
// journal of calls (opened early: the ring's first prune pass counts and prunes them) and a
// watcher that takes finished recordings from the spool into the ring, pass after pass.
//
// Polling, not events: an NFS or SMB spool (the usual way a phone system's recordings reach
// this box) delivers no inotify events, so a watcher built on events would still need the
// rescan, and the rescan alone is the source of truth. A pass lists again only the folders that
// changed, so it costs a stat per folder; it runs every min(settle/2, 5 s), which adds at most
// that to the settle a file needs anyway, and lists every folder again every 10 minutes.
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { Component } from '../lifecycle/component.js';
import { iso } from '../platform/clock.js';
import { CallIndex, REJECTED } from '../calls/index.js';
import { CallTaker } from '../calls/taker.js';
import { parseStartFrom } from '../calls/spool.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface CallsDeps extends ModuleBase {
  calls: NonNullable<Config['calls']>;
  storagePath: string;
  /** How often a pass runs (default min(settle/2, 5 s)). */
  passIntervalMs?: number;
  /** How often a pass lists every folder again (default 10 min). */
  fullPassEveryMs?: number;
}

/** The state's `calls` (CONTRACT §8). */
export interface CallsState { files: number; bytes: number; oldest: string | null; waiting: number; rejected: number }

export interface CallsModule extends AgentModule {
  readonly index: CallIndex;
  state(): CallsState;
  /** Bytes set aside in `calls/rejected/` (camnode's own, outside the ring). */
  rejectedBytes(): number;
  /**
   * Whether every spool file that can hold part of [startMs, endMs] is in the ring: a pass has
   * begun since `endMs`, and no file seen but not yet taken was written to at or after `startMs`
   * (a call still being written has a recent mtime, so this covers more than "mtime in the window").
   */
  settledFor(startMs: number, endMs: number): boolean;
}

const FULL_PASS_EVERY_MS = 600_000;

export function callsModule(deps: CallsDeps): CallsModule {
  const { calls, clock, events, faults } = deps;
  const log = deps.log.child({ component: 'calls' });
  const dir = join(deps.storagePath, 'calls');
  const rejectedDir = join(dir, REJECTED);
  const index = new CallIndex(dir);
  const rejected = { files: 0, bytes: 0 };

  const taker = new CallTaker({
    spool: calls.watch, dir, pattern: calls.pattern, settleMs: calls.settle, startFrom: parseStartFrom(calls.startFrom),
    clock, log, index,
    rejected: (r) => {
      rejected.files++;
      events.emit('calls.rejected', { file: r.source, reason: r.reason, name: r.name });
    },
    took: async (rel, path, seen) => {
      if (calls.keepSource) return;
      // The phone system's copy goes once ours is durable — only if it is still the file that was
      // taken (nothing appended or written over it since); the tombstone goes when it has left.
      const now = await stat(path).catch(() => null);
      if (!now || now.size !== seen.size || now.mtimeMs !== seen.mtimeMs) {
        if (now) log.warn({ source: rel }, 'a taken call recording changed before it could be deleted from the spool: left there');
        return;
      }
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') log.warn({ err, path }, 'calls.keepSource is false but the spool file could not be deleted: check the folder\'s permissions');
      });
    },
  });

  // Not essential (CONTRACT §5): a calls folder that cannot be opened is a fault of `calls`, and
  // the cameras record on; the watcher takes nothing until the agent starts again.
  let opened = false;
  const journal: Component = {
    name: 'calls-index',
    start: async () => {
      try {
        await mkdir(dir, { recursive: true, mode: 0o750 });
        const { recovered, dropped, lost } = await index.open();
        if (recovered.length > 0 || dropped.length > 0) log.warn({ recovered, dropped }, 'calls: takes a crash cut short were finished or dropped');
        if (lost.length > 0) log.warn({ lost }, 'calls: the journal lists calls whose file is not there (pruned as the agent stopped, or lost)');
        for (const name of await readdir(rejectedDir).catch(() => [] as string[])) {
          // A copy into rejected/ a crash cut short: its source is set aside again.
          if (name.startsWith('.') && name.endsWith('.partial')) {
            await unlink(join(rejectedDir, name)).catch(() => {});
            continue;
          }
          rejected.files++;
          rejected.bytes += await stat(join(rejectedDir, name)).then((s) => s.size, () => 0);
        }
        opened = true;
      } catch (err) {
        log.error({ err, dir }, 'calls: the calls folder on the media disk cannot be opened; no call recordings are taken');
        faults.report('calls', `cannot open ${dir}: ${(err as Error).message}`);
      }
    },
    stop: () => index.close(),
  };

  const intervalMs = deps.passIntervalMs ?? Math.max(250, Math.min(calls.settle / 2, 5_000));
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let lastFullMs = -Infinity;
  /** When the last pass that finished began (epoch ms). */
  let passBeganAt = -Infinity;
  let unreadableReported = '';

  const pass = async (): Promise<void> => {
    if (!opened) return;
    const began = clock.now();
    const full = clock.monotonic() - lastFullMs >= (deps.fullPassEveryMs ?? FULL_PASS_EVERY_MS);
    try {
      const r = await taker.pass(full);
      if (full) lastFullMs = clock.monotonic();
      passBeganAt = began;
      for (const name of r.rejected) rejected.bytes += await stat(join(rejectedDir, name)).then((s) => s.size, () => 0);
      const unreadable = r.unreadable.map((u) => `${u.path} (${u.code})`).join(', ');
      if (unreadable !== unreadableReported) {
        unreadableReported = unreadable;
        if (unreadable) log.warn({ unreadable: r.unreadable }, 'calls: spool folders that cannot be read are skipped');
      }
      faults.clear('calls');
    } catch (err) {
      log.error({ err, watch: calls.watch }, 'calls: a pass over the spool failed; tried again at the next');
      faults.report('calls', `cannot take call recordings from ${calls.watch}: ${(err as Error).message}`);
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = pass().finally(() => {
        running = undefined;
        schedule();
      });
    }, intervalMs);
    timer.unref();
  };
  const watcher: Component = {
    name: 'calls',
    start: async () => {
      stopped = false;
      // The first pass is not awaited: a spool on a share that hangs must not hold up the start.
      running = pass().finally(() => {
        running = undefined;
        schedule();
      });
    },
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };

  return {
    name: 'calls',
    index,
    early: [journal],
    components: [watcher],
    state: () => {
      const list = index.list();
      return {
        files: list.length,
        bytes: list.reduce((n, c) => n + c.bytes, 0),
        oldest: list.length > 0 ? iso(list[0]!.startMs) : null,
        waiting: taker.waiting(),
        rejected: rejected.files,
      };
    },
    rejectedBytes: () => rejected.bytes,
    settledFor: (startMs, endMs) => passBeganAt >= endMs && !taker.waitingFor(startMs, endMs),
  };
}
