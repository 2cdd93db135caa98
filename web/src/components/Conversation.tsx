import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api, ApiError, type Conversation as Conv, type Friend, type Me, type Message } from '../api';
import { removedByPeer } from '../cache';
import { humanError } from '../errors';
import { useChatCache, useThread } from '../hooks';
import { dateTimeLabel, groupByDay, timeLabel } from '../state';
import { MessageMenu } from './MessageMenu';
import { Composer } from './Composer';
import { KeyForkWarning } from './KeyForkWarning';
import { Link } from './Main';
import { MessageStatus } from './MessageStatus';

/** One conversation: messages by day, older ones on scrolling up, the composer; read while visible. */

/** How long a failed mark-read waits before it is tried again, in ms. */
export const markReadRetry = 2000;
export function Conversation({
  me,
  peer,
  friend,
  friendsLoaded = true,
  conversation,
}: {
  me: Me;
  peer: string;
  friend?: Friend;
  /** The friend list is loaded: a missing friend is not a friend (any more). */
  friendsLoaded?: boolean;
  conversation?: Conv;
}) {
  const cache = useChatCache();
  const dispatch = cache.dispatch;
  const threadQ = useThread(peer);
  const thread = threadQ.data;
  const [olderError, setOlderError] = useState('');
  const error = threadQ.error ? humanError(threadQ.error, 'load') : olderError;
  const [sendError, setSendError] = useState('');
  const [keyChanged, setKeyChanged] = useState(false);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true); // follow new messages while at the bottom
  const keepFrom = useRef<number | null>(null); // scrollHeight before older messages were added
  const name = friend?.name || conversation?.name || cache.nameOf(peer);

  const loadOlder = useCallback(async () => {
    if (!thread?.next || loadingOlder) return;
    setLoadingOlder(true);
    setOlderError('');
    keepFrom.current = scroller.current?.scrollHeight ?? null;
    try {
      await cache.loadOlder(peer);
    } catch (e) {
      setOlderError(humanError(e, 'load'));
      keepFrom.current = null;
    } finally {
      setLoadingOlder(false);
    }
  }, [thread?.next, loadingOlder, peer, cache]);

  // Keep the view where it was when older messages come in above, and at
  // the bottom when new ones arrive while the reader is there.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keepFrom.current !== null) {
      el.scrollTop += el.scrollHeight - keepFrom.current;
      keepFrom.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [thread?.messages]);

  function onScroll() {
    const el = scroller.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (el.scrollTop < 60) void loadOlder();
  }

  // Mark read while the conversation is visible.
  const unread = conversation?.unread ?? 0;
  const [visible, setVisible] = useState(() => document.visibilityState === 'visible');
  useEffect(() => {
    const f = () => setVisible(document.visibilityState === 'visible');
    document.addEventListener('visibilitychange', f);
    return () => document.removeEventListener('visibilitychange', f);
  }, []);
  // One call at a time; what arrives during a call is left unread, so
  // that the next call (when the count changes) covers it.
  // A call is made once per count, and a render that still shows the count
  // a finished call covered (the cache updates a tick later) makes none. A
  // failed call (the node just restarting, say) is tried again after
  // markReadRetry, or at once when the count changes.
  const [marking, setMarking] = useState(false);
  const [retries, setRetries] = useState(0);
  const settledAt = useRef(-1);
  const retryTimer = useRef<ReturnType<typeof setTimeout>>(undefined);
  useEffect(() => () => clearTimeout(retryTimer.current), []);
  useEffect(() => {
    if (unread === 0) settledAt.current = -1;
    if (!visible || unread === 0 || marking || settledAt.current === unread) return;
    setMarking(true);
    let failed = false;
    api
      .markRead(peer)
      .then(() => dispatch({ type: 'read', with: peer, count: unread }))
      .catch(() => {
        failed = true;
      })
      .finally(() => {
        settledAt.current = unread;
        setMarking(false);
        if (failed) {
          retryTimer.current = setTimeout(() => {
            settledAt.current = -1;
            setRetries((n) => n + 1);
          }, markReadRetry);
        }
      });
  }, [visible, unread, marking, peer, dispatch, retries]);

  async function send(text: string): Promise<boolean> {
    setSendError('');
    try {
      const r = await api.send(peer, text);
      const m: Message = {
        msg_id: r.msg_id,
        from: me.user_id,
        to: peer,
        text,
        sent_at: new Date().toISOString(),
        received_at: null,
        status: r.status,
        direction: 'out',
        path: '',
      };
      stick.current = true;
      dispatch({ type: 'message', message: m, peer });
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === 'key_changed') setKeyChanged(true);
      setSendError(humanError(e, 'send'));
      return false;
    }
  }

  const status = friend?.status;
  const forked = friend?.key_fork === true;
  const showKeyWarning = (keyChanged || status === 'key_changed') && !forked;
  const theyRemoved = removedByPeer(friend);
  const notFriend = friendsLoaded && !friend;
  // Only to an accepted friend: never to someone who is not (or no longer) a friend.
  const canSend = status === 'accepted' && !forked;
  const groups = groupByDay(thread?.messages ?? []);

  return (
    <div className="conversation">
      <header className="conv-head">
        <Link to={{ name: 'chats' }} className="back" aria-label="Back to chats">
          ‹
        </Link>
        <h2>
          {name}
          {friend?.verified && (
            <span className="badge verified" title="Safety number verified">
              ✓ Verified
            </span>
          )}
        </h2>
        <span className={`presence ${friend?.online ? 'online' : ''}`}>{friend?.online ? 'online' : 'offline'}</span>
        {friend && (
          <Link to={{ name: 'safety', userID: peer }} className="button-like">
            Safety number
          </Link>
        )}
      </header>
      {showKeyWarning && (
        <div role="alert" className="banner danger">
          <strong>{name}&rsquo;s key has changed.</strong> This can mean they reinstalled Parley, or that someone is
          impersonating them. Messages are held until you compare safety numbers.{' '}
          <Link to={{ name: 'safety', userID: peer }}>Compare safety numbers</Link>
        </div>
      )}
      <KeyForkWarning friend={friend} />
      {status === 'pending_out' && <p className="banner">Waiting for {name} to accept your request.</p>}
      {status === 'pending_in' && (
        <p className="banner">
          {name} wants to chat. Accept the request in <Link to={{ name: 'friends' }}>Friends</Link>.
        </p>
      )}
      {status === 'blocked' && <p className="banner">You blocked {name}.</p>}
      {theyRemoved && (
        <p role="status" className="banner gone" data-testid="no-longer-friends">
          You are no longer friends with {name}. Your messages stay here to read, but you can&rsquo;t send new ones.
        </p>
      )}
      {notFriend && (
        <p role="status" className="banner gone" data-testid="not-a-friend">
          {name} is not on your friend list any more. Your messages stay here to read; to write again, add them in{' '}
          <Link to={{ name: 'friends' }}>Friends</Link>.
        </p>
      )}
      {error && (
        <p role="alert" className="banner error">
          {error}
        </p>
      )}
      <div className="messages" ref={scroller} onScroll={onScroll} role="log" aria-label={`Messages with ${name}`}>
        {thread?.next && (
          <button type="button" className="link older" onClick={() => void loadOlder()} disabled={loadingOlder}>
            {loadingOlder ? 'Loading…' : 'Load older messages'}
          </button>
        )}
        {thread?.loaded && thread.messages.length === 0 && (
          <p className="muted center">No messages yet. Messages are end-to-end encrypted: only {name} can read them.</p>
        )}
        {groups.map((g) => (
          <section key={g.key} className="day" aria-label={g.label}>
            <h3 className="day-label">{g.label}</h3>
            {g.messages.map((m) => (
              <div
                key={m.msg_id}
                className={`msg ${m.direction === 'out' ? 'mine' : 'theirs'}`}
                data-testid="message"
                data-direction={m.direction}
              >
                <span className="sr-only">{m.direction === 'out' ? 'You' : name}: </span>
                <p className="text">{m.text}</p>
                <span className="meta">
                  <time dateTime={m.sent_at} title={dateTimeLabel(m.sent_at)}>
                    {timeLabel(m.sent_at)}
                  </time>
                  {m.direction === 'out' && <MessageStatus m={m} />}
                  <MessageMenu m={m} peer={peer} />
                </span>
              </div>
            ))}
          </section>
        ))}
      </div>
      {sendError && (
        <p role="alert" className="error send-error">
          {sendError}
        </p>
      )}
      <Composer onSend={send} disabled={!canSend} />
    </div>
  );
}
