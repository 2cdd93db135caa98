import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { useQuery, type QueryClient } from '@tanstack/react-query';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, type Friend } from '../api';
import { keys } from '../cache';
import { codeSentences } from '../errors';
import type { Thread } from '../state';
import { renderWithQuery, testQueryClient } from '../testutil';
import { Conversation } from './Conversation';
import { Friends } from './Friends';

afterEach(cleanup);

const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', short_invite: 'parley:invite/x', fingerprint: 'f' };
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
  it('shows messages from the API and warns in plain words when a send is held for a changed key', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({
      messages: [
        {
          msg_id: 'm1', from: 'bob', to: 'me', text: 'hi there', sent_at: new Date().toISOString(),
          received_at: new Date().toISOString(), status: 'delivered', direction: 'in', path: 'direct',
        },
      ],
      next: null,
    });
    vi.spyOn(api, 'send').mockRejectedValue(new ApiError(409, 'key_changed', "node: friend's key changed"));
    let qc!: QueryClient;
    await act(async () => {
      ({ qc } = renderWithQuery(<Conversation me={me} peer="bob" friend={bob} />));
    });
    await screen.findByText('hi there');
    expect(qc.getQueryData<Thread>(keys.thread('bob'))?.messages).toHaveLength(1);
    const box = screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    fireEvent.change(box, { target: { value: 'still there?' } });
    await act(async () => {
      fireEvent.keyDown(box, { key: 'Enter' });
    });
    const alerts = screen.getAllByRole('alert').map((a) => a.textContent ?? '');
    expect(alerts.some((t) => /key has changed/.test(t))).toBe(true);
    expect(alerts).toContain(codeSentences.key_changed);
    expect(alerts.join(' ')).not.toMatch(/node:/);
    expect(box.value).toBe('still there?');
  });

  it('marks the conversation read while it is visible and has unread messages', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({ messages: [], next: null });
    const markRead = vi.spyOn(api, 'markRead').mockResolvedValue(undefined);
    const qc = testQueryClient();
    qc.setQueryData(keys.conversations, [{ with: 'bob', name: 'Bob', unread: 2, last_message: null }]);
    function Harness() {
      const { data } = useQuery({ queryKey: keys.conversations, queryFn: () => Promise.resolve([]) });
      return <Conversation me={me} peer="bob" friend={bob} conversation={data?.[0]} />;
    }
    await act(async () => {
      renderWithQuery(<Harness />, qc);
    });
    await waitFor(() => expect(qc.getQueryData<{ unread: number }[]>(keys.conversations)?.[0].unread).toBe(0));
    expect(markRead).toHaveBeenCalledOnce();
    expect(markRead).toHaveBeenCalledWith('bob');
  });

  it('loads older messages when scrolled to the top', async () => {
    const newer = {
      msg_id: 'm2', from: 'bob', to: 'me', text: 'newer', sent_at: new Date().toISOString(),
      received_at: null, status: 'delivered' as const, direction: 'in' as const, path: 'direct' as const,
    };
    const older = { ...newer, msg_id: 'm1', text: 'older', sent_at: new Date(Date.now() - 60_000).toISOString() };
    const messages = vi
      .spyOn(api, 'messages')
      .mockResolvedValueOnce({ messages: [newer], next: 'cursor-1' })
      .mockResolvedValueOnce({ messages: [older], next: null });
    await act(async () => {
      renderWithQuery(<Conversation me={me} peer="bob" friend={bob} />);
    });
    await screen.findByRole('button', { name: 'Load older messages' });
    await act(async () => {
      fireEvent.scroll(screen.getByRole('log'));
    });
    expect(messages).toHaveBeenLastCalledWith('bob', 'cursor-1');
    await waitFor(() =>
      expect(screen.getAllByTestId('message').map((m) => m.querySelector('.text')?.textContent)).toEqual(['older', 'newer']),
    );
    expect(screen.queryByRole('button', { name: 'Load older messages' })).toBeNull();
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
