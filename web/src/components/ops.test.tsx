import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, opsApi } from '../api';
import { AuditLog } from './AuditLog';
import { Backup } from './Backup';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

describe('Backup', () => {
  it('downloads the file the node streams, with the name it suggests', async () => {
    const blob = new Blob(['age-encryption.org/v1']);
    const backup = vi.spyOn(opsApi, 'backup').mockResolvedValue({ blob, filename: 'parley-backup-1.age' });
    const save = vi.fn();
    render(<Backup save={save} />);
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'correct horse battery' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Download backup' }));
    });
    expect(backup).toHaveBeenCalledWith('correct horse battery');
    expect(save).toHaveBeenCalledWith(blob, 'parley-backup-1.age');
    expect(screen.getByRole('status').textContent).toMatch(/Saved parley-backup-1.age/);
    expect((screen.getByLabelText('Passphrase') as HTMLInputElement).value).toBe('');
  });

  it('says plainly that a wrong passphrase made no backup', async () => {
    vi.spyOn(opsApi, 'backup').mockRejectedValue(new ApiError(403, 'forbidden', 'wrong passphrase'));
    const save = vi.fn();
    render(<Backup save={save} />);
    fireEvent.change(screen.getByLabelText('Passphrase'), { target: { value: 'nope nope nope' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Download backup' }));
    });
    expect(screen.getByRole('alert').textContent).toBe('Wrong passphrase: no backup was made.');
    expect(save).not.toHaveBeenCalled();
  });
});

describe('AuditLog', () => {
  it('lists recent security events in words', async () => {
    vi.spyOn(opsApi, 'audit').mockResolvedValue([
      { time: '2030-01-01T00:00:02Z', event: 'envelopes_refused', fields: { peer_id: '12D3KooWabcdefgh', code: 'replay', count: '7' } },
      { time: '2030-01-01T00:00:01Z', event: 'login_failed', fields: { via: 'api' } },
    ]);
    await act(async () => {
      render(<AuditLog />);
    });
    const items = screen.getAllByRole('listitem').map((li) => li.textContent);
    expect(items[0]).toMatch(/Messages refused.*replay.*× 7/);
    expect(items[1]).toMatch(/Wrong passphrase.*via api/);
  });
});
