import { useState } from 'react';
import type { Message } from '../api';
import { describeStatus } from '../state';

/** The status of a message of mine, and how it travelled; a failed one shows its reason on hover or tap. */
export function MessageStatus({ m }: { m: Pick<Message, 'status' | 'path' | 'error'> }) {
  const [open, setOpen] = useState(false);
  const { label, detail } = describeStatus(m);
  if (m.status === 'failed') {
    return (
      <span className="status status-failed">
        <button type="button" className="link" title={detail} aria-expanded={open} onClick={() => setOpen(!open)}>
          {label}
        </button>
        {open && <span className="reason">{detail}</span>}
      </span>
    );
  }
  return (
    <span className={`status status-${m.status}`} title={detail} data-testid="msg-status">
      {label}
      {m.path && m.status !== 'pending' && <span className="path"> · {m.path}</span>}
    </span>
  );
}
