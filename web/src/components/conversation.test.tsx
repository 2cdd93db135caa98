import { act, cleanup, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, messageApi, type Friend, type Message } from '../api';
import { keys, REMOVED_BY_PEER } from '../cache';
import type { Thread } from '../state';
import { renderWithQuery } from '../testutil';
import { Composer } from './Composer';
import { Conversation } from './Conversation';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', short_invite: 'parley:invite/x', fingerprint: 'f' };
const alice: Friend = { user_id: 'alice', name: 'Alice', status: 'accepted', verified: false, online: false, safety_number: '1' };

function msg(id: string, over: Partial<Message> = {}): Message {
  return {
    msg_id: id, from: 'alice', to: 'me', text: `text ${id}`, sent_at: new Date().toISOString(),
    received_at: null, status: 'delivered', direction: 'in', path: 'direct', ...over,
  };
}

async function open(messages: Message[], friend: Friend | undefined, conversation?: { name: string }) {
  vi.spyOn(api, 'messages').mockResolvedValue({ messages, next: null });
  vi.spyOn(api, 'markRead').mockResolvedValue(undefined);
  let r!: ReturnType<typeof renderWithQuery>;
  await act(async () => {
    r = renderWithQuery(
      <Conversation
        me={me}
        peer="alice"
        friend={friend}
        conversation={conversation && { with: 'alice', name: conversation.name, unread: 0, last_message: null }}
      />,
    );
  });
  if (messages.length) await screen.findByText(messages[0].text);
  return r;
}

function composer() {
  return screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
}

describe('a friend who removed me', () => {
  it('says so in the conversation, keeps the history and disables the composer', async () => {
    await open([msg('m1', { text: 'old words' })], { ...alice, status: REMOVED_BY_PEER });
    expect(screen.getByTestId('no-longer-friends').textContent).toMatch(/^You are no longer friends with Alice\./);
    expect(screen.getByText('old words')).toBeTruthy();
    expect(composer().disabled).toBe(true);
    expect((screen.getByRole('button', { name: 'Send' }) as HTMLButtonElement).disabled).toBe(true);
  });
});

describe('a chat with someone I removed', () => {
  it('keeps their name, marks them as not a friend, and lets me read but not write', async () => {
    await open([msg('m1', { text: 'history' })], undefined, { name: 'Alice' });
    expect(screen.getByRole('heading', { level: 2 }).textContent).toBe('Alice');
    expect(screen.getByTestId('not-a-friend').textContent).toMatch(/Alice is not on your friend list any more/);
    expect(screen.getByText('history')).toBeTruthy();
    expect(composer().disabled).toBe(true);
  });

  it('never shows a nameless chat', async () => {
    await open([], undefined, { name: '' });
    expect(screen.getByRole('heading', { level: 2 }).textContent).toMatch(/^Former friend alice/);
  });
});

describe('message menu', () => {
  it('retries a failed message, which goes back to pending', async () => {
    const failed = msg('f1', { direction: 'out', from: 'me', to: 'alice', status: 'failed', error: 'refused by the recipient: not-a-friend', text: 'try me' });
    const retry = vi.spyOn(messageApi, 'retryMessage').mockResolvedValue({ msg_id: 'f1', status: 'pending' });
    const { qc } = await open([failed], alice);
    const bubble = screen.getAllByTestId('message')[0];
    fireEvent.click(within(bubble).getByRole('button', { name: 'Message actions' }));
    await act(async () => {
      fireEvent.click(within(bubble).getByRole('menuitem', { name: 'Retry' }));
    });
    expect(retry).toHaveBeenCalledWith('f1');
    await waitFor(() => expect(qc.getQueryData<Thread>(keys.thread('alice'))?.messages[0].status).toBe('pending'));
    expect(within(screen.getAllByTestId('message')[0]).getByTestId('msg-status').textContent).toBe('Pending');
  });

  it('offers no retry for a message that did not fail', async () => {
    await open([msg('d1', { direction: 'out', from: 'me', to: 'alice', status: 'delivered' })], alice);
    fireEvent.click(screen.getByRole('button', { name: 'Message actions' }));
    expect(screen.queryByRole('menuitem', { name: 'Retry' })).toBeNull();
    expect(screen.getByRole('menuitem', { name: 'Delete…' })).toBeTruthy();
  });

  it('deletes any message after a confirm; cancel keeps it', async () => {
    const del = vi.spyOn(messageApi, 'deleteMessage').mockResolvedValue(undefined);
    await open([msg('m1', { text: 'delete me' }), msg('m2', { text: 'keep me' })], alice);
    const first = () => screen.getAllByTestId('message')[0];
    fireEvent.click(within(first()).getByRole('button', { name: 'Message actions' }));
    fireEvent.click(within(first()).getByRole('menuitem', { name: 'Delete…' }));
    expect(within(first()).getByRole('group', { name: 'Confirm delete' }).textContent).toMatch(/Delete this message from this device\?/);
    fireEvent.click(within(first()).getByRole('button', { name: 'Cancel' }));
    expect(del).not.toHaveBeenCalled();
    fireEvent.click(within(first()).getByRole('button', { name: 'Message actions' }));
    fireEvent.click(within(first()).getByRole('menuitem', { name: 'Delete…' }));
    await act(async () => {
      fireEvent.click(within(first()).getByRole('button', { name: 'Delete' }));
    });
    expect(del).toHaveBeenCalledWith('m1');
    await waitFor(() => expect(screen.queryByText('delete me')).toBeNull());
    expect(screen.getByText('keep me')).toBeTruthy();
  });

  it('says in plain words when a retry is refused', async () => {
    const failed = msg('f1', { direction: 'out', from: 'me', to: 'alice', status: 'failed' });
    vi.spyOn(messageApi, 'retryMessage').mockRejectedValue(new ApiError(404, 'not_found', 'node: not found: message f1'));
    await open([failed], alice);
    fireEvent.click(screen.getByRole('button', { name: 'Message actions' }));
    await act(async () => {
      fireEvent.click(screen.getByRole('menuitem', { name: 'Retry' }));
    });
    expect((await screen.findByRole('alert')).textContent).toBe('That message is gone, so it can’t be sent again.');
  });
});

describe('whitespace-only text', () => {
  it('is refused: Send stays disabled and Enter sends nothing', async () => {
    const onSend = vi.fn().mockResolvedValue(true);
    renderWithQuery(<Composer onSend={onSend} />);
    fireEvent.change(composer(), { target: { value: '  \n\t  ' } });
    expect((screen.getByRole('button', { name: 'Send' }) as HTMLButtonElement).disabled).toBe(true);
    await act(async () => {
      fireEvent.keyDown(composer(), { key: 'Enter' });
    });
    expect(onSend).not.toHaveBeenCalled();
  });
});

describe('marking read', () => {
  it('tries again when marking read failed (the node was restarting), once, after a pause', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({ messages: [msg('m1', { text: 'while you were away' })], next: null });
    const markRead = vi
      .spyOn(api, 'markRead')
      .mockRejectedValueOnce(new ApiError(503, 'unavailable', 'the node is starting'))
      .mockResolvedValue(undefined);
    await act(async () => {
      renderWithQuery(
        <Conversation me={me} peer="alice" friend={alice} conversation={{ with: 'alice', name: 'Alice', unread: 1, last_message: null }} />,
      );
    });
    await screen.findByText('while you were away');
    expect(markRead).toHaveBeenCalledTimes(1);
    await waitFor(() => expect(markRead).toHaveBeenCalledTimes(2), { timeout: 5000 });
    expect(markRead).toHaveBeenLastCalledWith('alice');
  });
});
