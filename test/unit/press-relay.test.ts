// The panic button outlives a pushed config's rebuild of the incidents module: a press while no
// module listens is kept, with its own moment, and handed to the next one — never dropped.
import { describe, expect, it } from 'vitest';
import { PressRelay, type PressTime } from '../../src/button/press-relay.js';

function button() {
  let listener: ((atMs: number) => void) | undefined;
  return { onPress: (l: (atMs: number) => void) => { listener = l; return () => { listener = undefined; }; }, press: () => listener?.(0) };
}

describe('PressRelay', () => {
  it('delivers at once while attached; keeps presses while detached, with the moment each was pressed', () => {
    const b = button();
    let now = 1_000;
    const relay = new PressRelay(b, () => ({ atMs: now, step: 0 }));
    const first: PressTime[] = [];
    const detach = relay.attach((at) => first.push(at));
    b.press();
    detach();
    now = 2_000;
    b.press();
    now = 3_000;
    b.press();
    expect(first).toEqual([{ atMs: 1_000, step: 0 }]);
    now = 9_000;
    const next: PressTime[] = [];
    relay.attach((at) => next.push(at));
    expect(next).toEqual([{ atMs: 2_000, step: 0 }, { atMs: 3_000, step: 0 }]);
    b.press();
    expect(next.at(-1)).toEqual({ atMs: 9_000, step: 0 });
  });

  it('an old module detaching late does not detach the new one', () => {
    const b = button();
    const relay = new PressRelay(b, () => ({ atMs: 1, step: 0 }));
    const detachOld = relay.attach(() => {});
    const got: PressTime[] = [];
    relay.attach((at) => got.push(at));
    detachOld();
    b.press();
    expect(got).toHaveLength(1);
  });
});
