import { useQuery } from '@tanstack/react-query';
import { useEffect, useState, type FormEvent } from 'react';
import { api, ApiError, setToken } from '../api';
import { keys } from '../cache';
import { formatWait, humanError } from '../errors';

/** Whose node this is, as far as the node tells before login (GET /api/v1/health). */
export interface NodeOwner {
  name?: string;
  user_id?: string;
}

/** The line that says whose node the login screen unlocks. */
export function ownerLine(owner: NodeOwner | undefined, host: string): string {
  if (owner?.name) return `This is ${owner.name}’s node.`;
  if (owner?.user_id) return `This is the node of user ${owner.user_id}.`;
  return `This is the Parley node at ${host}.`;
}

/** Log in (node state locked, or a new tab): whose node it is, and the passphrase. */
export function Login({ onDone, notice }: { onDone: () => void; notice?: string }) {
  // Asked when the screen shows: a node may have been registered, then
  // restarted locked, since the page loaded.
  const health = useQuery({ queryKey: keys.health, queryFn: api.health, staleTime: 0 });
  const whose: NodeOwner | undefined = health.data;
  const [pass, setPass] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [waitUntil, setWaitUntil] = useState(0);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    if (waitUntil <= Date.now()) return;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [waitUntil]);

  const waitLeft = Math.max(0, Math.ceil((waitUntil - now) / 1000));

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!pass || waitLeft > 0) return;
    setBusy(true);
    setError('');
    setWaitUntil(0);
    try {
      const r = await api.login(pass);
      setToken(r.token);
      setPass('');
      onDone();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'throttled' && err.retryAfter) {
        setWaitUntil(Date.now() + err.retryAfter * 1000);
        setNow(Date.now());
      }
      setError(humanError(err, 'login'));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="gate">
      <form className="gate-box" onSubmit={submit} aria-busy={busy}>
        <h1>Unlock Parley</h1>
        {notice && (
          <p role="status" className="notice">
            {notice}
          </p>
        )}
        <p className="owner" data-testid="node-owner">
          {ownerLine(whose, location.host)}
        </p>
        <p className="muted">Enter the passphrase of this node&rsquo;s identity.</p>
        <label>
          Passphrase
          <input
            type="password"
            value={pass}
            onChange={(e) => setPass(e.target.value)}
            autoComplete="current-password"
            autoFocus
            required
            disabled={busy}
          />
        </label>
        {error && (
          <p role="alert" className="error">
            {waitLeft > 0
              ? `Too many wrong passphrases. Try again in ${formatWait(waitLeft)}.`
              : waitUntil > 0
                ? 'You can try again now.'
                : error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy || waitLeft > 0}>
          Log in
        </button>
        {busy && (
          <p role="status" className="progress">
            <span className="spinner" aria-hidden="true" /> Unlocking…
          </p>
        )}
      </form>
    </main>
  );
}
