// Clock steps. A Pi has no battery clock: it boots with a wrong wall clock and records before
// NTP sets it, and the setting is a step. ClockSteps measures each step as the change of the
// offset between the wall clock and the monotonic clock — which counts from boot and which no
// step moves — and tells its listeners at once, synchronously: the ring corrects the stamps of
// this boot's earlier footage and the incident book the windows of open incidents, so that a
// window drawn after the step takes the footage really recorded in it.
//
// The offset is kept per boot id (in <stateDir>/clock.json), so that a step taken while the
// agent was down, in the same boot, is found by the first check after the next start. Each
// step of a boot is numbered and kept there too: a listener records which steps its own state
// has taken in (the ring its `applied` step, the book each incident's), so after a crash it
// takes in what it missed, and never a step twice — whichever of the files made it to disk.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Component } from '../lifecycle/component.js';
import type { Clock } from './clock.js';
import { writeFileDurable } from './durable.js';
import type { Logger } from './logger.js';

export const CLOCK_FILE = 'clock.json';

/** A change of the wall/monotonic offset beyond this is a step; below it, drift. */
export const CLOCK_JUMP_THRESHOLD_MS = 5_000;

/** Offset change beyond the threshold, or 0. Pure. */
export function clockJump(previousOffsetMs: number, currentOffsetMs: number, thresholdMs = CLOCK_JUMP_THRESHOLD_MS): number {
  const delta = currentOffsetMs - previousOffsetMs;
  return Math.abs(delta) > thresholdMs ? delta : 0;
}

/** How often the offset is saved while nothing steps (slewing drifts it slowly; a step saves at once). */
const SAVE_EVERY_MS = 10 * 60_000;

/** A step of this boot: its number (from 1) and size. */
export interface Step { n: number; deltaMs: number }

export type StepListener = (deltaMs: number, step: Step) => void;

/** What check() needs: the ring and the book take this much. */
export interface StepSource {
  /** The step since the last check in ms (0 if none); listeners have been told before it returns. */
  check(): number;
  onStep(listener: StepListener): () => void;
  /** This boot's id, or null when the OS does not say (then every start counts as a new boot). */
  bootId(): string | null;
  /** How many steps this boot has seen: the time base a time read now is in. */
  stepCount(): number;
  /** This boot's steps after step `n`, oldest first (what state taken in at step `n` has missed). */
  stepsAfter(n: number): Step[];
}

interface Saved { bootId: string; offsetMs: number; steps: Step[] }

/** The boot id of a Linux kernel (a new one at every boot). */
export async function readBootId(procRoot = '/proc'): Promise<string | null> {
  try {
    const id = (await readFile(join(procRoot, 'sys/kernel/random/boot_id'), 'utf8')).trim();
    return /^[\w-]{1,64}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

export class ClockSteps implements Component, StepSource {
  readonly name = 'clock-steps';
  private offset: number;
  private boot: string | null = null;
  private steps: Step[] = [];
  private readonly listeners = new Set<StepListener>();
  private lastSavedAt = -Infinity;
  private saving: Promise<void> = Promise.resolve();
  private saveFailed = false;

  constructor(private readonly deps: { clock: Clock; stateDir: string; log: Logger; procRoot?: string | undefined }) {
    this.offset = this.current();
  }

  async start(): Promise<void> {
    this.boot = await readBootId(this.deps.procRoot);
    const saved = await this.load();
    if (saved && this.boot !== null && saved.bootId === this.boot) {
      // Same boot: the first check measures from the offset last seen, so a step taken while
      // the agent was down is found (and told) like one taken while it ran.
      this.offset = saved.offsetMs;
      this.steps = saved.steps;
    } else {
      this.offset = this.current();
    }
    this.deps.log.info({ bootId: this.boot, sameBoot: saved?.bootId === this.boot && this.boot !== null }, 'clock: watching for steps');
  }

  async stop(): Promise<void> {
    this.save();
    await this.saving;
  }

  bootId(): string | null {
    return this.boot;
  }

  stepCount(): number {
    return this.steps.length === 0 ? 0 : this.steps[this.steps.length - 1]!.n;
  }

  stepsAfter(n: number): Step[] {
    return this.steps.filter((s) => s.n > n);
  }

  onStep(listener: StepListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  check(): number {
    const current = this.current();
    const jump = clockJump(this.offset, current);
    // Follows slow drift (NTP slewing) too, so it never adds up to a false step.
    this.offset = current;
    if (jump !== 0) {
      const step: Step = { n: this.stepCount() + 1, deltaMs: jump };
      this.steps.push(step);
      this.deps.log.warn({ stepMs: jump, step: step.n }, `clock: the wall clock stepped by ${Math.round(jump / 1000)} s`);
      for (const listener of this.listeners) {
        try {
          listener(jump, step);
        } catch (err) {
          this.deps.log.error({ err }, 'clock step listener failed');
        }
      }
      this.save();
    } else if (this.deps.clock.monotonic() - this.lastSavedAt > SAVE_EVERY_MS) {
      this.save();
    }
    return jump;
  }

  private current(): number {
    return this.deps.clock.now() - this.deps.clock.monotonic();
  }

  private path(): string {
    return join(this.deps.stateDir, CLOCK_FILE);
  }

  private async load(): Promise<Saved | null> {
    try {
      const parsed = JSON.parse(await readFile(this.path(), 'utf8')) as Partial<Saved>;
      if (typeof parsed.bootId === 'string' && typeof parsed.offsetMs === 'number' && Number.isFinite(parsed.offsetMs)) {
        const steps = (Array.isArray(parsed.steps) ? parsed.steps : [])
          .filter((x): x is Step => Number.isSafeInteger(x?.n) && Number.isSafeInteger(x?.deltaMs));
        return { bootId: parsed.bootId, offsetMs: parsed.offsetMs, steps };
      }
      this.deps.log.warn({ path: this.path() }, 'clock.json has no boot id and offset; steps while the agent was down are not found this boot');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.deps.log.warn({ err, path: this.path() }, 'clock.json unreadable; steps while the agent was down are not found this boot');
    }
    return null;
  }

  /** Saves the offset in the background (serialised); a failure is said once, not on every try. */
  private save(): void {
    if (this.boot === null) return;
    this.lastSavedAt = this.deps.clock.monotonic();
    const saved: Saved = { bootId: this.boot, offsetMs: this.offset, steps: [...this.steps] };
    this.saving = this.saving.then(async () => {
      try {
        await writeFileDurable(this.path(), `${JSON.stringify(saved)}\n`);
        this.saveFailed = false;
      } catch (err) {
        if (!this.saveFailed) this.deps.log.warn({ err, path: this.path() }, 'clock offset not saved; a step while the agent is down would go unseen');
        this.saveFailed = true;
      }
    });
  }
}
