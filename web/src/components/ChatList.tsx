import type { Conversation, Friend } from '../api';
import { formerFriend, removedByPeer } from '../cache';
import { dateTimeLabel, describeStatus, listTimeLabel } from '../state';
import { Link } from './Main';

/** The conversation list: newest first, with last message, time, unread count and online dot. */
export function ChatList({
  conversations,
  friends,
  friendsLoaded = true,
  openChat,
}: {
  conversations: Conversation[];
  friends: Friend[];
  /** The friend list is loaded: a chat whose person is not on it is marked. */
  friendsLoaded?: boolean;
  openChat?: string;
}) {
  const byID = new Map(friends.map((f) => [f.user_id, f]));
  const withoutChat = friends.filter(
    (f) => (f.status === 'accepted' || f.status === 'key_changed') && !conversations.some((c) => c.with === f.user_id),
  );
  if (conversations.length === 0 && withoutChat.length === 0) {
    return (
      <div className="empty">
        <h2>No chats yet</h2>
        <p>
          Parley has no central server, so you add friends directly: send them your invite link, or paste theirs, in{' '}
          <Link to={{ name: 'friends' }}>Friends</Link>. Once they accept, they show up here.
        </p>
      </div>
    );
  }
  return (
    <>
      <h2 className="pane-title">Chats</h2>
      <ul className="chats">
        {conversations.map((c) => {
          const f = byID.get(c.with);
          const lm = c.last_message;
          const name = f?.name || c.name || formerFriend(c.with);
          // Whoever is not a friend (any more) keeps their chat, marked: history to read, nothing to send.
          const gone = removedByPeer(f) ? 'Removed you' : friendsLoaded && !f ? 'Not a friend' : '';
          const preview = lm ? (lm.direction === 'out' ? `You: ${lm.text}` : lm.text) : 'No messages yet';
          return (
            <li key={c.with}>
              <Link
                to={{ name: 'chats', with: c.with }}
                className="chat-item"
                aria-current={openChat === c.with ? 'page' : undefined}
                data-testid="chat-item"
              >
                <span className={`avatar ${f?.online ? 'online' : ''}`} aria-hidden="true">
                  {initials(name)}
                </span>
                <span className="chat-main">
                  <span className="chat-top">
                    <span className="chat-name">{name}</span>
                    {f?.online && <span className="sr-only">, online</span>}
                    {gone && (
                      <span className="badge gone" data-testid="chat-gone">
                        {gone}
                      </span>
                    )}
                    {lm && (
                      <time className="chat-time" dateTime={lm.at} title={dateTimeLabel(lm.at)} data-testid="chat-time">
                        {listTimeLabel(lm.at)}
                      </time>
                    )}
                  </span>
                  <span className="chat-bottom">
                    <span className="chat-preview">
                      {lm?.direction === 'out' && (
                        <span className={`tick status-${lm.status}`} title={describeStatus({ status: lm.status, path: '' }).label}>
                          {tick(lm.status)}{' '}
                        </span>
                      )}
                      {preview}
                    </span>
                    {c.unread > 0 && (
                      <span className="unread" data-testid="unread" aria-label={`${c.unread} unread`}>
                        {c.unread}
                      </span>
                    )}
                  </span>
                </span>
              </Link>
            </li>
          );
        })}
        {withoutChat.map((f) => (
          <li key={f.user_id}>
            <Link to={{ name: 'chats', with: f.user_id }} className="chat-item" data-testid="chat-item">
              <span className={`avatar ${f.online ? 'online' : ''}`} aria-hidden="true">
                {initials(f.name)}
              </span>
              <span className="chat-main">
                <span className="chat-top">
                  <span className="chat-name">{f.name}</span>
                  {f.online && <span className="sr-only">, online</span>}
                </span>
                <span className="chat-bottom">
                  <span className="chat-preview muted">Say hello</span>
                </span>
              </span>
            </Link>
          </li>
        ))}
      </ul>
    </>
  );
}

export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const s = words.length > 1 ? words[0][0] + words[1][0] : (words[0] ?? '?').slice(0, 1);
  return s.toUpperCase();
}

function tick(status: string): string {
  switch (status) {
    case 'pending':
      return '◷';
    case 'sent':
      return '✓';
    case 'delivered':
    case 'read':
      return '✓✓';
    case 'failed':
      return '!';
    default:
      return '';
  }
}
