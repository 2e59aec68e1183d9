import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderConfigReference } from '../../src/config/docs.js';

describe('configuration reference', () => {
  it('docs/config.md is the one rendered from the schema (run npm run docs:config)', () => {
    const committed = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
    expect(committed).toBe(renderConfigReference());
  });
  it('lists every documented default of the contract', () => {
    const doc = renderConfigReference();
    for (const row of ['`storage.maxUsePercent` | integer | `90`', '`storage.reserve` | size | `1GiB`', '`incident.preRoll` | duration | `2m`', '`recording.segmentSeconds` | integer | `10` | 1–60']) {
      expect(doc).toContain(row);
    }
  });
});
