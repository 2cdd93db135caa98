import { useCallback, useEffect, useState } from 'react';
import { opsApi, type AuditEvent } from '../api';
import { humanError } from '../errors';

/** What each audit event means, in words. */
const labels: Record<string, string> = {
  registered: 'Identity created',
  login: 'Logged in',
  login_failed: 'Wrong passphrase',
  login_throttled: 'Logins throttled after wrong passphrases',
  token_issued: 'Session started',
  token_revoked: 'Logged out',
  friend_added: 'Friend added',
  friend_request: 'Friend request received',
  friend_accepted: 'Friend accepted',
  friend_removed: 'Friend removed',
  friend_blocked: 'Friend blocked',
  friend_verified: 'Friend verified',
  key_rotated: 'Your key was rotated',
  friend_key_rotated: "A friend's key was rotated",
  friend_key_changed: "A friend's key changed without a rotation",
  key_fork: "A friend's key signed two histories",
  envelopes_refused: 'Messages refused',
  backup_made: 'Backup made',
  backup_refused: 'Backup refused: wrong passphrase',
  backup_restored: 'Restored from a backup',
};

function details(e: AuditEvent): string {
  const f = e.fields ?? {};
  const parts: string[] = [];
  if (f.user_id) parts.push(`user ${f.user_id.slice(0, 12)}…`);
  if (f.peer_id) parts.push(`peer …${f.peer_id.slice(-8)}`);
  if (f.code) parts.push(f.code);
  if (f.count) parts.push(`× ${f.count}`);
  if (f.via) parts.push(`via ${f.via}`);
  return parts.join(', ');
}

/** Settings' "Security events": the newest lines of the node's audit log. */
export function AuditLog({ limit = 20 }: { limit?: number }) {
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [error, setError] = useState('');

  const load = useCallback(
    () =>
      opsApi
        .audit(limit)
        .then((evs) => (setEvents(evs), setError('')))
        .catch((e) => setError(humanError(e))),
    [limit],
  );
  useEffect(() => {
    void load();
  }, [load]);

  return (
    <section className="card" aria-labelledby="audit">
      <h2 id="audit">Security events</h2>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {events && events.length === 0 && <p className="muted">None yet.</p>}
      <ul className="plain audit">
        {events?.map((e, i) => (
          <li key={`${e.time}-${i}`}>
            <time dateTime={e.time}>{new Date(e.time).toLocaleString()}</time> {labels[e.event] ?? e.event}
            {details(e) && <span className="muted small"> ({details(e)})</span>}
          </li>
        ))}
      </ul>
      <button type="button" onClick={() => void load()}>
        Refresh
      </button>
    </section>
  );
}
