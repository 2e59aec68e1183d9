// Finding, reading and validating the config. Every command uses the same lookup order
// (CONTRACT §1): --config PATH, else $CAMNODE_CONFIG, else /etc/camnode/config.yaml.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/camnode/config.yaml';

/** A config that cannot be used: one `<path>: <message>` per problem (exit 2). */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env['CAMNODE_CONFIG'] ?? DEFAULT_CONFIG_PATH;
}

/** `cameras[1].source` from zod's `['cameras', 1, 'source']`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(config)';
}

function closest(key: string, candidates: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, i) => i);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length]!;
  };
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = distance(key, c);
    if (d < bestDistance) { best = c; bestDistance = d; }
  }
  return best;
}

/** Known keys of the (strict) object schema at `path`, for "did you mean" hints. */
function knownKeys(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = configSchema;
  for (const part of path) {
    // Walk through wrappers (optional, default, pipe) down to objects and arrays.
    const def = (schema as unknown as { def: Record<string, unknown> }).def;
    const inner = (def['innerType'] ?? def['in']) as z.ZodType | undefined;
    if (inner && !('shape' in def) && typeof part !== 'number') { schema = inner; }
    const d2 = (schema as unknown as { def: Record<string, unknown> }).def;
    if (typeof part === 'number' && d2['element']) schema = d2['element'] as z.ZodType;
    else if (d2['shape']) schema = (d2['shape'] as Record<string, z.ZodType>)[String(part)] ?? schema;
    else return [];
  }
  for (let i = 0; i < 4; i++) {
    const def = (schema as unknown as { def: Record<string, unknown> }).def;
    if (def['shape']) return Object.keys(def['shape'] as object);
    const inner = (def['innerType'] ?? def['in']) as z.ZodType | undefined;
    if (!inner) return [];
    schema = inner;
  }
  return [];
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(issue.path);
      for (const key of issue.keys) {
        const hint = closest(key, known);
        lines.push(`${formatPath([...issue.path, key])}: unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`);
      }
    } else if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
      // zod leaves `input` out of its issues, so a wrong type and a missing key differ only here.
      lines.push(`${formatPath(issue.path)}: required`);
    } else {
      lines.push(`${formatPath(issue.path)}: ${issue.message}`);
    }
  }
  return lines;
}

/** Validates an already-parsed document. Throws ConfigError. */
export function validateConfig(doc: unknown): Config {
  const result = configSchema.safeParse(doc);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues));
  return result.data;
}

/** Parses YAML (or JSON, a subset) text; duplicate keys are errors. Throws ConfigError. */
export function parseConfigText(text: string, source = 'config'): Config {
  return validateConfig(parseYamlDocument(text, source));
}

/** The config and the document as written (plain values), e.g. for `config get`. Throws ConfigError. */
export function parseConfigWithDocument(text: string, source = 'config'): { config: Config; document: unknown } {
  const document = parseYamlDocument(text, source);
  return { config: validateConfig(document), document };
}

/** YAML text to plain values; syntax errors and duplicate keys as `<source>:<line>:<col>: …`. */
export function parseYamlDocument(text: string, source = 'config'): unknown {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((e) => {
      const at = e.linePos?.[0];
      // yaml's pretty message repeats the position and ends in ':' before a code frame.
      const message = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return `${source}${at ? `:${at.line}:${at.col}` : ''}: ${message}`;
    }));
  }
  const doc: unknown = document.toJS();
  if (doc === null || doc === undefined) throw new ConfigError([`${source}: the file is empty`]);
  return doc;
}

export function loadConfig(path: string): Config {
  return loadConfigWithDocument(path).config;
}

export function loadConfigWithDocument(path: string): { config: Config; document: unknown } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError([`${path}: ${why} (give --config PATH or set CAMNODE_CONFIG)`]);
  }
  return parseConfigWithDocument(text, path);
}
