#!/usr/bin/env node
// `npm run release` (CONTRACT §9 Update), for central ops:
//   npm run release -- keygen --out district-release.key
//   npm run release -- publish build/camnode-1.2.0-arm64.tgz --key district-release.key --config upstream.yaml
// `--config` is any YAML file with the district's `upstream` section (a node's config will do).
// Exit: 0 done; 1 the store failed; 2 bad usage or input.
import { Command, CommanderError } from 'commander';
import { ConfigError, formatIssues, parseYamlDocument } from '../config/load.js';
import { upstreamSchema, type Config } from '../config/schema.js';
import { createStore, UpstreamConfigError } from '../sync/target.js';
import { generateReleaseKey, publishRelease, readReleaseKey, ReleaseError } from './release.js';
import { readFile } from 'node:fs/promises';

async function upstreamFrom(path: string): Promise<{ upstream: Config['upstream']; releaseKey: string | undefined }> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ReleaseError(`--config: ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const doc = parseYamlDocument(text, path) as { upstream?: unknown; fleet?: { releaseKey?: unknown } } | null;
  if (typeof doc !== 'object' || doc === null || doc.upstream === undefined) throw new ReleaseError(`--config: ${path} has no upstream section (the district's bucket or share)`);
  const parsed = upstreamSchema.safeParse(doc.upstream);
  // Named from the config's root, as `camnode check` names them (with its "did you mean").
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues.map((i) => ({ ...i, path: ['upstream', ...i.path] }))));
  if (parsed.data.type === 'none') throw new ReleaseError('upstream.type: none: nowhere to publish (s3 or dir)');
  const releaseKey = doc.fleet?.releaseKey;
  return { upstream: parsed.data, releaseKey: typeof releaseKey === 'string' ? releaseKey : undefined };
}

const program = new Command().name('npm run release --').description('sign camnode releases with the district\'s key and publish them where nodes fetch them').exitOverride();
program.command('keygen').description('make the district\'s Ed25519 release key (once); prints the public key for fleet.releaseKey')
  .requiredOption('--out <file>', 'where to write the private key (0600; keep it offline, like the fleet CA)')
  .action(async (o: { out: string }) => {
    const { publicKey } = await generateReleaseKey(o.out);
    process.stdout.write(`release key written to ${o.out} (0600: keep it offline)\nfleet.releaseKey: ${publicKey}\n`);
  });
program.command('publish').description('sign a bundle from npm run bundle and upload it with its .sig to <upstream.prefix>/releases/')
  .argument('<bundle>', 'camnode-<version>-<arch>.tgz')
  .requiredOption('--key <file>', 'the district\'s release key (release keygen)')
  .requiredOption('--config <file>', 'a YAML file with the upstream section (a node\'s config will do; its fleet.releaseKey, if any, must match --key)')
  .option('--no-verify', 'sign a bundle that has no .sha256 beside it')
  .option('--force', 'replace a different bundle already published under this name')
  .action(async (bundle: string, o: { key: string; config: string; verify: boolean; force?: boolean }) => {
    const key = await readReleaseKey(o.key);
    const { upstream, releaseKey } = await upstreamFrom(o.config);
    const target = await createStore({ upstream, node: { id: 'releases', stateDir: '' } });
    const r = await publishRelease({
      bundle, key, store: target!.store, prefix: upstream.prefix, noVerify: !o.verify, force: o.force === true, releaseKey,
      progress: (l) => process.stdout.write(`${l}\n`),
    });
    process.stdout.write([
      `published camnode ${r.version} for ${r.arch}: ${r.keys.bundle} and ${r.keys.signature} at ${r.where}`,
      `sha256 ${r.sha256}, ${r.bytes} bytes; signed by the release key ${r.publicKey} (nodes need fleet.releaseKey: ${r.publicKey})`,
      '',
    ].join('\n'));
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  if (err instanceof ConfigError) {
    for (const line of err.problems) process.stderr.write(`${line}\n`);
    process.exit(2);
  }
  const code = err instanceof ReleaseError ? err.exitCode : err instanceof UpstreamConfigError ? 2 : 1;
  process.stderr.write(`release: ${(err as Error).message}\n`);
  process.exit(code);
}
