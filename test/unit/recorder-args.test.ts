import { describe, expect, it } from 'vitest';
import { buildRecorderArgs, buildSampleArgs, chooseH264Encoder, parseSegmentListLine } from '../../src/recorder/args.js';

const out = '/srv/camnode/segments/entrance/rec-a1-%06d.ts';
const base = { outputPattern: out, segmentSeconds: 10, rtspTimeoutMs: 5_000, encoder: 'libx264' as const };
const after = (args: string[], flag: string): string | undefined => args[args.indexOf(flag) + 1];

describe('ffmpeg arguments', () => {
  it('rtsp: TCP, socket timeout in µs, copy, video only, flushed TS segments listed on stdout', () => {
    const args = buildRecorderArgs({ ...base, source: { kind: 'rtsp', url: 'rtsp://u:p@10.0.0.21/s' } });
    expect(after(args, '-rtsp_transport')).toBe('tcp');
    expect(after(args, '-timeout')).toBe('5000000');
    expect(args.indexOf('-timeout')).toBeLessThan(args.indexOf('-i'));
    expect(after(args, '-i')).toBe('rtsp://u:p@10.0.0.21/s');
    expect(after(args, '-c:v')).toBe('copy');
    expect(args).toContain('-an');
    expect(after(args, '-f')).toBe('segment');
    expect(after(args, '-segment_time')).toBe('10');
    expect(after(args, '-segment_format')).toBe('mpegts');
    expect(after(args, '-segment_format_options')).toBe('flush_packets=1');
    expect(after(args, '-segment_list')).toBe('pipe:1');
    expect(after(args, '-segment_list_type')).toBe('csv');
    expect(after(args, '-segment_list_flags')).toBe('+live');
    expect(args[args.length - 1]).toBe(out);
  });

  it('v4l2 on a Pi 4 encodes with the hardware encoder, keyframes at segment boundaries', () => {
    const encoder = chooseH264Encoder('Raspberry Pi 4 Model B Rev 1.4');
    const args = buildRecorderArgs({ ...base, encoder, segmentSeconds: 6, source: { kind: 'v4l2', device: '/dev/video0' } });
    expect(args.slice(args.indexOf('-f'), args.indexOf('-f') + 4)).toEqual(['-f', 'v4l2', '-i', '/dev/video0']);
    expect(after(args, '-c:v')).toBe('h264_v4l2m2m');
    expect(after(args, '-force_key_frames')).toBe('expr:gte(t,n_forced*6)');
    expect(args).not.toContain('copy');
  });

  it('v4l2 on a Pi 5 or a PC encodes with libx264 (no hardware H.264 encoder)', () => {
    for (const model of ['Raspberry Pi 5 Model B Rev 1.0', null, 'Some Board']) {
      const args = buildRecorderArgs({ ...base, encoder: chooseH264Encoder(model), source: { kind: 'v4l2', device: '/dev/video2' } });
      expect(after(args, '-c:v')).toBe('libx264');
      expect(after(args, '-preset')).toBe('ultrafast');
    }
  });

  it('chooses encoders by model', () => {
    expect(chooseH264Encoder('Raspberry Pi 3 Model B Plus Rev 1.3')).toBe('h264_v4l2m2m');
    expect(chooseH264Encoder('Raspberry Pi Zero 2 W Rev 1.0')).toBe('h264_v4l2m2m');
    expect(chooseH264Encoder('Raspberry Pi Compute Module 4 Rev 1.0')).toBe('h264_v4l2m2m');
    expect(chooseH264Encoder('Raspberry Pi Compute Module 5 Rev 1.0')).toBe('libx264');
    expect(chooseH264Encoder('Raspberry Pi 5 Model B Rev 1.0')).toBe('libx264');
  });

  it('file sources loop in real time without re-encoding', () => {
    const args = buildRecorderArgs({ ...base, source: { kind: 'file', path: '/srv/loop.mp4' } });
    expect(args.slice(args.indexOf('-re'), args.indexOf('-re') + 5)).toEqual(['-re', '-stream_loop', '-1', '-i', '/srv/loop.mp4']);
    expect(after(args, '-c:v')).toBe('copy');
  });

  it('testsrc is synthetic, encoded, with a burnt-in UTC clock and frame number', () => {
    const args = buildRecorderArgs({ ...base, source: { kind: 'testsrc' }, testsrc: { width: 320, height: 240, fps: 5 } });
    expect(after(args, '-f')).toBe('lavfi');
    expect(after(args, '-i')).toMatch(/^testsrc2=size=320x240:rate=5,drawtext=text='%\{gmtime\} UTC {2}#%\{n\}':/);
    expect(after(args, '-c:v')).toBe('libx264');
    expect(after(args, '-g')).toBe('50');
  });

  it('the check sample reuses the input and writes TS to stdout for a few seconds', () => {
    const args = buildSampleArgs({ ...base, source: { kind: 'rtsp', url: 'rtsp://h/s' } }, 3);
    expect(args.slice(-6)).toEqual(['-an', '-t', '3', '-f', 'mpegts', 'pipe:1']);
    expect(args).not.toContain('segment');
  });
});

describe('segment list lines', () => {
  it('parses csv entries', () => {
    expect(parseSegmentListLine('rec-a1-000003.ts,3.000000,4.000000')).toEqual({ file: 'rec-a1-000003.ts', startSeconds: 3, endSeconds: 4 });
    expect(parseSegmentListLine('"rec,a.ts",1.5,2.25')).toEqual({ file: 'rec,a.ts', startSeconds: 1.5, endSeconds: 2.25 });
  });
  it('refuses anything else', () => {
    expect(parseSegmentListLine('')).toBeNull();
    expect(parseSegmentListLine('garbage')).toBeNull();
    expect(parseSegmentListLine('a.ts,5.0,4.0')).toBeNull();
  });
});
