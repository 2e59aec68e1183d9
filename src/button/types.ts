// The button's inside: every backend (sysfs via onoff, the libgpiod tools, the fake) is an
// EdgeSource of raw edges; one DebouncedButton turns those into presses. The rest of the agent
// only sees PanicButton and Led.
import type { Component } from '../lifecycle/component.js';

/** 1 = pressed, 0 = released: backends translate active-low wiring before reporting. */
export type Level = 0 | 1;

/** A raw edge as a backend saw it. `atMs` is on the source's own monotonic time base. */
export interface Edge {
  level: Level;
  atMs: number;
}

export interface EdgeSink {
  edge(edge: Edge): void;
  /** The source (re)opened the line: forget the debounce history; `level` if it could read it. */
  reset(level?: Level): void;
}

export interface EdgeSource {
  /** Opens the line and reports edges until stop(). Throws if the line cannot be opened. */
  start(sink: EdgeSink): Promise<void>;
  stop(): Promise<void>;
  /** A problem found while running (a supervised tool that keeps failing), else null. */
  problem(): string | null;
}

export interface PanicButton extends Component {
  /** `atMs` is wall-clock time of the press. Returns an unsubscribe function. */
  onPress(listener: (atMs: number) => void): () => void;
}

export type ButtonBackend = 'onoff' | 'gpiod' | 'fake' | 'none';

/** What `camnode check` and the start-up log say about the button (verdicts as in check). */
export interface ButtonDescription {
  backend: ButtonBackend;
  /** The real line, e.g. `BCM 17 = sysfs gpio 529 (pinctrl-bcm2711, base 512)`; null without one. */
  line: string | null;
  /** The LED's line, or null when there is no LED. */
  led: string | null;
  status: 'pass' | 'warn' | 'fail';
  note: string;
  /** One line saying how to fix a warn or fail. */
  fix?: string;
}

/** Drives the LED line: on/off only; patterns are timed by Led. */
export interface LedOutput {
  open(): Promise<void>;
  set(on: boolean): void;
  close(): Promise<void>;
}

export { systemTimers, type Timers } from '../platform/timers.js';
