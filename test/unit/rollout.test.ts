// `ctl update`'s rollout (CONTRACT §9): canaries first, the rest only once every canary
// committed; each node's outcome from its events; a node already on the version is left alone.
import { describe, expect, it } from 'vitest';
import { rollOut, waves, type NodeOutcome } from '../../src/ops/rollout.js';
import type { ReplyPayload } from '../../src/fleet/topics.js';

type Behaviour = 'commit' | 'rollback' | 'refuse' | 'silent' | 'throw';

function fleet(behaviour: Record<string, Behaviour>, version = '1.1.0') {
  let emit: (node: string, e: Record<string, unknown>) => void = () => {};
  const asked: string[] = [];
  const outcomes: NodeOutcome[] = [];
  return {
    asked, outcomes,
    deps: {
      version, waitMs: 200,
      request: async (node: string): Promise<ReplyPayload> => {
        asked.push(node);
        const b = behaviour[node];
        if (b === 'throw') throw new Error('no answer within 120 s');
        if (b === 'refuse') return { ok: false, error: { code: 'bad_request', message: 'fleet.releaseKey is not set' } };
        // The outcome comes later, as an event (and one for another version, ignored).
        setTimeout(() => {
          emit(node, { type: 'update.committed', version: '0.9.0', previous: '0.8.0' });
          if (b === 'commit') emit(node, { type: 'update.committed', version, previous: '1.0.0' });
          if (b === 'rollback') emit(node, { type: 'update.rolledBack', version, reason: `${version} failed to start twice` });
        }, 10);
        return { ok: true, data: { version } };
      },
      watch: async (onEvent: (node: string, e: Record<string, unknown>) => void) => {
        emit = onEvent;
        return async () => { emit = () => {}; };
      },
      onOutcome: (o: NodeOutcome) => outcomes.push(o),
    },
  };
}

const nodes = (...names: string[]) => names.map((node) => ({ node, version: node === 'done' ? '1.1.0' : '1.0.0' }));

describe('waves', () => {
  it('canaries by name, then the rest; no canary or too many: one wave', () => {
    expect(waves(['c', 'a', 'd', 'b'], 1)).toEqual([['a'], ['b', 'c', 'd']]);
    expect(waves(['c', 'a'], 0)).toEqual([['a', 'c']]);
    expect(waves(['c', 'a'], 2)).toEqual([['a', 'c']]);
  });
});

describe('rollOut', () => {
  it('canaries committed: the rest follow; a node already on the version is not asked', async () => {
    const f = fleet({ a: 'commit', b: 'commit', c: 'commit' });
    const out = await rollOut({ ...f.deps, nodes: nodes('c', 'a', 'b', 'done'), canary: 1 });
    expect(out[0]).toMatchObject({ node: 'a', outcome: 'committed' });
    expect(Object.fromEntries(out.map((o) => [o.node, o.outcome]))).toEqual({ a: 'committed', b: 'committed', c: 'committed', done: 'already' });
    expect(f.asked[0]).toBe('a');
    expect(f.asked.sort()).toEqual(['a', 'b', 'c']);
    expect(out[0]!.detail).toBe('from 1.0.0');
  });

  it('a canary that rolls back stops the rollout: the rest are not started', async () => {
    const f = fleet({ a: 'rollback', b: 'commit', c: 'commit' });
    const out = await rollOut({ ...f.deps, nodes: nodes('a', 'b', 'c'), canary: 1 });
    expect(out).toEqual([
      { node: 'a', outcome: 'rolledBack', detail: '1.1.0 failed to start twice' },
      { node: 'b', outcome: 'not started', detail: 'a canary did not commit' },
      { node: 'c', outcome: 'not started', detail: 'a canary did not commit' },
    ]);
    expect(f.asked).toEqual(['a']);
  });

  it('refusals, silence and no answer are outcomes of their own; without canaries every node is asked', async () => {
    const f = fleet({ a: 'refuse', b: 'silent', c: 'throw', d: 'commit' });
    const out = await rollOut({ ...f.deps, nodes: nodes('a', 'b', 'c', 'd'), canary: 0 });
    expect(Object.fromEntries(out.map((o) => [o.node, o.outcome]))).toEqual({ a: 'refused', b: 'timed out', c: 'no answer', d: 'committed' });
    expect(out.find((o) => o.node === 'a')!.detail).toBe('bad_request: fleet.releaseKey is not set');
  });
});
