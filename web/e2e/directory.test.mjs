// End to end, the directory: a `parley relay` and two `parley run` nodes
// bootstrapped from it, all on 127.0.0.1, one headless Chromium context
// each. Eve finds Dora by name, checks her fingerprint and adds her by her
// user ID alone (no invite link); Dora accepts and they chat.
// Run by `make e2e` (part of `make test`) with the other files of e2e/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyNode, ParleyRelay, cleanup, launchBrowser } from './nodes.mjs';
import { chatItem, diagnose, message, nav, newPage, register, send } from './ui.mjs';
import { WAIT, hasText, visible } from './wait.mjs';

let browser;
const failed = { any: false };

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cleanup({ keepDirs: failed.any && !!process.env.PARLEY_E2E_KEEP, showLogs: failed.any });
});

/** The value next to a term of the Settings page's "You" list (User ID, Fingerprint), without its buttons. */
async function fact(page, term) {
  const dd = page.locator('dl.facts dt', { hasText: new RegExp(`^${term}$`) }).locator('xpath=following-sibling::dd[1]');
  const text = await dd.evaluate((el) =>
    [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim(),
  );
  assert.ok(text, `${term} is empty`);
  return text;
}

/** The status line of name's row in "Your friends". */
function friendStatus(page, name) {
  return page.getByRole('region', { name: 'Your friends' }).getByRole('listitem', { name }).getByTestId('friend-status');
}

/**
 * Searches the directory for name on the Friends page until a result named
 * want comes back: the other node publishes its record and name claim
 * asynchronously after registering. Each try waits for the search's own
 * response, so the retries go at the pace of real DHT queries; resolves
 * with the number of tries.
 */
async function searchUntilFound(page, name, want, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  await page.getByLabel('Search by name').fill(name);
  const button = page.getByRole('button', { name: 'Search', exact: true });
  const isSearch = (r) => new URL(r.url()).pathname === '/api/v1/directory/search';
  const tries = [];
  const fail = (why) =>
    new Error(`no ${want} in the search for "${name}" within ${timeout} ms (${why}) after ${tries.length} tries; the last: ${tries.slice(-3).join(', ') || 'none'}`);
  while (Date.now() < deadline) {
    // The click waits until the button, disabled while a search runs, is enabled again.
    const left = Math.max(1000, deadline - Date.now());
    const [r] = await Promise.all([
      page.waitForResponse(isSearch, { timeout: left }),
      button.click({ timeout: left }),
    ]).catch((e) => {
      throw fail(e.message.split('\n')[0]);
    });
    const body = await r.json().catch(() => ({}));
    const results = body.results ?? [];
    tries.push(r.ok() ? `${results.length} result(s)` : `HTTP ${r.status()} ${body.error ?? ''}`.trim());
    if (r.ok() && results.some((u) => u.name === want)) return tries.length;
  }
  throw fail('deadline');
}

test('Eve finds Dora by name in the directory, adds her by user ID and they chat', async (t) => {
  let D, E;
  try {
    const relay = await ParleyRelay.create().start();
    const dora = await ParleyNode.create('dora', { bootstrap: [relay.addr] });
    const eve = await ParleyNode.create('eve', { bootstrap: [relay.addr] });
    await Promise.all([dora.start(), eve.start()]);
    D = await newPage(browser, dora);
    E = await newPage(browser, eve);
  } catch (e) {
    failed.any = true; // the logs of whatever started are printed after
    throw e;
  }
  let doraID, doraFingerprint;

  // Steps run in order; after a failure the rest are skipped, as they build on it.
  const step = async (name, fn) => {
    await t.test(name, { skip: failed.any && 'an earlier step failed' }, async () => {
      try {
        await fn();
      } catch (e) {
        failed.any = true;
        await diagnose({ Dora: D, Eve: E });
        throw e;
      }
    });
  };

  await step('both register; Dora reads her user ID and fingerprint in Settings', async () => {
    await Promise.all([register(D, 'Dora', 'dora passphrase 1'), register(E, 'Eve', 'eve passphrase 22')]);
    await D.getByRole('button', { name: 'Continue to Parley' }).click();
    await E.getByRole('button', { name: 'Continue to Parley' }).click();
    await nav(D, 'Settings').click();
    doraID = await fact(D, 'User ID');
    doraFingerprint = await fact(D, 'Fingerprint');
  });

  await step('Eve searches for "dora" and finds her, with her fingerprint', async () => {
    await nav(E, 'Friends').click();
    const tries = await searchUntilFound(E, 'dora', 'Dora');
    t.diagnostic(`Dora found after ${tries} search(es)`);
    const result = E.getByRole('region', { name: 'Add a friend' }).getByRole('listitem', { name: 'Dora' });
    await visible(result);
    await hasText(result, `Fingerprint ${doraFingerprint}`);
    assert.equal(await result.locator('[title^="User ID"]').getAttribute('title'), `User ID ${doraID}`);
    await visible(result.getByRole('button', { name: 'Add Dora', exact: true }));
  });

  await step('Eve adds Dora by her user ID alone', async () => {
    await E.getByLabel('User ID', { exact: true }).fill(doraID);
    await E.getByRole('button', { name: 'Add by user ID', exact: true }).click();
    await visible(E.getByRole('status').filter({ hasText: 'Request sent to Dora' }));
    assert.equal(await E.getByLabel('User ID', { exact: true }).inputValue(), '');
    await hasText(friendStatus(E, 'Dora'), /^Request sent/);
  });

  await step('Dora sees Eve’s request and accepts it', async () => {
    await nav(D, 'Friends').click();
    const req = D.getByRole('region', { name: 'Requests' }).getByRole('listitem', { name: 'Eve' });
    await req.getByRole('button', { name: 'Accept', exact: true }).click();
    await hasText(friendStatus(D, 'Eve'), /^Friend/);
    await hasText(friendStatus(E, 'Dora'), /^Friend/);
  });

  await step('Eve writes; she sees it delivered, Dora reads it, then Eve sees it read', async () => {
    const text = 'Found you in the directory!';
    await nav(E, 'Chats').click();
    await chatItem(E, 'Dora').click();
    await send(E, text);
    await hasText(message(E, text).getByTestId('msg-status'), /Delivered/);
    await nav(D, 'Chats').click();
    await chatItem(D, 'Eve').click();
    await visible(message(D, text).and(D.locator('[data-direction="in"]')));
    await hasText(message(E, text).getByTestId('msg-status'), /Read/);
  });

  await step('no page error and no CSP violation', async () => {
    for (const p of [D, E]) {
      if (p.errors.length) throw new Error(`page errors: ${p.errors.join('\n')}`);
    }
  });
});
