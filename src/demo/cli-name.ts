// How the demo names the CLI in the commands it prints: `camnode` when installed, else the
// node command that runs this build (a fresh clone has no `camnode` on PATH).
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

function cliName(): string {
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const onPath = (process.env['PATH'] ?? '').split(':').some((dir) => dir && process.argv[1]?.startsWith(dir) && !process.argv[1].endsWith('main.js'));
  return onPath ? 'camnode' : `node ${relative(process.cwd(), main) || main}`;
}

export const CLI_NAME = cliName();
