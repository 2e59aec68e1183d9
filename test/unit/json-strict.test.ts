// Duplicate member names refused in signed documents (a manifest with two `incident` members
// would verify while showing either). Pure.
import { describe, expect, it } from 'vitest';
import { findDuplicateKey, parseJsonStrict } from '../../src/platform/json.js';

describe('findDuplicateKey', () => {
  it('finds a repeated member at any depth, and names it by path', () => {
    expect(findDuplicateKey('{"a":1,"b":2,"a":3}')).toBe('a');
    expect(findDuplicateKey('{"files":[{"name":"x","name":"y"}]}')).toBe('files[].name');
    expect(findDuplicateKey('{"incident":{"id":"i","triggers":[],"id":"j"}}')).toBe('incident.id');
    // Escapes that spell the same name are the same name.
    expect(findDuplicateKey('{"id":1,"\\u0069d":2}')).toBe('id');
  });

  it('does not confuse values, strings holding quotes or braces, or sibling objects', () => {
    expect(findDuplicateKey('{"a":"a","b":"{\\"a\\":1}","c":[{"a":1},{"a":2}],"d":{"a":1}}')).toBeNull();
    expect(findDuplicateKey('[{"k":1},{"k":2}]')).toBeNull();
    expect(findDuplicateKey('"just a string"')).toBeNull();
  });

  it('parseJsonStrict throws naming it; otherwise it is JSON.parse', () => {
    expect(() => parseJsonStrict('{"incident":{},"incident":{}}')).toThrow('duplicate member "incident"');
    expect(parseJsonStrict('{"a":[1,{"b":null}]}')).toEqual({ a: [1, { b: null }] });
    expect(() => parseJsonStrict('{"a":')).toThrow(SyntaxError);
  });
});
