// What applying a pushed config touches (CONTRACT §9: "applied module by module"): unchanged
// cameras keep their recorder, a changed one restarts, the services are rebuilt only for their
// own settings or a changed set of cameras, the ring and every recorder only for the disk, the
// segment length or the calls.
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { planApply } from '../../src/deploy/apply-plan.js';

const base = {
  node: { id: 'n1', stateDir: '/var/lib/camnode' },
  storage: { path: '/srv/camnode', maxAge: '30d' },
  cameras: [
    { id: 'entrance', source: 'rtsp://u:p@10.0.0.1/s', zone: 'entrance' },
    { id: 'desk', source: 'rtsp://u:p@10.0.0.2/s', zone: 'service-desk' },
    { id: 'back', source: 'rtsp://10.0.0.3/s', zone: 'delivery', enabled: false },
  ],
};

type Doc = typeof base & Record<string, unknown>;
const config = (edit: (d: Doc) => void = () => {}): Config => {
  const d = structuredClone(base) as Doc;
  edit(d);
  return validateConfig(d);
};

describe('planApply', () => {
  it('the same config: nothing to do', () => {
    expect(planApply(config(), config())).toEqual({
      media: false, services: false, ringLimits: false, changed: [],
      cameras: { keep: ['entrance', 'desk'], restart: [], start: [], stop: [] },
    });
  });

  it('a camera\'s password: that camera restarts, nothing else', () => {
    const p = planApply(config(), config((d) => { d.cameras[1]!.source = 'rtsp://u:new@10.0.0.2/s'; }));
    expect(p).toMatchObject({ media: false, services: false, ringLimits: false, changed: ['cameras'] });
    expect(p.cameras).toEqual({ keep: ['entrance'], restart: ['desk'], start: [], stop: [] });
  });

  it('a camera added, one enabled, one removed: the set changed, so the services are rebuilt too; the others keep recording', () => {
    const p = planApply(config(), config((d) => {
      d.cameras.splice(0, 1);
      d.cameras[1]!.enabled = true;
      d.cameras.push({ id: 'lobby', source: 'rtsp://10.0.0.4/s', zone: 'seating' });
    }));
    expect(p).toMatchObject({ media: false, services: true });
    expect(p.cameras).toEqual({ keep: ['desk'], restart: [], start: ['back', 'lobby'], stop: ['entrance'] });
  });

  it('a camera disabled: stopped', () => {
    const p = planApply(config(), config((d) => { (d.cameras[0] as { enabled?: boolean }).enabled = false; }));
    expect(p.cameras).toEqual({ keep: ['desk'], restart: [], start: [], stop: ['entrance'] });
    expect(p.services).toBe(true);
  });

  it('the ring\'s limits: changed in place, every camera keeps recording', () => {
    const p = planApply(config(), config((d) => { d.storage.maxAge = '7d'; (d.storage as Record<string, unknown>)['maxUsePercent'] = 80; }));
    expect(p).toMatchObject({ media: false, services: false, ringLimits: true, changed: ['storage'] });
    expect(p.cameras.keep).toEqual(['entrance', 'desk']);
  });

  it('the disk, the segment length or the calls: the ring and every recorder are rebuilt, and the services with them', () => {
    for (const edit of [
      (d: Doc) => { d.storage.path = '/srv/other'; },
      (d: Doc) => { d['recording'] = { segmentSeconds: 4 }; },
      (d: Doc) => { d['calls'] = { watch: '/var/spool/calls' }; },
    ]) {
      const p = planApply(config(), config(edit));
      expect(p).toMatchObject({ media: true, services: true, ringLimits: false });
      expect(p.cameras).toEqual({ keep: [], restart: ['entrance', 'desk'], start: [], stop: [] });
    }
  });

  it('any other setting: the services are rebuilt, the recorders go on', () => {
    for (const [key, value] of [['incident', { preRoll: '5m' }], ['upstream', { type: 'dir', path: '/srv/up' }], ['policy', { signage: { posted: true, checkedAt: '2026-11-02' } }]] as const) {
      const p = planApply(config(), config((d) => { d[key] = value; }));
      expect(p, key).toMatchObject({ media: false, services: true, ringLimits: false, changed: [key] });
      expect(p.cameras.keep).toEqual(['entrance', 'desk']);
    }
  });
});
