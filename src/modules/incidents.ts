// Incidents: the book of locks (essential: the ring must know every lock before it prunes), the
// sealer, and the panic button with its LED, which lock without any network. Built from
// `incident`, `button` and the node's identity; the sealer, the button and the LED are
// supervised, so a failing one is reported and retried while the cameras keep recording.
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { AUDIT_LOG_FILE, type AuditLog } from '../audit/log.js';
import type { NodeKey } from '../audit/keys.js';
import { createButton, type ButtonSetup } from '../button/index.js';
import type { DebouncedButton, Led } from '../button/index.js';
import { whoAsks } from '../commands/handlers.js';
import { CommandError } from '../commands/protocol.js';
import { IncidentBook } from '../incidents/book.js';
import { DamagedIncidents } from '../incidents/damaged.js';
import { isOpen, type Incident } from '../incidents/incident.js';
import { Sealer } from '../incidents/sealer.js';
import type { StepSource } from '../platform/clock-steps.js';
import { faultPoint } from '../platform/fault.js';
import { Supervised } from '../lifecycle/supervisor.js';
import type { Ring } from '../store/ring.js';
import { VERSION } from '../version.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface IncidentsDeps extends ModuleBase {
  node: Config['node'];
  incident: Config['incident'];
  button: Config['button'];
  /** Cameras a lock takes by default. */
  enabledCameras: readonly string[];
  /** storage.path/incidents */
  sealedDir: string;
  /** recording.segmentSeconds: a window seals once its last segment has closed. */
  segmentSeconds: number;
  /** Whether disposing of an incident needs it synced first (an upstream is configured). */
  disposeNeedsSync: boolean;
  ring: Pick<Ring, 'segmentsBetween' | 'pathOf' | 'clockOf' | 'unlinkSettled'>;
  audit: AuditLog;
  key: NodeKey;
  steps: StepSource;
  clockSynced(): boolean | null;
  /** A camera's measured bitrate (0 when unknown), for the footage an open lock still takes. */
  kbps(camera: string): number;
  /** When a camera was down, for the reasons of a clip's gaps. */
  downIntervals(camera: string): readonly { startMs: number; endMs: number }[];
  ffmpegPath?: string | undefined;
}

export interface IncidentCounts { active: number; held: number; unsynced: number; damaged: number }

/**
 * CONTRACT §3, §5: active = window open, held = sealed or synced and not disposed, unsynced =
 * sealed, damaged = set aside (no longer held or waiting to sync).
 */
export function countIncidents(incidents: readonly Incident[], nowMs: number, damaged: { has(id: string): boolean; count(): number } = NONE_DAMAGED): IncidentCounts {
  let active = 0;
  let held = 0;
  let unsynced = 0;
  for (const i of incidents) {
    if (isOpen(i, nowMs)) active++;
    if (damaged.has(i.id)) continue;
    if (i.state === 'sealed' || i.state === 'synced') held++;
    if (i.state === 'sealed') unsynced++;
  }
  return { active, held, unsynced, damaged: damaged.count() };
}

const NONE_DAMAGED = { has: () => false, count: () => 0 };

export interface IncidentsModule extends AgentModule {
  readonly book: IncidentBook;
  readonly damaged: DamagedIncidents;
  counts(): IncidentCounts;
  /** Bytes of sealed clips on the media disk (0 while the sealer is down). */
  sealedBytes(): number;
  /** Bytes the open incident will still lock: its cameras' bitrates over the rest of its window. */
  promisedBytes(): number;
  /** The fake backend's button (demo: Enter; `run` with button.backend fake: a line on stdin). */
  fakeButton(): { press(): boolean } | null;
  ledLit(): boolean;
}

export async function incidentsModule(deps: IncidentsDeps): Promise<IncidentsModule> {
  const { node, incident, clock, log, events, faults, audit } = deps;
  const book = new IncidentBook({
    stateDir: node.stateDir,
    sealedDir: deps.sealedDir,
    nodeId: node.id,
    policy: { preRollMs: incident.preRoll, postRollMs: incident.postRoll, maxLengthMs: incident.maxLength },
    enabledCameras: () => [...deps.enabledCameras],
    disposeNeedsSync: deps.disposeNeedsSync,
    clock,
    log: log.child({ component: 'incidents' }),
    events,
    audit,
    auditLogPath: join(node.stateDir, AUDIT_LOG_FILE),
    steps: deps.steps,
  });

  const damaged = new DamagedIncidents({ sealedDir: deps.sealedDir, audit, events, clock, log: log.child({ component: 'incidents' }) });

  const sealer = new Supervised({
    name: 'sealer', faults, log,
    build: () => new Sealer({
      book, ring: deps.ring, sealedDir: deps.sealedDir,
      segmentSeconds: deps.segmentSeconds,
      clock,
      log: log.child({ component: 'sealer' }),
      events, faults, audit, key: deps.key,
      clockSynced: async () => deps.clockSynced(),
      version: VERSION,
      downIntervals: deps.downIntervals,
      ...(deps.ffmpegPath ? { ffmpegPath: deps.ffmpegPath } : {}),
    }),
  });
  events.on('incident.disposed', () => void sealer.current()?.measureHeld());

  const setup: ButtonSetup = await createButton(deps.button, { log, clock });
  const button = new Supervised<DebouncedButton>({ name: 'button', faults, log, build: () => setup.button, problem: (b) => b.problem() });
  const led = new Supervised<Led>({ name: 'led', faults, log, build: () => setup.led });
  // A press locks at once, on this machine only: nothing here waits on a network. The LED is
  // solid until the lock is durable, then confirms — or flashes the error if it could not be.
  setup.button.onPress(() => {
    const { atMs, step } = book.triggerTime();
    events.emit('button.pressed', { at: new Date(atMs).toISOString() });
    setup.led.during(async () => {
      const made = await book.lock({ atMs, step, via: 'button' });
      // An unlink the pruner had already begun cannot be called back: confirm only after it.
      await deps.ring.unlinkSettled();
      return made;
    }).then(
      ({ incident: locked, extended }) => log.info({ incident: locked.id, extended }, 'panic button: lock durable'),
      (err: unknown) => log.error({ err }, 'panic button: the lock could NOT be made durable'),
    );
  });

  return {
    name: 'incidents',
    // The book starts early: the ring's first prune pass must already see every lock.
    early: [book, damaged],
    components: [sealer, led, button],
    commands: {
      lock: async (a, ctx) => {
        const { incident: locked, extended } = await book.lock({
          ...book.triggerTime(), via: ctx.via, ...whoAsks(ctx, a.by, false), reason: a.reason, cameras: a.cameras,
          preRollMs: a.preRoll, postRollMs: a.postRoll, urgent: a.urgent,
        });
        // From the reply on, every segment in the window is kept: none is mid-unlink.
        await deps.ring.unlinkSettled();
        faultPoint('lock.returned');
        return { incident: locked.id, extended };
      },
      dispose: async (a, ctx) => {
        const who = whoAsks(ctx, a.by, true);
        return { incident: (await book.dispose({ ...a, by: who.by!, ...who, ...(ctx.jws ? { jws: ctx.jws } : {}) })).id };
      },
      incidents: async () => ({ incidents: book.list() }),
      incident: async (a) => {
        const found = book.get(a.incident);
        if (!found) throw new CommandError('not_found', `no incident ${a.incident}`);
        return found;
      },
    },
    book,
    damaged,
    counts: () => countIncidents(book.list(), clock.now(), damaged),
    sealedBytes: () => sealer.current()?.sealedBytes() ?? 0,
    promisedBytes: () => {
      const open = book.openIncident();
      if (!open) return 0;
      const remainingMs = Math.max(0, Date.parse(open.window.end) - clock.now());
      let bytes = 0;
      for (const camera of open.cameras) bytes += (deps.kbps(camera) * 1000 / 8) * (remainingMs / 1000);
      return Math.round(bytes);
    },
    fakeButton: () => setup.fake,
    ledLit: () => setup.led.isOn(),
  };
}
