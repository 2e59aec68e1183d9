// JSON with duplicate member names is ambiguous: JSON.parse keeps the last, while a signature
// over the canonical form (RFC 8785) assumes there are none — so a manifest carrying two
// `incident` members could verify while showing either. Signed documents are parsed refusing
// them. Pure; a scanner over the text, so nothing is parsed twice in a way that could differ.

/** The first member name that an object of `text` repeats (with its path), or null. */
export function findDuplicateKey(text: string): string | null {
  type Frame = { keys: Set<string> | null; expectKey: boolean; path: string };
  const stack: Frame[] = [];
  let i = 0;
  let lastKey = '';
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          return null; // not JSON: JSON.parse will say so
        }
        if (top.keys.has(key)) return `${top.path}${top.path ? '.' : ''}${key}`;
        top.keys.add(key);
        top.expectKey = false;
        lastKey = key;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      const parent = stack[stack.length - 1];
      const path = parent ? (parent.keys ? `${parent.path}${parent.path ? '.' : ''}${lastKey}` : `${parent.path}[]`) : '';
      stack.push({ keys: c === '{' ? new Set() : null, expectKey: c === '{', path });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
    i++;
  }
  return null;
}

/** JSON.parse that refuses duplicate member names (throws naming the first). */
export function parseJsonStrict(text: string): unknown {
  const value = JSON.parse(text) as unknown;
  const dup = findDuplicateKey(text);
  if (dup !== null) throw new SyntaxError(`duplicate member "${dup}"`);
  return value;
}
