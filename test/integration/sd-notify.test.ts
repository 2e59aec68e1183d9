// The agent under systemd's notify protocol (CONTRACT §9 Service), without systemd: the test
// plays systemd's side — a unix datagram socket it names in NOTIFY_SOCKET, WATCHDOG_USEC set —
// and reads what the real CLI sends: READY once recording, WATCHDOG every half interval while
// healthy, STOPPING on SIGTERM; an event loop wedged by a fault hook sends no more pings.
import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { baseConfig, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';

const IS_ROOT = process.getuid?.() === 0;
const IN_CI = process.env['CI'] === 'true';
const describeRoot = IS_ROOT || IN_CI ? describe : describe.skip;

/** systemd's end: a datagram socket (a path, or `@name` in the abstract namespace) whose messages are recorded with their time. */
const RECEIVER = `
import json, socket, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
print(json.dumps({"t": time.time(), "msg": "LISTENING"}), flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps({"t": time.time(), "msg": data.decode()}), flush=True)
`;

interface Got { t: number; msg: string }

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function receiver(address: string): Promise<{ got: Got[]; proc: ChildProcess }> {
  const proc = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: Got[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => got.push(JSON.parse(l) as Got));
  cleanups.push(async () => { proc.kill('SIGKILL'); });
  await waitFor(() => got.some((g) => g.msg === 'LISTENING'), 'the notify socket bound', 10_000, 50);
  return { got, proc };
}

async function agentWith(env: NodeJS.ProcessEnv): Promise<RunningAgent> {
  const dir = await tempDir('camnode-notify-');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const config = baseConfig(dir, [{ id: 'cam', source: 'testsrc', zone: 'entrance' }]);
  const agent = RunningAgent.start(await writeConfig(dir, config), { env });
  cleanups.push(async () => { agent.killGroup(); await agent.exited; });
  return agent;
}

describeRoot('sd_notify and the watchdog', () => {
  it('READY once recording, WATCHDOG every half WATCHDOG_USEC, STOPPING on SIGTERM', async () => {
    const dir = await tempDir('camnode-notify-sock-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const socket = join(dir, 'notify');
    const { got } = await receiver(socket);
    const agent = await agentWith({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: '2000000' });
    await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
    const ready = await waitFor(() => got.find((g) => g.msg === 'READY=1'), 'READY=1', 20_000, 50);
    expect(got.find((g) => g.msg.startsWith('STATUS='))?.msg).toBe('STATUS=recording 1 camera(s)');
    await waitFor(() => got.filter((g) => g.msg === 'WATCHDOG=1').length >= 6, 'six watchdog pings', 20_000, 100);
    const pings = got.filter((g) => g.msg === 'WATCHDOG=1').map((g) => g.t);
    // Every half of 2 s; the first with READY.
    expect(pings[0]! - ready.t).toBeLessThan(0.5);
    const gaps = pings.slice(1).map((t, i) => t - pings[i]!);
    for (const g of gaps) expect(g).toBeGreaterThan(0.7);
    for (const g of gaps) expect(g).toBeLessThan(1.6);
    expect(await agent.stop()).toBe(0);
    expect(got.some((g) => g.msg === 'STOPPING=1')).toBe(true);
  }, 60_000);

  it('an event loop wedged (a fault hook) sends no more pings; the abstract socket namespace works too', async () => {
    const socket = `@camnode-notify-test-${process.pid}`;
    const { got } = await receiver(socket);
    const agent = await agentWith({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000', CAMNODE_FAULT: 'wedge' });
    await waitFor(() => got.find((g) => g.msg === 'READY=1'), 'READY=1', 20_000, 50);
    await agent.waitForLog((l) => l.msg === 'CAMNODE_FAULT=wedge: blocking the event loop for 60 s', 'the wedge', 20_000);
    const wedgedAt = Date.now() / 1000;
    expect(got.filter((g) => g.msg === 'WATCHDOG=1').length).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 4_000));
    // Alive, but silent: systemd would restart it after WatchdogSec.
    expect(agent.proc.exitCode).toBeNull();
    expect(got.filter((g) => g.msg === 'WATCHDOG=1' && g.t > wedgedAt + 0.2)).toEqual([]);
  }, 60_000);
});
