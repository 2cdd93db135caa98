// The pure logic of the UI's state: a reducer over what the API and the
// live events say (cache.ts applies it to the TanStack Query cache), and
// the small rules the screens show (message status, composer limits, day
// groups, times in the browser's locale, passphrase strength).

import {
  MAX_TEXT_BYTES,
  type Conversation,
  type Friend,
  type Message,
  type MessageStatus,
  type Presence,
  type StatusChange,
} from './api';
import { failureText } from './errors';

export interface Thread {
  /** Oldest first. */
  messages: Message[];
  /** Cursor of the next older page; null when the oldest is loaded. */
  next: string | null;
  loaded: boolean;
}

export interface ChatState {
  conversations: Conversation[];
  friends: Friend[];
  threads: Record<string, Thread>;
  /** Status changes for messages not (yet) in a thread, by message ID. */
  early: Record<string, StatusChange>;
}

export const initialState: ChatState = {
  conversations: [],
  friends: [],
  threads: {},
  early: {},
};

export type Action =
  | { type: 'conversations'; conversations: Conversation[] }
  | { type: 'friends'; friends: Friend[] }
  | { type: 'friend'; friend: Friend }
  | { type: 'friendRemoved'; userID: string }
  | { type: 'page'; with: string; messages: Message[]; next: string | null; older: boolean }
  | { type: 'message'; message: Message; peer: string }
  | { type: 'status'; change: StatusChange }
  | { type: 'presence'; presence: Presence; online: boolean }
  /** The conversation was marked read; count: how many unread that covered (all when absent). */
  | { type: 'read'; with: string; count?: number };

const statusRank: Record<MessageStatus, number> = {
  pending: 0,
  sent: 1,
  delivered: 2,
  read: 3,
  failed: 4,
};

/** Whether a message may move from status a to b: forward only, or to failed from before delivery. */
export function statusAdvances(a: MessageStatus, b: MessageStatus): boolean {
  if (b === 'failed') return a === 'pending' || a === 'sent';
  if (a === 'failed') return b === 'delivered' || b === 'read';
  return statusRank[b] > statusRank[a];
}

/** Merges messages into a thread's list: by ID, the furthest status wins, oldest first. */
export function mergeMessages(existing: Message[], incoming: Message[]): Message[] {
  const byID = new Map<string, Message>();
  for (const m of existing) byID.set(m.msg_id, m);
  for (const m of incoming) {
    const old = byID.get(m.msg_id);
    if (!old || statusAdvances(old.status, m.status) || old.status === m.status) {
      byID.set(m.msg_id, old && old.status === m.status ? { ...old, ...m } : m);
    } else {
      byID.set(m.msg_id, { ...m, status: old.status, path: old.path || m.path, error: old.error });
    }
  }
  return [...byID.values()].sort(compareMessages);
}

function compareMessages(a: Message, b: Message): number {
  const ta = Date.parse(a.sent_at);
  const tb = Date.parse(b.sent_at);
  if (ta !== tb) return ta - tb;
  return a.msg_id < b.msg_id ? -1 : a.msg_id > b.msg_id ? 1 : 0;
}

/** Conversations newest first; those without messages last, by name. */
export function sortConversations(cs: Conversation[]): Conversation[] {
  return [...cs].sort((a, b) => {
    const ta = a.last_message ? Date.parse(a.last_message.at) : -Infinity;
    const tb = b.last_message ? Date.parse(b.last_message.at) : -Infinity;
    if (ta !== tb) return tb - ta;
    return a.name.localeCompare(b.name);
  });
}

function applyStatus(m: Message, c: StatusChange): Message {
  if (!statusAdvances(m.status, c.status)) return m;
  return { ...m, status: c.status, path: c.path || m.path, error: c.error };
}

export function reducer(s: ChatState, a: Action): ChatState {
  switch (a.type) {
    case 'conversations':
      return { ...s, conversations: sortConversations(a.conversations) };
    case 'friends':
      return { ...s, friends: a.friends };
    case 'friend': {
      const others = s.friends.filter((f) => f.user_id !== a.friend.user_id);
      return { ...s, friends: [...others, a.friend] };
    }
    case 'friendRemoved':
      return { ...s, friends: s.friends.filter((f) => f.user_id !== a.userID) };
    case 'page': {
      const old = s.threads[a.with];
      const messages = mergeMessages(old?.messages ?? [], a.messages.map((m) => withEarly(s, m)));
      // A first or refreshed page says nothing of older pages already
      // loaded: keep their cursor.
      const next = a.older || !old?.loaded ? a.next : old.next;
      return { ...s, threads: { ...s.threads, [a.with]: { messages, next, loaded: true } }, early: dropEarly(s.early, a.messages) };
    }
    case 'message': {
      const m = withEarly(s, a.message);
      // A thread not loaded yet keeps the message too: its first page may
      // have been read before the message was stored.
      const old = s.threads[a.peer] ?? { messages: [], next: null, loaded: false };
      const threads = { ...s.threads, [a.peer]: { ...old, messages: mergeMessages(old.messages, [m]) } };
      let found = false;
      const conversations = s.conversations.map((c) => {
        if (c.with !== a.peer) return c;
        found = true;
        const newer = !c.last_message || Date.parse(m.sent_at) >= Date.parse(c.last_message.at);
        return {
          ...c,
          last_message: newer
            ? { msg_id: m.msg_id, text: m.text, at: m.sent_at, direction: m.direction, status: m.status }
            : c.last_message,
          unread: c.unread + (m.direction === 'in' ? 1 : 0),
        };
      });
      if (!found) {
        const f = s.friends.find((x) => x.user_id === a.peer);
        conversations.push({
          with: a.peer,
          name: f?.name ?? a.peer.slice(0, 12),
          last_message: { msg_id: m.msg_id, text: m.text, at: m.sent_at, direction: m.direction, status: m.status },
          unread: m.direction === 'in' ? 1 : 0,
        });
      }
      return { ...s, threads, conversations: sortConversations(conversations), early: dropEarly(s.early, [m]) };
    }
    case 'status': {
      const c = a.change;
      const t = s.threads[c.with];
      const known = t?.messages.some((m) => m.msg_id === c.msg_id);
      const threads = known
        ? { ...s.threads, [c.with]: { ...t, messages: t.messages.map((m) => (m.msg_id === c.msg_id ? applyStatus(m, c) : m)) } }
        : s.threads;
      const conversations = s.conversations.map((cv) =>
        cv.last_message?.msg_id === c.msg_id && statusAdvances(cv.last_message.status, c.status)
          ? { ...cv, last_message: { ...cv.last_message, status: c.status } }
          : cv,
      );
      const early = known ? s.early : { ...s.early, [c.msg_id]: c };
      return { ...s, threads, conversations, early };
    }
    case 'presence':
      return {
        ...s,
        friends: s.friends.map((f) => (f.user_id === a.presence.user_id ? { ...f, online: a.online } : f)),
      };
    case 'read':
      return {
        ...s,
        conversations: s.conversations.map((c) =>
          c.with === a.with ? { ...c, unread: a.count === undefined ? 0 : Math.max(0, c.unread - a.count) } : c,
        ),
      };
  }
}

function withEarly(s: ChatState, m: Message): Message {
  const c = s.early[m.msg_id];
  return c ? applyStatus(m, c) : m;
}

function dropEarly(early: Record<string, StatusChange>, ms: Message[]): Record<string, StatusChange> {
  if (!ms.some((m) => early[m.msg_id])) return early;
  const out = { ...early };
  for (const m of ms) delete out[m.msg_id];
  return out;
}

// ---- What the screens show ----

export const statusLabels: Record<MessageStatus, string> = {
  pending: 'Pending',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  failed: 'Failed',
};

const pathLabels: Record<string, string> = {
  direct: 'direct',
  relay: 'via relay',
  mailbox: 'via mailbox',
};

/** How a message of mine shows its status: a label, and a longer description for hover and screen readers. */
export function describeStatus(m: Pick<Message, 'status' | 'path' | 'error'>): { label: string; detail: string } {
  const label = statusLabels[m.status] ?? m.status;
  const how = m.path ? pathLabels[m.path] ?? m.path : '';
  if (m.status === 'failed') {
    return { label, detail: `Failed: ${failureText(m.error)}` };
  }
  if (m.status === 'pending') return { label, detail: 'Pending: waiting to reach their node' };
  const meaning: Record<string, string> = {
    sent:
      m.path === 'mailbox'
        ? 'Sent: held in their mailbox on a relay while their node is offline; it turns Delivered when their node has it'
        : 'Sent: on its way to their node',
    delivered: 'Delivered: stored on their node',
    read: 'Read: they opened the conversation',
  };
  const said = meaning[m.status] ?? label;
  return { label, detail: how ? `${said} (${how})` : said };
}

/** Bytes of UTF-8 in s. */
export function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

export interface ComposerInfo {
  bytes: number;
  /** Show the limit: the text is near it or over it. */
  showLimit: boolean;
  over: boolean;
  canSend: boolean;
}

/** The composer's limit rule: the 32 KiB limit shows from 90 % of it; over it sending is refused. */
export function composerInfo(text: string, limit = MAX_TEXT_BYTES): ComposerInfo {
  const bytes = utf8Length(text);
  const over = bytes > limit;
  return { bytes, showLimit: bytes >= limit * 0.9, over, canSend: !over && text.trim() !== '' };
}

export interface DayGroup<M = Message> {
  key: string;
  label: string;
  messages: M[];
}

/** Groups messages (oldest first) by local calendar day: "Today", "Yesterday" or the date. */
export function groupByDay<M extends { sent_at: string } = Message>(messages: M[], now = new Date()): DayGroup<M>[] {
  const groups: DayGroup<M>[] = [];
  for (const m of messages) {
    const d = new Date(m.sent_at);
    const key = `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
    let g = groups[groups.length - 1];
    if (!g || g.key !== key) {
      g = { key, label: dayLabel(d, now), messages: [] };
      groups.push(g);
    }
    g.messages.push(m);
  }
  return groups;
}

export function dayLabel(d: Date, now = new Date(), locale?: string): string {
  const start = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((start(now) - start(d)) / 86_400_000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  const sameYear = d.getFullYear() === now.getFullYear();
  return new Intl.DateTimeFormat(locale, {
    weekday: days < 7 ? 'long' : undefined,
    day: 'numeric',
    month: 'long',
    year: sameYear ? undefined : 'numeric',
  }).format(d);
}

// Times and dates follow the browser's locale (locale undefined); tests
// pass one.

/** The time of a message in the locale's short form: "14:05", "2:05 PM". */
export function timeLabel(iso: string, locale?: string): string {
  return new Intl.DateTimeFormat(locale, { timeStyle: 'short' }).format(new Date(iso));
}

/** The full date and time of a message, for hovering its time. */
export function dateTimeLabel(iso: string, locale?: string): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: 'full', timeStyle: 'short' }).format(new Date(iso));
}

/** The send time in the chat list: the time today, "Yesterday", the weekday this week, else the date. */
export function listTimeLabel(iso: string, now = new Date(), locale?: string): string {
  const d = new Date(iso);
  const label = dayLabel(d, now, locale);
  if (label === 'Today') return timeLabel(iso, locale);
  if (label === 'Yesterday') return label;
  const start = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  if ((start(now) - start(d)) / 86_400_000 < 7) return new Intl.DateTimeFormat(locale, { weekday: 'short' }).format(d);
  return new Intl.DateTimeFormat(locale, { dateStyle: 'short' }).format(d);
}

export interface Strength {
  score: 0 | 1 | 2 | 3 | 4;
  label: string;
}

/** A rough hint of a passphrase's strength, from its length and variety. */
export function passphraseStrength(p: string): Strength {
  if (p.length === 0) return { score: 0, label: '' };
  const chars = [...p];
  if (chars.length < 10) return { score: 0, label: 'Too short: at least 10 characters' };
  let classes = 0;
  if (/[a-z]/.test(p)) classes++;
  if (/[A-Z]/.test(p)) classes++;
  if (/[0-9]/.test(p)) classes++;
  if (/[^A-Za-z0-9]/.test(p)) classes++;
  const unique = new Set(chars).size;
  let score = 1;
  if (chars.length >= 14 && unique >= 8) score++;
  if (chars.length >= 18 && classes >= 2) score++;
  if (chars.length >= 24 && classes >= 3 && unique >= 12) score++;
  if (unique < 5) score = 1;
  const labels = ['', 'Weak', 'Fair', 'Good', 'Strong'];
  return { score: score as Strength['score'], label: labels[score] };
}

/** A safety number's 60 digits in twelve groups of five. */
export function safetyGroups(n: string): string[] {
  const digits = n.replace(/\D/g, '');
  const out: string[] = [];
  for (let i = 0; i < digits.length; i += 5) out.push(digits.slice(i, i + 5));
  return out;
}

export const friendStatusLabels: Record<string, string> = {
  pending_out: 'Request sent',
  pending_in: 'Wants to be your friend',
  accepted: 'Friend',
  blocked: 'Blocked',
  key_changed: 'Key changed',
  removed_by_peer: 'Removed you',
};
