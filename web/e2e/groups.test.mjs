// End to end, group chats: three real `parley run` nodes on 127.0.0.1, one
// headless Chromium context each. Alice, Bob and Carol are friends with
// each other (made through the API: the friends steps are in
// chat.test.mjs); Alice makes a group of the three in the UI, each sees
// the others' messages; Alice removes Carol, who sees "You were removed"
// and cannot send, while Alice and Bob keep talking.
// Run by `make e2e` (part of `make test`) with the other files of e2e/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyNode, cleanup, launchBrowser } from './nodes.mjs';
import { apiCall, diagnose, nav, newPage, register } from './ui.mjs';
import { gone, hasText, visible } from './wait.mjs';

let browser;
const failed = { any: false };

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cleanup({ keepDirs: failed.any && !!process.env.PARLEY_E2E_KEEP, showLogs: failed.any });
});

function groupItem(page, name) {
  return page.getByTestId('group-item').filter({ hasText: name });
}

function groupMessage(page, text) {
  return page.getByTestId('group-message').filter({ hasText: text });
}

/** Sends text in the open group with Enter; resolves once it shows as mine. */
async function groupSend(page, text) {
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill(text);
  await box.press('Enter');
  await visible(groupMessage(page, text).and(page.locator('[data-direction="out"]')));
}

/** a adds b by invite link and b accepts by adding a's, through the API; resolves once both are friends. */
async function befriend(a, b) {
  const [ma, mb] = [(await apiCall(a, 'GET', 'me')).body, (await apiCall(b, 'GET', 'me')).body];
  assert.equal((await apiCall(a, 'POST', 'friends', { invite: mb.invite })).status, 201);
  await waitFriend(b, ma.user_id, 'pending_in');
  assert.equal((await apiCall(b, 'POST', 'friends', { invite: ma.invite })).status, 201);
  await waitFriend(a, mb.user_id, 'accepted');
}

async function waitFriend(page, userID, status) {
  await page.waitForFunction(
    async ([id, st]) => {
      const token = sessionStorage.getItem('parley.token');
      const r = await fetch('/api/v1/friends', { headers: { Authorization: `Bearer ${token}` } });
      return (await r.json()).friends?.some((f) => f.user_id === id && f.status === st);
    },
    [userID, status],
    { polling: 100 },
  );
}

test('three friends chat in a group; the admin removes one, who can no longer send', async (t) => {
  const nodes = await Promise.all(['alice', 'bob', 'carol'].map((n) => ParleyNode.create(`g-${n}`)));
  await Promise.all(nodes.map((n) => n.start()));
  const [A, B, C] = await Promise.all(nodes.map((n) => newPage(browser, n)));

  const step = async (name, fn) => {
    await t.test(name, { skip: (failed.any && 'an earlier step failed') || false }, async () => {
      try {
        await fn();
      } catch (e) {
        failed.any = true;
        await diagnose({ Alice: A, Bob: B, Carol: C });
        for (const [who, p] of Object.entries({ Alice: A, Bob: B, Carol: C })) {
          console.error(`--- ${who}'s groups ---\n${JSON.stringify((await apiCall(p, 'GET', 'groups').catch((e) => e.message)).body, null, 1)}`);
        }
        throw e;
      }
    });
  };

  await step('all three register and become friends with each other', async () => {
    await Promise.all([register(A, 'Alice', 'alice passphrase 1'), register(B, 'Bob', 'bob passphrase 22'), register(C, 'Carol', 'carol passphrase 3')]);
    for (const p of [A, B, C]) await p.getByRole('button', { name: 'Continue to Parley' }).click();
    await befriend(A, B);
    await befriend(A, C);
    await befriend(B, C);
  });

  await step('Alice makes a group of the three from her friends', async () => {
    await nav(A, 'Chats').click();
    await A.getByRole('button', { name: 'New group' }).click();
    const form = A.getByRole('form', { name: 'New group' });
    await form.getByLabel('Group name').fill('Climbing trip');
    await form.getByLabel('Bob').check();
    await form.getByLabel('Carol').check();
    await form.getByRole('button', { name: 'Create group' }).click();
    await visible(A.getByRole('heading', { name: 'Climbing trip', level: 2 }));
    await A.getByRole('button', { name: 'Members' }).click();
    const members = A.getByRole('region', { name: 'Members' });
    await hasText(members.getByTestId('member'), /^You\s*Admin/);
    await hasText(members.getByTestId('member'), /^Bob\s*Member/);
    await hasText(members.getByTestId('member'), /^Carol\s*Member/);
    await visible(groupItem(B, 'Climbing trip'));
    await visible(groupItem(C, 'Climbing trip'));
  });

  await step('each sees the others’ messages, with their names; unread counts clear on opening', async () => {
    await groupSend(A, 'Hello from Alice');
    await hasText(groupItem(B, 'Climbing trip').getByTestId('group-unread'), /^1$/);
    await groupItem(B, 'Climbing trip').click();
    await groupItem(C, 'Climbing trip').click();
    await visible(groupMessage(B, 'Hello from Alice').getByTestId('sender').filter({ hasText: 'Alice' }));
    await gone(groupItem(B, 'Climbing trip').getByTestId('group-unread'));
    await visible(groupMessage(C, 'Hello from Alice'));
    await groupSend(B, 'Bob here');
    await groupSend(C, 'Carol too');
    for (const [p, texts] of [
      [A, ['Bob here', 'Carol too']],
      [B, ['Carol too']],
      [C, ['Bob here']],
    ]) {
      for (const text of texts) await visible(groupMessage(p, text).and(p.locator('[data-direction="in"]')));
    }
    await visible(groupMessage(A, 'Carol too').getByTestId('sender').filter({ hasText: 'Carol' }));
  });

  await step('Alice removes Carol: Carol sees "You were removed" and cannot send; Alice and Bob keep chatting', async () => {
    await A.getByRole('button', { name: 'Remove Carol' }).click();
    await visible(C.getByTestId('group-removed'));
    await hasText(C.getByTestId('group-removed'), /^You were removed/);
    assert.equal(await C.getByRole('textbox', { name: 'Message', exact: true }).isDisabled(), true);
    await groupSend(A, 'Just the two of us now');
    await visible(groupMessage(B, 'Just the two of us now'));
    await groupSend(B, 'Indeed');
    await visible(groupMessage(A, 'Indeed'));
    // Carol's node holds no key of the new epoch: nothing of it reaches her.
    const page = (await apiCall(C, 'GET', `groups/${(await apiCall(C, 'GET', 'groups')).body.groups[0].group_id}/messages`)).body;
    assert.ok(!page.messages.some((m) => m.text === 'Just the two of us now' || m.text === 'Indeed'), 'Carol read the new epoch');
    assert.ok(page.messages.some((m) => m.text === 'Hello from Alice'), 'Carol lost what she had');
  });
});
