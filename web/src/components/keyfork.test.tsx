import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, type Friend } from '../api';
import { renderWithQuery } from '../testutil';
import { Conversation } from './Conversation';
import { Friends } from './Friends';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', short_invite: 'parley:invite/x', fingerprint: 'f' };
const alice: Friend = {
  user_id: 'alice',
  name: 'Alice',
  status: 'accepted',
  verified: false,
  online: false,
  safety_number: '1',
  key_fork: true,
};

const forkText =
  /Alice\u2019s key signed two different histories\. Someone may have stolen their key\. Messages to them are held until you compare safety numbers again\./;

describe('key fork warning', () => {
  it('shows a red warning on the friend in plain words', () => {
    render(
      <Friends
        me={me}
        friends={[alice, { ...alice, user_id: 'bob', name: 'Bob', key_fork: false }]}
        dispatch={vi.fn()}
        onChanged={vi.fn().mockResolvedValue(undefined)}
      />,
    );
    const warnings = screen.getAllByTestId('key-fork-warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0].getAttribute('role')).toBe('alert');
    expect(warnings[0].className).toContain('key-fork');
    expect(warnings[0].textContent).toMatch(forkText);
  });

  it('holds the composer in the conversation and links to the safety number', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({ messages: [], next: null });
    const send = vi.spyOn(api, 'send');
    await act(async () => {
      renderWithQuery(<Conversation me={me} peer="alice" friend={alice} />);
    });
    const banner = screen.getByTestId('key-fork-warning');
    expect(banner.textContent).toMatch(forkText);
    expect(banner.className).toContain('danger');
    expect(screen.getByRole('link', { name: 'Compare safety numbers' })).toBeTruthy();
    expect((screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement).disabled).toBe(true);
    expect(send).not.toHaveBeenCalled();
  });

  it('shows nothing once the friend is verified again', async () => {
    vi.spyOn(api, 'messages').mockResolvedValue({ messages: [], next: null });
    await act(async () => {
      renderWithQuery(
        <Conversation me={me} peer="alice" friend={{ ...alice, key_fork: false, verified: true }} />,
      );
    });
    expect(screen.queryByTestId('key-fork-warning')).toBeNull();
  });
});
