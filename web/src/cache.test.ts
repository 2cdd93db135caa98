import { QueryObserver, type QueryClient } from '@tanstack/react-query';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, NetworkError, type Friend, type GroupMessage, type GroupMessagesPage, type Message } from './api';
import { ChatCache, keys, REMOVED_BY_PEER, shouldRetry } from './cache';
import type { Thread } from './state';
import { testQueryClient } from './testutil';

afterEach(() => {
  vi.restoreAllMocks();
});

const alice: Friend = { user_id: 'alice', name: 'Alice', status: 'accepted', verified: false, online: true, safety_number: '1' };

function msg(id: string, over: Partial<Message> = {}): Message {
  return {
    msg_id: id, from: 'alice', to: 'me', text: `text ${id}`, sent_at: '2026-01-01T10:00:00Z',
    received_at: null, status: 'delivered', direction: 'in', path: 'direct', ...over,
  };
}

/** A cache whose lists are watched, as Main watches them (invalidation refetches watched queries). */
function setup() {
  const qc = testQueryClient();
  const cache = new ChatCache(qc);
  return { qc, cache };
}

function watch(qc: QueryClient, cache: ChatCache) {
  const stops = [
    new QueryObserver(qc, { ...cache.friendsQuery(), staleTime: Infinity }).subscribe(() => {}),
    new QueryObserver(qc, { ...cache.conversationsQuery(), staleTime: Infinity }).subscribe(() => {}),
  ];
  return () => stops.forEach((s) => s());
}

describe('ChatCache', () => {
  it('puts a live message in its thread and the conversation list at once', async () => {
    const { qc, cache } = setup();
    qc.setQueryData(keys.friends, [alice]);
    qc.setQueryData(keys.conversations, []);
    await cache.applyEvent({ type: 'message', data: msg('m1') });
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages.map((m) => m.msg_id)).toEqual(['m1']);
    expect(qc.getQueryData<{ with: string; unread: number; name: string }[]>(keys.conversations)).toMatchObject([
      { with: 'alice', unread: 1, name: 'Alice' },
    ]);
  });

  it('refetches the lists on a friend event; an answer older than the event is not kept', async () => {
    const { qc, cache } = setup();
    let answer: (f: Friend[]) => void = () => {};
    const friends = vi
      .spyOn(api, 'friends')
      .mockImplementationOnce(() => new Promise((r) => (answer = r))) // in flight when the event comes
      .mockResolvedValueOnce([{ ...alice, status: 'accepted' }]);
    vi.spyOn(api, 'conversations').mockResolvedValue([]);
    const stop = watch(qc, cache); // fetches both lists: the friend list's answer waits
    const done = cache.applyEvent({ type: 'friend_accepted', data: { ...alice, status: 'accepted' } });
    answer([{ ...alice, status: 'pending_out' }]); // the stale answer
    await done;
    expect(friends).toHaveBeenCalledTimes(2);
    expect(qc.getQueryData<Friend[]>(keys.friends)?.[0].status).toBe('accepted');
    stop();
  });

  it('marks a friend who removed me, keeping them and their chat', async () => {
    const { qc, cache } = setup();
    qc.setQueryData(keys.friends, [alice]);
    vi.spyOn(api, 'friends').mockResolvedValue([{ ...alice, status: REMOVED_BY_PEER }]);
    vi.spyOn(api, 'conversations').mockResolvedValue([]);
    const done = cache.applyEvent({ type: 'friend_removed', data: { user_id: 'alice' } as Friend });
    // At once, before the refetch answers.
    expect(qc.getQueryData<Friend[]>(keys.friends)).toMatchObject([{ user_id: 'alice', name: 'Alice', status: REMOVED_BY_PEER }]);
    await done;
    expect(qc.getQueryData<Friend[]>(keys.friends)?.[0].status).toBe(REMOVED_BY_PEER);
  });

  it('drops a friend I removed from the list, and their chat keeps the name', async () => {
    const { qc, cache } = setup();
    vi.spyOn(api, 'friends').mockResolvedValueOnce([alice]).mockResolvedValue([]);
    vi.spyOn(api, 'conversations').mockResolvedValue([{ with: 'alice', name: '', unread: 0, last_message: null }]);
    await qc.fetchQuery(cache.friendsQuery());
    const stop = watch(qc, cache);
    await cache.applyEvent({ type: 'friend_removed', data: alice });
    stop();
    expect(qc.getQueryData(keys.friends)).toEqual([]);
    expect(qc.getQueryData(keys.conversations)).toMatchObject([{ with: 'alice', name: 'Alice' }]);
    expect(cache.nameOf('stranger-id-123')).toMatch(/^Former friend stranger/);
  });

  it('lets a retried message go back from failed to pending, and removes a deleted one', () => {
    const { qc, cache } = setup();
    const failed = msg('m1', { direction: 'out', from: 'me', to: 'alice', status: 'failed', error: 'x' });
    qc.setQueryData<Thread>(keys.thread('alice'), { messages: [failed, msg('m2')], next: null, loaded: true });
    cache.replaceMessage('alice', 'm1', { ...failed, status: 'pending', error: undefined });
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages[0]).toMatchObject({ msg_id: 'm1', status: 'pending' });
    cache.removeMessage('alice', 'm2');
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages.map((m) => m.msg_id)).toEqual(['m1']);
  });

  it('removes a message deleted elsewhere (a message_deleted event)', async () => {
    const { qc, cache } = setup();
    qc.setQueryData<Thread>(keys.thread('alice'), { messages: [msg('m1'), msg('m2')], next: null, loaded: true });
    await cache.applyEvent({ type: 'message_deleted', data: { msg_id: 'm1', with: 'alice' } });
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages.map((m) => m.msg_id)).toEqual(['m2']);
  });

  it('retries what may pass later, not what the node refused', () => {
    expect(shouldRetry(0, new NetworkError())).toBe(true);
    expect(shouldRetry(3, new NetworkError())).toBe(false);
    expect(shouldRetry(0, new ApiError(503, 'unavailable', 'x'))).toBe(true);
    expect(shouldRetry(0, new ApiError(404, 'not_found', 'x'))).toBe(false);
    expect(shouldRetry(0, new ApiError(401, 'unauthorized', 'x'))).toBe(false);
  });
});

describe('ChatCache, messages sent elsewhere', () => {
  it('fetches a thread again when a status comes for a message of mine it does not hold', async () => {
    const qc = testQueryClient();
    const cache = new ChatCache(qc);
    const sent = msg('other-tab', { direction: 'out', from: 'me', to: 'alice', status: 'sent' });
    vi.spyOn(api, 'messages').mockResolvedValueOnce({ messages: [], next: null }).mockResolvedValue({ messages: [sent], next: null });
    const stop = new QueryObserver(qc, { ...cache.threadQuery('alice'), staleTime: Infinity }).subscribe(() => {});
    await vi.waitFor(() => expect(qc.getQueryData<Thread>(keys.thread('alice'))?.loaded).toBe(true));
    await cache.applyEvent({ type: 'message_status', data: { msg_id: 'other-tab', with: 'alice', status: 'delivered', path: 'direct' } });
    // The early status is applied to the message the refetch brings.
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages).toMatchObject([{ msg_id: 'other-tab', status: 'delivered' }]);
    stop();
  });
});

describe('ChatCache, the event socket', () => {
  it('fetches the open conversation again once the socket is ready: a message stored before it is not lost', async () => {
    const qc = testQueryClient();
    const cache = new ChatCache(qc);
    // The page is loaded before the socket is ready; the message is
    // stored between the two (a login, or the node just unlocked).
    vi.spyOn(api, 'messages').mockResolvedValueOnce({ messages: [], next: null }).mockResolvedValue({ messages: [msg('m1')], next: null });
    vi.spyOn(api, 'friends').mockResolvedValue([alice]);
    vi.spyOn(api, 'conversations').mockResolvedValue([]);
    const stopList = watch(qc, cache);
    const stop = new QueryObserver(qc, { ...cache.threadQuery('alice'), staleTime: Infinity }).subscribe(() => {});
    await vi.waitFor(() => expect(qc.getQueryData<Thread>(keys.thread('alice'))?.loaded).toBe(true));
    await cache.refreshAll(); // what Main does when the socket is ready
    expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages.map((m) => m.msg_id)).toEqual(['m1']);
    stop();
    stopList();
  });
});

describe('group events', () => {
  const gm = (id: string, sent: string, group = 'g1'): GroupMessage => ({
    msg_id: id,
    group_id: group,
    from: 'alice',
    name: 'Alice',
    text: `text ${id}`,
    sent_at: sent,
    received_at: null,
    direction: 'in',
  });

  it('a group message joins its loaded page in order, once, without fetching the page again', async () => {
    const { qc, cache } = setup();
    qc.setQueryData(keys.groups, []);
    qc.setQueryData(keys.groupThread('g1'), { messages: [gm('b', '2026-01-01T10:00:02Z'), gm('a', '2026-01-01T10:00:00Z')], next: 'cur' });
    qc.setQueryData(keys.groupThread('g2'), { messages: [], next: null });
    qc.setQueryData(keys.friends, [alice]);
    await cache.applyEvent({ type: 'group_message', data: gm('c', '2026-01-01T10:00:03Z') });
    // One sent between the two it holds (a slow sender's clock), and the first one again.
    await cache.applyEvent({ type: 'group_message', data: gm('m', '2026-01-01T10:00:01Z') });
    await cache.applyEvent({ type: 'group_message', data: gm('c', '2026-01-01T10:00:03Z') });
    const page = qc.getQueryData<GroupMessagesPage>(keys.groupThread('g1'));
    expect(page?.messages.map((m) => m.msg_id)).toEqual(['c', 'b', 'm', 'a']);
    expect(page?.next).toBe('cur');
    expect(qc.getQueryState(keys.groupThread('g1'))?.isInvalidated).toBe(false);
    expect(qc.getQueryState(keys.groups)?.isInvalidated).toBe(true);
    expect(qc.getQueryState(keys.groupThread('g2'))?.isInvalidated).toBe(false);
    expect(qc.getQueryState(keys.friends)?.isInvalidated).toBe(false);
  });

  it('a group message for a page not loaded, or being fetched, has the page fetched', async () => {
    const { qc, cache } = setup();
    qc.setQueryData(keys.groups, []);
    await cache.applyEvent({ type: 'group_message', data: gm('x', '2026-01-01T10:00:00Z', 'g3') });
    expect(qc.getQueryData(keys.groupThread('g3'))).toBeUndefined();

    qc.setQueryData(keys.groupThread('g1'), { messages: [gm('a', '2026-01-01T10:00:00Z')], next: null });
    let answer: (p: GroupMessagesPage) => void = () => {};
    const fetching = qc.fetchQuery({
      queryKey: keys.groupThread('g1'),
      queryFn: () => new Promise<GroupMessagesPage>((r) => (answer = r)),
      staleTime: 0,
    });
    const applied = cache.applyEvent({ type: 'group_message', data: gm('b', '2026-01-01T10:00:01Z') });
    // The page being fetched is not patched: it is fetched again.
    expect(qc.getQueryData<GroupMessagesPage>(keys.groupThread('g1'))?.messages.map((m) => m.msg_id)).toEqual(['a']);
    expect(qc.getQueryState(keys.groupThread('g1'))?.isInvalidated).toBe(true);
    answer({ messages: [gm('b', '2026-01-01T10:00:01Z'), gm('a', '2026-01-01T10:00:00Z')], next: null });
    await applied;
    await fetching.catch(() => {});
    expect(qc.getQueryData<GroupMessagesPage>(keys.groupThread('g1'))?.messages.map((m) => m.msg_id)).toEqual(['b', 'a']);
  });

  it('a group change or removal marks the group list and that group stale', async () => {
    const { qc, cache } = setup();
    qc.setQueryData(keys.groups, []);
    qc.setQueryData(keys.groupThread('g2'), { messages: [], next: null });
    await cache.applyEvent({
      type: 'group_removed',
      data: { group_id: 'g2', name: 'x', epoch: 2, members: [], removed: true, unread: 0, last_message: null },
    });
    expect(qc.getQueryState(keys.groupThread('g2'))?.isInvalidated).toBe(true);
    expect(qc.getQueryState(keys.groups)?.isInvalidated).toBe(true);
  });
});
