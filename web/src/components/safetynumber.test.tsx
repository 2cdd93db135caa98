import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, type Friend } from '../api';
import { SafetyNumber } from './SafetyNumber';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const number = '12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890';
const bob: Friend = {
  user_id: 'bob',
  name: 'Bob',
  status: 'accepted',
  verified: false,
  online: false,
  safety_number: number,
};

describe('friend details: safety number and key trust', () => {
  it('says in plain words that a rotated key was chained', () => {
    render(<SafetyNumber friend={{ ...bob, key_rotated: true }} onChanged={vi.fn().mockResolvedValue(undefined)} />);
    expect(screen.getByText(/Key rotated, chain verified: Bob moved to a new key, signed by their old one\./)).toBeTruthy();
    expect(screen.getByText(/The safety number stays the same\./)).toBeTruthy();
  });

  it('says nothing about rotation for a key that never rotated', () => {
    render(<SafetyNumber friend={bob} onChanged={vi.fn().mockResolvedValue(undefined)} />);
    expect(screen.queryByText(/Key rotated/)).toBeNull();
  });

  it('asks to compare the new number after a key change, and verifies with the number shown', async () => {
    const verify = vi.spyOn(api, 'verifyFriend').mockResolvedValue(undefined);
    const onChanged = vi.fn().mockResolvedValue(undefined);
    render(<SafetyNumber friend={{ ...bob, status: 'key_changed', key_rotated: true }} onChanged={onChanged} />);
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toMatch(/Bob\u2019s key has changed, without a signature from their old key\./);
    expect(alert.textContent).toMatch(/compare this new number with them/);
    // The warning wins over the rotation note.
    expect(screen.queryByText(/Key rotated/)).toBeNull();
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Mark as verified' }));
    });
    expect(verify).toHaveBeenCalledWith('bob', number);
    expect(onChanged).toHaveBeenCalled();
  });

  it('explains a refused number in plain words and shows the current one', async () => {
    vi.spyOn(api, 'verifyFriend').mockRejectedValue(
      new ApiError(409, 'conflict', 'node: not the current safety number: for bob'),
    );
    const onChanged = vi.fn().mockResolvedValue(undefined);
    render(<SafetyNumber friend={{ ...bob, status: 'key_changed' }} onChanged={onChanged} />);
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Mark as verified' }));
    });
    const texts = screen.getAllByRole('alert').map((a) => a.textContent);
    expect(texts).toContain(
      'The safety number changed while it was shown. Compare the number shown now, then mark it as verified.',
    );
    expect(texts.join(' ')).not.toMatch(/node:/);
    expect(onChanged).toHaveBeenCalled();
  });
});
