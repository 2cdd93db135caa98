// Waiting on conditions in the page, never on the clock: each helper
// resolves as soon as its condition holds (Playwright's auto-waiting
// locators) and fails after the timeout.

import assert from 'node:assert/strict';

export const WAIT = 30_000;

/** Waits until the (first) element of loc is visible. */
export function visible(loc, timeout = WAIT) {
  return loc.first().waitFor({ state: 'visible', timeout });
}

/** Waits until an element of loc shows text matching re (a RegExp or a substring). */
export function hasText(loc, re, timeout = WAIT) {
  return loc.filter({ hasText: re }).first().waitFor({ state: 'visible', timeout });
}

/** Waits until no element matches loc. */
export function gone(loc, timeout = WAIT) {
  return loc.first().waitFor({ state: 'detached', timeout });
}

/** Waits until loc matches exactly n elements, the last of them attached. */
export async function count(loc, n, timeout = WAIT) {
  if (n > 0) await loc.nth(n - 1).waitFor({ state: 'attached', timeout });
  assert.equal(await loc.count(), n);
}
