import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type Me } from '../api';
import { keys } from '../cache';
import { humanError } from '../errors';
import { AuditLog } from './AuditLog';
import { Backup } from './Backup';
import { CopyButton } from './CopyButton';

/** Settings: who I am, the node's network side, notifications, log out. */
export function Settings({ me, onLogout }: { me: Me; onLogout: () => void }) {
  const nodeQ = useQuery({ queryKey: keys.node, queryFn: api.node, refetchInterval: 5000 });
  const info = nodeQ.data ?? null;
  const error = nodeQ.error ? humanError(nodeQ.error, 'load') : '';
  const [perm, setPerm] = useState(() => (typeof Notification === 'undefined' ? 'unsupported' : Notification.permission));

  async function askNotifications() {
    if (typeof Notification === 'undefined') return;
    setPerm(await Notification.requestPermission());
  }

  return (
    <main className="page settings">
      <h1>Settings</h1>
      <section className="card" aria-labelledby="you">
        <h2 id="you">You</h2>
        <dl className="facts">
          <dt>Display name</dt>
          <dd>{me.name}</dd>
          <dt>User ID</dt>
          <dd className="mono">
            {me.user_id} <CopyButton text={me.user_id} label="Copy user ID" />
          </dd>
          <dt>Fingerprint</dt>
          <dd className="mono">{me.fingerprint}</dd>
        </dl>
      </section>
      <section className="card" aria-labelledby="node">
        <h2 id="node">This node</h2>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <dl className="facts">
          <dt>Peer ID</dt>
          <dd className="mono">{info?.peer_id ?? me.peer_id}</dd>
          <dt>Listen addresses</dt>
          <dd>
            <ul className="mono plain">
              {(info?.addrs ?? me.addrs).map((a) => (
                <li key={a}>{a}</li>
              ))}
            </ul>
          </dd>
          <dt>Connected peers</dt>
          <dd>
            {info && info.connected_peers.length === 0 && <span className="muted">None</span>}
            <ul className="mono plain">
              {info?.connected_peers.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          </dd>
          <dt>Reachability</dt>
          <dd>{info?.reachability ?? '…'}</dd>
        </dl>
      </section>
      <section className="card" aria-labelledby="notif">
        <h2 id="notif">Notifications</h2>
        {perm === 'granted' && <p>On: you are notified of new messages while Parley&rsquo;s tab is hidden.</p>}
        {perm === 'denied' && <p className="muted">Blocked in this browser&rsquo;s site settings.</p>}
        {perm === 'unsupported' && <p className="muted">This browser has no notifications.</p>}
        {perm === 'default' && (
          <button type="button" onClick={() => void askNotifications()}>
            Notify me of new messages
          </button>
        )}
      </section>
      <Backup />
      <AuditLog />
      <button type="button" className="danger" onClick={onLogout}>
        Log out
      </button>
    </main>
  );
}
