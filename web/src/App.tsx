import { useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useState } from 'react';
import { api, getToken, NetworkError, setToken, setUnauthorizedHandler, type NodeState } from './api';
import { Login } from './components/Login';
import { humanError } from './errors';
import { Main } from './components/Main';
import { Register } from './components/Register';

type Phase = { kind: 'loading' } | { kind: 'down'; message: string } | { kind: NodeState | 'app' };

/**
 * App picks the screen from the node's state and the session: register on
 * a new node, log in on a locked one (or without a token), else the chats.
 */
export function App() {
  const [phase, setPhase] = useState<Phase>({ kind: 'loading' });
  const [notice, setNotice] = useState('');
  const qc = useQueryClient();

  const decide = useCallback(async () => {
    try {
      const h = await api.health();
      if (h.state === 'new') {
        setToken(null);
        return setPhase({ kind: 'new' });
      }
      if (h.state === 'locked' || !getToken()) return setPhase({ kind: 'locked' });
      await api.me(); // a 401 here clears the token and shows login
      setPhase({ kind: 'app' });
    } catch (e) {
      if (!getToken() && !(e instanceof NetworkError)) setPhase({ kind: 'locked' });
      else setPhase({ kind: 'down', message: humanError(e, 'load') });
    }
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setNotice('Your session ended (the node restarted, or you logged out elsewhere). Log in again.');
      setToken(null);
      qc.clear();
      setPhase({ kind: 'locked' });
    });
    void decide();
  }, [decide, qc]);

  // While the node is down, look again now and then.
  useEffect(() => {
    if (phase.kind !== 'down') return;
    const t = setInterval(() => void decide(), 2000);
    return () => clearInterval(t);
  }, [phase.kind, decide]);

  switch (phase.kind) {
    case 'loading':
      return (
        <main className="gate">
          <p role="status" className="progress">
            <span className="spinner" aria-hidden="true" /> Connecting to your node…
          </p>
        </main>
      );
    case 'down':
      return (
        <main className="gate">
          <div className="gate-box">
            <h1>Parley</h1>
            <p role="alert" className="error">
              {phase.message}
            </p>
            <p role="status" className="progress">
              <span className="spinner" aria-hidden="true" /> Reconnecting…
            </p>
          </div>
        </main>
      );
    case 'new':
      return <Register onDone={() => setPhase({ kind: 'app' })} />;
    case 'locked':
    case 'unlocked':
      return (
        <Login
          notice={notice}
          onDone={() => {
            setNotice('');
            setPhase({ kind: 'app' });
          }}
        />
      );
    case 'app':
      return (
        <Main
          onLoggedOut={() => {
            setToken(null);
            qc.clear();
            setNotice('');
            setPhase({ kind: 'locked' });
          }}
        />
      );
  }
}
