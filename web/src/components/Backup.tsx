import { useState, type FormEvent } from 'react';
import { ApiError, opsApi } from '../api';
import { humanError } from '../errors';

/**
 * Settings' "Backup": downloads one encrypted file holding the whole node
 * (keys, friends, sessions, history). The node checks the passphrase
 * before it writes anything; `parley restore` reads the file on a new
 * machine.
 */
export function Backup({ save = saveFile }: { save?: (blob: Blob, filename: string) => void }) {
  const [passphrase, setPassphrase] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [done, setDone] = useState('');

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!passphrase || busy) return;
    setBusy(true);
    setError('');
    setDone('');
    try {
      const f = await opsApi.backup(passphrase);
      save(f.blob, f.filename);
      setDone(`Saved ${f.filename}. Keep it somewhere safe: with your passphrase it opens your whole account.`);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 403 && err.code === 'forbidden'
          ? 'Wrong passphrase: no backup was made.'
          : humanError(err),
      );
    } finally {
      setPassphrase('');
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="backup">
      <h2 id="backup">Backup</h2>
      <p className="muted">
        One file with everything needed to continue on another machine, encrypted under your passphrase. Restore it
        there with <code>parley restore --in FILE</code>.
      </p>
      <form className="backup-form" onSubmit={(e) => void submit(e)} aria-busy={busy}>
        <label>
          Passphrase
          <input
            type="password"
            autoComplete="current-password"
            value={passphrase}
            onChange={(e) => setPassphrase(e.target.value)}
            disabled={busy}
          />
        </label>
        <button type="submit" disabled={!passphrase || busy}>
          {busy ? 'Preparing backup…' : 'Download backup'}
        </button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {done && <p role="status">{done}</p>}
    </section>
  );
}

/** saveFile hands a blob to the browser as a download. */
function saveFile(blob: Blob, filename: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
