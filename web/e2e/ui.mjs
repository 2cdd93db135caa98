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

/** Calls the node's API from the page with its session token; resolves with the status and JSON body. */
export function apiCall(page, method, path, body) {
  return page.evaluate(
    async ([method, path, body]) => {
      const token = sessionStorage.getItem('parley.token');
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const r = await fetch(`/api/v1/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: r.status, body: await r.json().catch(() => null) };
    },
    [method, path, body],
  );
}

/**
 * The page layout checks: the document itself never scrolls, and each
 * element of scrollers (CSS selectors) that can scroll spans to the
 * window's right edge (so its scrollbar is not in the middle of the page).
 */
export async function layout(page, scrollers) {
  return page.evaluate((sels) => {
    const doc = document.scrollingElement;
    const out = { pageScrolls: doc.scrollHeight > doc.clientHeight + 1, scrollers: {} };
    for (const s of sels) {
      const el = document.querySelector(s);
      if (!el) continue;
      const r = el.getBoundingClientRect();
      out.scrollers[s] = {
        scrolls: el.scrollHeight > el.clientHeight + 1,
        overflowY: getComputedStyle(el).overflowY,
        rightGap: Math.round(document.documentElement.clientWidth - r.right),
      };
    }
    return out;
  }, scrollers);
}

/** Whether text renders in colour in the font of the element sel (a colour emoji font is installed and chosen). */
export async function rendersInColour(page, sel, text) {
  return page.evaluate(
    ([sel, text]) => {
      const el = document.querySelector(sel);
      const c = document.createElement('canvas');
      c.width = 80;
      c.height = 80;
      const ctx = c.getContext('2d');
      ctx.font = `48px ${getComputedStyle(el).fontFamily}`;
      ctx.textBaseline = 'top';
      ctx.fillStyle = '#000';
      ctx.fillText(text, 8, 8);
      const d = ctx.getImageData(0, 0, 80, 80).data;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0 && (Math.abs(d[i] - d[i + 1]) > 40 || Math.abs(d[i + 1] - d[i + 2]) > 40)) return true;
      }
      return false;
    },
    [sel, text],
  );
}
