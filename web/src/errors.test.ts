import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiError, NetworkError } from './api';
import { codeSentences, genericSentence, humanError, MAX_NAME_BYTES, unreachableSentence } from './errors';

const repo = join(__dirname, '..', '..');

/**
 * The error codes the API can return, read from the Go source: the typed
 * Code constants of api/ and node/ (`CodeX Code = "x"`, `Code("x")`).
 */
function goCodes(): string[] {
  const codes = new Set<string>();
  for (const dir of ['api', 'node']) {
    for (const f of readdirSync(join(repo, dir))) {
      if (!f.endsWith('.go') || f.endsWith('_test.go')) continue;
      const src = readFileSync(join(repo, dir, f), 'utf8');
      for (const m of src.matchAll(/\bCode\w*\s+(?:\w+\.)?Code\s*=\s*"([a-z0-9_]+)"/g)) codes.add(m[1]);
      for (const m of src.matchAll(/\bCode\(\s*"([a-z0-9_]+)"\s*\)/g)) codes.add(m[1]);
    }
  }
  return [...codes].sort();
}

describe('error sentences', () => {
  it('has a plain-words sentence for every code the API can return', () => {
    const codes = goCodes();
    expect(codes).toContain('bad_request'); // the scan found the list
    expect(codes.length).toBeGreaterThanOrEqual(10);
    for (const code of codes) {
      expect(codeSentences[code], `no sentence for error code ${code}`).toBeTruthy();
      const said = humanError(new ApiError(400, code, `node: internal detail of ${code}`));
      expect(said).not.toMatch(/node:|internal detail/);
      expect(said).toMatch(/^[A-Z].*\.$/);
    }
  });

  it('never shows the raw message of an unknown code, or of an error that is not the API’s', () => {
    expect(humanError(new ApiError(418, 'teapot_melted', 'store: badger: value log corrupted'))).toBe(genericSentence);
    expect(humanError(new Error('Cannot read properties of undefined (reading "x")'))).toBe(genericSentence);
    expect(humanError('boom')).toBe(genericSentence);
  });

  it('says the node is unreachable when a request got no answer', () => {
    expect(humanError(new NetworkError())).toBe(unreachableSentence);
    expect(humanError(new TypeError('Failed to fetch'))).toBe(unreachableSentence);
  });

  it('says what an invalid invite, an unknown user ID and a too-long name are', () => {
    expect(humanError(new ApiError(400, 'bad_request', 'node: invalid argument: card'), 'invite')).toBe(
      'This isn’t a Parley invite link — ask your friend to copy it again.',
    );
    expect(humanError(new ApiError(404, 'not_found', 'node: not found'), 'addByID')).toMatch(/^Nobody with that user ID/);
    expect(humanError(new ApiError(400, 'bad_request', 'to is not a user ID'), 'addByID')).toMatch(/isn’t a Parley user ID/);
    expect(humanError(new ApiError(400, 'name_too_long', 'x'))).toContain(`${MAX_NAME_BYTES} bytes`);
    expect(humanError(new ApiError(400, 'bad_request', 'x'), 'register')).toContain(`${MAX_NAME_BYTES} bytes`);
  });

  it('tells the wait of a throttled login', () => {
    expect(humanError(new ApiError(429, 'throttled', 'x', 65), 'login')).toBe('Too many wrong passphrases. Try again in 1 min 5 s.');
  });
});
