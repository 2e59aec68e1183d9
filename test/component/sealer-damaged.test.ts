// The sealer with a segment that is not video inside a locked window (a disk fault, a write cut
// off): the clip is made from the rest, the hole named `unreadable segment`, the evidence still
// verifies — not a concat that fails every second for ever. And an incident that really cannot
// seal is a fault naming it, retried with backoff rather than on every tick.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, AUDIT_LOG_FILE } from '../../src/audit/log.js';
import { loadOrCreateNodeKey } from '../../src/audit/keys.js';
import { EventBus } from '../../src/events.js';
import { IncidentBook } from '../../src/incidents/book.js';
import { Sealer } from '../../src/incidents/sealer.js';
import { Faults } from '../../src/lifecycle/faults.js';
import { ManualClock } from '../../src/platform/clock.js';
import { probeDurationMs } from '../../src/platform/ffmpeg.js';
import { silentLogger } from '../../src/platform/logger.js';
import { Ring } from '../../src/store/ring.js';
import { segmentFileName } from '../../src/store/segment.js';
import { runCli } from '../helpers/agent.js';

const SEG_MS = 1_000;
let dir: string;
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'camnode-sealer-')); });
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

/** Eight real one-second MPEG-TS segments of camera `cam`, named into the ring from `t0`. */
function recordSegments(storage: string, t0: number): number {
  const camDir = join(storage, 'segments', 'cam');
  const raw = join(dir, 'raw');
  mkdirSync(camDir, { recursive: true });
  mkdirSync(raw, { recursive: true });
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '8',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-f', 'segment', '-segment_time', '1', '-segment_format', 'mpegts', join(raw, 's%03d.ts')]);
  const files = readdirSync(raw).sort();
  files.forEach((f, i) => renameSync(join(raw, f), join(camDir, segmentFileName({ seq: i + 1, startMs: t0 + i * SEG_MS, durationMs: SEG_MS }))));
  return files.length;
}

async function rig(opts: { ffmpegPath?: string } = {}) {
  const storage = join(dir, 'storage');
  const stateDir = join(dir, 'state');
  const sealedDir = join(storage, 'incidents');
  const clock = new ManualClock(Date.UTC(2026, 11, 2, 12));
  const t0 = clock.now() - 20_000;
  const count = recordSegments(storage, t0);
  const log = process.env['DEBUG_SEAL'] ? (await import('../../src/platform/logger.js')).createLogger({ level: 'debug' }) : silentLogger();
  const events = new EventBus(log);
  const faults = new Faults({ clock, events, log });
  const audit = new AuditLog({ stateDir, log, clock });
  await audit.start();
  const book = new IncidentBook({
    stateDir, sealedDir, nodeId: 'n', policy: { preRollMs: 0, postRollMs: 1_000, maxLengthMs: 60_000 },
    enabledCameras: () => ['cam'], disposeNeedsSync: false, clock, log, events, audit, auditLogPath: join(stateDir, AUDIT_LOG_FILE),
  });
  await book.start();
  const ring = new Ring({
    auditDeletion: async () => {},
    options: { storagePath: storage, maxUsePercent: 99, reserveBytes: 0, segmentSeconds: 1 },
    clock, log, events, disk: async () => ({ sizeBytes: 1e12, usedBytes: 0, freeBytes: 1e12, type: 'ext4' }),
    locks: book, inProgressFiles: () => [], probeDurationMs: (p) => probeDurationMs(p), pruneIntervalMs: 3_600_000,
  });
  await ring.start();
  const key = await loadOrCreateNodeKey(stateDir);
  const sealer = new Sealer({
    book, ring, sealedDir, segmentSeconds: 1, clock, log, events, faults, audit, key,
    clockSynced: async () => true, version: 'test', checkIntervalMs: 3_600_000,
    backoff: { baseMs: 60_000, maxMs: 60_000, jitter: 0 },
    ...(opts.ffmpegPath ? { ffmpegPath: opts.ffmpegPath } : {}),
  });
  return { storage, stateDir, sealedDir, clock, t0, count, book, ring, sealer, faults, key, audit };
}

describe('sealing around damaged footage', () => {
  it('a segment that is not video is left out as a gap with reason "unreadable segment"; the clip plays and verifies', async () => {
    const r = await rig();
    expect(r.count).toBe(8);
    // The fourth segment is garbage now (a disk fault).
    const bad = r.ring.allSegments()[3]!;
    writeFileSync(r.ring.pathOf(bad), Buffer.alloc(40_000, 0x5a));
    const { incident } = await r.book.lock({ atMs: r.t0 + 500, via: 'local', preRollMs: 0, postRollMs: 7_400 });
    r.clock.advance(60_000);
    await r.sealer.start();
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    const folder = join(r.sealedDir, incident.id);
    const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as { files: { name: string; gaps: { start: string; end: string; reason: string }[] }[] };
    expect(manifest.files.map((f) => f.name)).toEqual(['cam.mp4']);
    expect(manifest.files[0]!.gaps).toEqual([
      { start: new Date(bad.startMs).toISOString(), end: new Date(bad.startMs + SEG_MS).toISOString(), reason: 'unreadable segment' },
    ]);
    const seconds = await probeDurationMs(join(folder, 'cam.mp4'));
    expect(seconds).toBeGreaterThan(5_000);
    expect(r.faults.list()).toEqual([]);
    const verify = await runCli(['evidence', 'verify', folder, '--key', r.key.publicKeyBase64]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await r.sealer.stop();
  });

  it('an incident that cannot seal is a fault naming it, tried again only after its backoff, cleared once sealed', async () => {
    // An ffmpeg that cannot assemble anything: the seal fails with every segment readable.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'ffmpeg'), '#!/bin/sh\necho "concat failed on purpose" >&2\nexit 1\n', { mode: 0o755 });
    const r = await rig({ ffmpegPath: join(bin, 'ffmpeg') });
    const { incident } = await r.book.lock({ atMs: r.t0 + 500, via: 'local', preRollMs: 0, postRollMs: 3_000 });
    r.clock.advance(60_000);
    await r.sealer.start();
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealing');
    expect(r.faults.list()).toEqual([{ component: 'sealer', incident: incident.id, since: expect.any(String), message: expect.stringMatching(new RegExp(`^cannot seal ${incident.id}: .*concat failed on purpose`)) }]);
    // Fixed, but not tried again on the next tick: its backoff (60 s here) has not passed.
    const sealingEntries = async () => (await readFile(join(r.stateDir, AUDIT_LOG_FILE), 'utf8')).split('\n').filter((l) => l.includes('"seal"')).length;
    writeFileSync(join(bin, 'ffmpeg'), `#!/bin/sh\nexec ${execFileSync('sh', ['-c', 'command -v ffmpeg']).toString().trim()} "$@"\n`, { mode: 0o755 });
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealing');
    r.clock.advance(61_000);
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    expect(await sealingEntries()).toBe(1);
    expect(r.faults.list()).toEqual([]);
    await r.sealer.stop();
  });

  it('a camera with no clip leaves nothing behind: what ffmpeg began but the manifest does not list is not sealed', async () => {
    // An ffmpeg that writes part of a clip, then (as it does) names a file it could not open and exits 0.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'ffmpeg'), `#!/bin/sh
for last; do :; done
list=$(awk '/^-i$/{getline; print}' <<EOF
$(printf '%s\\n' "$@")
EOF
)
first=$(sed -n "s/^file '\\(.*\\)'$/\\1/p" "$list" | head -1)
printf 'partial' > "$last"
echo "Impossible to open '$first'" >&2
exit 0
`, { mode: 0o755 });
    const r = await rig({ ffmpegPath: join(bin, 'ffmpeg') });
    const { incident } = await r.book.lock({ atMs: r.t0 + 500, via: 'local', preRollMs: 0, postRollMs: 3_000 });
    r.clock.advance(60_000);
    await r.sealer.start();
    await r.sealer.tick();
    expect(r.book.get(incident.id)?.state).toBe('sealed');
    const folder = join(r.sealedDir, incident.id);
    expect(readdirSync(folder)).toEqual(['manifest.json']);
    const verify = await runCli(['evidence', 'verify', folder, '--key', r.key.publicKeyBase64]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await r.sealer.stop();
  });
});
