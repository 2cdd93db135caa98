import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, type Conversation, type Friend } from '../api';
import { REMOVED_BY_PEER } from '../cache';
import { MAX_NAME_BYTES } from '../errors';
import { listTimeLabel, timeLabel } from '../state';
import { ChatList } from './ChatList';
import { Login, ownerLine } from './Login';
import { Register } from './Register';
import { renderWithQuery } from '../testutil';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

describe('login screen', () => {
  it('says whose node it is: the name, else the user ID, else its address', async () => {
    // Asked of the node when the screen shows.
    vi.spyOn(api, 'health').mockResolvedValue({ status: 'ok', state: 'locked', name: 'Bob', user_id: 'u2' });
    renderWithQuery(<Login onDone={() => {}} />);
    expect((await screen.findByText('This is Bob’s node.')).dataset.testid).toBe('node-owner');
    expect(ownerLine({ user_id: 'ABC' }, 'h:1')).toBe('This is the node of user ABC.');
    expect(ownerLine(undefined, '127.0.0.1:7733')).toBe('This is the Parley node at 127.0.0.1:7733.');
  });
});

describe('register', () => {
  it('limits the display name to the API’s 64 bytes', async () => {
    const register = vi.spyOn(api, 'register');
    render(<Register onDone={() => {}} />);
    const name = screen.getByLabelText('Display name') as HTMLInputElement;
    expect(name.maxLength).toBe(MAX_NAME_BYTES);
    // 40 characters, but 80 bytes of UTF-8: maxlength alone lets it through.
    fireEvent.change(name, { target: { value: 'é'.repeat(40) } });
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'long enough pass' } });
    fireEvent.change(screen.getByLabelText('Confirm passphrase'), { target: { value: 'long enough pass' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Register' }));
    });
    expect(screen.getByRole('alert').textContent).toMatch(/^That name is too long: use at most 64 bytes/);
    expect(register).not.toHaveBeenCalled();
  });
});

describe('chat list', () => {
  const at = new Date().toISOString();
  const conv = (id: string, name: string): Conversation => ({
    with: id,
    name,
    unread: 0,
    last_message: { msg_id: `m-${id}`, text: 'hello', at, direction: 'in', status: 'delivered' },
  });
  const f = (id: string, name: string, status: Friend['status']): Friend => ({
    user_id: id, name, status, verified: false, online: false, safety_number: '',
  });

  it('shows the send time of the last message, and marks whoever is not a friend any more', () => {
    render(
      <ChatList
        conversations={[conv('a', 'Ann'), conv('b', 'Ben'), conv('c', '')]}
        friends={[f('a', 'Ann', 'accepted'), f('b', 'Ben', REMOVED_BY_PEER)]}
      />,
    );
    const items = screen.getAllByTestId('chat-item');
    expect(items.map((i) => i.querySelector('[data-testid="chat-time"]')?.textContent)).toEqual(Array(3).fill(timeLabel(at)));
    expect(items[0].querySelector('[data-testid="chat-gone"]')).toBeNull();
    expect(items[1].querySelector('[data-testid="chat-gone"]')?.textContent).toBe('Removed you');
    expect(items[2].querySelector('[data-testid="chat-gone"]')?.textContent).toBe('Not a friend');
    expect(items[2].querySelector('.chat-name')?.textContent).toMatch(/^Former friend c/);
    expect(items[2].querySelector('.avatar')?.textContent).not.toBe('?');
  });
});

describe('times follow the locale', () => {
  const iso = new Date(2026, 5, 10, 14, 5).toISOString();
  it('formats with the given locale, and the browser’s when none is given', () => {
    expect(timeLabel(iso, 'en-US')).toMatch(/^2:05\sPM$/);
    expect(timeLabel(iso, 'de-DE')).toBe('14:05');
    expect(timeLabel(iso)).toBe(new Intl.DateTimeFormat(undefined, { timeStyle: 'short' }).format(new Date(iso)));
    const now = new Date(2026, 5, 10, 18, 0);
    expect(listTimeLabel(iso, now, 'de-DE')).toBe('14:05');
    expect(listTimeLabel(new Date(2026, 5, 8, 9, 0).toISOString(), now, 'en-US')).toBe('Mon');
    expect(listTimeLabel(new Date(2026, 0, 2, 9, 0).toISOString(), now, 'de-DE')).toBe('02.01.26');
  });
});
