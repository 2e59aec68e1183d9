import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  edgeLevel, gpiomonArgs, gpiosetArgs, parseGpiodetect, parseGpiodVersion, parseGpiomonLine, parseGpiomonV1Line,
  parseGpiomonV2Line, strayGpioTools, type GpiodVersion, type SpawnFn,
} from '../../src/button/gpiod.js';
import { pickPiChip } from '../../src/button/sysfs.js';
import { createButton, type ButtonSetup } from '../../src/button/index.js';
import { silentLogger } from '../../src/platform/logger.js';

const V1: GpiodVersion = { major: 1, minor: 6, patch: 3 };
const V2: GpiodVersion = { major: 2, minor: 1, patch: 3 };

describe('libgpiod version detection', () => {
  it('reads v1 (bookworm) and v2 (trixie) --version output', () => {
    expect(parseGpiodVersion([
      'gpiomon (libgpiod) v1.6.3',
      'Copyright (C) 2017-2018 Bartosz Golaszewski',
      'License: LGPLv2.1',
    ].join('\n'))).toEqual(V1);
    expect(parseGpiodVersion([
      'gpiomon (libgpiod) v2.1.3',
      'Copyright (C) 2017-2023 Bartosz Golaszewski',
      'License: GPL-2.0-or-later',
    ].join('\n'))).toEqual(V2);
    expect(parseGpiodVersion('gpiomon (libgpiod) v2.2')).toEqual({ major: 2, minor: 2, patch: 0 });
  });

  it('says null for anything else', () => {
    expect(parseGpiodVersion('gpiomon: unrecognized option --version')).toBeNull();
    expect(parseGpiodVersion('')).toBeNull();
  });
});

describe('gpiomon v1 lines', () => {
  it('parses the human-readable form (printf "event: %s offset: %u timestamp: [%8ld.%09ld]")', () => {
    expect(parseGpiomonV1Line('event:  RISING EDGE offset: 17 timestamp: [     193.120379374]'))
      .toEqual({ edge: 'rising', offset: 17, atMs: 193_120.379374 });
    expect(parseGpiomonV1Line('event: FALLING EDGE offset: 4 timestamp: [   12345.000000001]'))
      .toEqual({ edge: 'falling', offset: 4, atMs: 12_345_000.000001 });
    // kernels before 5.7 stamped v1 events with CLOCK_REALTIME: wider seconds still parse
    expect(parseGpiomonV1Line('event: FALLING EDGE offset: 4 timestamp: [1700000000.500000000]')!.atMs).toBe(1_700_000_000_500);
  });

  it('nanoseconds are zero-padded: 5.000001000 is 5000.001 ms, not 5000.1', () => {
    expect(parseGpiomonV1Line('event:  RISING EDGE offset: 17 timestamp: [       5.000001000]')!.atMs).toBeCloseTo(5000.001, 6);
  });

  it('rejects other lines', () => {
    for (const line of ['', 'gpiomon: unable to request lines: Device or resource busy', '193.120379374\trising\tgpiochip0 17', 'event: RISING offset: 17 timestamp: [1.2]']) {
      expect(parseGpiomonV1Line(line)).toBeNull();
    }
  });
});

describe('gpiomon v2 lines', () => {
  it('parses the tab-separated form with every line id shape', () => {
    expect(parseGpiomonV2Line('193.120379374\trising\tgpiochip0 17')).toEqual({ edge: 'rising', atMs: 193_120.379374, offset: 17 });
    expect(parseGpiomonV2Line('193.120379374\tfalling\tgpiochip4 17 "GPIO17"')).toEqual({ edge: 'falling', atMs: 193_120.379374, offset: 17 });
    expect(parseGpiomonV2Line('8.000000002\tfalling\t"GPIO17"')).toEqual({ edge: 'falling', atMs: 8000.000002, offset: null });
    expect(parseGpiomonV2Line('8.000000002\tfalling\tGPIO17')).toEqual({ edge: 'falling', atMs: 8000.000002, offset: null });
  });

  it('parses --utc and --localtime timestamps', () => {
    expect(parseGpiomonV2Line('2026-11-28T12:00:00.250000000Z\trising\tgpiochip0 17 "GPIO17"'))
      .toEqual({ edge: 'rising', atMs: Date.UTC(2026, 10, 28, 12, 0, 0, 250), offset: 17 });
    expect(parseGpiomonV2Line('2026-11-28T12:00:00.250000000\trising\tgpiochip0 17')!.atMs)
      .toBe(new Date(2026, 10, 28, 12, 0, 0, 250).getTime());
  });

  it('rejects other lines', () => {
    for (const line of ['', 'event:  RISING EDGE offset: 17 timestamp: [     193.120379374]', 'Monitoring line 17...', '193.1\tboth\tgpiochip0 17', 'x\trising\tgpiochip0 17', '193.1\trising']) {
      expect(parseGpiomonV2Line(line)).toBeNull();
    }
  });

  it('parseGpiomonLine picks the parser by major version', () => {
    expect(parseGpiomonLine(1, 'event: FALLING EDGE offset: 17 timestamp: [       1.000000000]')).toMatchObject({ edge: 'falling' });
    expect(parseGpiomonLine(1, '1.000000000\tfalling\tgpiochip0 17')).toBeNull();
    expect(parseGpiomonLine(2, '1.000000000\tfalling\tgpiochip0 17')).toMatchObject({ edge: 'falling' });
  });
});

describe('edges to levels', () => {
  it('active low: falling is a press; active high: rising is', () => {
    expect([edgeLevel('falling', true), edgeLevel('rising', true)]).toEqual([1, 0]);
    expect([edgeLevel('rising', false), edgeLevel('falling', false)]).toEqual([1, 0]);
  });
});

describe('argument building', () => {
  it('gpiomon v1: bias, line buffering (stdout is a pipe), chip and offset positional', () => {
    expect(gpiomonArgs(V1, 'gpiochip0', 17, true)).toEqual(['--bias=pull-up', '--line-buffered', 'gpiochip0', '17']);
    expect(gpiomonArgs(V1, 'gpiochip0', 17, false)).toEqual(['--bias=pull-down', '--line-buffered', 'gpiochip0', '17']);
    // libgpiod before 1.5 had no --bias: the pull must then come from config.txt or a resistor
    expect(gpiomonArgs({ major: 1, minor: 4, patch: 1 }, 'gpiochip0', 17, true)).toEqual(['--line-buffered', 'gpiochip0', '17']);
  });

  it('gpiomon v2: --chip names the chip so the offset is taken as an offset', () => {
    expect(gpiomonArgs(V2, 'gpiochip4', 17, true)).toEqual(['--bias=pull-up', '--consumer=camnode', '--chip', 'gpiochip4', '17']);
  });

  it('gpioset: v1 must wait for a signal to hold the line; v2 holds by default', () => {
    expect(gpiosetArgs(V1, 'gpiochip0', 27, true)).toEqual(['--mode=signal', 'gpiochip0', '27=1']);
    expect(gpiosetArgs(V1, 'gpiochip0', 27, false)).toEqual(['--mode=signal', 'gpiochip0', '27=0']);
    expect(gpiosetArgs(V2, 'gpiochip0', 27, true)).toEqual(['--consumer=camnode-led', '--chip', 'gpiochip0', '27=1']);
  });
});

describe('gpiodetect and the chip choice', () => {
  it('Pi 5 (older kernels list the RP1 as gpiochip4)', () => {
    const chips = parseGpiodetect([
      'gpiochip0 [gpio-brcmstb@107d508500] (32 lines)',
      'gpiochip1 [gpio-brcmstb@107d508520] (4 lines)',
      'gpiochip2 [gpio-brcmstb@107d517c00] (17 lines)',
      'gpiochip3 [gpio-brcmstb@107d517c20] (6 lines)',
      'gpiochip4 [pinctrl-rp1] (54 lines)',
      '',
    ].join('\n'));
    expect(chips.length).toBe(5);
    expect(pickPiChip(chips, 17)).toMatchObject({ ok: true, chip: { name: 'gpiochip4' } });
  });

  it('Pi 5 on newer kernels (RP1 is gpiochip0) and Pi 4', () => {
    expect(pickPiChip(parseGpiodetect('gpiochip0 [pinctrl-rp1] (54 lines)\ngpiochip10 [gpio-brcmstb@107d508500] (32 lines)\n'), 17))
      .toMatchObject({ ok: true, chip: { name: 'gpiochip0', label: 'pinctrl-rp1', ngpio: 54 } });
    expect(pickPiChip(parseGpiodetect('gpiochip0 [pinctrl-bcm2711] (58 lines)\ngpiochip1 [raspberrypi-exp-gpio] (8 lines)\n'), 17))
      .toMatchObject({ ok: true, chip: { name: 'gpiochip0' } });
  });

  it('ignores error lines mixed into the output', () => {
    expect(parseGpiodetect("gpiodetect: unable to open chip '/dev/gpiochip9': Permission denied\ngpiochip0 [pinctrl-bcm2711] (58 lines)"))
      .toEqual([{ name: 'gpiochip0', label: 'pinctrl-bcm2711', ngpio: 58 }]);
  });
});

describe('strayGpioTools', () => {
  const procs = [
    { pid: 10, args: ['/usr/bin/gpiomon', '--bias=pull-up', '--line-buffered', 'gpiochip0', '17'] },
    { pid: 11, args: ['gpioset', '--mode=signal', 'gpiochip0', '27=1'] },
    { pid: 12, args: ['/bin/bash', '/opt/bin/gpiomon', '--chip', 'gpiochip0', '17'] },
    { pid: 13, args: ['/usr/bin/gpiomon', 'gpiochip1', '17'] },
    { pid: 14, args: ['/usr/bin/gpiomon', 'gpiochip0', '22'] },
    { pid: 15, args: ['vim', 'gpiochip0', '17'] },
    { pid: 16, args: ['/usr/bin/gpiomon', '--chip=gpiochip0', '17'] },
  ];

  it('finds gpiomon/gpioset holding our lines on our chip, not others and not our own', () => {
    expect(strayGpioTools(procs, 'gpiochip0', [17], new Set([16])).map((p) => p.pid)).toEqual([10, 12]);
    expect(strayGpioTools(procs, 'gpiochip0', [27], new Set()).map((p) => p.pid)).toEqual([11]);
    expect(strayGpioTools(procs, 'gpiochip9', [17], new Set())).toEqual([]);
  });
});

// The gpiod backend end to end against real processes: scripts standing in for the libgpiod
// tools (no GPIO on these machines) print what the real ones print, on a PATH of their own.
const GPIOMON = (version: string) => `#!/bin/bash
DIR=$(dirname "$0")
if [ "$1" = "--version" ]; then
  printf 'gpiomon (libgpiod) v${version}\\nCopyright (C) 2017-2023 Bartosz Golaszewski\\n'
  exit 0
fi
# like the real one: SIGTERM/SIGINT end it cleanly (the trap first, so no stop goes unlogged)
trap 'kill $! 2>/dev/null; echo "stopped $n" >> "$DIR/gpiomon.log"; exit 0' TERM INT
echo "$*" >> "$DIR/gpiomon.args"
n=$(( $(cat "$DIR/gpiomon.runs" 2>/dev/null || echo 0) + 1 ))
echo $n > "$DIR/gpiomon.runs"
[ -f "$DIR/run$n.out" ] && cat "$DIR/run$n.out"
if [ -f "$DIR/run$n.fail" ]; then cat "$DIR/run$n.fail" >&2; exit 1; fi
sleep 600 & wait $!
`;
const GPIOSET = `#!/bin/bash
trap 'kill $! 2>/dev/null; exit 0' TERM INT
sleep 600 & wait $!
`;
const GPIODETECT = `#!/bin/bash
cat "$(dirname "$0")/gpiodetect.out"
`;

describe('the gpiod backend with real processes', () => {
  let dir: string;
  let bin: string;
  let chip: string;
  let setup: ButtonSetup | undefined;
  const children: ReturnType<typeof spawn>[] = [];

  const install = async (version: string, gpiodetect: string): Promise<void> => {
    await writeFile(join(bin, 'gpiomon'), GPIOMON(version));
    await writeFile(join(bin, 'gpioset'), GPIOSET);
    await writeFile(join(bin, 'gpiodetect'), GPIODETECT);
    await writeFile(join(bin, 'gpiodetect.out'), gpiodetect);
    for (const tool of ['gpiomon', 'gpioset', 'gpiodetect']) await chmod(join(bin, tool), 0o755);
  };
  const read = (file: string): Promise<string> => readFile(join(bin, file), 'utf8').catch(() => '');
  const make = (over: Record<string, unknown> = {}, spawnFn?: SpawnFn): Promise<ButtonSetup> => createButton(
    { backend: 'auto', pin: 17, activeLow: true, debounce: 50, ledPin: 27, heartbeat: false, ...over },
    { log: silentLogger(), sysfsRoot: join(dir, 'sys'), devRoot: join(dir, 'dev'), path: bin, backoff: { baseMs: 20, maxMs: 100, jitter: 0 }, spawn: spawnFn },
  );

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camnode-gpiod-'));
    bin = join(dir, 'bin');
    await mkdir(bin);
    await mkdir(join(dir, 'dev'));
    await writeFile(join(dir, 'dev', 'gpiochip0'), '');
    // a chip name of its own per test, so stray-process cleanup never touches another test's tools
    chip = `gpiochip${1000 + Math.floor(Math.random() * 9000)}`;
  });

  afterEach(async () => {
    await setup?.led.stop();
    await setup?.button.stop();
    setup = undefined;
    for (const c of children.splice(0)) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('v1: auto picks gpiod, runs gpiomon with the v1 flags, and a bouncy press through the pipe is one press', async () => {
    await install('1.6.3', `${chip} [pinctrl-bcm2711] (58 lines)\ngpiochip1 [raspberrypi-exp-gpio] (8 lines)\n`);
    await writeFile(join(bin, 'run1.out'), [
      'event: FALLING EDGE offset: 17 timestamp: [     100.000000000]',
      'event:  RISING EDGE offset: 17 timestamp: [     100.001000000]',
      'event: FALLING EDGE offset: 17 timestamp: [     100.002000000]',
      'event:  RISING EDGE offset: 17 timestamp: [     100.400000000]',
      'event: FALLING EDGE offset: 22 timestamp: [     101.000000000]',
      'event: FALLING EDGE offset: 17 timestamp: [     101.000000000]',
      '',
    ].join('\n'));
    setup = await make();
    expect(setup.describe()).toMatchObject({
      backend: 'gpiod', status: 'pass',
      line: `BCM 17 = ${chip} line 17 ("pinctrl-bcm2711")`,
      led: `BCM 27 = ${chip} line 27 ("pinctrl-bcm2711")`,
      note: expect.stringContaining('libgpiod tools v1.6.3'),
    });
    const presses: number[] = [];
    setup.button.onPress((at) => presses.push(at));
    await setup.button.start(new AbortController().signal);
    await vi.waitFor(() => expect(presses.length).toBe(2), { timeout: 5_000 });
    expect((await read('gpiomon.args')).trim()).toBe(`--bias=pull-up --line-buffered ${chip} 17`);
    await setup.button.stop();
    expect(await read('gpiomon.log')).toBe('stopped 1\n');
    expect(setup.button.pressCount()).toBe(2);
  });

  it('v2: the v2 flags and the v2 output form', async () => {
    await install('2.1.3', `gpiochip0 [gpio-brcmstb@107d508500] (32 lines)\n${chip} [pinctrl-rp1] (54 lines)\n`);
    await writeFile(join(bin, 'run1.out'), `55.000000000\tfalling\t${chip} 17 "GPIO17"\n55.300000000\trising\t${chip} 17 "GPIO17"\n`);
    setup = await make({ ledPin: undefined });
    expect(setup.describe()).toMatchObject({ backend: 'gpiod', line: `BCM 17 = ${chip} line 17 ("pinctrl-rp1")`, led: null });
    let presses = 0;
    setup.button.onPress(() => presses++);
    await setup.button.start(new AbortController().signal);
    await vi.waitFor(() => expect(presses).toBe(1), { timeout: 5_000 });
    expect((await read('gpiomon.args')).trim()).toBe(`--bias=pull-up --consumer=camnode --chip ${chip} 17`);
  });

  it('gpiomon that dies is restarted with backoff; the button keeps pressing; a dead loop shows in describe()', async () => {
    await install('1.6.3', `${chip} [pinctrl-bcm2711] (58 lines)\n`);
    await writeFile(join(bin, 'run1.out'), 'event: FALLING EDGE offset: 17 timestamp: [     100.000000000]\n');
    await writeFile(join(bin, 'run1.fail'), 'gpiomon: error waiting for events: Input/output error\n');
    await writeFile(join(bin, 'run2.out'), 'event:  RISING EDGE offset: 17 timestamp: [     100.500000000]\nevent: FALLING EDGE offset: 17 timestamp: [     101.000000000]\n');
    setup = await make({ ledPin: undefined });
    let presses = 0;
    setup.button.onPress(() => presses++);
    await setup.button.start(new AbortController().signal);
    await vi.waitFor(() => expect(presses).toBe(2), { timeout: 5_000 });
    expect(await read('gpiomon.runs')).toBe('2\n');
    expect(setup.describe().status).toBe('pass'); // one blip, running again

    // every later run fails at once: after a few restarts check reports it, with gpiomon's words
    for (let n = 3; n <= 12; n++) await writeFile(join(bin, `run${n}.fail`), 'gpiomon: unable to request lines: Device or resource busy\n');
    await setup.button.stop();
    await setup.button.start(new AbortController().signal);
    await vi.waitFor(() => expect(setup!.describe()).toMatchObject({ status: 'fail', note: expect.stringContaining('Device or resource busy') }), { timeout: 5_000 });
  });

  it('the LED through gpioset: one holder at a time, the old one gone before the new one asks', async () => {
    await install('1.6.3', `${chip} [pinctrl-bcm2711] (58 lines)\n`);
    // the real spawn, watched: every gpioset's start and end, in the order they happen
    const events: string[] = [];
    const argv: string[] = [];
    const watched: SpawnFn = (command, args) => {
      const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const value = args.at(-1)!;
      if (command.endsWith('gpioset')) {
        argv.push(args.join(' '));
        events.push(`spawn ${value}`);
        child.on('close', () => events.push(`close ${value}`));
      }
      return child;
    };
    setup = await make({}, watched);
    await setup.led.start();
    setup.led.show('locking');
    await vi.waitFor(() => expect(events).toContain('spawn 27=1'), { timeout: 5_000 });
    setup.led.show('off');
    setup.led.show('locking');
    setup.led.show('off'); // coalesced: only the last wanted level matters
    await vi.waitFor(() => expect(events.at(-1)).toBe('spawn 27=0'), { timeout: 5_000 });
    expect(events.filter((e) => e.startsWith('spawn')).length).toBeLessThanOrEqual(4);
    await setup.led.stop();
    expect(events.at(-1)).toBe('close 27=0');
    // strictly alternating: the line never has two holders
    events.forEach((e, i) => expect(e.split(' ')[0]).toBe(i % 2 === 0 ? 'spawn' : 'close'));
    expect(events[0]).toBe('spawn 27=0'); // start(): off
    expect(new Set(argv)).toEqual(new Set([`--mode=signal ${chip} 27=0`, `--mode=signal ${chip} 27=1`]));
  });

  it('a gpiomon left holding our line by a killed agent is stopped before ours starts', async () => {
    await install('1.6.3', `${chip} [pinctrl-bcm2711] (58 lines)\n`);
    const strayBin = join(dir, 'stray');
    await mkdir(strayBin);
    await writeFile(join(strayBin, 'gpiomon'), GPIOMON('1.6.3'));
    await chmod(join(strayBin, 'gpiomon'), 0o755);
    const stray = spawn(join(strayBin, 'gpiomon'), ['--bias=pull-up', '--line-buffered', chip, '17'], { stdio: 'ignore' });
    children.push(stray);
    const exited = new Promise((r) => stray.once('exit', r));
    await vi.waitFor(async () => expect(await readFile(join(strayBin, 'gpiomon.runs'), 'utf8').catch(() => '')).toBe('1\n'));
    setup = await make({ ledPin: undefined });
    await setup.button.start(new AbortController().signal);
    await exited;
    expect(await readFile(join(strayBin, 'gpiomon.log'), 'utf8')).toBe('stopped 1\n');
    await vi.waitFor(async () => expect(await read('gpiomon.runs')).toBe('1\n'));
  });

  it('detection says why it could not use the tools', async () => {
    setup = await make();
    expect(setup.describe()).toMatchObject({ backend: 'none', status: 'warn', note: expect.stringContaining('gpiomon not on PATH') });

    await install('1.6.3', `${chip} [pinctrl-bcm2711] (58 lines)\n`);
    await rm(join(dir, 'dev', 'gpiochip0'));
    expect((await make()).describe().note).toContain('gpiochip* device');

    await writeFile(join(dir, 'dev', 'gpiochip0'), '');
    await writeFile(join(bin, 'gpiodetect.out'), 'gpiochip0 [INT34C6:00] (360 lines)\n');
    expect((await make({ backend: 'gpiod' })).describe()).toMatchObject({ status: 'fail', note: expect.stringContaining('no Raspberry Pi GPIO chip') });

    await writeFile(join(bin, 'gpiomon'), '#!/bin/bash\necho "gpiomon: unknown option"\n');
    expect((await make({ backend: 'gpiod' })).describe().note).toContain('cannot tell the libgpiod version');
  });
});
