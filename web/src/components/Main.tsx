import { useEffect, useMemo, useRef, useState, type MouseEvent } from 'react';
import { api, EventSocket, sessionEnded, type LiveState, type ServerEvent } from '../api';
import { humanError } from '../errors';
import { useChatCache, useConversations, useFriends, useGroups, useMe } from '../hooks';
import { navigate, routePath, useRoute, type Route } from '../router';
import { ChatList } from './ChatList';
import { Conversation } from './Conversation';
import { Friends } from './Friends';
import { GroupConversation, GroupList } from './Groups';
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
  const cache = useChatCache();
  const meQ = useMe();
  const friendsQ = useFriends();
  const convsQ = useConversations();
  const groupsQ = useGroups();
  const me = meQ.data ?? null;
  const [live, setLive] = useState<LiveState>('connecting');
  const [notice, setNotice] = useState('');
  const friendsRef = useRef(friendsQ.data ?? []);
  friendsRef.current = friendsQ.data ?? [];
  const route = useRoute();
  const openChat = route.name === 'chats' ? route.with : undefined;
  const openGroup = route.name === 'group' ? route.id : undefined;
  const loadFailed = meQ.error ?? friendsQ.error ?? convsQ.error;
  const loadError = loadFailed ? humanError(loadFailed, 'load') : '';

  // Live events: the cache applies them; here, the notices and notifications.
  useEffect(() => {
    const onEvent = (e: ServerEvent) => {
      void cache.applyEvent(e);
      switch (e.type) {
        case 'message':
          if (e.data.direction === 'in') notify(e.data.from, e.data.text);
          break;
        case 'key_fork':
          setNotice(
            `${e.data.name}’s key signed two different histories. Someone may have stolen their key. Messages to them are held until you compare safety numbers again.`,
          );
          break;
        case 'friend_key_rotated':
          setNotice(`${e.data.name} moved to a new key, signed by their old one. Nothing to do.`);
          break;
      }
    };
    const sock = new EventSocket({
      onEvent,
      onState: setLive,
      onUnauthorized: sessionEnded,
      onReady: () => void cache.refreshAll(),
    });
    sock.start();
    return () => sock.stop();
  }, [cache]);

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
  const friends = useMemo(() => {
    const fs = friendsQ.data ?? [];
    return live === 'live' ? fs : fs.map((f) => (f.online ? { ...f, online: false } : f));
  }, [friendsQ.data, live]);
  const conversations = convsQ.data ?? [];
  const pending = friends.filter((f) => f.status === 'pending_in').length;
  const groups = groupsQ.data ?? [];
  const unread = conversations.reduce((n, c) => n + c.unread, 0) + groups.reduce((n, g) => n + g.unread, 0);
  const section = route.name === 'safety' ? 'friends' : route.name === 'group' ? 'chats' : route.name;
  const group = groups.find((g) => g.group_id === openGroup);

  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) Parley` : 'Parley';
  }, [unread]);

  return (
    <div className={`shell ${openChat || openGroup ? 'chat-open' : ''}`}>
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
      {live === 'reconnecting' && (
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
        <main className="split">
          <aside className="list-pane" aria-label="Chats">
            <ChatList
              conversations={conversations}
              friends={friends}
              friendsLoaded={friendsQ.isSuccess}
              openChat={openChat}
            />
            <GroupList groups={groups} openGroup={openGroup} />
          </aside>
          <section className="chat-pane">
            {openGroup && me && group ? (
              <GroupConversation key={openGroup} me={me} group={group} friends={friends} />
            ) : openChat && me ? (
              <Conversation
                key={openChat}
                me={me}
                peer={openChat}
                friend={friends.find((f) => f.user_id === openChat)}
                friendsLoaded={friendsQ.isSuccess}
                conversation={conversations.find((c) => c.with === openChat)}
              />
            ) : (
              <div className="placeholder muted">
                <p>Select a chat to read it.</p>
              </div>
            )}
          </section>
        </main>
      )}
      {section === 'friends' && route.name === 'friends' && me && (
        <Friends me={me} friends={friends} dispatch={cache.dispatch} onChanged={cache.refreshLists} />
      )}
      {route.name === 'safety' && me && (
        <SafetyNumber friend={friends.find((f) => f.user_id === route.userID)} onChanged={cache.refreshLists} />
      )}
      {section === 'settings' && me && <Settings me={me} onLogout={logout} />}
    </div>
  );
}
