// SD-card wear: what the agent writes to node.stateDir (the SD card on a Pi; footage goes to the
// USB SSD) and to stderr (its log: the journal, also on the SD card) per day, at its default log
// level (info), idle and busy, with 4 cameras recording (2 GStreamer RTSP servers, 2 clients each,
// `-c copy`, the default segment length). Counted from outside: strace -f on the agent process
// (every thread: libuv writes from its pool) tallies write/pwrite/writev bytes and fsync/
// fdatasync calls per file, and /proc/PID/io gives the kernel's own write_bytes; the log's bytes
// are counted as they arrive on the agent's stderr. The ffmpeg children (the footage) are not
// traced. Busy: a lock over the control socket every --lock-every seconds (each sealed: clips
// to the media disk, the book, the audit log and the outbox to the state dir).
//
//   node dist/bench/sd-wear.js [--minutes 5] [--busy] [--lock-every 60]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ControlClient, RunningBenchAgent } from './control-lib.js';
import { machine, machineMarkdown, numberArg, sleep, startRtspCamera, verdict, writeResults } from './lib.js';

const MINUTES = numberArg('--minutes', 5);
const BUSY = process.argv.includes('--busy');
const LOCK_EVERY_S = numberArg('--lock-every', 60);
const GOAL_IDLE_BYTES_PER_DAY = 5e6;
const STREAM = { pattern: 'ball', width: 640, height: 360, fps: 10, bitrateKbps: 800 };
const WARMUP_MS = 15_000;

function procIo(pid: number): { wchar: number; writeBytes: number } {
  const text = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { wchar: field('wchar'), writeBytes: field('write_bytes') };
}

interface Tally { bytes: number; writes: number; syncs: number }

/** strace -f -y lines → bytes written and syncs per file. Pure. */
export function tallyStrace(text: string): Map<string, Tally> {
  const out = new Map<string, Tally>();
  const at = (path: string): Tally => {
    let t = out.get(path);
    if (!t) out.set(path, (t = { bytes: 0, writes: 0, syncs: 0 }));
    return t;
  };
  for (const line of text.split('\n')) {
    const m = /^(?:\d+\s+)?(write|pwrite64|writev|pwritev2?|fsync|fdatasync)\(\d+<([^>]*)>.*\)\s+=\s+(-?\d+)/.exec(line);
    if (!m) continue;
    const [, call, path, ret] = m;
    const t = at(path!);
    if (call === 'fsync' || call === 'fdatasync') t.syncs++;
    else if (Number(ret) > 0) { t.bytes += Number(ret); t.writes++; }
  }
  return out;
}

async function main(): Promise<number> {
  const m = machine();
  const dir = mkdtempSync(join(tmpdir(), 'camnode-bench-wear-'));
  const stateDir = join(dir, 'state');
  const servers = [await startRtspCamera(STREAM), await startRtspCamera(STREAM)];
  const socket = join(dir, 'control.sock');
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify({
    node: { id: 'bench', stateDir },
    // At its quota from the first minute, as a ring is after its first days: every pass deletes
    // the oldest segments, and says so in the audit log (the state dir).
    // Busy: room for the locks' clips (each pins 30 s of 4 cameras), the ring pruning later.
    storage: { path: join(dir, 'storage'), maxBytes: BUSY ? '120MB' : '8MB', reserve: '1MB' },
    cameras: ['cam-1', 'cam-2', 'cam-3', 'cam-4'].map((id, i) => ({ id, source: servers[i % 2]!.url, zone: 'entrance' })),
    incident: { preRoll: '20s', postRoll: '10s', maxLockedPercent: 100 },
    button: { backend: 'none' },
    control: { socket },
  }));
  console.log(`sd-wear: ${MINUTES} min ${BUSY ? `busy (a lock every ${LOCK_EVERY_S} s)` : 'idle'}, 4 cameras, default log level`);
  const agent = await RunningBenchAgent.start(configPath, dir, 4, 60_000);
  const pid = agent.proc.pid!;
  let tallies: Map<string, Tally>;
  let seconds: number;
  let io: { wchar: number; writeBytes: number };
  let logBytes: number;
  let locks = 0;
  try {
    await sleep(WARMUP_MS);
    const traceFile = join(dir, 'strace.txt');
    const strace = spawn('strace', ['-f', '-qq', '-y', '-s', '0', '-e', 'trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync', '-o', traceFile, '-p', String(pid)], { stdio: 'ignore' });
    await sleep(1_000);
    const io0 = procIo(pid);
    const log0 = agent.stderrBytes;
    const t0 = Date.now();
    const end = t0 + MINUTES * 60_000;
    let nextLock = t0 + 5_000;
    while (Date.now() < end) {
      if (BUSY && Date.now() >= nextLock) {
        const client = await ControlClient.open(socket);
        const { reply } = await client.request('lock', { reason: 'sd-wear bench', by: 'bench' });
        client.close();
        if (!reply.ok) throw new Error(`lock refused: ${JSON.stringify(reply.error)}`);
        locks++;
        nextLock += LOCK_EVERY_S * 1000;
      }
      await sleep(500);
    }
    seconds = (Date.now() - t0) / 1000;
    const io1 = procIo(pid);
    io = { wchar: io1.wchar - io0.wchar, writeBytes: io1.writeBytes - io0.writeBytes };
    logBytes = agent.stderrBytes - log0;
    strace.kill('SIGINT');
    await new Promise((r) => strace.once('exit', r));
    tallies = tallyStrace(readFileSync(traceFile, 'utf8'));
  } finally {
    await agent.stop(30_000);
    for (const s of servers) await s.stop();
  }
  rmSync(dir, { recursive: true, force: true });

  const perDay = (bytes: number): number => bytes * (86_400 / seconds);
  const mbDay = (bytes: number): string => `${(perDay(bytes) / 1e6).toFixed(2)} MB/day`;
  const inState = [...tallies].filter(([path]) => path.startsWith(stateDir)).map(([path, t]) => ({ file: path.slice(stateDir.length + 1).replace(/\.\d+\.tmp$|\.tmp-[^/]*$/, '.tmp') || '(the folder itself: renames made durable)', ...t }));
  const byFile = new Map<string, Tally>();
  for (const f of inState) {
    const t = byFile.get(f.file) ?? { bytes: 0, writes: 0, syncs: 0 };
    byFile.set(f.file, { bytes: t.bytes + f.bytes, writes: t.writes + f.writes, syncs: t.syncs + f.syncs });
  }
  const stateBytes = [...byFile.values()].reduce((n, t) => n + t.bytes, 0);
  const stateSyncs = [...byFile.values()].reduce((n, t) => n + t.syncs, 0);
  const elsewhere = [...tallies].filter(([path]) => !path.startsWith(stateDir) && !path.startsWith('pipe:') && !path.startsWith('socket:'));
  const otherBytes = elsewhere.reduce((n, [, t]) => n + t.bytes, 0);
  const total = stateBytes + logBytes;
  const ok = BUSY || perDay(total) <= GOAL_IDLE_BYTES_PER_DAY;
  const rows = [...byFile].sort((a, b) => b[1].bytes - a[1].bytes).map(([file, t]) => `| ${file} | ${t.writes} | ${t.bytes} | ${mbDay(t.bytes)} | ${t.syncs} | ${(t.syncs * 86_400 / seconds).toFixed(0)} |`);
  console.log(`  over ${seconds.toFixed(0)} s${BUSY ? `, ${locks} locks` : ''}: state dir ${stateBytes} B (${mbDay(stateBytes)}), ${stateSyncs} syncs; log ${logBytes} B (${mbDay(logBytes)}); together ${mbDay(total)}`);
  console.log(`  /proc/${pid}/io: wchar ${io.wchar} B, write_bytes ${io.writeBytes} B (${mbDay(io.writeBytes)}); writes outside the state dir (the media disk's ring files): ${otherBytes} B`);
  for (const r of rows) console.log(`  ${r}`);
  const variant = BUSY ? 'busy' : 'idle';
  const path = writeResults(`sd-wear-${variant}`, [
    `# SD-card wear, ${variant}: what the agent writes to the state dir and its log`,
    '',
    `Measured: \`camnode run\` (its own process, the default log level \`info\`) with 4 cameras recording segments of the default length from 2 GStreamer RTSP servers ` +
    `(${STREAM.width}x${STREAM.height}@${STREAM.fps}, copy), ${BUSY ? `a \`lock\` over the control socket every ${LOCK_EVERY_S} s (${locks} in all; each sealed: 20 s before, 10 s after)` : 'no lock, no press: an idle branch'}, ` +
    `for ${seconds.toFixed(0)} s after ${WARMUP_MS / 1000} s of warm-up. \`strace -f -y\` on the agent process (all its threads; its ffmpeg children, which write the footage to the media disk, not traced) ` +
    'counted the bytes of every write/pwrite/writev and every fsync/fdatasync by file; the log is the bytes the agent wrote to stderr (under systemd: the journal). ' +
    (BUSY
      ? '`storage.maxBytes` 120 MB and `incident.maxLockedPercent` 100 (room for every lock\'s clips; the ring prunes little in this run: the idle run measures pruning). '
      : 'The ring is at its quota (`storage.maxBytes` 8 MB) from the first minute, as a ring is after its first days: each prune pass deletes the oldest segments and writes its `delete` audit entry. ') +
    'Per day = the figures × 86,400 / the seconds measured. No fleet link (its outbox writes only with events to send) and no upstream.',
    '',
    machineMarkdown(m),
    '',
    '| file in node.stateDir | writes | bytes | per day | fsyncs | fsyncs per day |',
    '|---|---|---|---|---|---|',
    ...rows,
    `| **state dir** | | ${stateBytes} | **${mbDay(stateBytes)}** | ${stateSyncs} | ${(stateSyncs * 86_400 / seconds).toFixed(0)} |`,
    `| **log (stderr → journal)** | | ${logBytes} | **${mbDay(logBytes)}** | | |`,
    '',
    `The kernel's count for the agent process (/proc/${pid}/io, both disks, page-cache writeback as it happened during the run): write_bytes ${io.writeBytes} B (${mbDay(io.writeBytes)}); ` +
    `wchar (every byte passed to write, the log's pipe included) ${io.wchar} B. Writes outside the state dir (the media disk: the ring's files, sealed clips): ${otherBytes} B. ` +
    'write_bytes counts the pages the process dirtied on both disks (the media disk\'s ring files and, when busy, the sealed clips among them), as writeback happened during the run; the strace tally is what reaches the state dir.',
    '',
    BUSY
      ? `- State dir and log together, busy: **${mbDay(total)}** (the idle goal does not apply)`
      : `- State dir and log together, idle: **${mbDay(total)}** — goal ≤ ${GOAL_IDLE_BYTES_PER_DAY / 1e6} MB/day: **${verdict(ok)}**`,
  ].join('\n'));
  console.log(`  results: ${path}`);
  return ok ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(err);
  return 2;
});
