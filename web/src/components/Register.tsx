import { useState, type FormEvent } from 'react';
import { api, MIN_PASSPHRASE_CHARS, setToken, type Me } from '../api';
import { codeSentences, humanError, MAX_NAME_BYTES } from '../errors';
import { passphraseStrength, utf8Length } from '../state';
import { InviteCard } from './InviteCard';

/** Registration (node state new): name and passphrase, then the invite link. */
export function Register({ onDone }: { onDone: () => void }) {
  const [name, setName] = useState('');
  const [pass, setPass] = useState('');
  const [confirm, setConfirm] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [me, setMe] = useState<Me | null>(null);
  const strength = passphraseStrength(pass);
  const mismatch = confirm !== '' && confirm !== pass;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError('');
    if (!name.trim()) return setError('Choose a display name.');
    if (utf8Length(name.trim()) > MAX_NAME_BYTES) return setError(codeSentences.name_too_long);
    if ([...pass].length < MIN_PASSPHRASE_CHARS) {
      return setError(`The passphrase needs at least ${MIN_PASSPHRASE_CHARS} characters.`);
    }
    if (pass !== confirm) return setError('The two passphrases differ.');
    setBusy(true);
    try {
      const r = await api.register(name.trim(), pass);
      setToken(r.token);
      setPass('');
      setConfirm('');
      setMe(await api.me());
    } catch (err) {
      setError(humanError(err, 'register'));
    } finally {
      setBusy(false);
    }
  }

  if (me) {
    return (
      <main className="gate">
        <div className="gate-box wide">
          <h1>Welcome, {me.name}</h1>
          <p>Your keys are made and stay on this node. To chat, a friend adds you with your invite link — or you add theirs.</p>
          <InviteCard invite={me.short_invite || me.invite} />
          <button type="button" className="primary" onClick={onDone}>
            Continue to Parley
          </button>
        </div>
      </main>
    );
  }

  return (
    <main className="gate">
      <form className="gate-box" onSubmit={submit} aria-busy={busy}>
        <h1>Welcome to Parley</h1>
        <p className="muted">
          Private chat from your own node: your keys never leave this machine. Pick a name your friends will see and a
          passphrase that locks your keys.
        </p>
        <label>
          Display name
          <input
            value={name}
            onChange={(e) => setName(e.target.value)}
            autoComplete="nickname"
            maxLength={MAX_NAME_BYTES}
            required
            disabled={busy}
          />
        </label>
        <label>
          Passphrase
          <input
            type="password"
            value={pass}
            onChange={(e) => setPass(e.target.value)}
            autoComplete="new-password"
            aria-describedby="strength"
            required
            disabled={busy}
          />
        </label>
        <div id="strength" className={`strength s${strength.score}`} aria-live="polite">
          <span className="bar" aria-hidden="true">
            <span />
            <span />
            <span />
            <span />
          </span>
          <span className="small">{strength.label || `At least ${MIN_PASSPHRASE_CHARS} characters; a few words work well.`}</span>
        </div>
        <label>
          Confirm passphrase
          <input
            type="password"
            value={confirm}
            onChange={(e) => setConfirm(e.target.value)}
            autoComplete="new-password"
            aria-invalid={mismatch}
            required
            disabled={busy}
          />
        </label>
        {mismatch && <p className="hint warn">The passphrases differ.</p>}
        <p className="muted small">There is no way to recover a forgotten passphrase.</p>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          Register
        </button>
        {busy && (
          <p role="status" className="progress">
            <span className="spinner" aria-hidden="true" /> Generating your keys… this can take a few seconds.
          </p>
        )}
      </form>
    </main>
  );
}
