package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/node/outbox"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Removal notices. When the user removes an accepted friend, the node
// tells them: a KindFriendRemoved envelope (empty body), sealed to them
// and signed by the user's identity key like any envelope, so that only
// the user can have sent it, only they can read it, and the replay window
// and seen IDs refuse a copy. It goes through the outbox like everything
// else, after what was queued for them is dropped:
//
// What was queued for the removed friend is not sent: it is dropped from
// the outbox and marked failed ("friend removed"), in the order the
// queue had it, and only then is the notice queued. Removing someone is
// the user's decision to stop talking to them; messages still waiting
// (the friend was offline) would reach them after that decision, and the
// friend's node, which learns of the removal from the notice, would show
// them as if nothing had happened. The failed messages stay in the
// history, marked with the reason.
//
// The friend's record is deleted at once; the notice's courier reaches
// their devices through the entry kept in friendBook.leaving. A notice
// still queued when the node stops is found again at the next unlock
// (resumeStranded): the node looks the removed friend's devices up in
// the directory and sends it; if the directory has no record of them
// after farewellTries lookups, the notice is dropped.
//
// On the receiving side a notice from an accepted friend, whose signature
// by their pinned key verified, sets them removed_by_peer: their history
// stays, what is queued for them fails ("they removed you"), and so is
// explained what their node refused as from a stranger while the notice
// was on its way; sending to them is refused with ErrRemovedByPeer, and
// EventFriendRemoved tells the UI. A notice from anyone else, or about a friendship that is not
// accepted, changes nothing. Adding them again (either side) starts over
// with a contact request.

// removalReason is the error of messages dropped when the user removes a
// friend, theirRemovalReason when the friend removed the user.
const (
	removalReason      = "friend removed"
	theirRemovalReason = "no longer friends: they removed you"
)

// sendRemoval queues a removal notice for fe.
func (ms *messenger) sendRemoval(ctx context.Context, fe *friendEntry) error {
	if fe.key == nil {
		return fmt.Errorf("%w: no key for %s", ErrInvalid, fe.f.UserID)
	}
	return ms.queueControl(ctx, fe, protocol.KindFriendRemoved, nil)
}

// farewell keeps what delivering the removal notice to a removed friend
// needs (their devices), and queues the notice. changeMu is held.
func (fr *friendBook) farewell(ctx context.Context, fe *friendEntry) {
	fr.mu.Lock()
	fr.leaving[fe.f.UserID] = fe
	fr.mu.Unlock()
	if err := fr.sendRemoval(ctx, fe); err != nil {
		fr.log.Warn("removal notice not queued", "friend", fe.f.UserID.String(), "err", err)
	}
}

// reachable is the cached entry to deliver to id with: a friend's, or a
// removed friend's while their removal notice is on its way.
func (fr *friendBook) reachable(id protocol.ID) *friendEntry {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fe := fr.friends[id]; fe != nil {
		return fe
	}
	return fr.leaving[id]
}

// receiveRemoval acts on a removal notice whose signature was checked
// (the sender was an accepted friend when it was opened).
func (fr *friendBook) receiveRemoval(ctx context.Context, m *protocol.Message) error {
	if len(m.Body) != 0 {
		return fmt.Errorf("%w: removal notice with a body", protocol.ErrMalformed)
	}
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.st.Friend(ctx, m.Sender)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: removal notice from a stranger", errNotAFriend)
	}
	if err != nil {
		return err
	}
	if f.Status != store.FriendAccepted {
		return nil // removed or blocked meanwhile: nothing to undo
	}
	f.Status = store.FriendRemovedByPeer
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		return err
	}
	fr.cacheFriend(f)
	fr.dropQueued(ctx, f.UserID, theirRemovalReason)
	fr.explainRefusals(ctx, f.UserID)
	fr.log.Info("a friend removed us", "friend", f.UserID.String())
	fr.events.publish(Event{Type: EventFriendRemoved, Friend: fr.view(f)})
	return nil
}

// explainRefusals gives the messages to a friend who removed us that
// their node refused as from a stranger (sent while the notice was on its
// way) the reason the user can act on. It looks at the newest
// refusalScan messages of the conversation.
func (fr *friendBook) explainRefusals(ctx context.Context, id protocol.ID) {
	ms, _, err := fr.st.Messages(ctx, store.DirectConversation(id), "", refusalScan)
	if err != nil {
		fr.log.Warn("refused messages not explained", "friend", id.String(), "err", err)
		return
	}
	for _, m := range ms {
		if m.Direction != store.Out || m.Status != store.StatusFailed || m.Error != refusedAsStranger {
			continue
		}
		up, err := fr.st.UpdateStatus(ctx, m.ID, store.StatusFailed, "", theirRemovalReason)
		if err != nil {
			fr.log.Warn("refused message not explained", "msg", m.ID.String(), "err", err)
			return
		}
		fr.events.publish(Event{Type: EventMessageStatus, Message: up})
	}
}

// refusedAsStranger is the error the outbox gives a message the
// recipient refused as not from a friend; refusalScan bounds
// explainRefusals.
var refusedAsStranger = outbox.RefusedError(protocol.AckNotAFriend)

const refusalScan = 200

// farewellTries bounds the directory lookups for a removal notice found
// queued at unlock; they are RetryMax apart.
const farewellTries = 10

// resumeStranded looks at what is queued for users who are no longer
// friends, once, at unlock (after load): a removal notice that was on its
// way when the node stopped is sent once the directory says where the
// removed friend's devices are (resumeFarewell); a queue that starts with
// a group control is a roster member's (group_roster.go) and goes on;
// anything else is failed.
func (fr *friendBook) resumeStranded(ctx context.Context) error {
	tos, err := fr.st.OutboxRecipients(ctx)
	if err != nil {
		return fmt.Errorf("node: outbox recipients: %w", err)
	}
	for _, to := range tos {
		if fr.friend(to) != nil {
			continue
		}
		es, err := fr.st.OutboxQueue(ctx, to, 0, 1)
		if err != nil {
			return fmt.Errorf("node: outbox queue: %w", err)
		}
		if len(es) == 1 && es[0].Control && isRemovalNotice(es[0].Envelope) {
			fr.spawn(func(ctx context.Context) { fr.resumeFarewell(ctx, to) })
			continue
		}
		if len(es) == 1 && es[0].Control && isGroupControlEnvelope(es[0].Envelope) {
			// Group controls for a roster member who is not a friend
			// (group_roster.go): the outbox goes on delivering them.
			continue
		}
		fr.log.Info("dropping what is queued for a user who is no longer a friend", "user", to.String())
		if err := fr.outbox.Drop(ctx, to, removalReason); err != nil {
			return fmt.Errorf("node: drop stranded queue: %w", err)
		}
	}
	return nil
}

// isRemovalNotice reports whether raw is an envelope of kind
// KindFriendRemoved.
func isRemovalNotice(raw []byte) bool {
	env, err := protocol.ParseEnvelope(raw)
	return err == nil && env.Kind == protocol.KindFriendRemoved
}

// resumeFarewell finds a removed friend's devices in the directory and
// has the outbox send their removal notice; after farewellTries failed
// lookups the notice is dropped. A friend added again meanwhile has their own entry, and the
// notice goes to them first, in queue order.
func (fr *friendBook) resumeFarewell(ctx context.Context, to protocol.ID) {
	for try := 1; ; try++ {
		rec, err := fr.lookup(ctx, to)
		if err == nil {
			fe := &friendEntry{f: store.Friend{UserID: to, PublicKey: rec.Key().Bytes()}, key: rec.Key()}
			fe.infos = mergeDevices(nil, rec.DevicePeers(), relayCircuits(rec.Relays()))
			fe.devices = rec.DevicePeers()
			fr.mu.Lock()
			if fr.friends[to] == nil {
				fr.leaving[to] = fe
			}
			fr.mu.Unlock()
			fr.outbox.Rush(to)
			return
		}
		if ctx.Err() != nil {
			return
		}
		// Not found may only mean that the DHT is not joined yet, just
		// after unlock: it is tried again too.
		if try == farewellTries {
			fr.log.Info("removal notice dropped: the removed friend's devices are not known", "user", to.String(), "err", err)
			if fr.friend(to) == nil {
				if err := fr.outbox.Drop(ctx, to, removalReason); err != nil && ctx.Err() == nil {
					fr.log.Error("removal notice not dropped", "user", to.String(), "err", err)
				}
			}
			return
		}
		t := time.NewTimer(fr.cfg.RetryMax)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
