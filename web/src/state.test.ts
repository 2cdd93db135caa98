import { describe, expect, it } from 'vitest';
import type { Conversation, Message } from './api';
import {
  composerInfo,
  dayLabel,
  describeStatus,
  groupByDay,
  initialState,
  mergeMessages,
  passphraseStrength,
  reducer,
  safetyGroups,
  sortConversations,
  statusAdvances,
  utf8Length,
  type ChatState,
} from './state';

function msg(id: string, at: string, over: Partial<Message> = {}): Message {
  return {
    msg_id: id,
    from: 'me',
    to: 'bob',
    text: `text ${id}`,
    sent_at: at,
    received_at: null,
    status: 'sent',
    direction: 'out',
    path: 'direct',
    ...over,
  };
}

function conv(withID: string, at: string | null, unread = 0): Conversation {
  return {
    with: withID,
    name: withID,
    unread,
    last_message: at ? { msg_id: `m-${withID}`, text: 'hi', at, direction: 'in', status: 'delivered' } : null,
  };
}

describe('message status', () => {
  it('moves forward only, and to failed only before delivery', () => {
    expect(statusAdvances('pending', 'sent')).toBe(true);
    expect(statusAdvances('sent', 'read')).toBe(true);
    expect(statusAdvances('read', 'delivered')).toBe(false);
    expect(statusAdvances('delivered', 'delivered')).toBe(false);
    expect(statusAdvances('sent', 'failed')).toBe(true);
    expect(statusAdvances('delivered', 'failed')).toBe(false);
    expect(statusAdvances('failed', 'delivered')).toBe(true);
  });

  it('describes each status and how the message travelled; a failure carries its reason', () => {
    expect(describeStatus({ status: 'delivered', path: 'direct' })).toEqual({
      label: 'Delivered',
      detail: 'Delivered: stored on their node (direct)',
    });
    // Sent through a mailbox says what sent means, and when it turns delivered.
    expect(describeStatus({ status: 'sent', path: 'mailbox' }).detail).toBe(
      'Sent: held in their mailbox on a relay while their node is offline; it turns Delivered when their node has it (via mailbox)',
    );
    expect(describeStatus({ status: 'sent', path: 'direct' }).detail).toBe('Sent: on its way to their node (direct)');
    expect(describeStatus({ status: 'read', path: 'relay' }).detail).toBe('Read: they opened the conversation (via relay)');
    expect(describeStatus({ status: 'pending', path: '' }).label).toBe('Pending');
    expect(describeStatus({ status: 'failed', path: '', error: 'friend removed' })).toEqual({
      label: 'Failed',
      detail: 'Failed: Not sent: you removed this friend.',
    });
    expect(describeStatus({ status: 'failed', path: '', error: 'some internal: thing' }).detail).toBe(
      'Failed: It could not be delivered. You can retry it or delete it.',
    );
  });
});

describe('mergeMessages', () => {
  it('keeps one copy per ID, oldest first, and never moves a status back', () => {
    const a = msg('a', '2026-01-01T10:00:00Z', { status: 'read' });
    const b = msg('b', '2026-01-01T09:00:00Z');
    const merged = mergeMessages([a], [b, { ...a, status: 'delivered' }]);
    expect(merged.map((m) => m.msg_id)).toEqual(['b', 'a']);
    expect(merged[1].status).toBe('read');
    expect(mergeMessages(merged, [{ ...b, status: 'delivered' }])[0].status).toBe('delivered');
  });
});

describe('reducer', () => {
  const base: ChatState = {
    ...initialState,
    conversations: [conv('bob', '2026-01-01T10:00:00Z'), conv('carol', '2026-01-01T11:00:00Z')],
  };

  it('sorts the conversation list newest first, empty ones last', () => {
    const cs = sortConversations([conv('a', null), conv('b', '2026-01-01T10:00:00Z'), conv('c', '2026-01-02T10:00:00Z')]);
    expect(cs.map((c) => c.with)).toEqual(['c', 'b', 'a']);
  });

  it('counts an incoming message as unread and moves its conversation to the top', () => {
    const m = msg('x', '2026-01-01T12:00:00Z', { from: 'bob', to: 'me', direction: 'in', text: 'new!' });
    const s = reducer(base, { type: 'message', message: m, peer: 'bob' });
    expect(s.conversations[0].with).toBe('bob');
    expect(s.conversations[0].unread).toBe(1);
    expect(s.conversations[0].last_message?.text).toBe('new!');
    const s2 = reducer(s, { type: 'read', with: 'bob' });
    expect(s2.conversations[0].unread).toBe(0);
  });

  it('does not count my own message as unread, and adds a conversation it did not know', () => {
    const s = reducer(base, { type: 'message', message: msg('y', '2026-01-01T12:00:00Z', { to: 'dave' }), peer: 'dave' });
    const d = s.conversations.find((c) => c.with === 'dave');
    expect(d?.unread).toBe(0);
    expect(s.conversations[0].with).toBe('dave');
  });

  it('applies a status change that arrives before the message it is about', () => {
    let s = reducer(base, { type: 'page', with: 'bob', messages: [], next: null, older: false });
    s = reducer(s, { type: 'status', change: { msg_id: 'z', with: 'bob', status: 'delivered', path: 'direct' } });
    s = reducer(s, { type: 'message', message: msg('z', '2026-01-01T12:00:00Z', { status: 'pending', path: '' }), peer: 'bob' });
    expect(s.threads.bob.messages[0].status).toBe('delivered');
    expect(s.threads.bob.messages[0].path).toBe('direct');
    expect(s.early).toEqual({});
  });

  it('keeps a message that arrives before its thread is loaded, when a first page without it comes after', () => {
    let s = reducer(base, { type: 'message', message: msg('late', '2026-01-01T12:00:00Z', { direction: 'in' }), peer: 'bob' });
    expect(s.threads.bob.loaded).toBe(false);
    s = reducer(s, { type: 'page', with: 'bob', messages: [msg('old', '2026-01-01T09:00:00Z')], next: 'c', older: false });
    expect(s.threads.bob.messages.map((m) => m.msg_id)).toEqual(['old', 'late']);
    expect(s.threads.bob).toMatchObject({ loaded: true, next: 'c' });
  });

  it('a read covers the unread it was made for, not what arrived meanwhile', () => {
    const s = reducer({ ...base, conversations: [conv('bob', '2026-01-01T10:00:00Z', 3)] }, { type: 'read', with: 'bob', count: 2 });
    expect(s.conversations[0].unread).toBe(1);
  });

  it('keeps the older-page cursor when the newest page is fetched again', () => {
    let s = reducer(base, { type: 'page', with: 'bob', messages: [msg('b', '2026-01-01T10:00:00Z')], next: 'c1', older: false });
    s = reducer(s, { type: 'page', with: 'bob', messages: [msg('a', '2026-01-01T09:00:00Z')], next: null, older: true });
    expect(s.threads.bob.next).toBeNull();
    s = reducer(s, { type: 'page', with: 'bob', messages: [msg('b', '2026-01-01T10:00:00Z')], next: 'c1', older: false });
    expect(s.threads.bob.next).toBeNull();
    expect(s.threads.bob.messages.map((m) => m.msg_id)).toEqual(['a', 'b']);
  });

  it('tracks presence and friend removal', () => {
    let s = reducer(initialState, {
      type: 'friends',
      friends: [{ user_id: 'bob', name: 'Bob', status: 'accepted', verified: false, online: false, safety_number: '' }],
    });
    s = reducer(s, { type: 'presence', presence: { user_id: 'bob', peer_id: 'p' }, online: true });
    expect(s.friends[0].online).toBe(true);
    s = reducer(s, { type: 'friendRemoved', userID: 'bob' });
    expect(s.friends).toEqual([]);
  });
});

describe('composer limits', () => {
  it('counts UTF-8 bytes', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('😀')).toBe(4);
  });

  it('shows the limit from 90 % of 32 KiB and refuses over it', () => {
    expect(composerInfo('hello')).toMatchObject({ showLimit: false, over: false, canSend: true });
    expect(composerInfo('   \n ')).toMatchObject({ canSend: false });
    expect(composerInfo('a'.repeat(29_491))).toMatchObject({ showLimit: false });
    expect(composerInfo('a'.repeat(29_492))).toMatchObject({ showLimit: true, over: false, canSend: true });
    expect(composerInfo('a'.repeat(32_768))).toMatchObject({ over: false, canSend: true });
    expect(composerInfo('a'.repeat(32_769))).toMatchObject({ showLimit: true, over: true, canSend: false });
    expect(composerInfo('é'.repeat(16_385))).toMatchObject({ bytes: 32_770, over: true });
  });
});

describe('day groups', () => {
  it('groups by local day with Today and Yesterday', () => {
    const now = new Date(2026, 5, 10, 12, 0);
    const at = (d: number, h: number) => new Date(2026, 5, d, h, 0).toISOString();
    const groups = groupByDay([msg('1', at(8, 9)), msg('2', at(9, 9)), msg('3', at(9, 22)), msg('4', at(10, 1))], now);
    expect(groups.map((g) => g.messages.length)).toEqual([1, 2, 1]);
    expect(groups[1].label).toBe('Yesterday');
    expect(groups[2].label).toBe('Today');
    expect(dayLabel(new Date(2025, 0, 1), now)).toMatch(/2025/);
  });
});

describe('passphrase strength and safety numbers', () => {
  it('rates passphrases', () => {
    expect(passphraseStrength('').score).toBe(0);
    expect(passphraseStrength('short').label).toMatch(/Too short/);
    expect(passphraseStrength('aaaaaaaaaaaa').score).toBe(1);
    expect(passphraseStrength('correct horse battery staple').score).toBeGreaterThanOrEqual(3);
  });

  it('splits 60 digits into 12 groups of 5', () => {
    const n = '123456789012345678901234567890123456789012345678901234567890';
    const g = safetyGroups(n);
    expect(g).toHaveLength(12);
    expect(g[0]).toBe('12345');
    expect(safetyGroups('12345 67890')).toEqual(['12345', '67890']);
  });
});
