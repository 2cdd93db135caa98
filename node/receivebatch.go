package node

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// A stream's committer (commitLoop) stores the chat messages of one
// sender that are ready together in one transaction, one synced write
// for a burst: session messages (opened by the committer, in order) and
// single envelopes (opened by the workers).

// maxCommitBatch caps the chat messages stored in one transaction.
const maxCommitBatch = 64

// batchable reports whether in is a chat message that may be stored
// with others of its sender: a session message, checked and waiting to
// be opened, or an envelope the workers have opened.
func batchable(in *inbound) bool {
	if in.ack.Code != protocol.AckOK {
		return false
	}
	switch {
	case in.sm != nil:
		return in.sm.Kind == protocol.KindText
	case in.msg != nil:
		return in.msg.Kind == protocol.KindText
	}
	return false
}

// joins reports whether next, queued after in (batchable), goes in in's
// batch. A session message is waited for (it is only checked before the
// committer, which is quick); an envelope joins only if it is opened
// already: the batch is not held back for an RSA decryption, and next
// starts the following one.
func joins(in, next *inbound) bool {
	if in.sm != nil {
		<-next.ready
		return batchable(next) && next.sm != nil && next.sm.Sender == in.sm.Sender
	}
	select {
	case <-next.ready:
	default:
		return false
	}
	return batchable(next) && next.sm == nil && next.msg.Sender == in.msg.Sender
}

// commitEnvelopeBatch stores opened chat envelopes of one sender in one
// transaction, as commit stores one: only from an accepted friend, each
// message once (a repeat is AckReplay).
func (ms *messenger) commitEnvelopeBatch(ctx context.Context, batch []*inbound) {
	if fe := ms.friends.friend(batch[0].msg.Sender); fe == nil || fe.f.Status != store.FriendAccepted {
		for _, in := range batch {
			in.reject(protocol.AckNotAFriend, errNotAFriend)
		}
		return
	}
	msgs := make([]store.Message, len(batch))
	for i, in := range batch {
		msgs[i] = textMessage(in.msg)
	}
	results, err := ms.st.StoreReceivedBatch(ctx, msgs)
	if err != nil {
		for _, in := range batch {
			in.reject(protocol.AckUnavailable, err)
		}
		return
	}
	ms.storedBatch(batch, msgs, results)
}

// storedBatch answers the messages of a batch stored in one transaction:
// each stored (results[i] nil) is an event, each repeat a replay, each
// other refusal malformed.
func (ms *messenger) storedBatch(batch []*inbound, msgs []store.Message, results []error) {
	for i, in := range batch {
		switch err := results[i]; {
		case err == nil:
			ms.events.publish(Event{Type: EventMessage, Message: msgs[i]})
		case errors.Is(err, store.ErrDuplicate):
			in.reject(protocol.AckReplay, err)
		default:
			in.reject(protocol.AckMalformed, err)
		}
	}
}
