import { CopyButton } from './CopyButton';
import { QRCode } from './QRCode';

/** My invite link, its QR code and a copy button. */
export function InviteCard({ invite }: { invite: string }) {
  return (
    <section className="card invite" aria-labelledby="my-invite">
      <h2 id="my-invite">Your invite link</h2>
      <p className="muted">Send it to a friend, or let them scan the code. They add you with it, and you chat.</p>
      <div className="invite-body">
        <QRCode text={invite} label="QR code of your invite link" />
        <div className="invite-text">
          <code className="invite-link" data-testid="my-invite">
            {invite}
          </code>
          <CopyButton text={invite} label="Copy invite link" />
        </div>
      </div>
    </section>
  );
}
