// End to end: two real `parley run` nodes on 127.0.0.1, one headless
// Chromium context each, driven through the UI as a person would.
// Run by `make e2e` (part of `make test`); PARLEY_SCREENSHOTS=DIR also saves
// screenshots of the main screens there (`make screenshots`).

import { after, before, test } from 'node:test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { ParleyNode, cleanup, launchBrowser } from './nodes.mjs';
import { execFileSync } from 'node:child_process';
import { apiCall, chatItem, diagnose, layout, message, nav, newPage, register, rendersInColour, send } from './ui.mjs';
import { count, gone, hasText, visible } from './wait.mjs';

const shotsDir = process.env.PARLEY_SCREENSHOTS;

let browser;
const failed = { any: false };

before(async () => {
  browser = await launchBrowser();
  if (shotsDir) mkdirSync(shotsDir, { recursive: true });
});

after(async () => {
  await browser?.close();
  await cleanup({ keepDirs: failed.any && !!process.env.PARLEY_E2E_KEEP, showLogs: failed.any });
});

async function shot(page, name) {
  if (!shotsDir) return;
  await page.screenshot({ path: join(shotsDir, `${name}.png`) });
}

test('two people register, become friends by invite link and chat through the web UI', async (t) => {
  const alice = await ParleyNode.create('alice');
  const bob = await ParleyNode.create('bob');
  await Promise.all([alice.start(), bob.start()]);
  // Two locales: times follow the browser's (12-hour clock for Alice, 24-hour for Bob).
  const A = await newPage(browser, alice, { locale: 'en-US' });
  const B = await newPage(browser, bob, { locale: 'en-GB' });
  const passA = 'alice passphrase 1';
  const passB = 'bob passphrase 22';
  let inviteA, inviteB;
  let bobUserID = '';
  const bobID = async () => (bobUserID ||= (await apiCall(B, 'GET', 'me')).body.user_id);

  // Steps run in order; after a failure the rest are skipped, as they build on it.
  const step = async (name, fn, skip = '') => {
    await t.test(name, { skip: (failed.any && 'an earlier step failed') || skip || false }, async () => {
      try {
        await fn();
      } catch (e) {
        failed.any = true;
        await diagnose({ Alice: A, Bob: B });
        throw e;
      }
    });
  };

  await step('both register and see their invite link', async () => {
    await visible(A.getByRole('heading', { name: 'Welcome to Parley' }));
    await A.getByLabel('Display name').fill('Alice');
    await shot(A, 'register');
    [inviteA, inviteB] = await Promise.all([register(A, 'Alice', passA), register(B, 'Bob', passB)]);
    await visible(A.getByRole('img', { name: 'QR code of your invite link' }));
    await shot(A, 'invite');
    await A.getByRole('button', { name: 'Continue to Parley' }).click();
    await B.getByRole('button', { name: 'Continue to Parley' }).click();
    await visible(A.getByRole('heading', { name: 'No chats yet' }));
    await shot(A, 'chats-empty');
  });

  await step('a wrong invite link or user ID is explained in plain words; the Friends page scrolls at the window edge', async () => {
    await nav(A, 'Friends').click();
    await A.getByLabel('Invite link', { exact: true }).fill('hello, this is not an invite');
    await A.getByRole('button', { name: 'Add friend', exact: true }).click();
    await hasText(A.getByRole('alert'), 'This isn’t a Parley invite link — ask your friend to copy it again.');
    await A.getByLabel('User ID', { exact: true }).fill('not-a-user-id');
    await A.getByRole('button', { name: 'Add by user ID', exact: true }).click();
    await hasText(A.getByRole('alert'), /^That isn’t a Parley user ID/);
    assert.equal(await A.getByRole('main').count(), 1);
    const l = await layout(A, ['.page']);
    assert.equal(l.pageScrolls, false, 'the document scrolls');
    assert.equal(l.scrollers['.page'].overflowY, 'auto');
    assert.equal(l.scrollers['.page'].rightGap, 0, 'the Friends page scroller stops short of the window edge');
  });

  await step('they add each other by invite link', async () => {
    await nav(A, 'Friends').click();
    await A.getByLabel('Invite link', { exact: true }).fill(inviteB);
    await A.getByRole('button', { name: 'Add friend', exact: true }).click();
    await visible(A.getByRole('status').filter({ hasText: 'Request sent to Bob' }));

    // Bob sees Alice's request live, with Accept and Decline.
    await nav(B, 'Friends').click();
    const req = B.getByRole('listitem', { name: 'Alice' });
    await visible(req.getByRole('button', { name: 'Accept', exact: true }));
    await visible(req.getByRole('button', { name: 'Decline', exact: true }));
    await shot(B, 'friends-request');

    await B.getByLabel('Invite link', { exact: true }).fill(inviteA);
    await B.getByRole('button', { name: 'Add friend', exact: true }).click();
    await visible(B.getByRole('status').filter({ hasText: 'You and Alice are friends now' }));
    await hasText(A.getByRole('listitem', { name: 'Bob' }).getByTestId('friend-status'), /^Friend/);
    await shot(A, 'friends');
  });

  await step('Alice writes; Bob sees unread counts that clear when he opens the chat; Alice sees delivered, then read', async () => {
    await nav(A, 'Chats').click();
    await chatItem(A, 'Bob').click();
    await send(A, 'Hello Bob!');
    const first = message(A, 'Hello Bob!');
    await hasText(first.getByTestId('msg-status'), /Delivered/);

    await nav(B, 'Chats').click();
    const item = chatItem(B, 'Alice');
    await hasText(item.getByTestId('unread'), /^1$/);
    await send(A, 'Are you there?');
    await hasText(item.getByTestId('unread'), /^2$/);
    await hasText(item, 'Are you there?');
    await hasText(message(A, 'Are you there?').getByTestId('msg-status'), /Delivered/);
    // The chat list shows when the last message was sent, in Bob's locale (24-hour).
    await hasText(item.getByTestId('chat-time'), /^\d{2}:\d{2}$/);
    await hasText(message(A, 'Hello Bob!').locator('time'), /^\d{1,2}:\d{2}\s(AM|PM)$/);
    await shot(B, 'chats-unread');

    await item.click();
    await visible(message(B, 'Hello Bob!'));
    await visible(message(B, 'Are you there?'));
    await gone(item.getByTestId('unread'));
    await hasText(first.getByTestId('msg-status'), /Read/);
    await hasText(message(A, 'Are you there?').getByTestId('msg-status'), /Read/);
  });

  await step('Bob answers on two lines with Shift+Enter; Alice reads it live', async () => {
    const box = B.getByRole('textbox', { name: 'Message', exact: true });
    await box.fill('Hi Alice');
    await box.press('Shift+Enter');
    await box.pressSequentially('two lines here');
    assert.equal(await box.inputValue(), 'Hi Alice\ntwo lines here');
    await B.getByRole('button', { name: 'Send', exact: true }).click();
    await visible(message(A, 'two lines here').and(A.locator('[data-direction="in"]')));
    await hasText(message(B, 'two lines here').getByTestId('msg-status'), /Read/);
    await shot(A, 'conversation');
  });

  await step('emoji render in colour', async () => {
    await send(A, 'Party time 🎉👋');
    await visible(message(B, 'Party time 🎉👋'));
    const fonts = execFileSync('fc-list', [':', 'family'], { encoding: 'utf8' });
    if (/emoji/i.test(fonts)) {
      assert.ok(await rendersInColour(B, '[data-testid="message"] .text', '🎉'), 'the emoji does not render in colour');
    } else {
      t.diagnostic('no colour emoji font on this machine (apt-get install fonts-noto-color-emoji): colour not checked');
    }
  });

  await step('a reload keeps the session and the history', async () => {
    await A.reload();
    await visible(message(A, 'Hello Bob!'));
    await visible(message(A, 'two lines here'));
    assert.equal(await A.getByRole('button', { name: 'Log in' }).count(), 0);
    await hasText(message(A, 'Hello Bob!').getByTestId('msg-status'), /Read/);
  });

  await step('Bob’s node stops and restarts: "reconnecting", a wrong passphrase refused, then nothing lost', async () => {
    await bob.stop();
    await visible(B.getByRole('status').filter({ hasText: /Reconnecting/ }));
    await shot(B, 'reconnecting');

    await send(A, 'Sent while you were away');
    await hasText(message(A, 'Sent while you were away').getByTestId('msg-status'), /Pending|Sent/);

    await bob.start();
    // The restarted node is locked and has forgotten the tab's token: log in again.
    const pass = B.getByLabel('Passphrase', { exact: true });
    await visible(pass);
    // The login screen says whose node it is: the name when the node tells it before login, else its address.
    const health = await (await fetch(`${bob.url}api/v1/health`)).json();
    const owner = health.name ? 'This is Bob’s node.' : health.user_id ? `This is the node of user ${health.user_id}.` : `This is the Parley node at 127.0.0.1:${bob.apiPort}.`;
    await hasText(B.getByTestId('node-owner'), owner);
    await shot(B, 'login');
    await pass.fill('not the passphrase');
    await B.getByRole('button', { name: 'Log in', exact: true }).click();
    await hasText(B.getByRole('alert'), /Wrong passphrase/);
    await shot(B, 'login-wrong');
    await pass.fill(passB);
    await B.getByRole('button', { name: 'Log in', exact: true }).click();

    for (const text of ['Hello Bob!', 'Are you there?', 'two lines here']) {
      await visible(message(B, text));
    }
    await visible(message(B, 'Sent while you were away'), 60_000);
    await hasText(message(A, 'Sent while you were away').getByTestId('msg-status'), /Read/, 60_000);
    await send(B, 'Back again');
    await visible(message(A, 'Back again'));
  });

  await step('safety number: Alice marks Bob as verified', async () => {
    await A.getByRole('link', { name: 'Safety number' }).click();
    const digits = A.getByRole('list', { name: 'Safety number' }).getByRole('listitem');
    await count(digits, 12);
    await shot(A, 'safety-number');
    await A.getByRole('button', { name: 'Mark as verified' }).click();
    await visible(A.getByText('You marked Bob as verified'));
  });

  await step('settings show the node; log out returns to the login screen', async () => {
    await nav(A, 'Settings').click();
    await visible(A.getByText('User ID', { exact: true }));
    await visible(A.getByText('Reachability'));
    await shot(A, 'settings');
    // Download backup: a wrong passphrase is said plainly; the right one
    // saves an age file, and the security events show both.
    const backup = A.getByRole('region', { name: 'Backup' });
    await backup.getByLabel('Passphrase').fill('not the passphrase');
    await backup.getByRole('button', { name: 'Download backup' }).click();
    await visible(backup.getByText('Wrong passphrase: no backup was made.'));
    await backup.getByLabel('Passphrase').fill(passA);
    const [download] = await Promise.all([
      A.waitForEvent('download'),
      backup.getByRole('button', { name: 'Download backup' }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^parley-backup-\d{8}-\d{6}\.age$/);
    const chunks = [];
    for await (const c of await download.createReadStream()) chunks.push(c);
    assert.ok(Buffer.concat(chunks).subarray(0, 22).toString() === 'age-encryption.org/v1\n', 'the download is an age file');
    const events = A.getByRole('region', { name: 'Security events' });
    await events.getByRole('button', { name: 'Refresh' }).click();
    await visible(events.getByText('Backup made'));
    await visible(events.getByText('Backup refused: wrong passphrase'));
    await A.getByRole('button', { name: 'Log out' }).click();
    await visible(A.getByRole('button', { name: 'Log in', exact: true }));
    // Keyboard only: the passphrase field has the focus, Enter submits.
    await A.keyboard.type(passA);
    await A.keyboard.press('Enter');
    await visible(nav(A, 'Settings'));
  });

  await step('phone width and dark mode', async () => {
    if (!shotsDir) return;
    const P = await newPage(browser, bob, { viewport: { width: 375, height: 740 }, colorScheme: 'dark' });
    await P.getByLabel('Passphrase', { exact: true }).fill(passB);
    await P.getByRole('button', { name: 'Log in', exact: true }).click();
    await visible(chatItem(P, 'Alice'));
    await shot(P, 'phone-chats-dark');
    await chatItem(P, 'Alice').click();
    await visible(message(P, 'Back again'));
    await shot(P, 'phone-conversation-dark');
    await nav(P, 'Friends').click();
    await visible(P.getByRole('listitem', { name: 'Alice' }));
    await shot(P, 'phone-friends-dark');
    await P.context().close();
  });

  await step('a long conversation scrolls its message list only, never the page', async () => {
    for (const [p, name] of [[A, 'Bob'], [B, 'Alice']]) {
      await nav(p, 'Chats').click();
      await chatItem(p, name).click();
      await visible(message(p, 'Party time 🎉👋'));
    }
    // Sent through the API, as another tab or the CLI would: Alice's page shows them too.
    for (let i = 1; i <= 20; i++) {
      const r = await apiCall(A, 'POST', 'send_message', { to: await bobID(), text: `filler ${i}` });
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    await visible(message(B, 'filler 20'));
    await visible(message(A, 'filler 20'));
    for (const p of [A, B]) {
      assert.equal(await p.getByRole('main').count(), 1);
      const l = await layout(p, ['.messages']);
      assert.equal(l.pageScrolls, false, 'the document scrolls in a conversation');
      assert.equal(l.scrollers['.messages'].scrolls, true, 'the message list does not scroll');
    }
  });

  await step(
    'Alice deletes a message on her device, after a confirm',
    async () => {
      await nav(A, 'Chats').click();
      await chatItem(A, 'Bob').click();
      const m = message(A, 'Are you there?');
      await m.getByRole('button', { name: 'Message actions' }).click();
      await m.getByRole('menuitem', { name: 'Delete…' }).click();
      await visible(m.getByRole('group', { name: 'Confirm delete' }));
      await shot(A, 'delete-message');
      await m.getByRole('button', { name: 'Delete', exact: true }).click();
      await gone(message(A, 'Are you there?'));
      await A.reload();
      await visible(message(A, 'Hello Bob!'));
      assert.equal(await message(A, 'Are you there?').count(), 0);
      await visible(message(B, 'Are you there?')); // only on her device
    },
  );

  await step('Bob removes Alice: her chat stays, marked, readable, and he cannot write in it', async () => {
    await nav(B, 'Friends').click();
    const row = B.getByRole('region', { name: 'Your friends' }).getByRole('listitem', { name: 'Alice' });
    await row.getByRole('button', { name: 'Remove', exact: true }).click();
    await row.getByRole('button', { name: 'Yes, remove' }).click();
    await gone(B.getByRole('region', { name: 'Your friends' }).getByRole('listitem', { name: 'Alice' }));
    await nav(B, 'Chats').click();
    const item = chatItem(B, 'Alice');
    await hasText(item.getByTestId('chat-gone'), 'Not a friend');
    assert.notEqual((await item.locator('.avatar').textContent()).trim(), '?');
    await item.click();
    await visible(B.getByTestId('not-a-friend'));
    await visible(message(B, 'Hello Bob!'));
    assert.equal(await B.getByRole('textbox', { name: 'Message', exact: true }).isDisabled(), true);
    await shot(B, 'chat-not-a-friend');
  });

  await step(
    'Alice’s node learns it: "You are no longer friends with Bob", and her composer is disabled',
    async () => {
      await nav(A, 'Chats').click();
      await chatItem(A, 'Bob').click();
      await hasText(A.getByTestId('no-longer-friends'), /^You are no longer friends with Bob\./);
      assert.equal(await A.getByRole('textbox', { name: 'Message', exact: true }).isDisabled(), true);
      await hasText(chatItem(A, 'Bob').getByTestId('chat-gone'), 'Removed you');
      await shot(A, 'no-longer-friends');
    },
  );

  await step('no page error and no CSP violation', async () => {
    for (const p of [A, B]) {
      if (p.errors.length) throw new Error(`page errors: ${p.errors.join('\n')}`);
    }
  });
});
