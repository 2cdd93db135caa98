import { useState } from 'react';
import { api, errorText, type Friend } from '../api';
import { safetyGroups } from '../state';
import { Link } from './Main';
import { QRCode } from './QRCode';

/** A friend's safety number: 60 digits in groups, its QR code, and "Mark as verified". */
export function SafetyNumber({ friend, onChanged }: { friend?: Friend; onChanged: () => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  if (!friend) {
    return (
      <main className="page">
        <p className="muted">Loading…</p>
        <Link to={{ name: 'friends' }}>Back to friends</Link>
      </main>
    );
  }
  const groups = safetyGroups(friend.safety_number);
  async function verify() {
    setBusy(true);
    setError('');
    try {
      await api.verifyFriend(friend!.user_id);
      await onChanged();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <main className="page safety">
      <Link to={{ name: 'friends' }}>‹ Friends</Link>
      <h1>Safety number with {friend.name}</h1>
      {friend.status === 'key_changed' && (
        <p role="alert" className="banner danger">
          {friend.name}&rsquo;s key has changed. Compare the new number with them; marking it verified accepts the new
          key and sends the messages held for them.
        </p>
      )}
      <p className="muted">
        Compare these digits with {friend.name} in person or over a call you trust, or scan each other&rsquo;s code. If
        they match, nobody is in the middle of your chat.
      </p>
      <div className="safety-body">
        {groups.length > 0 ? (
          <ol className="digits" aria-label="Safety number">
            {groups.map((g, i) => (
              <li key={i}>{g}</li>
            ))}
          </ol>
        ) : (
          <p className="muted">No safety number yet: it appears once you are friends.</p>
        )}
        {friend.safety_number && <QRCode text={friend.safety_number} label="QR code of the safety number" />}
      </div>
      {friend.verified && friend.status !== 'key_changed' ? (
        <p className="ok">
          <span className="badge verified">✓ Verified</span> You marked {friend.name} as verified.
        </p>
      ) : (
        <button type="button" className="primary" disabled={busy || !friend.safety_number} onClick={() => void verify()}>
          Mark as verified
        </button>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </main>
  );
}
