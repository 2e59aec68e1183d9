// `camnode demo`, the README's main command, run as a newcomer runs it: once without a terminal
// (it records, its embedded broker answers a `ctl` line it printed, it exits 0), and once in a
// real 80-column terminal (tmux), where the live status line must stay one line — a wider line
// wraps, and every redraw then scrolls the instructions off the screen.
import { spawn, execFile } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli, tempDir, waitFor } from '../helpers/agent.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));

let dir: string;
beforeAll(async () => { dir = await tempDir('camnode-demo-'); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

async function segments(storage: string, camera: string): Promise<string[]> {
  return (await readdir(join(storage, 'segments', camera)).catch(() => [] as string[])).filter((f) => /^\d+_\d+_\d+\.ts$/.test(f));
}

describe('camnode demo', () => {
  it('without a terminal: records both cameras, answers a printed ctl line over its embedded broker, exits 0', async () => {
    const data = join(dir, 'plain');
    const child = spawn(process.execPath, [CLI, 'demo', '--dir', data, '--seconds', '30'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      // Signed with the demo's throwaway principal, as every command over MQTT must be.
      const printed = await waitFor(() => stdout.split('\n').find((l) => / ctl state demo --broker mqtt:\/\/127\.0\.0\.1:\d+ --mqtt-version 3\.1\.1 --cert \S+ --key \S+$/.test(l)), `the printed ctl state line\n${stdout}\n${stderr}`, 30_000);
      // The line as printed, run from where the demo was started: `node dist/src/main.js ctl …`.
      const argv = printed.trim().split(/\s+/);
      expect(argv.slice(0, 2)).toEqual(['node', 'dist/src/main.js']);
      const state = await runCli(argv.slice(2).concat('--json'), { timeoutMs: 30_000 });
      expect(state.code, state.stderr).toBe(0);
      const parsed = JSON.parse(state.stdout) as { cameras: { id: string }[]; health: { faults: unknown[] } };
      expect(parsed.cameras.map((c) => c.id)).toEqual(['entrance', 'desk']);
      expect(parsed.health.faults).toEqual([]);
      // The printed lock line too: the node records who signed it.
      const lockLine = stdout.split('\n').find((l) => / ctl lock demo --broker /.test(l))!;
      const lockArgv = lockLine.trim().split(/\s+/).slice(2).map((a) => a.replace(/^"|"$/g, ''));
      const i = lockArgv.indexOf('--reason');
      const locked = await runCli([...lockArgv.slice(0, i), '--reason', 'ops test', '--json'], { timeoutMs: 30_000 });
      expect(locked.code, locked.stderr).toBe(0);
      const { incident } = JSON.parse(locked.stdout) as { incident: string };
      const shown = await runCli(['ctl', 'incident', '--local', '--socket', join(data, 'control.sock'), incident, '--json']);
      const trigger = (JSON.parse(shown.stdout) as { triggers: { by?: string; via: string; signer?: { cn: string; role: string } }[] }).triggers[0]!;
      expect(trigger).toMatchObject({ via: 'mqtt', by: 'ops:demo', signer: { cn: 'ops:demo', role: 'admin' } });
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    expect(stdout).toContain('camnode demo: 2 synthetic cameras recording');
    expect(stdout).toMatch(/stopping…\n/);
    const storage = join(data, 'storage');
    expect((await segments(storage, 'entrance')).length).toBeGreaterThanOrEqual(5);
    expect((await segments(storage, 'desk')).length).toBeGreaterThanOrEqual(5);
  });

  it('prints working hold, footage and still lines once it has footage from earlier; the timeline marks the hold', async () => {
    const data = join(dir, 'hold');
    const child = spawn(process.execPath, [CLI, 'demo', '--dir', data, '--seconds', '90'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    /** A printed line's arguments after `node dist/src/main.js`, quotes as a shell reads them. */
    const argvOf = (line: string): string[] => [...line.trim().matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!).slice(2);
    try {
      const line = (re: RegExp) => waitFor(() => stdout.split('\n').find((l) => re.test(l)), `a line ${re}\n${stdout}`, 60_000);
      const hold = await runCli(argvOf(await line(/ ctl hold --local /)), { timeoutMs: 30_000 });
      expect(hold.code, hold.stderr).toBe(0);
      const incident = /held incident (\S+)/.exec(hold.stdout)?.[1];
      expect(incident, hold.stdout).toMatch(/^\d{8}T\d{6}Z-[a-z2-7]{4}$/);
      expect(hold.stdout).toContain('nothing of the range is missing');
      const footage = await runCli(argvOf(await line(/ ctl footage --local /)), { timeoutMs: 30_000 });
      expect(footage.code, footage.stderr).toBe(0);
      // The hold on both cameras' bars (locked until sealed, then kept as clips) and in the list.
      const bars = footage.stdout.split('\n').filter((l) => /^(entrance|desk) /.test(l));
      expect(bars, footage.stdout).toHaveLength(2);
      for (const bar of bars) expect(bar, footage.stdout).toMatch(/[▓▒]/);
      expect(footage.stdout).toContain(incident!);
      const still = argvOf(await line(/ ctl still --local /));
      still[still.indexOf('-o') + 1] = join(data, 'still.jpg');
      const made = await runCli(still, { timeoutMs: 30_000 });
      expect(made.code, made.stderr).toBe(0);
      expect(made.stdout).toMatch(/bytes, entrance's frame at /);
    } finally {
      child.kill('SIGINT');
      await exited;
    }
  });

  it('in an 80-column terminal: one status line that fits, the instructions stay on screen, Enter locks', async () => {
    const data = join(dir, 'tty');
    const server = `camnode-demo-${process.pid}`;
    const tmux = (...args: string[]) => run('tmux', ['-L', server, ...args], { env: { ...process.env, TERM: 'xterm' } });
    const screen = async (): Promise<string[]> => (await tmux('capture-pane', '-p', '-J', '-t', 'demo')).stdout.split('\n');
    const command = `cd ${REPO} && ${process.execPath} ${CLI} demo --dir ${data} --seconds 60; sleep 60`;
    await tmux('new-session', '-d', '-s', 'demo', '-x', '80', '-y', '40', command);
    try {
      // Recording, and a few seconds of redraws (five a second).
      await waitFor(async () => (await screen()).some((l) => /entrance recording \d+k/.test(l)), 'a status line showing recording', 40_000);
      await new Promise((r) => setTimeout(r, 3_000));
      await tmux('send-keys', '-t', 'demo', 'Enter');
      const locked = await waitFor(async () => {
        const lines = await screen();
        return lines.some((l) => /LOCKED \d{8}T\d{6}Z-[a-z2-7]{4} \d+s left/.test(l)) ? lines : null;
      }, 'the lock on the status line', 20_000);
      await new Promise((r) => setTimeout(r, 2_000));
      const lines = await screen();

      const status = (l: string) => /\bring \d/.test(l);
      expect(lines.filter(status), `screen:\n${lines.join('\n')}`).toHaveLength(1);
      expect(locked.filter(status)).toHaveLength(1);
      // -J joins wrapped rows: a status line wider than the terminal would show here.
      for (const l of lines.filter(status)) expect([...l].length, l).toBeLessThanOrEqual(80);
      expect(lines.some((l) => l.includes('press Enter to press the panic button'))).toBe(true);
      expect(lines.some((l) => l.startsWith('camnode demo: 2 synthetic cameras recording'))).toBe(true);
      expect(lines.some((l) => /^incident \S+ LOCKED: footage from 20s before is kept/.test(l))).toBe(true);
      // Ctrl-C stops it cleanly (its recorders with it).
      await tmux('send-keys', '-t', 'demo', 'C-c');
      await waitFor(async () => (await screen()).some((l) => l.startsWith('footage is in ')), 'the demo to stop', 30_000);
    } finally {
      await tmux('kill-server').catch(() => {});
    }
  });
});
