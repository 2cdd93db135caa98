import { useMutation } from '@tanstack/react-query';
import { useState, type KeyboardEvent } from 'react';
import { messageApi, type Message } from '../api';
import { humanError } from '../errors';
import { useChatCache } from '../hooks';

/**
 * The menu of one message: a failed message of mine can be sent again;
 * any message can be deleted from this device (after a confirm).
 */
export function MessageMenu({ m, peer }: { m: Message; peer: string }) {
  const cache = useChatCache();
  const [open, setOpen] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const canRetry = m.direction === 'out' && m.status === 'failed';

  const retry = useMutation({
    mutationFn: () => messageApi.retryMessage(m.msg_id),
    onSuccess: (r) => {
      cache.replaceMessage(peer, m.msg_id, { ...m, msg_id: r.msg_id || m.msg_id, status: r.status, path: '', error: undefined });
      setOpen(false);
    },
  });
  const remove = useMutation({
    mutationFn: () => messageApi.deleteMessage(m.msg_id),
    onSuccess: () => cache.removeMessage(peer, m.msg_id),
  });
  const failed = retry.error ?? remove.error;

  function close() {
    setOpen(false);
    setConfirming(false);
  }

  function keyDown(e: KeyboardEvent) {
    if (e.key === 'Escape') close();
  }

  return (
    <span className="msg-menu" onKeyDown={keyDown}>
      <button
        type="button"
        className="link menu-button"
        aria-label="Message actions"
        aria-haspopup="menu"
        aria-expanded={open}
        onClick={() => (open ? close() : setOpen(true))}
      >
        ⋯
      </button>
      {open && !confirming && (
        <span role="menu" className="menu" aria-label="Message actions">
          {canRetry && (
            <button type="button" role="menuitem" disabled={retry.isPending} onClick={() => retry.mutate()}>
              {retry.isPending ? 'Sending again…' : 'Retry'}
            </button>
          )}
          <button type="button" role="menuitem" onClick={() => setConfirming(true)}>
            Delete…
          </button>
        </span>
      )}
      {open && confirming && (
        <span role="group" className="menu confirm" aria-label="Confirm delete">
          <span className="small">
            Delete this message from this device?{m.direction === 'out' ? ' It stays on theirs.' : ''}
          </span>
          <button type="button" className="danger" disabled={remove.isPending} onClick={() => remove.mutate()}>
            Delete
          </button>
          <button type="button" onClick={close}>
            Cancel
          </button>
        </span>
      )}
      {failed && (
        <span role="alert" className="error small">
          {humanError(failed, retry.error ? 'retry' : 'delete')}
        </span>
      )}
    </span>
  );
}
