import { useState, type Dispatch, type FormEvent } from 'react';
import { api, type SearchResult, type Friend, type Me } from '../api';
import { removedByPeer } from '../cache';
import { humanError, type Action as ErrorAction } from '../errors';
import { friendStatusLabels, type Action } from '../state';
import { initials } from './ChatList';
import { InviteCard } from './InviteCard';
import { KeyForkWarning } from './KeyForkWarning';
import { Link } from './Main';

/** Friends: my invite, adding by invite link, user ID or name, requests, and the friend list. */
export function Friends({
  me,
  friends,
  dispatch,
  onChanged,
}: {
  me: Me;
  friends: Friend[];
  dispatch: Dispatch<Action>;
  onChanged: () => Promise<void>;
}) {
  const requests = friends.filter((f) => f.status === 'pending_in');
  const others = friends
    .filter((f) => f.status !== 'pending_in')
    .sort((a, b) => a.name.localeCompare(b.name));

  return (
    <main className="page friends">
      <h1>Friends</h1>
      {requests.length > 0 && (
        <section className="card" aria-labelledby="requests">
          <h2 id="requests">Requests</h2>
          <ul className="people">
            {requests.map((f) => (
              <Request key={f.user_id} f={f} dispatch={dispatch} onChanged={onChanged} />
            ))}
          </ul>
        </section>
      )}
      <AddFriend dispatch={dispatch} onChanged={onChanged} />
      <section className="card" aria-labelledby="friend-list">
        <h2 id="friend-list">Your friends</h2>
        {others.length === 0 ? (
          <p className="muted">No friends yet. Add one above with their invite link, or send them yours below.</p>
        ) : (
          <ul className="people">
            {others.map((f) => (
              <FriendRow key={f.user_id} f={f} dispatch={dispatch} onChanged={onChanged} />
            ))}
          </ul>
        )}
      </section>
      <InviteCard invite={me.short_invite || me.invite} />
    </main>
  );
}

function Request({ f, dispatch, onChanged }: { f: Friend; dispatch: Dispatch<Action>; onChanged: () => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  async function act(what: 'accept' | 'decline') {
    setBusy(true);
    setError('');
    try {
      if (what === 'accept') dispatch({ type: 'friend', friend: await api.addFriendByID(f.user_id) });
      else {
        await api.removeFriend(f.user_id);
        dispatch({ type: 'friendRemoved', userID: f.user_id });
      }
      await onChanged();
    } catch (e) {
      setError(humanError(e, 'friend'));
    } finally {
      setBusy(false);
    }
  }
  return (
    <li className="person" aria-label={f.name}>
      <span className="avatar" aria-hidden="true">
        {initials(f.name)}
      </span>
      <span className="person-main">
        <strong>{f.name}</strong>
        <span className="muted small mono" title={f.user_id}>
          {f.user_id}
        </span>
        {error && (
          <span role="alert" className="error">
            {error}
          </span>
        )}
      </span>
      <span className="actions">
        <button type="button" className="primary" disabled={busy} onClick={() => void act('accept')}>
          Accept
        </button>
        <button type="button" disabled={busy} onClick={() => void act('decline')}>
          Decline
        </button>
      </span>
    </li>
  );
}

function FriendRow({ f, dispatch, onChanged }: { f: Friend; dispatch: Dispatch<Action>; onChanged: () => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [confirm, setConfirm] = useState<'' | 'remove' | 'block'>('');
  async function act(what: 'remove' | 'block') {
    setBusy(true);
    setError('');
    try {
      if (what === 'remove') {
        await api.removeFriend(f.user_id);
        dispatch({ type: 'friendRemoved', userID: f.user_id });
      } else {
        dispatch({ type: 'friend', friend: await api.blockFriend(f.user_id) });
      }
      setConfirm('');
      await onChanged();
    } catch (e) {
      setError(humanError(e, 'friend'));
    } finally {
      setBusy(false);
    }
  }
  return (
    <li className="person" aria-label={f.name}>
      <span className={`avatar ${f.online ? 'online' : ''}`} aria-hidden="true">
        {initials(f.name)}
      </span>
      <span className="person-main">
        <strong>
          {f.name}
          {f.verified && <span className="badge verified">✓ Verified</span>}
        </strong>
        <span className={`small status-text st-${f.status}`} data-testid="friend-status">
          {friendStatusLabels[f.status] ?? f.status}
          {f.online ? ' · online' : ''}
        </span>
        {removedByPeer(f) && (
          <span className="muted small">They removed you from their friends. Remove them here too, or keep the chat to read.</span>
        )}
        {f.status === 'key_changed' && (
          <span role="alert" className="warn small">
            Their key changed: messages are held until you compare safety numbers.
          </span>
        )}
        <KeyForkWarning friend={f} compact />
        {error && (
          <span role="alert" className="error">
            {error}
          </span>
        )}
      </span>
      <span className="actions">
        {(f.status === 'accepted' || f.status === 'key_changed' || removedByPeer(f)) && (
          <Link to={{ name: 'chats', with: f.user_id }} className="button-like">
            Open chat
          </Link>
        )}
        {f.status !== 'pending_out' && f.status !== 'blocked' && !removedByPeer(f) && (
          <Link to={{ name: 'safety', userID: f.user_id }} className="button-like">
            Safety number
          </Link>
        )}
        {confirm ? (
          <span className="confirm" role="group" aria-label={`Confirm ${confirm}`}>
            <span className="small">{confirm === 'remove' ? `Remove ${f.name}?` : `Block ${f.name}?`}</span>
            <button type="button" className="danger" disabled={busy} onClick={() => void act(confirm)}>
              {confirm === 'remove' ? 'Yes, remove' : 'Yes, block'}
            </button>
            <button type="button" onClick={() => setConfirm('')}>
              Cancel
            </button>
          </span>
        ) : (
          <>
            <button type="button" disabled={busy} onClick={() => setConfirm('remove')}>
              Remove
            </button>
            {f.status !== 'blocked' && (
              <button type="button" disabled={busy} onClick={() => setConfirm('block')}>
                Block
              </button>
            )}
          </>
        )}
      </span>
    </li>
  );
}

function AddFriend({ dispatch, onChanged }: { dispatch: Dispatch<Action>; onChanged: () => Promise<void> }) {
  const [invite, setInvite] = useState('');
  const [userID, setUserID] = useState('');
  const [name, setName] = useState('');
  const [results, setResults] = useState<SearchResult[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ kind: 'ok' | 'error'; text: string } | null>(null);

  async function run(action: ErrorAction, fn: () => Promise<void>) {
    setBusy(true);
    setMsg(null);
    try {
      await fn();
    } catch (e) {
      setMsg({ kind: 'error', text: humanError(e, action) });
    } finally {
      setBusy(false);
    }
  }

  const added = async (f: Friend) => {
    dispatch({ type: 'friend', friend: f });
    await onChanged();
    setMsg({
      kind: 'ok',
      text:
        f.status === 'accepted'
          ? `You and ${f.name} are friends now.`
          : `Request sent to ${f.name}. You can chat once they accept.`,
    });
  };

  const byInvite = (e: FormEvent) => {
    e.preventDefault();
    void run('invite', async () => {
      await added(await api.addFriendByInvite(invite.trim()));
      setInvite('');
    });
  };
  const byID = (e: FormEvent) => {
    e.preventDefault();
    void run('addByID', async () => {
      await added(await api.addFriendByID(userID.trim()));
      setUserID('');
    });
  };
  const search = (e: FormEvent) => {
    e.preventDefault();
    void run('search', async () => setResults(await api.searchDirectory(name.trim())));
  };

  return (
    <section className="card" aria-labelledby="add">
      <h2 id="add">Add a friend</h2>
      <form className="row" onSubmit={byInvite}>
        <label className="grow">
          Invite link
          <input
            value={invite}
            onChange={(e) => setInvite(e.target.value)}
            placeholder="parley:…"
            autoComplete="off"
            spellCheck={false}
          />
        </label>
        <button type="submit" className="primary" disabled={busy || !invite.trim()}>
          Add friend
        </button>
      </form>
      <form className="row" onSubmit={byID}>
        <label className="grow">
          User ID
          <input value={userID} onChange={(e) => setUserID(e.target.value)} autoComplete="off" spellCheck={false} />
        </label>
        <button type="submit" disabled={busy || !userID.trim()}>
          Add by user ID
        </button>
      </form>
      <form className="row" onSubmit={search} role="search">
        <label className="grow">
          Search by name
          <input value={name} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </label>
        <button type="submit" disabled={busy || !name.trim()}>
          Search
        </button>
      </form>
      {msg && (
        <p role={msg.kind === 'error' ? 'alert' : 'status'} className={msg.kind === 'error' ? 'error' : 'ok'}>
          {msg.text}
        </p>
      )}
      {results && (
        <div aria-live="polite">
          {results.length === 0 ? (
            <p className="muted">Nobody by that name.</p>
          ) : (
            <ul className="people">
              {results.map((u) => (
                <li key={u.user_id} className="person" aria-label={u.name}>
                  <span className="person-main">
                    <strong>{u.name}</strong>
                    <span className="muted small mono" title={`User ID ${u.user_id}`}>
                      Fingerprint {u.fingerprint}
                    </span>
                  </span>
                  {u.friend ? (
                    <span className="muted small">Already a friend</span>
                  ) : (
                    <button
                      type="button"
                      disabled={busy}
                      onClick={() => void run('addByID', async () => added(await api.addFriendByID(u.user_id)))}
                    >
                      Add {u.name}
                    </button>
                  )}
                </li>
              ))}
            </ul>
          )}
          <p className="muted small">Names are not unique: check the fingerprint with your friend before you add them.</p>
        </div>
      )}
    </section>
  );
}
