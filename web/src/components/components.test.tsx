import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, NetworkError } from '../api';
import { Composer } from './Composer';
import { Friends } from './Friends';
import { Login } from './Login';
import { MessageStatus } from './MessageStatus';
import { renderWithQuery } from '../testutil';

afterEach(cleanup);

describe('MessageStatus', () => {
  it('shows the status and the path, with the detail on hover', () => {
    render(<MessageStatus m={{ status: 'delivered', path: 'relay' }} />);
    const s = screen.getByTestId('msg-status');
    expect(s.textContent).toBe('Delivered · relay');
    expect(s.title).toBe('Delivered: stored on their node (via relay)');
  });

  it('shows why a message failed on tap', () => {
    render(<MessageStatus m={{ status: 'failed', path: '', error: 'refused by the recipient: not-a-friend' }} />);
    const b = screen.getByRole('button', { name: 'Failed' });
    const why = 'Failed: Their node refused it: they are no longer friends with you.';
    expect(b.title).toBe(why);
    expect(screen.queryByText(why)).toBeNull();
    fireEvent.click(b);
    expect(screen.getByText(why)).toBeTruthy();
    expect(document.body.textContent).not.toMatch(/not-a-friend/);
  });
});

describe('Composer', () => {
  it('sends on Enter, makes a new line on Shift+Enter, and empties after sending', async () => {
    const onSend = vi.fn().mockResolvedValue(true);
    render(<Composer onSend={onSend} />);
    const box = screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    fireEvent.change(box, { target: { value: 'hello' } });
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
    await act(async () => {
      fireEvent.keyDown(box, { key: 'Enter' });
    });
    expect(onSend).toHaveBeenCalledWith('hello');
    expect(box.value).toBe('');
  });

  it('keeps the text when sending fails', async () => {
    const onSend = vi.fn().mockResolvedValue(false);
    render(<Composer onSend={onSend} />);
    const box = screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    fireEvent.change(box, { target: { value: 'keep me' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Send' }));
    });
    expect(box.value).toBe('keep me');
  });

  it('shows the 32 KiB limit when near it and refuses a longer text', () => {
    const onSend = vi.fn();
    render(<Composer onSend={onSend} />);
    const box = screen.getByRole('textbox', { name: 'Message' });
    fireEvent.change(box, { target: { value: 'a'.repeat(30_000) } });
    expect(screen.getByRole('status').textContent).toMatch(/2,768 bytes left/);
    fireEvent.change(box, { target: { value: 'a'.repeat(33_000) } });
    expect(screen.getByRole('status').textContent).toMatch(/Too long: 33,000 of 32,768 bytes/);
    const send = screen.getByRole('button', { name: 'Send' }) as HTMLButtonElement;
    expect(send.disabled).toBe(true);
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).not.toHaveBeenCalled();
  });
});

describe('Login', () => {
  it('shows a wrong passphrase, and the wait when throttled', async () => {
    const login = vi.spyOn(api, 'login');
    login.mockRejectedValueOnce(new ApiError(401, 'bad_passphrase', 'wrong passphrase'));
    vi.spyOn(api, 'health').mockResolvedValue({ status: 'ok', state: 'locked' });
    renderWithQuery(<Login onDone={() => {}} />);
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'nope nope nope' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Log in' }));
    });
    expect(screen.getByRole('alert').textContent).toBe('Wrong passphrase. Check it and try again.');

    login.mockRejectedValueOnce(new ApiError(429, 'throttled', 'too many', 30));
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'nope nope nope' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Log in' }));
    });
    expect(screen.getByRole('alert').textContent).toMatch(/Try again in 30 s/);
    expect((screen.getByRole('button', { name: 'Log in' }) as HTMLButtonElement).disabled).toBe(true);
  });
});

describe('Friends', () => {
  const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', short_invite: 'parley:invite/x', fingerprint: 'f' };

  it('accepts and declines requests, and warns on a changed key', async () => {
    const accept = vi.spyOn(api, 'addFriendByID').mockResolvedValue({
      user_id: 'a', name: 'Ann', status: 'accepted', verified: false, online: false, safety_number: '',
    });
    const remove = vi.spyOn(api, 'removeFriend').mockResolvedValue(undefined);
    const dispatch = vi.fn();
    const onChanged = vi.fn().mockResolvedValue(undefined);
    render(
      <Friends
        me={me}
        dispatch={dispatch}
        onChanged={onChanged}
        friends={[
          { user_id: 'a', name: 'Ann', status: 'pending_in', verified: false, online: false, safety_number: '' },
          { user_id: 'b', name: 'Ben', status: 'pending_in', verified: false, online: false, safety_number: '' },
          { user_id: 'c', name: 'Cy', status: 'key_changed', verified: true, online: false, safety_number: '1' },
        ]}
      />,
    );
    const ann = screen.getByRole('listitem', { name: 'Ann' });
    await act(async () => {
      fireEvent.click(ann.querySelector('button')!);
    });
    expect(accept).toHaveBeenCalledWith('a');
    const ben = screen.getByRole('listitem', { name: 'Ben' });
    await act(async () => {
      fireEvent.click([...ben.querySelectorAll('button')].find((b) => b.textContent === 'Decline')!);
    });
    expect(remove).toHaveBeenCalledWith('b');
    expect(screen.getByRole('alert').textContent).toMatch(/key changed/i);
  });

  it('says in plain words that a user ID is unknown, never the API message', async () => {
    vi.spyOn(api, 'addFriendByID').mockRejectedValue(new ApiError(404, 'not_found', 'node: not found: no such user in the directory'));
    render(<Friends me={me} friends={[]} dispatch={vi.fn()} onChanged={vi.fn()} />);
    fireEvent.change(screen.getByLabelText('User ID'), { target: { value: 'abc' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Add by user ID' }));
    });
    expect(screen.getByRole('alert').textContent).toBe(
      'Nobody with that user ID was found. Check the ID with your friend, or ask for their invite link.',
    );
  });

  it('says an invalid invite is not a Parley invite link', async () => {
    vi.spyOn(api, 'addFriendByInvite').mockRejectedValue(new ApiError(400, 'bad_request', 'node: invalid argument: card: malformed'));
    render(<Friends me={me} friends={[]} dispatch={vi.fn()} onChanged={vi.fn()} />);
    fireEvent.change(screen.getByLabelText('Invite link'), { target: { value: 'hello there' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Add friend' }));
    });
    expect(screen.getByRole('alert').textContent).toBe('This isn’t a Parley invite link — ask your friend to copy it again.');
  });

  it('says the node is unreachable when the request never got an answer', async () => {
    vi.spyOn(api, 'addFriendByInvite').mockRejectedValue(new NetworkError());
    render(<Friends me={me} friends={[]} dispatch={vi.fn()} onChanged={vi.fn()} />);
    fireEvent.change(screen.getByLabelText('Invite link'), { target: { value: 'parley:x' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Add friend' }));
    });
    expect(screen.getByRole('alert').textContent).toMatch(/^Can’t reach your Parley node/);
  });
});
