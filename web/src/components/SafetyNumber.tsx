import { useState } from 'react';
import { api, ApiError, type Friend } from '../api';
import { humanError } from '../errors';
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
      // The number shown is the one the user compared: the node accepts
      // the key it was computed over, and nothing else.
      await api.verifyFriend(friend!.user_id, friend!.safety_number);
      await onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && e.code === 'conflict') {
        setError('The safety number changed while it was shown. Compare the number shown now, then mark it as verified.');
        await onChanged().catch(() => undefined);
      } else {
        setError(humanError(e, 'verify'));
      }
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
          {friend.name}&rsquo;s key has changed, without a signature from their old key. The safety number below is a
          new one: compare this new number with them. Only if it matches, mark it as verified: that accepts the new key
          and sends the messages held for them.
        </p>
      )}
      {friend.key_rotated && friend.status !== 'key_changed' && (
        <p className="ok key-rotated">
          Key rotated, chain verified: {friend.name} moved to a new key, signed by their old one. The safety number
          stays the same.
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
