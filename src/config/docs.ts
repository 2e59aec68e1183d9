// The configuration reference (docs/config.md) rendered from the one schema, so the types,
// defaults, ranges and descriptions users read are the ones the agent enforces.
import { z } from 'zod';
import { configSchema } from './schema.js';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  required?: string[];
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  pattern?: string;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  const?: unknown;
  unit?: string;
}

function typeOf(s: JsonSchema): string {
  if (s.unit) return s.unit;
  if (s.enum) return s.enum.map((e) => JSON.stringify(e)).join(' \\| ');
  if (s.anyOf) return s.anyOf.map((a) => (a.const !== undefined ? JSON.stringify(a.const) : typeOf(a))).join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  return Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
}

function rules(s: JsonSchema, required: boolean): string {
  const out: string[] = [];
  if (required) out.push('required');
  if (s.minimum !== undefined || s.maximum !== undefined) out.push(`${s.minimum ?? ''}–${s.maximum ?? ''}`);
  if (s.pattern) out.push(`\`${s.pattern.replace(/^\^|\$$/g, '')}\``);
  if (s.minItems) out.push(`at least ${s.minItems}`);
  return out.join(', ');
}

export function renderConfigReference(): string {
  const root = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const rows: string[] = [];
  const walk = (s: JsonSchema, path: string, required: boolean): void => {
    const defaultText = s.default === undefined || (typeof s.default === 'object' && s.default !== null) ? '' : `\`${String(s.default)}\``;
    const isObject = s.type === 'object' && s.properties;
    const cell = (text: string): string => text.replace(/(?<!\\)\|/g, '\\|');
    if (path) rows.push(`| \`${path}\` | ${isObject ? 'section' : typeOf(s)} | ${defaultText} | ${cell(rules(s, required))} | ${cell(s.description ?? '')} |`);
    if (isObject) for (const [k, v] of Object.entries(s.properties!)) walk(v, path ? `${path}.${k}` : k, s.required?.includes(k) ?? false);
    if (s.type === 'array' && s.items?.properties) {
      for (const [k, v] of Object.entries(s.items.properties)) walk(v, `${path}[].${k}`, s.items.required?.includes(k) ?? false);
    }
  };
  walk(root, '', false);
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'The config is YAML (JSON is accepted). Camnode reads `--config PATH`, else `$CAMNODE_CONFIG`, else',
    '`/etc/camnode/config.yaml`. Unknown keys and duplicate camera ids are errors; every problem is',
    'reported as `<path>: <message>` and the agent exits with status 2.',
    '',
    'Units: a **size** is `512MB` (10⁶), `2GiB` (2³⁰) or plain bytes; a **duration** is `50ms`, `90s`, `5m`,',
    '`2h`, `30d` or plain seconds; a **rate** is `500kbit`, `4Mbit` (bits per second) or a plain number.',
    '',
    '| key | type | default | rules | meaning |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
