import { useCallback, useEffect, useMemo, useReducer, useRef, useState, type MouseEvent } from 'react';
import { api, EventSocket, sessionEnded, type Me, type ServerEvent } from '../api';
import { navigate, routePath, useRoute, type Route } from '../router';
import { initialState, reducer } from '../state';
import { ChatList } from './ChatList';
import { Conversation } from './Conversation';
import { Friends } from './Friends';
import { SafetyNumber } from './SafetyNumber';
import { Settings } from './Settings';

/** Link is an <a> that navigates inside the app. */
export function Link({ to, children, ...rest }: { to: Route; children: React.ReactNode } & React.AnchorHTMLAttributes<HTMLAnchorElement>) {
  function click(e: MouseEvent<HTMLAnchorElement>) {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  }
  return (
    <a href={routePath(to)} onClick={click} {...rest}>
      {children}
    </a>
  );
}

/** Main is the app once logged in: navigation, live events, and the screens. */
export function Main({ onLoggedOut }: { onLoggedOut: () => void }) {
  const [s, dispatch] = useReducer(reducer, initialState);
  const [me, setMe] = useState<Me | null>(null);
  const [loadError, setLoadError] = useState('');
  const [notice, setNotice] = useState('');
  const friendsRef = useRef(s.friends);
  friendsRef.current = s.friends;
  const route = useRoute();
  const openChat = route.name === 'chats' ? route.with : undefined;
  const openChatRef = useRef(openChat);
  openChatRef.current = openChat;
  const [reloadKey, setReloadKey] = useState(0);

  // Counts the live events that change the lists. A list fetched while
  // one arrived may predate it (the socket can overtake the answer), so it
  // is fetched again rather than put over the newer state.
  const eventSeq = useRef(0);
  const fetchLists = useCallback(async () => {
    for (let i = 0; ; i++) {
      const start = eventSeq.current;
      const [friends, conversations] = await Promise.all([api.friends(), api.conversations()]);
      if (eventSeq.current === start || i === 4) return { friends, conversations };
    }
  }, []);

  const refreshLists = useCallback(async () => {
    try {
      const { friends, conversations } = await fetchLists();
      dispatch({ type: 'friends', friends });
      dispatch({ type: 'conversations', conversations });
      setLoadError('');
    } catch (e) {
      // the next event or reconnect tries again
      setLoadError((e as Error).message);
    }
  }, [fetchLists]);

  useEffect(() => {
    api
      .me()
      .then(setMe)
      .catch((e) => setLoadError((e as Error).message));
    void refreshLists();
  }, [refreshLists]);

  // Live events.
  useEffect(() => {
    const onEvent = (e: ServerEvent) => {
      eventSeq.current++;
      switch (e.type) {
        case 'message': {
          const m = e.data;
          const peer = m.direction === 'in' ? m.from : m.to;
          dispatch({ type: 'message', message: m, peer });
          if (m.direction === 'in') notify(m.from, m.text);
          break;
        }
        case 'message_status':
          dispatch({ type: 'status', change: e.data });
          break;
        case 'friend_request':
        case 'friend_accepted':
        case 'friend_key_changed':
          dispatch({ type: 'friend', friend: e.data });
          void refreshLists();
          break;
        case 'key_fork':
          dispatch({ type: 'friend', friend: e.data });
          setNotice(
            `${e.data.name}’s key signed two different histories. Someone may have stolen their key. Messages to them are held until you compare safety numbers again.`,
          );
          void refreshLists();
          break;
        case 'friend_key_rotated':
          dispatch({ type: 'friend', friend: e.data });
          setNotice(`${e.data.name} moved to a new key, signed by their old one. Nothing to do.`);
          void refreshLists();
          break;
        case 'friend_removed':
          dispatch({ type: 'friendRemoved', userID: e.data.user_id });
          void refreshLists();
          break;
        case 'peer_online':
        case 'peer_offline':
          dispatch({ type: 'presence', presence: e.data, online: e.type === 'peer_online' });
          break;
        case 'overflow':
          void refreshLists();
          setReloadKey((k) => k + 1);
          break;
      }
    };
    const sock = new EventSocket({
      onEvent,
      onState: (live) => dispatch({ type: 'live', live }),
      onUnauthorized: sessionEnded,
      // Whatever happened before the socket was ready (the first load, or
      // while it was down) is fetched again: lists, unread counts, the open
      // conversation.
      onReady: () => {
        void refreshLists();
        setReloadKey((k) => k + 1);
      },
    });
    sock.start();
    return () => sock.stop();
  }, [refreshLists]);

  const notify = (from: string, text: string) => {
    if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
    if (document.visibilityState !== 'hidden') return;
    try {
      const name = friendsRef.current.find((f) => f.user_id === from)?.name ?? 'Parley';
      new Notification(name, { body: text.slice(0, 120), tag: from });
    } catch {
      // some browsers allow notifications only from a service worker
    }
  };

  async function logout() {
    try {
      await api.logout();
    } catch {
      // the token is dropped below in any case
    }
    onLoggedOut();
  }

  // While the node is out of reach nobody is known to be online.
  const friends = useMemo(
    () => (s.live === 'live' ? s.friends : s.friends.map((f) => (f.online ? { ...f, online: false } : f))),
    [s.friends, s.live],
  );
  const pending = friends.filter((f) => f.status === 'pending_in').length;
  const unread = s.conversations.reduce((n, c) => n + c.unread, 0);
  const section = route.name === 'safety' ? 'friends' : route.name;

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) Parley` : 'Parley';
  }, [unread]);

  return (
    <div className={`shell ${openChat ? 'chat-open' : ''}`}>
      <header className="topbar">
        <span className="brand" aria-hidden="true">
          Parley
        </span>
        <nav aria-label="Main">
          <Link to={{ name: 'chats' }} aria-current={section === 'chats' ? 'page' : undefined}>
            Chats{unread > 0 && <span className="pill" aria-label={`, ${unread} unread`}>{unread}</span>}
          </Link>
          <Link to={{ name: 'friends' }} aria-current={section === 'friends' ? 'page' : undefined}>
            Friends{pending > 0 && <span className="pill" aria-label={`, ${pending} requests`}>{pending}</span>}
          </Link>
          <Link to={{ name: 'settings' }} aria-current={section === 'settings' ? 'page' : undefined}>
            Settings
          </Link>
        </nav>
      </header>
      {s.live === 'reconnecting' && (
        <p role="status" className="banner reconnecting">
          <span className="spinner" aria-hidden="true" /> Reconnecting to your node…
        </p>
      )}
      {notice && (
        <p role="status" className="banner">
          {notice}{' '}
          <button type="button" className="link" onClick={() => setNotice('')}>
            Dismiss
          </button>
        </p>
      )}
      {loadError && (
        <p role="alert" className="banner error">
          {loadError}
        </p>
      )}
      {section === 'chats' && (
        <div className="split">
          <aside className="list-pane" aria-label="Chats">
            <ChatList conversations={s.conversations} friends={friends} openChat={openChat} />
          </aside>
          <section className="chat-pane">
            {openChat && me ? (
              <Conversation
                key={openChat}
                me={me}
                peer={openChat}
                friend={friends.find((f) => f.user_id === openChat)}
                conversation={s.conversations.find((c) => c.with === openChat)}
                thread={s.threads[openChat]}
                dispatch={dispatch}
                reloadKey={reloadKey}
              />
            ) : (
              <div className="placeholder muted">
                <p>Select a chat to read it.</p>
              </div>
            )}
          </section>
        </div>
      )}
      {section === 'friends' && route.name === 'friends' && me && (
        <Friends me={me} friends={friends} dispatch={dispatch} onChanged={refreshLists} />
      )}
      {route.name === 'safety' && me && (
        <SafetyNumber friend={friends.find((f) => f.user_id === route.userID)} onChanged={refreshLists} />
      )}
      {section === 'settings' && me && <Settings me={me} onLogout={logout} />}
    </div>
  );
}
