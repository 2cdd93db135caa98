// Helpers of the end-to-end tests that drive Parley's web UI as a person
// would, through the accessible names of its controls.

import assert from 'node:assert/strict';
import { WAIT, visible } from './wait.mjs';

/**
 * Opens node's UI in a new browser context. page.errors collects page
 * errors and Content Security Policy violations.
 */
export async function newPage(browser, node, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', ...opts });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  page.errors = errors;
  await page.goto(node.url);
  return page;
}

/** Registers on a new node; resolves with the invite link the welcome screen shows. */
export async function register(page, name, pass) {
  await page.getByLabel('Display name').fill(name);
  await page.getByLabel('Passphrase', { exact: true }).fill(pass);
  await page.getByLabel('Confirm passphrase').fill(pass);
  await page.getByRole('button', { name: 'Register', exact: true }).click();
  await visible(page.getByRole('heading', { name: `Welcome, ${name}` }), WAIT);
  const invite = (await page.getByTestId('my-invite').textContent()).trim();
  if (!invite.startsWith('parley:')) throw new Error(`invite link ${invite}`);
  return invite;
}

/** A link of the main navigation, whose name may carry a count ("Chats, 2 unread"). */
export function nav(page, name) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: new RegExp(`^${name}`) });
}

export function chatItem(page, name) {
  return page.getByTestId('chat-item').filter({ hasText: name });
}

export function message(page, text) {
  return page.getByTestId('message').filter({ hasText: text });
}

/** Types text into the composer and sends it with Enter; resolves once it shows in the conversation. */
export async function send(page, text) {
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill(text);
  await box.press('Enter');
  await visible(message(page, text).and(page.locator('[data-direction="out"]')));
  assert.equal(await box.inputValue(), '');
}

/** Prints what each node's API says of its conversations, for a failed step. */
export async function diagnose(pages) {
  for (const [name, page] of Object.entries(pages)) {
    const state = await page
      .evaluate(async () => {
        const token = sessionStorage.getItem('parley.token');
        const get = async (p) => (await fetch(`/api/v1/${p}`, { headers: { Authorization: `Bearer ${token}` } })).json();
        const convs = await get('conversations');
        const threads = {};
        for (const c of convs.conversations ?? []) threads[c.name] = await get(`get_messages?with=${c.with}&limit=10`);
        return { url: location.pathname, token: !!token, convs, friends: await get('friends'), threads };
      })
      .catch((e) => `unavailable: ${e.message}`);
    console.error(`--- ${name}'s node, through the API ---\n${JSON.stringify(state, null, 1)}`);
  }
}
