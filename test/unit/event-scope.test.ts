// The event bus's scopes (a set of modules rebuilt by a pushed config): their listeners go
// together, and what was emitted while they were being rebuilt reaches the new ones once.
import { describe, expect, it } from 'vitest';
import { EventBus } from '../../src/events.js';
import { silentLogger } from '../../src/platform/logger.js';

const up = (camera: string) => ({ camera, reason: 'started' });

describe('EventBus scopes', () => {
  it('a scope\'s emits reach every listener; closing it removes its own listeners only', () => {
    const bus = new EventBus(silentLogger());
    const seen: string[] = [];
    bus.on('camera.up', ({ camera }) => seen.push(`root:${camera}`));
    const scope = bus.scope();
    scope.on('camera.up', ({ camera }) => seen.push(`scope:${camera}`));
    scope.emit('camera.up', up('a'));
    scope.close();
    bus.emit('camera.up', up('b'));
    expect(seen).toEqual(['root:a', 'scope:a', 'root:b']);
  });

  it('held events reach the new scope\'s listeners once, in order, and the live ones at once', () => {
    const bus = new EventBus(silentLogger());
    const live: string[] = [];
    bus.on('camera.up', ({ camera }) => live.push(camera));
    const old = bus.scope();
    const oldSeen: string[] = [];
    old.on('camera.up', ({ camera }) => oldSeen.push(camera));
    bus.hold();
    bus.emit('camera.up', up('before-close'));
    old.close();
    bus.emit('camera.up', up('between'));
    const next = bus.scope();
    const seen: string[] = [];
    next.on('camera.up', ({ camera }) => seen.push(camera));
    bus.emit('camera.up', up('after-listening'));
    next.on('camera.down', ({ camera }) => seen.push(`down:${camera}`));
    bus.release(next);
    bus.emit('camera.up', up('live'));
    // The old scope heard what came before it closed; the new one what it missed, once each.
    expect(oldSeen).toEqual(['before-close']);
    expect(seen).toEqual(['after-listening', 'before-close', 'between', 'live']);
    expect(live).toEqual(['before-close', 'between', 'after-listening', 'live']);
  });

  it('a failing listener does not stop the replay', () => {
    const bus = new EventBus(silentLogger());
    bus.hold();
    bus.emit('camera.up', up('a'));
    bus.emit('camera.up', up('b'));
    const scope = bus.scope();
    const seen: string[] = [];
    scope.on('camera.up', ({ camera }) => { if (camera === 'a') throw new Error('boom'); seen.push(camera); });
    bus.release(scope);
    expect(seen).toEqual(['b']);
  });
});
