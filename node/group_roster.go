package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Group controls between members who are not friends, authorised by the
// roster alone. A member's sender key must reach every other member, and
// members are friends of an admin, not necessarily of each other. To such
// a member the node seals the control as a 1:1 envelope to the key and
// prekey of their verified directory record, and delivers it itself to
// one of the record's devices with its own card (which the receiver
// checks the signature against), retrying with backoff for a while; the
// outbox, whose queues are per friend, is not used, so a control not
// delivered before the node stops is not sent again (the member then
// misses that key until the next epoch).
//
// The receiver takes a state or sender key from someone who is not a
// friend (nor blocked) only if the sender is on the current roster of a
// group it holds (an admin of one, for a state): the card's key must have
// signed the envelope, and the groups part then checks the content
// against the roster as for any control. Nothing else from such a sender
// is accepted: a chat message from a roster member who is not a friend is
// refused as from anyone else (senderKey).

// rosterRetries bounds the delivery attempts of one roster control.
const rosterRetries = 8

// groupDirectRoster sends a group control to a roster member who is not
// an accepted friend.
func (u *unlocked) groupDirectRoster(ctx context.Context, to protocol.ID, kind protocol.Kind, body []byte) error {
	if fe := u.friends.friend(to); fe != nil && fe.f.Status == store.FriendBlocked {
		return fail(ErrNotFriend, "group member %s is blocked: not reached", to)
	}
	rec, err := u.lookup(ctx, to)
	if err != nil {
		return err
	}
	now := u.cfg.Now()
	rcpt := protocol.Recipient{UserID: to, Key: rec.Key()}
	if p := rec.Prekey(); p != nil && !now.Before(p.NotBefore) && now.Before(p.NotAfter) {
		rcpt.Prekey = p
	}
	env, err := protocol.Seal(u.keys.sender(), rcpt, kind, body, now)
	if err != nil {
		return fmt.Errorf("node: seal %v: %w", kind, err)
	}
	card, err := u.keys.ownCard()
	if err != nil {
		return err
	}
	d := &protocol.Delivery{Envelope: env.Marshal(), SenderCard: card.Marshal()}
	devices := rec.DevicePeers()
	u.track.goFunc(func() {
		if err := u.deliverRoster(u.life, devices, d, env.MsgID); err != nil {
			u.log.Info("group control not delivered", "kind", kind.String(), "to", to.String(), "err", err)
		}
	})
	return nil
}

// deliverRoster tries each device in turn until one acknowledges d,
// with backoff between rounds. Any refusal is tried again: a sender key
// may arrive before the state that lists its sender.
func (u *unlocked) deliverRoster(ctx context.Context, devices []peer.ID, d *protocol.Delivery, id protocol.MsgID) error {
	wait := u.cfg.RetryMin
	if wait <= 0 {
		wait = time.Second
	}
	var last error
	for range rosterRetries {
		for _, p := range devices {
			code, err := u.deliverTo(ctx, p, d)
			switch {
			case err != nil:
				last = err
			case code == protocol.AckOK || code == protocol.AckReplay:
				return nil
			default:
				last = fmt.Errorf("refused: %s", code)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait *= 2; u.cfg.RetryMax > 0 && wait > u.cfg.RetryMax {
			wait = u.cfg.RetryMax
		}
	}
	return fmt.Errorf("message %s: %w", id, errors.Join(last, errors.New("gave up")))
}

// deliverTo sends d to one device on msgProtocol and reads its ack.
func (u *unlocked) deliverTo(ctx context.Context, p peer.ID, d *protocol.Delivery) (protocol.AckCode, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.DialTimeout)
	defer cancel()
	s, err := u.host.NewStream(ctx, p, msgProtocol)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(ackWriteTimeout))
	if err := protocol.WriteDelivery(s, d); err != nil {
		_ = s.Reset()
		return 0, err
	}
	_ = s.CloseWrite()
	a, err := protocol.ReadAck(bufio.NewReader(s))
	if err != nil {
		return 0, err
	}
	return a.Code, nil
}

// onRoster reports whether user is on the current roster of a group this
// node is a member of (as an admin, when admin is set).
func (u *unlocked) onRoster(ctx context.Context, user protocol.ID, admin bool) bool {
	all, err := u.st.Groups(ctx)
	if err != nil {
		return false
	}
	for _, gr := range all {
		if gr.Removed {
			continue
		}
		if (admin && gr.State.IsAdmin(user)) || (!admin && gr.State.IsMember(user)) {
			return true
		}
	}
	return false
}

// rosterKey is the key a group control from someone who is not a friend
// must be signed with: the key of the card that came with it, when the
// card is theirs and they are on a roster (see above).
func (ms *messenger) rosterKey(env *protocol.Envelope, cardBytes []byte) (*protocol.PublicKey, error) {
	if ms.onRoster == nil || len(cardBytes) == 0 {
		return nil, fmt.Errorf("%w: group control from a stranger without a card", errNotAFriend)
	}
	c, err := protocol.ParseCard(cardBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: card: %v", errNotAFriend, err)
	}
	if c.UserID != env.Sender {
		return nil, fmt.Errorf("%w: card of another user", errNotAFriend)
	}
	if !ms.onRoster(ms.life, env.Sender, env.Kind == protocol.KindGroupState) {
		return nil, fmt.Errorf("%w: not on the roster of any group", errNotAFriend)
	}
	return c.Key, nil
}
