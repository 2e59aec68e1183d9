// Shared scaffolding for integration tests that run agents against real RTSP cameras: one
// camera server per id, and clean-up after every test — even a failed one — so no agent,
// ffmpeg or temp dir outlives it.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { RunningAgent } from './agent.js';
import { startRtspServer, stopAllRtspServers, type RtspServer } from './rtsp-server.js';
import { recorderPids } from './segments.js';

export interface Rig {
  /** Camera id → its RTSP server. */
  servers: Map<string, RtspServer>;
  /** Agents started by the current test (pushed by it; emptied after it). */
  agents: RunningAgent[];
  /** Temp dirs of the current test (removed after it). */
  dirs: string[];
}

export function useRtspRig(cameras: readonly string[]): Rig {
  // One RTSP server per camera: GStreamer's shared media aborts (gst_rtsp_media_get_rates
  // assertion) when several clients come and go on one server, while one client reconnecting is fine.
  const rig: Rig = { servers: new Map(), agents: [], dirs: [] };
  beforeAll(async () => {
    for (const id of cameras) rig.servers.set(id, await startRtspServer({ pattern: 'ball', width: 320, height: 240, fps: 10, bitrateKbps: 300 }));
  });
  beforeEach(async () => {
    // A server that died in an earlier test must not fail this one.
    for (const s of rig.servers.values()) {
      try { process.kill(s.pid, 0); } catch { await s.restart(); }
    }
  });
  afterAll(async () => {
    await stopAllRtspServers();
  });
  afterEach(async (ctx) => {
    // A failed test shows what its agents said last (the CLI's log is otherwise lost).
    if (ctx.task.result?.state === 'fail') {
      for (const a of rig.agents) {
        const tail = a.logs.filter((l) => l.level >= 30).slice(-25).map((l) => JSON.stringify(l).slice(0, 400));
        console.error(`--- agent ${a.pid}: last log lines ---\n${tail.join('\n')}\n${a.stderrText}`);
      }
    }
    for (const a of rig.agents) a.killGroup();
    await Promise.all(rig.agents.map((a) => a.exited));
    rig.agents.length = 0;
    for (const d of rig.dirs) {
      for (const pid of await recorderPids(join(d, 'storage'))) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    await Promise.all(rig.dirs.map((d) => rm(d, { recursive: true, force: true })));
    rig.dirs.length = 0;
  });
  return rig;
}
