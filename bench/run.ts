// `npm run bench`: every benchmark in turn, each in its own process (heap and CPU figures
// must not carry over from one to the next). Exit 0 only if all ran and met their targets.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// A name with arguments runs that benchmark again in another variant.
const BENCHMARKS = ['agent-overhead', 'scan', 'pruning', 'lock-latency', 'seal', 'seal --encrypt', 'ctl-nodes', 'ping', 'telemetry-cpu', 'sync-link', 'still', 'footage', 'hold-latency', 'audit-upstream', 'report', 'calls-scan', 'exporter', 'config-push', 'sd-wear', 'sd-wear --busy'];

function run(name: string): Promise<number | null> {
  const [file, ...args] = name.split(' ');
  const script = fileURLToPath(new URL(`./${file}.js`, import.meta.url));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' });
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code));
  });
}

const outcomes: [string, number | null][] = [];
for (const name of BENCHMARKS) {
  console.log(`\n== ${name}`);
  outcomes.push([name, await run(name)]);
}
console.log('\n== summary');
// Each benchmark exits 0 (met its target), 1 (missed it) or 2 (could not run).
for (const [name, code] of outcomes) console.log(`  ${name}: ${code === 0 ? 'PASS' : code === 1 ? 'FAIL (target missed)' : `ERROR (exit ${code})`}`);
process.exitCode = outcomes.every(([, code]) => code === 0) ? 0 : 1;
