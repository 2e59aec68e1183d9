// Reading a command off MQTT (CONTRACT §3), pure: the topic map, the two reply-address forms
// (MQTT 5 Response Topic + Correlation Data; 3.1.1 "replyTo"/"id" in the payload, removed
// before the arguments are validated; MQTT 5 wins when both are there), and the refusals —
// malformed payloads keep their reply address, foreign reply addresses lose it.
import { describe, expect, it } from 'vitest';
import { MAX_REQUEST_BYTES } from '../../src/commands/envelope.js';
import { parseRequest, type ParsedRequest, type RequestPacket } from '../../src/fleet/requests.js';
import { Topics } from '../../src/fleet/topics.js';

const topics = new Topics('camnode');
const NODE = 'node-1';
const CMD = (name: string) => `camnode/${NODE}/cmd/${name}`;
const OWN = `camnode/${NODE}/reply/ops-1`;
const CORR = Buffer.from('c0ffee', 'hex');

function parse(p: Partial<RequestPacket> & { body?: unknown }, node = NODE, t = topics): ParsedRequest {
  const payload = p.payload ?? (p.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(p.body)));
  return parseRequest({ topic: p.topic ?? CMD('ping'), payload, responseTopic: p.responseTopic, correlationData: p.correlationData }, node, t);
}

describe('Topics', () => {
  it('builds every topic of CONTRACT §3 under the prefix', () => {
    expect(topics.node(NODE)).toBe('camnode/node-1');
    expect(topics.status(NODE)).toBe('camnode/node-1/status');
    expect(topics.state(NODE)).toBe('camnode/node-1/state');
    expect(topics.events(NODE)).toBe('camnode/node-1/events');
    expect(topics.command(NODE, 'lock')).toBe('camnode/node-1/cmd/lock');
    expect(topics.command(NODE, '+')).toBe('camnode/node-1/cmd/+');
    expect(topics.replyBase(NODE)).toBe('camnode/node-1/reply');
    expect([topics.allStatus(), topics.allState(), topics.allEvents()]).toEqual(['camnode/+/status', 'camnode/+/state', 'camnode/+/events']);
  });

  it('parses topics under its prefix only, including a prefix of several levels', () => {
    expect(topics.parse('camnode/node-1/cmd/lock')).toEqual({ node: 'node-1', kind: 'cmd', rest: ['lock'] });
    expect(topics.parse('camnode/node-1/reply/a/b')).toEqual({ node: 'node-1', kind: 'reply', rest: ['a', 'b'] });
    expect(topics.parse('camnode/node-1/status')).toEqual({ node: 'node-1', kind: 'status', rest: [] });
    for (const t of ['camnodex/node-1/status', 'other/node-1/status', 'camnode/node-1', 'camnode//status', 'camnode/node-1/', 'camnode', '']) {
      expect(topics.parse(t), t).toBeNull();
    }
    const deep = new Topics('fleet/eu');
    expect(deep.status(NODE)).toBe('fleet/eu/node-1/status');
    expect(deep.parse('fleet/eu/node-1/cmd/ping')).toEqual({ node: 'node-1', kind: 'cmd', rest: ['ping'] });
    expect(deep.parse('fleet/node-1/cmd/ping')).toBeNull();
  });

  it('allows reply topics under the node\'s own reply subtree only, without wildcards', () => {
    for (const ok of [OWN, `camnode/${NODE}/reply/a/b/c`, `camnode/${NODE}/reply/x y`]) expect(topics.isOwnReplyTopic(NODE, ok), ok).toBe(true);
    for (const bad of [
      `camnode/${NODE}/reply`, `camnode/${NODE}/reply/`, 'camnode/other-node/reply/x', 'elsewhere/x',
      `camnode/${NODE}/state`, `camnode/${NODE}/cmd/ping`, `camnode/${NODE}/replyx/a`, `camnode/${NODE}-2/reply/x`,
      `camnode/${NODE}/reply/+`, `camnode/${NODE}/reply/#`, `camnode/${NODE}/reply/a/+/b`, `camnode/${NODE}/reply/a\u0000b`,
      `other/camnode/${NODE}/reply/x`, '',
    ]) {
      expect(topics.isOwnReplyTopic(NODE, bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

describe('parseRequest: reply addresses', () => {
  it('MQTT 5: Response Topic and Correlation Data, the payload being the arguments', () => {
    expect(parse({ topic: CMD('lock'), body: { reason: 'r' }, responseTopic: OWN, correlationData: CORR })).toEqual({
      ok: true, cmd: 'lock', args: { reason: 'r' }, reply: { topic: OWN, correlationData: CORR },
    });
  });

  it('MQTT 3.1.1: replyTo and id come out of the payload before the arguments are validated', () => {
    expect(parse({ topic: CMD('lock'), body: { reason: 'r', replyTo: OWN, id: 7 } })).toEqual({
      ok: true, cmd: 'lock', args: { reason: 'r' }, reply: { topic: OWN, id: 7 },
    });
    // CONTRACT §5: an id is a string of at most 128 characters or a safe integer, echoed as it
    // came; anything else is echoed as null (a deep one would break the reply's JSON.stringify).
    expect(parse({ body: { replyTo: OWN, id: 'a-b' } }).reply).toEqual({ topic: OWN, id: 'a-b' });
    expect(parse({ body: { replyTo: OWN, id: { a: [1, null] } } }).reply).toEqual({ topic: OWN, id: null });
    expect(parse({ body: { replyTo: OWN, id: 'x'.repeat(129) } }).reply).toEqual({ topic: OWN, id: null });
    expect(parse({ body: { replyTo: OWN, id: 2.5 } }).reply).toEqual({ topic: OWN, id: null });
    expect(parse({ body: { replyTo: OWN, id: null } }).reply).toEqual({ topic: OWN, id: null });
    expect(parse({ body: { replyTo: OWN } }).reply).toEqual({ topic: OWN });
  });

  it('a payload nested too deep or not UTF-8 is refused, and the refusal still finds its 3.1.1 reply address', () => {
    const deep = Buffer.from(`{"replyTo":"${OWN}","id":${'['.repeat(10_000)}${']'.repeat(10_000)},"reason":"x"}`);
    const r = parse({ topic: CMD('lock'), payload: deep });
    expect(r).toMatchObject({ ok: false, reason: 'request nested deeper than 64', reply: { topic: OWN, id: null } });
    const bad = Buffer.concat([Buffer.from(`{"replyTo":"${OWN}","id":3,"reason":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    expect(parse({ topic: CMD('lock'), payload: bad })).toMatchObject({ ok: false, reason: 'request is not valid UTF-8', reply: { topic: OWN, id: 3 } });
  });

  it('when both forms are present MQTT 5 wins, and replyTo/id still never reach the arguments', () => {
    const r = parse({ topic: CMD('lock'), body: { replyTo: `camnode/${NODE}/reply/other`, id: 'x', by: 'b' }, responseTopic: OWN, correlationData: CORR });
    expect(r).toEqual({ ok: true, cmd: 'lock', args: { by: 'b' }, reply: { topic: OWN, correlationData: CORR } });
    // A foreign Response Topic is not rescued by an acceptable replyTo.
    const f = parse({ body: { replyTo: OWN, id: 1 }, responseTopic: 'elsewhere/x', correlationData: CORR });
    expect(f).toMatchObject({ ok: false, reply: null });
    expect(f.ok === false && f.replyRefused).toMatch(/elsewhere\/x/);
  });

  it('a replyTo that is not a string is no reply address (and is not an argument either)', () => {
    expect(parse({ topic: CMD('ping'), body: { replyTo: 5, id: 1 } })).toEqual({ ok: true, cmd: 'ping', args: {}, reply: null });
    expect(parse({ topic: CMD('ping'), body: { replyTo: [OWN] } })).toEqual({ ok: true, cmd: 'ping', args: {}, reply: null });
  });

  it.each([
    ['another node\'s reply subtree', 'camnode/other-node/reply/x'],
    ['outside the prefix', 'elsewhere/x'],
    ['the node\'s own state', `camnode/${NODE}/state`],
    ['a wildcard', `camnode/${NODE}/reply/#`],
    ['the bare reply base', `camnode/${NODE}/reply`],
  ])('refuses a reply address on %s, in either form, and keeps no address', (_what, topic) => {
    for (const r of [parse({ body: { replyTo: topic, id: 1 } }), parse({ body: {}, responseTopic: topic, correlationData: CORR })]) {
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.reply).toBeNull();
      expect(r.replyRefused).toContain(JSON.stringify(topic));
      expect(r.replyRefused).toContain(`camnode/${NODE}/reply/`);
    }
  });

  it('refuses a foreign reply address even on a malformed or oversized request', () => {
    const bad = parse({ payload: Buffer.from('{nope'), responseTopic: 'elsewhere/x' });
    expect(bad).toMatchObject({ ok: false, reply: null, replyRefused: expect.stringContaining('elsewhere/x') });
    const big = parse({ payload: Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20), responseTopic: 'camnode/other-node/reply/x' });
    expect(big).toMatchObject({ ok: false, reply: null, replyRefused: expect.stringContaining('other-node') });
  });
});

describe('parseRequest: malformed requests keep their reply address', () => {
  const v5 = { responseTopic: OWN, correlationData: CORR };

  it('malformed JSON', () => {
    const r = parse({ payload: Buffer.from('{"reason": '), ...v5 });
    expect(r).toMatchObject({ ok: false, cmd: 'ping', reply: { topic: OWN, correlationData: CORR } });
    expect(!r.ok && r.reason).toMatch(/^malformed JSON/);
    expect(r.ok === false && r.replyRefused).toBeFalsy();
  });

  it.each([['an array', [1, 2]], ['a string', 'ping'], ['a number', 42], ['null', null], ['true', true]])('a payload that is %s', (_what, body) => {
    const r = parse({ body, ...v5 });
    expect(r).toMatchObject({ ok: false, cmd: 'ping', reason: 'a request must be a JSON object', reply: { topic: OWN, correlationData: CORR } });
  });

  it('an empty payload is a request without arguments', () => {
    expect(parse({ topic: CMD('state'), ...v5 })).toEqual({ ok: true, cmd: 'state', args: {}, reply: { topic: OWN, correlationData: CORR } });
  });

  it('a payload over the limit is refused, answered at the address of either form', () => {
    const r = parse({ payload: Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x20), ...v5 });
    expect(r).toMatchObject({ ok: false, cmd: 'ping', reply: { topic: OWN, correlationData: CORR } });
    expect(!r.ok && r.reason).toContain(String(MAX_REQUEST_BYTES + 1));
    // 3.1.1: the address is read out of the payload, the request itself is not carried out.
    const big = { reason: 'x'.repeat(MAX_REQUEST_BYTES), replyTo: OWN, id: 'big' };
    expect(parse({ topic: CMD('lock'), body: big })).toMatchObject({ ok: false, cmd: 'lock', reason: expect.stringContaining('larger than'), reply: { topic: OWN, id: 'big' } });
    expect(parse({ topic: CMD('lock'), body: { ...big, replyTo: 'elsewhere/x' } })).toMatchObject({ ok: false, reply: null, replyRefused: expect.stringContaining('elsewhere/x') });
    // MQTT 5 still wins; a payload that is no object has no address.
    expect(parse({ topic: CMD('lock'), body: big, ...v5 }).reply).toEqual({ topic: OWN, correlationData: CORR });
    expect(parse({ topic: CMD('lock'), body: [big] })).toMatchObject({ ok: false, reply: null });
    // Exactly at the limit it is still read.
    const body = `{"reason":"${'x'.repeat(MAX_REQUEST_BYTES - 13)}"}`;
    expect(body.length).toBe(MAX_REQUEST_BYTES);
    expect(parse({ topic: CMD('lock'), payload: Buffer.from(body), ...v5 }).ok).toBe(true);
  });

  it('a topic that is not a command of this node', () => {
    for (const topic of ['camnode/other-node/cmd/ping', `camnode/${NODE}/cmd`, `camnode/${NODE}/cmd/`, `camnode/${NODE}/cmd/a/b`, `camnode/${NODE}/state`, 'elsewhere/cmd/ping']) {
      const r = parse({ topic, body: {}, ...v5 });
      expect(r, topic).toMatchObject({ ok: false, cmd: '', reply: { topic: OWN } });
      expect(!r.ok && r.reason, topic).toContain('not a command topic');
    }
  });

  it('an unknown command name is passed on for the handlers to refuse', () => {
    expect(parse({ topic: CMD('explode'), body: { replyTo: OWN, id: 'a' } })).toEqual({ ok: true, cmd: 'explode', args: {}, reply: { topic: OWN, id: 'a' } });
  });

  it('the prefix and node are taken from the node\'s own Topics', () => {
    const fleet = new Topics('fleet/eu');
    const r = parse({ topic: 'fleet/eu/node-1/cmd/ping', body: { replyTo: 'fleet/eu/node-1/reply/z' } }, NODE, fleet);
    expect(r).toEqual({ ok: true, cmd: 'ping', args: {}, reply: { topic: 'fleet/eu/node-1/reply/z' } });
    // The default prefix's reply subtree is foreign to a node under another prefix.
    expect(parse({ topic: 'fleet/eu/node-1/cmd/ping', body: { replyTo: OWN } }, NODE, fleet)).toMatchObject({ ok: false, reply: null });
  });
});
