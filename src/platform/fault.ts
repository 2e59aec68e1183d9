// Fault injection for crash tests: only the CAMNODE_FAULT environment variable arms it, naming
// one point; reaching that point SIGKILLs the whole process group (agent and ffmpeg), as a
// power cut or systemd's kill would. Unset, a fault point costs one string comparison.

export function faultPoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
  if (env['CAMNODE_FAULT'] !== name) return;
  process.stderr.write(`fault injected at ${name}\n`);
  try {
    process.kill(0, 'SIGKILL');
  } finally {
    process.kill(process.pid, 'SIGKILL');
  }
}
