// Hostile input on the local control socket (CONTRACT §5): type confusion in every field, deep
// nesting, huge lines, invalid UTF-8, pipelining without reading, a client that never reads its
// replies, path-like ids, 100 connections at once. After each the agent is alive, answers a
// fresh `ping`, and its camera kept recording without a gap (read off the segment files).
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestLocal } from '../../src/control/socket.js';
import { baseConfig, runCli, RunningAgent, tempDir, waitFor, writeConfig } from '../helpers/agent.js';
import { LineClient, type Reply } from '../helpers/line-client.js';
import { listSegments, recorderPids } from '../helpers/segments.js';
import { rm } from 'node:fs/promises';

const CAMERA = 'hall';
let dir: string;
let agent: RunningAgent;
let socketPath: string;
let storage: string;
let since: number;

beforeAll(async () => {
  dir = await tempDir('camnode-hostile-');
  socketPath = join(dir, 'control.sock');
  storage = join(dir, 'storage');
  const config = baseConfig(dir, [{ id: CAMERA, source: 'testsrc', zone: 'entrance' }], { control: { socket: socketPath } });
  agent = RunningAgent.start(await writeConfig(dir, config));
  await agent.waitForLog((l) => l.msg === 'agent started', 'agent started');
  await waitFor(async () => (await listSegments(storage, CAMERA)).length >= 2, 'two segments', 30_000);
  since = Date.now();
});

afterAll(async () => {
  agent.killGroup();
  await agent.exited;
  for (const pid of await recorderPids(storage)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await rm(dir, { recursive: true, force: true });
});

/** Alive, answering, and recording without a hole since the suite began. */
async function expectUnharmed(): Promise<void> {
  expect(agent.proc.exitCode, agent.stderrText).toBeNull();
  const pong = await requestLocal(socketPath, 'ping', {}, 5_000);
  expect(pong).toMatchObject({ ok: true, data: { version: expect.any(String) } });
  // A segment closing now proves the recorder is still at work.
  const before = (await listSegments(storage, CAMERA)).at(-1)!.seq;
  await waitFor(async () => (await listSegments(storage, CAMERA)).at(-1)!.seq > before, 'a new segment', 10_000, 100);
  const segs = (await listSegments(storage, CAMERA)).filter((s) => s.startMs + s.durationMs >= since);
  for (let i = 1; i < segs.length; i++) {
    const hole = segs[i]!.startMs - (segs[i - 1]!.startMs + segs[i - 1]!.durationMs);
    expect(hole, `hole before seq ${segs[i]!.seq}`).toBeLessThan(1_500);
  }
}

async function ask(raw: string | Buffer): Promise<Reply> {
  const c = await LineClient.open(socketPath);
  try {
    return await c.ask(raw);
  } finally {
    c.close();
  }
}

const deep = (n: number, leaf = '0') => '['.repeat(n) + leaf + ']'.repeat(n);

describe('hostile input on the control socket', () => {
  it('type confusion in every field: an error reply each, never a crash', async () => {
    const cases: [string, Partial<Reply>][] = [
      ['{"id":2,"cmd":{"toString":0},"args":{}}', { id: 2, ok: false }],
      ['{"id":3,"cmd":["ping"],"args":{}}', { id: 3, ok: false }],
      ['{"id":4,"cmd":null}', { id: 4, ok: false }],
      ['{"id":5,"cmd":7}', { id: 5, ok: false }],
      ['{"id":6,"cmd":"__proto__","args":{}}', { id: 6, ok: false }],
      ['{"id":7,"cmd":"constructor"}', { id: 7, ok: false }],
      ['{"id":8,"cmd":"ping","args":"x"}', { id: 8, ok: false }],
      ['{"id":9,"cmd":"ping","args":[1]}', { id: 9, ok: false }],
      ['{"id":10,"cmd":"lock","args":{"reason":{"toString":0}}}', { id: 10, ok: false }],
      ['{"id":11,"cmd":"lock","args":{"cameras":"hall"}}', { id: 11, ok: false }],
      ['{"id":12,"cmd":"lock","args":{"postRoll":{"valueOf":0}}}', { id: 12, ok: false }],
      ['{"id":13,"cmd":"incident","args":{"incident":["x"]}}', { id: 13, ok: false }],
      ['{"id":{"toString":0},"cmd":"ping"}', { id: null, ok: true }],
      ['{"id":[1],"cmd":"ping"}', { id: null, ok: true }],
      ['{"id":1.5,"cmd":"ping"}', { id: null, ok: true }],
      ['{"id":9007199254740993,"cmd":"ping"}', { id: null, ok: true }],
      [`{"id":"${'i'.repeat(129)}","cmd":"ping"}`, { id: null, ok: true }],
      [`{"id":"${'i'.repeat(128)}","cmd":"ping"}`, { id: 'i'.repeat(128), ok: true }],
      ['[]', { id: null, ok: false }],
      ['"ping"', { id: null, ok: false }],
      ['null', { id: null, ok: false }],
      ['{"id":1,"cmd":"ping"', { id: null, ok: false }],
    ];
    for (const [raw, expected] of cases) {
      const reply = await ask(`${raw}\n`);
      expect(reply, raw).toMatchObject(expected);
      if (!reply.ok) expect(reply.error?.code, raw).toBe('bad_request');
    }
    await expectUnharmed();
  });

  it('hold, footage, still and note: type confusion, huge values and nesting are bad_request naming the field', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const now = new Date().toISOString();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['hold', { from: { toString: 0 }, to: now, reason: 'r', by: 'b' }, /^hold: from: /],
      ['hold', { from: 1_700_000_000_000, to: now, reason: 'r', by: 'b' }, /^hold: from: /],
      ['hold', { from: '9'.repeat(100_000), to: now, reason: 'r', by: 'b' }, /^hold: from: /],
      ['hold', { from: '+275760-09-13T00:00:00Z', to: now, reason: 'r', by: 'b' }, /^hold: from: not an ISO-8601 time/],
      ['hold', { from: past, to: now, reason: 'r'.repeat(501), by: 'b' }, /^hold: reason: /],
      ['hold', { from: past, to: now, reason: 'r', by: 'b', cameras: Array.from({ length: 65 }, (_, i) => `c${i}`) }, /^hold: cameras: /],
      ['hold', { from: past, to: now, reason: 'r', by: 'b', cameras: [['hall']] }, /^hold: cameras\.0: /],
      ['hold', { from: past, to: now, reason: 'r', by: 'b', extra: JSON.parse(deep(40, '1')) as unknown }, /^hold: unknown argument "extra"/],
      ['lock', { from: past, reason: 'r', by: 'b' }, /^lock: to: required with from/],
      ['footage', { camera: { id: 'hall' } }, /^footage: camera: /],
      ['footage', { from: 'yesterday' }, /^footage: from: /],
      ['footage', { from: now, to: past }, /^from: must be before to/],
      ['still', { camera: 'cam-a', at: [now], purpose: 'incident-review', reason: 'r', by: 'b' }, /^still: at: /],
      ['still', { camera: 'cam-a', at: now, purpose: 'curiosity', reason: 'r', by: 'b' }, /^still: purpose: /],
      ['still', { camera: '../../etc', at: now, purpose: 'incident-review', reason: 'r', by: 'b' }, /^still: camera: not a camera id/],
      ['note', { incident: '20261202T000000Z-abcd', text: 'x'.repeat(2_001), by: 'b' }, /^note: text: /],
      ['note', { incident: '../20261202T000000Z-abcd', text: 'x', by: 'b' }, /^note: incident: not an incident id/],
      ['note', { incident: '20261202T000000Z-abcd', text: { length: 1 }, by: 'b' }, /^note: text: /],
    ];
    for (const [cmd, args, message] of cases) {
      const reply = await ask(`${JSON.stringify({ id: 'h', cmd, args })}\n`);
      const shown = `${cmd} ${JSON.stringify(args).slice(0, 120)}`;
      expect(reply, shown).toMatchObject({ id: 'h', ok: false, error: { code: 'bad_request' } });
      expect(reply.error?.message, shown).toMatch(message);
      expect(reply.error!.message.length, shown).toBeLessThan(1_000);
    }
    await expectUnharmed();
  });

  it('deep nesting: refused before it is parsed, the id unreadable past it is null', async () => {
    expect(await ask(`{"id":1,"cmd":"lock","args":{"reason":${deep(100, '"x"')}}}\n`)).toMatchObject({ id: null, ok: false, error: { code: 'bad_request', message: expect.stringContaining('deeper than 64') } });
    expect(await ask(`{"id":${deep(50_000)},"cmd":"ping"}\n`)).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
    // 64 deep is allowed (and then refused for what it says).
    expect(await ask(`{"id":"ok","cmd":"lock","args":{"reason":${deep(62, '"x"')}}}\n`)).toMatchObject({ id: 'ok', ok: false, error: { message: expect.stringContaining('reason') } });
    await expectUnharmed();
  });

  it('invalid UTF-8 and control bytes: refused', async () => {
    const bad = Buffer.concat([Buffer.from('{"id":1,"cmd":"lock","args":{"reason":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}}\n')]);
    expect(await ask(bad)).toMatchObject({ ok: false, error: { code: 'bad_request', message: expect.stringContaining('UTF-8') } });
    expect(await ask('{"id":2,"cmd":"ping\\u0000"}\n')).toMatchObject({ id: 2, ok: false, error: { code: 'bad_request' } });
    expect(await ask('{"id":3,"cmd":"ping\u0001"}\n')).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
    await expectUnharmed();
  });

  it('a line over 256 KiB, whole or trickled: refused and the connection closed', async () => {
    for (const trickle of [false, true]) {
      const c = await LineClient.open(socketPath);
      let received = '';
      c.socket.on('data', (d: string) => { received += d; });
      const line = `{"id":"big","cmd":"lock","args":{"reason":"${'y'.repeat(300 * 1024)}"}}\n`;
      if (trickle) {
        for (let i = 0; i < line.length && !c.socket.destroyed; i += 16 * 1024) c.socket.write(line.slice(i, i + 16 * 1024));
      } else {
        c.socket.write(line);
      }
      await c.closed;
      if (received) expect(JSON.parse(received.split('\n')[0]!)).toMatchObject({ id: null, ok: false, error: { code: 'bad_request', message: expect.stringContaining('larger than 262144') } });
    }
    await expectUnharmed();
  });

  it('path-like ids are refused, never looked up', async () => {
    for (const id of ['../../etc/passwd', '20261202T000000Z-abcd/../../x', '/etc/camnode']) {
      expect(await ask(`${JSON.stringify({ id: 1, cmd: 'incident', args: { incident: id } })}\n`)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await ask(`${JSON.stringify({ id: 1, cmd: 'release', args: { incident: id, by: 'x', reason: 'y', force: true } })}\n`)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    }
    expect(await ask('{"id":1,"cmd":"snapshot","args":{"camera":"../hall"}}\n')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    await expectUnharmed();
  });

  it('pipelining past 8 requests in flight: the connection is closed', async () => {
    const c = await LineClient.open(socketPath);
    c.socket.write('{"id":1,"cmd":"state"}\n'.repeat(20));
    await c.closed;
    await agent.waitForLog((l) => String(l.msg).startsWith('control connection closed: more than 8 requests in flight'), 'the cut-off logged', 5_000);
    // Eight at once are fine, answered in order.
    const ok = await LineClient.open(socketPath);
    ok.socket.write(Array.from({ length: 8 }, (_, i) => `{"id":${i},"cmd":"ping"}\n`).join(''));
    const replies: Reply[] = [];
    for (let i = 0; i < 8; i++) replies.push(await ok.next());
    expect(replies.map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    ok.close();
    await expectUnharmed();
  });

  it('a client that never reads its replies is cut off, not buffered for', async () => {
    const socket: Socket = connect(socketPath);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.pause(); // never reads
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => {});
    // Paced so that it never has 8 requests unanswered, also on a loaded machine: pings answer at
    // once, and a 128-character id (echoed) makes each reply big. What grows is only the unread replies.
    const id = 'r'.repeat(128);
    const batch = `{"id":"${id}","cmd":"ping"}\n`.repeat(6);
    let sent = 0;
    while (!socket.destroyed && sent < 60_000) {
      socket.write(batch);
      sent += 6;
      await new Promise((r) => setTimeout(r, 10));
    }
    await closed;
    expect(sent).toBeLessThan(60_000);
    await agent.waitForLog((l) => l.msg === 'control connection closed: its replies are not being read', 'the cut-off logged', 5_000);
    await expectUnharmed();
  });

  it('a second snapshot of a camera while one runs: conflict; the first one is delivered', async () => {
    const [a, b] = await Promise.all([
      requestLocal(socketPath, 'snapshot', { camera: CAMERA }, 20_000),
      requestLocal(socketPath, 'snapshot', { camera: CAMERA }, 20_000),
    ]);
    const replies = [a, b].sort((x, y) => Number(y.ok) - Number(x.ok));
    expect(replies[0]).toMatchObject({ ok: true, data: { camera: CAMERA, contentType: 'image/jpeg' } });
    expect(replies[1]).toMatchObject({ ok: false, error: { code: 'conflict', message: expect.stringContaining('being taken') } });
    expect(await requestLocal(socketPath, 'snapshot', { camera: CAMERA }, 20_000)).toMatchObject({ ok: true });
    await expectUnharmed();
  });

  it('ctl prints node-supplied text with its control characters escaped', async () => {
    const reason = 'rewrite \u001b[2J\u001b]0;owned\u0007 \u202eevil';
    const locked = await requestLocal(socketPath, 'lock', { reason, by: 'x\u001b[31m', postRoll: '1s', preRoll: '1s' }, 5_000);
    expect(locked.ok).toBe(true);
    const id = (locked.data as { incident: string }).incident;
    const shown = await runCli(['ctl', 'incident', '--local', '--socket', socketPath, id]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('rewrite \\u001b[2J\\u001b]0;owned\\u0007 \\u202eevil');
    expect([...shown.stdout].filter((c) => (c < ' ' && c !== '\n') || c === '\u202e')).toEqual([]);
    // --json stays exact (JSON escapes the control characters itself).
    const json = await runCli(['ctl', 'incident', '--local', '--socket', socketPath, id, '--json']);
    expect((JSON.parse(json.stdout) as { triggers: { reason: string }[] }).triggers[0]!.reason).toBe(reason);
    await expectUnharmed();
  });

  it('100 connections at once: those past 32 are closed, the agent goes on', async () => {
    const sockets = await Promise.all(Array.from({ length: 100 }, () => new Promise<Socket>((resolve) => {
      const s = connect(socketPath);
      s.on('error', () => {});
      s.once('connect', () => resolve(s));
      s.once('close', () => resolve(s));
    })));
    await new Promise((r) => setTimeout(r, 500));
    const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open');
    expect(open.length).toBeLessThanOrEqual(32);
    expect(open.length).toBeGreaterThan(0);
    for (const s of sockets) s.destroy();
    await expectUnharmed();
  });
});
