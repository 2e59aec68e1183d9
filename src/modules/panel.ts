// The panic button and its LED (essential to staff, not to recording): built from `button`, kept
// across pushed configs that do not change `button` (the incidents module that locks on a press
// is rebuilt more often: presses meanwhile wait in the relay). Supervised, so a failing line is
// reported and retried while the cameras keep recording.
import type { Config } from '../config/schema.js';
import { createButton, type DebouncedButton, type Led } from '../button/index.js';
import { PressRelay, type PressTime } from '../button/press-relay.js';
import { Supervised } from '../lifecycle/supervisor.js';
import type { AgentModule, ModuleBase } from './module.js';

export interface PanelDeps extends ModuleBase {
  button: Config['button'];
  /** Whether the agent records: the LED's heartbeat. */
  healthy(): boolean;
  /** A press's moment in the clock's time base. */
  triggerTime(): PressTime;
}

/** What the incidents module needs of the panel. */
export interface Panel {
  presses: Pick<PressRelay, 'attach'>;
  led: Pick<Led, 'during' | 'isOn'>;
  /** The fake backend's button (demo: Enter; `run` with button.backend fake: a line on stdin). */
  fake: { press(): boolean } | null;
}

export interface PanelModule extends AgentModule, Panel {}

export async function panelModule(deps: PanelDeps): Promise<PanelModule> {
  const { log, clock, faults } = deps;
  const setup = await createButton(deps.button, { log, clock, healthy: deps.healthy });
  const button = new Supervised<DebouncedButton>({ name: 'button', faults, log, build: () => setup.button, problem: (b) => b.problem() });
  const led = new Supervised<Led>({ name: 'led', faults, log, build: () => setup.led });
  return {
    name: 'button',
    components: [led, button],
    presses: new PressRelay(setup.button, deps.triggerTime),
    led: setup.led,
    fake: setup.fake,
  };
}
