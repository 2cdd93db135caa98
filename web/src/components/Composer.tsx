import { useState, type FormEvent, type KeyboardEvent } from 'react';
import { MAX_TEXT_BYTES } from '../api';
import { composerInfo } from '../state';

/**
 * The message composer: Enter sends, Shift+Enter makes a new line, and the
 * 32 KiB limit shows when the text nears it. onSend resolves true when the
 * message was taken (then the box empties).
 */
export function Composer({ onSend, disabled }: { onSend: (text: string) => Promise<boolean>; disabled?: boolean }) {
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const info = composerInfo(text);

  async function send() {
    if (!info.canSend || busy || disabled) return;
    setBusy(true);
    try {
      if (await onSend(text)) setText('');
    } finally {
      setBusy(false);
    }
  }

  function keyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void send();
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    void send();
  }

  return (
    <form className="composer" onSubmit={submit}>
      <textarea
        aria-label="Message"
        placeholder={disabled ? 'You cannot send messages here' : 'Write a message'}
        title="Enter sends; Shift+Enter makes a new line"
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={keyDown}
        rows={Math.min(6, Math.max(1, text.split('\n').length))}
        disabled={disabled}
        aria-describedby={info.showLimit ? 'composer-limit' : undefined}
        aria-invalid={info.over}
      />
      {info.showLimit && (
        <span id="composer-limit" className={`limit ${info.over ? 'over' : ''}`} role="status">
          {info.over
            ? `Too long: ${info.bytes.toLocaleString()} of ${MAX_TEXT_BYTES.toLocaleString()} bytes`
            : `${(MAX_TEXT_BYTES - info.bytes).toLocaleString()} bytes left`}
        </span>
      )}
      <button type="submit" className="primary" disabled={!info.canSend || busy || disabled}>
        Send
      </button>
    </form>
  );
}
