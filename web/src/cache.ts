// The UI's server state lives in TanStack Query's cache: the friend list,
// the conversation list, each conversation's thread, me and the node.
// ChatCache applies the live events to that cache with the pure reducer of
// state.ts (so a message shows at once) and invalidates what the server
// may know better, which refetches it; a fetch still running when an event
// arrives is cancelled and made again, so an answer older than the event
// never overwrites it.

import { QueryClient } from '@tanstack/react-query';
import {
  api,
  ApiError,
  type Friend,
  type FriendStatus,
  type GroupMessage,
  type GroupMessagesPage,
  type Message,
  type ServerEvent,
} from './api';
import { reducer, sortConversations, type Action, type ChatState, type Thread } from './state';

export const keys = {
  me: ['me'] as const,
  friends: ['friends'] as const,
  conversations: ['conversations'] as const,
  threads: ['thread'] as const,
  thread: (peer: string) => ['thread', peer] as const,
  node: ['node'] as const,
  health: ['health'] as const,
  groups: ['groups'] as const,
  groupThread: (id: string) => ['group-thread', id] as const,
};

/** Whether a failed query is tried again: not for answers the node gave on purpose (4xx), else up to 3 times. */
export function shouldRetry(failures: number, e: unknown): boolean {
  if (e instanceof ApiError && e.status < 500) return false;
  return failures < 3;
}

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: shouldRetry,
        retryDelay: (n) => Math.min(500 * 2 ** n, 5000),
        // Live events keep the lists fresh; a mount within a few seconds
        // of a fetch does not fetch again.
        staleTime: 2000,
      },
      mutations: { retry: false },
    },
  });
}

/** The status of a friend who removed me from their friends (their node told mine). */
export const REMOVED_BY_PEER = 'removed_by_peer' as FriendStatus;

export function removedByPeer(f: Pick<Friend, 'status'> | undefined): boolean {
  return (f?.status as string | undefined) === REMOVED_BY_PEER;
}

/** ChatCache is the chat's server state in a QueryClient, and the rules that change it. */
export class ChatCache {
  /** Status changes for messages not (yet) in a thread, by message ID. */
  private early: ChatState['early'] = {};
  /** Names of friends seen, so that a removed friend's chat keeps a name. */
  private readonly names = new Map<string, string>();

  constructor(readonly qc: QueryClient) {}

  // ---- Queries ----

  friendsQuery = () => ({
    queryKey: keys.friends,
    queryFn: async (): Promise<Friend[]> => {
      const fs = await api.friends();
      for (const f of fs) if (f.name) this.names.set(f.user_id, f.name);
      return fs;
    },
  });

  conversationsQuery = () => ({
    queryKey: keys.conversations,
    queryFn: async () =>
      sortConversations(
        (await api.conversations()).map((c) => (c.name ? c : { ...c, name: this.names.get(c.with) ?? '' })),
      ),
  });

  /** The newest page of a thread, merged with what the thread already holds. */
  threadQuery = (peer: string) => ({
    queryKey: keys.thread(peer),
    queryFn: async (): Promise<Thread> => {
      const p = await api.messages(peer);
      return this.dispatch({ type: 'page', with: peer, messages: p.messages, next: p.next, older: false }).threads[peer];
    },
  });

  /** Loads the next older page of a thread. */
  async loadOlder(peer: string): Promise<void> {
    const t = this.qc.getQueryData<Thread>(keys.thread(peer));
    if (!t?.next) return;
    const p = await api.messages(peer, t.next);
    this.dispatch({ type: 'page', with: peer, messages: p.messages, next: p.next, older: true });
  }

  // ---- Changes ----

  /** What the cache holds now, as the reducer's state. */
  snapshot(): ChatState {
    const threads: Record<string, Thread> = {};
    for (const [key, t] of this.qc.getQueriesData<Thread>({ queryKey: keys.threads })) {
      if (t) threads[String(key[1])] = t;
    }
    return {
      conversations: this.qc.getQueryData(keys.conversations) ?? [],
      friends: this.qc.getQueryData(keys.friends) ?? [],
      threads,
      early: this.early,
    };
  }

  /** Applies an action to the cache: what it changed is written back. */
  dispatch = (a: Action): ChatState => {
    const s = this.snapshot();
    if (a.type === 'friend' && a.friend.name) this.names.set(a.friend.user_id, a.friend.name);
    if (a.type === 'friendRemoved') {
      const f = s.friends.find((x) => x.user_id === a.userID);
      if (f?.name) this.names.set(f.user_id, f.name);
    }
    const n = reducer(s, a);
    if (n.friends !== s.friends) this.qc.setQueryData(keys.friends, n.friends);
    if (n.conversations !== s.conversations) {
      this.qc.setQueryData(
        keys.conversations,
        n.conversations.map((c) => (c.name ? c : { ...c, name: this.names.get(c.with) ?? '' })),
      );
    }
    for (const [peer, t] of Object.entries(n.threads)) {
      if (t !== s.threads[peer]) this.qc.setQueryData(keys.thread(peer), t);
    }
    this.early = n.early;
    return n;
  };

  /** Fetches the friend and conversation lists again. */
  refreshLists = async (): Promise<void> => {
    await Promise.all([
      this.qc.invalidateQueries({ queryKey: keys.friends }),
      this.qc.invalidateQueries({ queryKey: keys.conversations }),
      this.qc.invalidateQueries({ queryKey: keys.groups }),
    ]);
  };

  /** Fetches the group list and one group's messages again (a group event). */
  refreshGroup = async (id: string): Promise<void> => {
    await Promise.all([
      this.qc.invalidateQueries({ queryKey: keys.groups }),
      this.qc.invalidateQueries({ queryKey: keys.groupThread(id) }),
    ]);
  };

  /**
   * A group message joins its group's loaded page at once, in the order
   * the node keeps (the sender's time, then the ID), instead of the page
   * of 200 being fetched again for each message of a busy group; the group
   * list is fetched again for its unread count and last message. A page
   * being fetched right now is fetched again instead, so that an answer
   * older than the event does not drop the message.
   */
  private groupMessage = async (m: GroupMessage): Promise<void> => {
    const key = keys.groupThread(m.group_id);
    const page = this.qc.getQueryData<GroupMessagesPage>(key);
    if (!page || this.qc.isFetching({ queryKey: key }) > 0) return this.refreshGroup(m.group_id);
    if (!page.messages.some((x) => x.msg_id === m.msg_id)) {
      this.qc.setQueryData<GroupMessagesPage>(key, { ...page, messages: [...page.messages, m].sort(newestFirst) });
    }
    await this.qc.invalidateQueries({ queryKey: keys.groups });
  };

  /**
   * Fetches every watched query again: the lists, unread counts and the
   * open conversation alike. Called whenever the event socket is ready
   * (whatever happened before — the first load, a login, or while it was
   * down — may have missed its event) and when events were lost to an
   * overflow.
   */
  refreshAll(): Promise<void> {
    return this.qc.invalidateQueries();
  }

  /** A message of mine changed by hand (a retry): its status may go back, unlike a status event. */
  replaceMessage(peer: string, id: string, m: Message): void {
    const t = this.qc.getQueryData<Thread>(keys.thread(peer));
    if (t) {
      const messages = t.messages.filter((x) => x.msg_id !== id && x.msg_id !== m.msg_id);
      this.qc.setQueryData<Thread>(keys.thread(peer), { ...t, messages: [...messages, m].sort(bySent) });
    }
    void this.qc.invalidateQueries({ queryKey: keys.conversations });
  }

  /** A message deleted on this device leaves its thread; the list refetches its last message. */
  removeMessage(peer: string, id: string): void {
    const t = this.qc.getQueryData<Thread>(keys.thread(peer));
    if (t) this.qc.setQueryData<Thread>(keys.thread(peer), { ...t, messages: t.messages.filter((m) => m.msg_id !== id) });
    void this.qc.invalidateQueries({ queryKey: keys.conversations });
  }

  /** Applies a live event; resolves once the lists it invalidated are fetched again. */
  applyEvent(e: ServerEvent): Promise<void> {
    switch (e.type) {
      case 'message': {
        const m = e.data;
        this.dispatch({ type: 'message', message: m, peer: m.direction === 'in' ? m.from : m.to });
        return Promise.resolve();
      }
      case 'message_status': {
        const before = this.qc.getQueryData<Thread>(keys.thread(e.data.with));
        this.dispatch({ type: 'status', change: e.data });
        // A message of mine this page did not send (another tab, the CLI):
        // its thread is fetched again to show it.
        if (before?.loaded && !before.messages.some((m) => m.msg_id === e.data.msg_id)) {
          return this.qc.invalidateQueries({ queryKey: keys.thread(e.data.with) });
        }
        return Promise.resolve();
      }
      case 'message_deleted':
        // Deleted here in another tab, or through the CLI.
        this.removeMessage(e.data.with, e.data.msg_id);
        return Promise.resolve();
      case 'friend_request':
      case 'friend_accepted':
      case 'friend_key_changed':
      case 'key_fork':
      case 'friend_key_rotated':
        this.dispatch({ type: 'friend', friend: e.data });
        return this.refreshLists();
      case 'friend_removed': {
        this.friendRemoved(e.data as Partial<Friend> & { user_id: string });
        return this.refreshLists();
      }
      case 'peer_online':
      case 'peer_offline':
        this.dispatch({ type: 'presence', presence: e.data, online: e.type === 'peer_online' });
        return Promise.resolve();
      case 'group_message':
        return this.groupMessage(e.data);
      case 'group_updated':
      case 'group_removed':
        return this.refreshGroup(e.data.group_id);
      case 'overflow':
        return this.refreshAll();
    }
    return Promise.resolve();
  }

  /**
   * friend_removed comes when I removed or blocked a friend (it carries
   * the friend as it was), and when a friend removed me: then it carries
   * the user ID alone, or the status removed_by_peer. Whom they removed
   * stays on the list, marked, so that their chat says what happened.
   */
  private friendRemoved(d: Partial<Friend> & { user_id: string }): void {
    if (d.status === undefined || removedByPeer(d as Friend)) {
      const f = this.snapshot().friends.find((x) => x.user_id === d.user_id);
      if (f) this.dispatch({ type: 'friend', friend: { ...f, ...d, status: REMOVED_BY_PEER, online: false } });
      return;
    }
    if (d.status === 'blocked') this.dispatch({ type: 'friend', friend: d as Friend });
    else this.dispatch({ type: 'friendRemoved', userID: d.user_id });
  }

  /** The name to show for a chat: the friend's, the one last seen, else "Former friend". */
  nameOf(peer: string): string {
    return this.names.get(peer) ?? formerFriend(peer);
  }
}

/** The name of a chat whose person is no longer a friend and whose name is not known. */
export function formerFriend(peer: string): string {
  return `Former friend ${peer.slice(0, 8)}…`;
}

function bySent(a: Message, b: Message): number {
  return Date.parse(a.sent_at) - Date.parse(b.sent_at) || (a.msg_id < b.msg_id ? -1 : a.msg_id > b.msg_id ? 1 : 0);
}

/** Group messages newest first: by the sender's time, then by ID, as the node pages them. */
function newestFirst(a: GroupMessage, b: GroupMessage): number {
  return Date.parse(b.sent_at) - Date.parse(a.sent_at) || (a.msg_id < b.msg_id ? 1 : a.msg_id > b.msg_id ? -1 : 0);
}

const caches = new WeakMap<QueryClient, ChatCache>();

/** The one ChatCache of a QueryClient. */
export function chatCacheFor(qc: QueryClient): ChatCache {
  let c = caches.get(qc);
  if (!c) {
    c = new ChatCache(qc);
    caches.set(qc, c);
  }
  return c;
}
