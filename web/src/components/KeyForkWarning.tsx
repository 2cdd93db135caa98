import type { Friend } from '../api';
import { Link } from './Main';

/**
 * The red warning for a friend whose key signed two different histories
 * (key_fork): a stolen key or a misbehaving device. Messages to them are
 * held by the node until the user compares safety numbers again.
 */
export function KeyForkWarning({ friend, compact = false }: { friend?: Friend; compact?: boolean }) {
  if (!friend?.key_fork) return null;
  const text = (
    <>
      <strong>{friend.name}&rsquo;s key signed two different histories.</strong> Someone may have stolen their key.
      Messages to them are held until you compare safety numbers again.
    </>
  );
  if (compact) {
    return (
      <span role="alert" className="warn small key-fork" data-testid="key-fork-warning">
        {text}
      </span>
    );
  }
  return (
    <div role="alert" className="banner danger key-fork" data-testid="key-fork-warning">
      {text} <Link to={{ name: 'safety', userID: friend.user_id }}>Compare safety numbers</Link>
    </div>
  );
}
