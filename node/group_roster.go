package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Group controls between members who are not friends, authorised by the
// roster alone. A member's sender key must reach every other member, and
// members are friends of an admin, not necessarily of each other. To such
// a member the node seals the control as a 1:1 envelope to the key and
// prekey of their verified directory record (kept in a rosterBook, so
// that a rekey does not look up the same member again), and queues it in
// the outbox like a friend's: it is durable before it is sent, and
// retried with backoff until acknowledged, across restarts. The outbox
// reaches the member's devices from the same record (messenger.openStream),
// sends the own card with the envelope (messenger.frame), and keeps
// retrying a refusal as "not a friend" (Config.Retry): the member may
// not have the state that lists the sender yet.
//
// The receiver takes a state or sender key from someone who is not a
// friend (nor blocked) only if the sender is on the current roster of a
// group it holds (an admin of one, for a state): the card's key must have
// signed the envelope, and the groups part then checks the content
// against the roster as for any control. Nothing else from such a sender
// is accepted: a chat message from a roster member who is not a friend is
// refused as from anyone else (senderKey).

// rosterTTL is how long a member's record is used before it is looked up
// again; a failed dial forgets it sooner.
const rosterTTL = 10 * time.Minute

// rosterBook caches what sealing to and reaching a roster member who is
// not a friend needs, from their verified directory record. mu guards
// recs, held for short reads and writes only.
type rosterBook struct {
	lookup func(ctx context.Context, id protocol.ID) (*directory.Record, error)
	now    func() time.Time

	mu   sync.Mutex
	recs map[protocol.ID]rosterEntry
}

// rosterEntry is a member's recipient (key and checked prekey) and devices.
type rosterEntry struct {
	rcpt  protocol.Recipient
	infos []peer.AddrInfo
	at    time.Time
}

func newRosterBook(lookup func(ctx context.Context, id protocol.ID) (*directory.Record, error), now func() time.Time) *rosterBook {
	return &rosterBook{lookup: lookup, now: now, recs: map[protocol.ID]rosterEntry{}}
}

// get returns id's entry, from the cache while it is fresh (and its
// prekey still valid), else from the directory.
func (rb *rosterBook) get(ctx context.Context, id protocol.ID) (rosterEntry, error) {
	now := rb.now()
	rb.mu.Lock()
	e, ok := rb.recs[id]
	rb.mu.Unlock()
	if ok && now.Sub(e.at) < rosterTTL && (e.rcpt.Prekey == nil || now.Before(e.rcpt.Prekey.NotAfter)) {
		return e, nil
	}
	rec, err := rb.lookup(ctx, id)
	if err != nil {
		return rosterEntry{}, err
	}
	if rec.UserID() != id || rec.Key() == nil {
		return rosterEntry{}, fail(ErrNotFound, "no record of %s", id)
	}
	e = rosterEntry{at: now, infos: mergeDevices(nil, rec.DevicePeers(), relayCircuits(rec.Relays()))}
	if e.rcpt, err = protocol.NewRecipient(id, rec.Key(), rec.Prekey(), now); err != nil {
		// No usable prekey: suite 1, to the identity key alone.
		e.rcpt = protocol.Recipient{UserID: id, Key: rec.Key()}
	}
	rb.mu.Lock()
	if len(rb.recs) >= 4*protocol.MaxGroupMembers {
		for k, old := range rb.recs {
			if now.Sub(old.at) >= rosterTTL {
				delete(rb.recs, k)
			}
		}
	}
	rb.recs[id] = e
	rb.mu.Unlock()
	return e, nil
}

// forget drops id's entry (its devices did not answer: look again).
func (rb *rosterBook) forget(id protocol.ID) {
	rb.mu.Lock()
	delete(rb.recs, id)
	rb.mu.Unlock()
}

// handoutRecipient is whom a group control to user is sealed for: an
// accepted friend's pinned key and prekey, or a roster member's record.
// A blocked user gets nothing (ErrNotFriend).
func (u *unlocked) handoutRecipient(ctx context.Context, user protocol.ID) (protocol.Recipient, error) {
	fe := u.friends.friend(user)
	switch {
	case fe != nil && fe.f.Status == store.FriendBlocked:
		return protocol.Recipient{}, fail(ErrNotFriend, "group member %s is blocked: not reached", user)
	case fe != nil && fe.f.Status == store.FriendAccepted && fe.key != nil:
		return u.friends.recipient(fe), nil
	}
	e, err := u.msgs.roster.get(ctx, user)
	if err != nil {
		return protocol.Recipient{}, err
	}
	return e.rcpt, nil
}

// groupDirectRoster queues a group control for a roster member who is
// not an accepted friend.
func (u *unlocked) groupDirectRoster(ctx context.Context, to protocol.ID, kind protocol.Kind, body []byte) error {
	rcpt, err := u.handoutRecipient(ctx, to)
	if err != nil {
		return err
	}
	env, err := protocol.Seal(u.keys.sender(), rcpt, kind, body, u.cfg.Now())
	if err != nil {
		return fmt.Errorf("node: seal %v: %w", kind, err)
	}
	if err := u.st.AddControl(ctx, store.OutboxEntry{MsgID: env.MsgID, Recipient: to, Envelope: env.Marshal()}); err != nil {
		return fmt.Errorf("node: queue %v: %w", kind, err)
	}
	u.outbox.Notify(to)
	return nil
}

// isGroupControl reports whether kind is a group control (these alone go
// to members who are not friends).
func isGroupControl(kind protocol.Kind) bool {
	return kind == protocol.KindGroupState || kind == protocol.KindSenderKey || kind == protocol.KindGroupLeave
}

// isGroupControlEnvelope reports whether raw is an envelope of a group
// control kind.
func isGroupControlEnvelope(raw []byte) bool {
	env, err := protocol.ParseEnvelope(raw)
	return err == nil && isGroupControl(env.Kind)
}

// retryRefusal is the outbox's Config.Retry: a group control that a
// member who is not a friend refused as from a stranger goes again after
// a backoff (they may not hold the state listing this user yet).
func (ms *messenger) retryRefusal(e store.OutboxEntry, code protocol.AckCode) bool {
	if code != protocol.AckNotAFriend || e.Session {
		return false
	}
	if fe := ms.friends.friend(e.Recipient); fe != nil && fe.f.Status == store.FriendAccepted {
		return false
	}
	return isGroupControlEnvelope(e.Envelope)
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
	if !ms.onRoster(env.Sender, env.Kind == protocol.KindGroupState) {
		return nil, fmt.Errorf("%w: not on the roster of any group", errNotAFriend)
	}
	return c.Key, nil
}
