import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { useReducer } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, type Friend } from '../api';
import { Conversation } from './Conversation';
import { Friends } from './Friends';
import { initialState, reducer, type ChatState } from '../state';

afterEach(cleanup);

const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', fingerprint: 'f' };
const bob: Friend = { user_id: 'bob', name: 'Bob', status: 'accepted', verified: false, online: true, safety_number: '1' };

describe('name search', () => {
  it('lists everyone who claims the name with their fingerprint, and adds one', async () => {
    vi.spyOn(api, 'searchDirectory').mockResolvedValue([
      { user_id: 'b1', name: 'Bob', fingerprint: 'aaaa bbbb', friend: false },
      { user_id: 'b2', name: 'bob', fingerprint: 'cccc dddd', friend: true },
    ]);
    const add = vi.spyOn(api, 'addFriendByID').mockResolvedValue({ ...bob, user_id: 'b1', status: 'pending_out' });
    render(<Friends me={me} friends={[]} dispatch={vi.fn()} onChanged={vi.fn().mockResolvedValue(undefined)} />);
    fireEvent.change(screen.getByLabelText('Search by name'), { target: { value: 'bob' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Search' }));
    });
    expect(screen.getByText('Fingerprint aaaa bbbb')).toBeTruthy();
    expect(screen.getByText('Already a friend')).toBeTruthy();
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Add Bob' }));
    });
    expect(add).toHaveBeenCalledWith('b1');
    expect(screen.getByText(/Request sent to Bob/).getAttribute('role')).toBe('status');
  });
});

describe('Conversation', () => {
  it('shows messages from the API and warns clearly when a send is held for a changed key', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({
      messages: [
        {
          msg_id: 'm1', from: 'bob', to: 'me', text: 'hi there', sent_at: new Date().toISOString(),
          received_at: new Date().toISOString(), status: 'delivered', direction: 'in', path: 'direct',
        },
      ],
      next: null,
    });
    vi.spyOn(api, 'send').mockRejectedValue(new ApiError(409, 'key_changed', "Bob's key changed: verify it first"));
    const dispatch = vi.fn();
    await act(async () => {
      render(<Conversation me={me} peer="bob" friend={bob} dispatch={dispatch} reloadKey={0} />);
    });
    expect(dispatch).toHaveBeenCalledWith(expect.objectContaining({ type: 'page', with: 'bob' }));
    const box = screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    fireEvent.change(box, { target: { value: 'still there?' } });
    await act(async () => {
      fireEvent.keyDown(box, { key: 'Enter' });
    });
    const alerts = screen.getAllByRole('alert').map((a) => a.textContent);
    expect(alerts.some((t) => /key has changed/.test(t ?? ''))).toBe(true);
    expect(alerts).toContain("Bob's key changed: verify it first");
    expect(box.value).toBe('still there?');
  });

  it('marks the conversation read while it is visible and has unread messages', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({ messages: [], next: null });
    const markRead = vi.spyOn(api, 'markRead').mockResolvedValue(undefined);
    let state: ChatState = {
      ...initialState,
      conversations: [{ with: 'bob', name: 'Bob', unread: 2, last_message: null }],
    };
    function Harness() {
      const [s, dispatch] = useReducer(reducer, state);
      state = s;
      return (
        <Conversation me={me} peer="bob" friend={bob} conversation={s.conversations[0]} dispatch={dispatch} reloadKey={0} />
      );
    }
    await act(async () => {
      render(<Harness />);
    });
    expect(markRead).toHaveBeenCalledOnce();
    expect(markRead).toHaveBeenCalledWith('bob');
    expect(state.conversations[0].unread).toBe(0);
  });

  it('loads older messages when scrolled to the top', async () => {
    const messages = vi.spyOn(api, 'messages').mockResolvedValue({ messages: [], next: null });
    const dispatch = vi.fn();
    const thread = {
      loaded: true,
      next: 'cursor-1',
      messages: [
        {
          msg_id: 'm2', from: 'bob', to: 'me', text: 'newer', sent_at: new Date().toISOString(),
          received_at: null, status: 'delivered' as const, direction: 'in' as const, path: 'direct' as const,
        },
      ],
    };
    await act(async () => {
      render(<Conversation me={me} peer="bob" friend={bob} thread={thread} dispatch={dispatch} reloadKey={0} />);
    });
    await act(async () => {
      fireEvent.scroll(screen.getByRole('log'));
    });
    expect(messages).toHaveBeenCalledWith('bob', 'cursor-1');
    expect(dispatch).toHaveBeenCalledWith({ type: 'page', with: 'bob', messages: [], next: null, older: true });
    expect(screen.getByRole('button', { name: 'Load older messages' })).toBeTruthy();
  });
});

describe('Register', () => {
  it('checks the passphrase, shows progress while the node makes the keys, then the invite', async () => {
    const { Register } = await import('./Register');
    let finish: (v: { user_id: string; peer_id: string; token: string }) => void = () => {};
    vi.spyOn(api, 'register').mockReturnValue(new Promise((r) => (finish = r)));
    vi.spyOn(api, 'me').mockResolvedValue(me);
    render(<Register onDone={() => {}} />);
    fireEvent.change(screen.getByLabelText('Display name'), { target: { value: 'Me' } });
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'long enough pass' } });
    fireEvent.change(screen.getByLabelText('Confirm passphrase'), { target: { value: 'long enough pasS' } });
    expect(screen.getByText('The passphrases differ.')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Register' }));
    expect(screen.getByRole('alert').textContent).toBe('The two passphrases differ.');
    fireEvent.change(screen.getByLabelText('Confirm passphrase'), { target: { value: 'long enough pass' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Register' }));
    });
    expect(screen.getByRole('status').textContent).toMatch(/Generating your keys/);
    await act(async () => finish({ user_id: 'me', peer_id: 'p', token: 't' }));
    expect(screen.getByRole('heading', { name: 'Welcome, Me' })).toBeTruthy();
    expect(screen.getByRole('img', { name: 'QR code of your invite link' })).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Copy invite link' })).toBeTruthy();
  });
});
