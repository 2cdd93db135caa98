import { useEffect, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import { groupApi, type Friend, type Group, type GroupMember, type Me } from '../api';
import { keys } from '../cache';
import { humanError } from '../errors';
import { useChatCache, useGroupMessages } from '../hooks';
import { navigate } from '../router';
import { dateTimeLabel, groupByDay, listTimeLabel, timeLabel } from '../state';
import { initials } from './ChatList';
import { Composer } from './Composer';
import { Link } from './Main';

// Group chats: the list beside the 1:1 chats, creating a group from
// friends, and a group's conversation with its members.

/** The name to show for a member: their name, "You", or the start of their user ID. */
export function memberName(m: Pick<GroupMember, 'user_id' | 'name'>, me: string): string {
  if (m.user_id === me) return 'You';
  return m.name || `${m.user_id.slice(0, 8)}…`;
}

/** A stable colour (one of eight) for a sender's name. */
export function senderColour(userID: string): number {
  let h = 0;
  for (const c of userID) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 8;
}

/** The groups in the chat list, each with its last message and unread count. */
export function GroupList({ groups, openGroup }: { groups: Group[]; openGroup?: string }) {
  const [creating, setCreating] = useState(false);
  return (
    <>
      <h2 className="pane-title">
        Groups{' '}
        <button type="button" className="link" onClick={() => setCreating(true)}>
          New group
        </button>
      </h2>
      {creating && <NewGroupDialog onDone={() => setCreating(false)} />}
      <ul className="chats" aria-label="Groups">
        {groups.map((g) => {
          const lm = g.last_message;
          const preview = g.removed ? 'You were removed' : lm ? (lm.direction === 'out' ? `You: ${lm.text}` : lm.text) : 'No messages yet';
          return (
            <li key={g.group_id}>
              <Link
                to={{ name: 'group', id: g.group_id }}
                className="chat-item"
                aria-current={openGroup === g.group_id ? 'page' : undefined}
                data-testid="group-item"
              >
                <span className="avatar group" aria-hidden="true">
                  {initials(g.name)}
                </span>
                <span className="chat-main">
                  <span className="chat-top">
                    <span className="chat-name">{g.name}</span>
                    {lm && (
                      <time className="chat-time" dateTime={lm.at} title={dateTimeLabel(lm.at)}>
                        {listTimeLabel(lm.at)}
                      </time>
                    )}
                  </span>
                  <span className="chat-bottom">
                    <span className="chat-preview">{preview}</span>
                    {g.unread > 0 && (
                      <span className="unread" data-testid="group-unread" aria-label={`${g.unread} unread`}>
                        {g.unread}
                      </span>
                    )}
                  </span>
                </span>
              </Link>
            </li>
          );
        })}
      </ul>
    </>
  );
}

/** The form that makes a group from accepted friends. */
export function NewGroupDialog({ onDone }: { onDone: () => void }) {
  const cache = useChatCache();
  const friends = (cache.qc.getQueryData<Friend[]>(keys.friends) ?? []).filter((f) => f.status === 'accepted');
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!name.trim() || chosen.length === 0 || busy) return;
    setBusy(true);
    setError('');
    try {
      const g = await groupApi.create(name.trim(), chosen);
      await cache.qc.invalidateQueries({ queryKey: keys.groups });
      onDone();
      navigate({ name: 'group', id: g.group_id });
    } catch (err) {
      setError(humanError(err, 'send'));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="new-group card" onSubmit={submit} aria-label="New group">
      <label>
        Group name
        <input value={name} onChange={(e) => setName(e.target.value)} maxLength={64} />
      </label>
      <fieldset>
        <legend>Members</legend>
        {friends.length === 0 && <p className="muted">Add friends first: a group is made of your friends.</p>}
        {friends.map((f) => (
          <label key={f.user_id} className="check">
            <input
              type="checkbox"
              checked={chosen.includes(f.user_id)}
              onChange={(e) =>
                setChosen((c) => (e.target.checked ? [...c, f.user_id] : c.filter((x) => x !== f.user_id)))
              }
            />
            {f.name}
          </label>
        ))}
      </fieldset>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={!name.trim() || chosen.length === 0 || busy}>
        Create group
      </button>{' '}
      <button type="button" className="link" onClick={onDone}>
        Cancel
      </button>
    </form>
  );
}

/** A group's conversation: messages by day with their senders, the members, the composer. */
export function GroupConversation({ me, group, friends }: { me: Me; group: Group; friends: Friend[] }) {
  const cache = useChatCache();
  const msgsQ = useGroupMessages(group.group_id);
  const [sendError, setSendError] = useState('');
  const [showMembers, setShowMembers] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const messages = [...(msgsQ.data?.messages ?? [])].reverse();
  const days = groupByDay(messages);
  const isAdmin = group.members.some((m) => m.user_id === me.user_id && m.role === 'admin');
  const error = msgsQ.error ? humanError(msgsQ.error, 'load') : '';

  useLayoutEffect(() => {
    const el = scroller.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [msgsQ.data]);

  // Read while open: the unread count goes back to zero.
  const unread = group.unread;
  const id = group.group_id;
  useEffect(() => {
    if (unread === 0) return;
    groupApi
      .markRead(id)
      .then(() => cache.qc.invalidateQueries({ queryKey: keys.groups }))
      .catch(() => {});
  }, [unread, id, cache]);

  async function send(text: string): Promise<boolean> {
    setSendError('');
    try {
      await groupApi.send(id, text);
      await cache.refreshGroup(id);
      return true;
    } catch (e) {
      setSendError(humanError(e, 'send'));
      await cache.qc.invalidateQueries({ queryKey: keys.groups });
      return false;
    }
  }

  return (
    <div className="conversation group-conversation">
      <header className="conv-head">
        <Link to={{ name: 'chats' }} className="back" aria-label="Back to chats">
          ‹
        </Link>
        <h2>{group.name}</h2>
        <span className="muted">{group.members.length} members</span>
        <button type="button" className="button-like" onClick={() => setShowMembers((s) => !s)} aria-expanded={showMembers}>
          Members
        </button>
      </header>
      {group.removed && (
        <p role="status" className="banner gone" data-testid="group-removed">
          You were removed from this group. Its messages stay here to read, but you can&rsquo;t send new ones.
        </p>
      )}
      {showMembers && <Members me={me} group={group} friends={friends} isAdmin={isAdmin && !group.removed} />}
      {error && (
        <p role="alert" className="banner error">
          {error}
        </p>
      )}
      <div className="messages" ref={scroller} role="log" aria-label={`Messages in ${group.name}`}>
        {msgsQ.isSuccess && messages.length === 0 && (
          <p className="muted center">No messages yet. Only the members of {group.name} can read what is written here.</p>
        )}
        {days.map((d) => (
          <section key={d.key} className="day" aria-label={d.label}>
            <h3 className="day-label">{d.label}</h3>
            {d.messages.map((m) => (
              <div
                key={m.msg_id}
                className={`msg ${m.direction === 'out' ? 'mine' : 'theirs'}`}
                data-testid="group-message"
                data-direction={m.direction}
              >
                {m.direction !== 'out' && (
                  <span className={`sender colour-${senderColour(m.from)}`} data-testid="sender">
                    {memberName({ user_id: m.from, name: m.name }, me.user_id)}
                  </span>
                )}
                <p className="text">{m.text}</p>
                <span className="meta">
                  <time dateTime={m.sent_at} title={dateTimeLabel(m.sent_at)}>
                    {timeLabel(m.sent_at)}
                  </time>
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
      <Composer onSend={send} disabled={group.removed} />
    </div>
  );
}

/** The member list with roles; an admin adds friends and removes members; anyone leaves. */
function Members({ me, group, friends, isAdmin }: { me: Me; group: Group; friends: Friend[]; isAdmin: boolean }) {
  const cache = useChatCache();
  const [error, setError] = useState('');
  const [adding, setAdding] = useState('');
  const id = group.group_id;
  const addable = friends.filter((f) => f.status === 'accepted' && !group.members.some((m) => m.user_id === f.user_id));

  async function act(f: () => Promise<unknown>) {
    setError('');
    try {
      await f();
    } catch (e) {
      setError(humanError(e, 'send'));
    }
    await cache.refreshGroup(id);
  }

  return (
    <section className="members card" aria-label="Members">
      <ul>
        {group.members.map((m) => (
          <li key={m.user_id} data-testid="member">
            <span>{memberName(m, me.user_id)}</span> <span className="badge">{m.role === 'admin' ? 'Admin' : 'Member'}</span>
            {isAdmin && m.user_id !== me.user_id && (
              <button
                type="button"
                className="link danger"
                onClick={() => void act(() => groupApi.removeMember(id, m.user_id))}
                aria-label={`Remove ${memberName(m, me.user_id)}`}
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      {isAdmin && addable.length > 0 && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (adding) void act(() => groupApi.addMember(id, adding)).then(() => setAdding(''));
          }}
        >
          <label>
            Add a friend{' '}
            <select value={adding} onChange={(e) => setAdding(e.target.value)}>
              <option value="">Choose…</option>
              {addable.map((f) => (
                <option key={f.user_id} value={f.user_id}>
                  {f.name}
                </option>
              ))}
            </select>
          </label>{' '}
          <button type="submit" disabled={!adding}>
            Add
          </button>
        </form>
      )}
      {!group.removed && (
        <button type="button" className="link danger" onClick={() => void act(() => groupApi.removeMember(id, me.user_id))}>
          Leave group
        </button>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </section>
  );
}
