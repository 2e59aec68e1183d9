// The reference `age` tool (Debian's age 1.1) for the tests: keys, and decrypting with them.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `age-keygen -o FILE`: the identity file written, its recipient returned. */
export async function ageKeygen(file: string): Promise<string> {
  return /age1[0-9a-z]+/.exec((await run('age-keygen', ['-o', file])).stderr)![0];
}

/** `age -d -i IDENTITY FILE`: its exit code, the plaintext and what it said. */
export function ageDecrypt(file: string, identity: string): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('age', ['-d', '-i', identity, file]);
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}
