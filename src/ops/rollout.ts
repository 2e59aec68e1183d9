// `ctl update` (CONTRACT §9 Update): a release rolled out to nodes in waves. With `--canary N`
// the first N nodes (by name) go first, and the rest only once every one of those committed; a
// canary that rolled back, refused, or did not report in time stops the rollout there. Each
// node's outcome comes from its events (`update.committed` / `update.rolledBack`), watched
// before the command is sent so that none is missed.
import type { ReplyPayload } from '../fleet/topics.js';

export type Outcome = 'committed' | 'rolledBack' | 'refused' | 'no answer' | 'timed out' | 'already' | 'not started';
export interface NodeOutcome { node: string; outcome: Outcome; detail: string }

export interface RolloutDeps {
  /** Online nodes and the version each runs (status.version). */
  nodes: readonly { node: string; version: string | undefined }[];
  version: string;
  canary: number;
  /** How long each wave waits for its nodes' outcomes. */
  waitMs: number;
  request(node: string, args: { version: string }): Promise<ReplyPayload>;
  /** Subscribes to every node's events; returns the unsubscribe. */
  watch(onEvent: (node: string, event: Record<string, unknown>) => void): Promise<() => Promise<void>>;
  /** Each node's outcome as it is known. */
  onOutcome(o: NodeOutcome): void;
  /** A wave begins (its nodes). */
  onWave?(nodes: readonly string[], canary: boolean): void;
}

/** The waves: the canaries, then the rest (or one wave of all). Pure. */
export function waves(nodes: readonly string[], canary: number): string[][] {
  const sorted = [...nodes].sort();
  if (canary <= 0 || canary >= sorted.length) return [sorted];
  return [sorted.slice(0, canary), sorted.slice(canary)];
}

export async function rollOut(deps: RolloutDeps): Promise<NodeOutcome[]> {
  const outcomes: NodeOutcome[] = [];
  const settle = (o: NodeOutcome): void => {
    outcomes.push(o);
    deps.onOutcome(o);
  };
  const waiting = new Map<string, (o: NodeOutcome) => void>();
  const stop = await deps.watch((node, e) => {
    if (e['version'] !== deps.version) return;
    const done = waiting.get(node);
    if (!done) return;
    if (e['type'] === 'update.committed') done({ node, outcome: 'committed', detail: `from ${String(e['previous'] ?? '?')}` });
    if (e['type'] === 'update.rolledBack') done({ node, outcome: 'rolledBack', detail: String(e['reason'] ?? '') });
  });
  try {
    const runs = new Map(deps.nodes.map((n) => [n.node, n.version]));
    const plan = waves(deps.nodes.map((n) => n.node), deps.canary);
    for (const [i, wave] of plan.entries()) {
      const isCanary = plan.length > 1 && i === 0;
      deps.onWave?.(wave, isCanary);
      const results = await Promise.all(wave.map((node) => one(node)));
      if (isCanary && results.some((o) => o.outcome !== 'committed' && o.outcome !== 'already')) {
        for (const node of plan.slice(1).flat()) settle({ node, outcome: 'not started', detail: 'a canary did not commit' });
        break;
      }
    }
    return outcomes;

    async function one(node: string): Promise<NodeOutcome> {
      if (runs.get(node) === deps.version) {
        const o: NodeOutcome = { node, outcome: 'already', detail: `runs ${deps.version}` };
        settle(o);
        return o;
      }
      // Listening before asking: an outcome cannot come before the watch.
      let resolveOutcome: (o: NodeOutcome) => void = () => {};
      const outcome = new Promise<NodeOutcome>((resolve) => { resolveOutcome = resolve; });
      waiting.set(node, resolveOutcome);
      let o: NodeOutcome;
      try {
        const reply = await deps.request(node, { version: deps.version });
        if (!reply.ok) {
          o = { node, outcome: 'refused', detail: `${reply.error.code}: ${reply.error.message}` };
        } else {
          const timer = setTimeout(() => resolveOutcome({ node, outcome: 'timed out', detail: `no update.committed or update.rolledBack within ${Math.round(deps.waitMs / 1000)} s` }), deps.waitMs);
          o = await outcome;
          clearTimeout(timer);
        }
      } catch (err) {
        o = { node, outcome: 'no answer', detail: (err as Error).message };
      }
      waiting.delete(node);
      settle(o);
      return o;
    }
  } finally {
    await stop();
  }
}
