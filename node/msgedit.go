package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Sending a failed message again, and deleting a message.
//
// RetryMessage seals a failed outgoing message again, with the same
// msg_id, and puts it at the end of the friend's queue (the outbox's one
// order: it goes after everything queued before the retry, and the
// courier is the only path to the wire). The same msg_id makes delivery
// exactly-once even when the first copy did arrive (a failure recorded
// after the friend stored it, or a copy that was on the wire when it was
// withdrawn): the receiver's store refuses a msg_id it has stored or seen
// (an envelope's Seen check answers AckReplay before decrypting; a
// session message is refused by the store, ErrDuplicate, AckReplay), and
// the sender counts AckReplay as delivered. It is sealed anew (a new
// timestamp, the current session), so the replay window does not refuse
// an old message sent again.
//
// DeleteMessage deletes one message from this node only. A message still
// queued is first withdrawn from the outbox (outbox.Withdraw): once
// DeleteMessage returns, the courier never writes it; if it was on the
// wire already (written and not yet acknowledged) the friend may still
// get it. A withdrawn session message leaves a gap in the ratchet, which
// the receiver skips; a withdrawn session start makes the receiver answer
// the next message AckStale, and that message is sealed again in a new
// session. The deleted ID stays in the replay cache, so a copy that
// arrives again (a friend's retry) is refused, not stored anew.

// RetryMessage sends a failed outgoing message again: it is queued
// anew, pending, and delivered in the background. ErrNotFound for an
// unknown message, ErrNotRetryable for one that is not a failed outgoing
// message; ErrNotFriend, ErrRemovedByPeer, ErrKeyChanged or ErrKeyFork
// when nothing may be sent to its recipient now.
func (n *Node) RetryMessage(ctx context.Context, id protocol.MsgID) (store.Message, error) {
	s, err := n.running()
	if err != nil {
		return store.Message{}, err
	}
	m, err := s.msgs.message(ctx, id)
	if err != nil {
		return store.Message{}, err
	}
	if m.Direction != store.Out || m.Status != store.StatusFailed || m.To.IsZero() {
		return store.Message{}, fmt.Errorf("%w: message %s is %s", ErrNotRetryable, id, m.Status)
	}
	fe, err := s.friends.sendable(m.To)
	if err != nil {
		return store.Message{}, err
	}
	up, err := s.msgs.requeue(ctx, fe, m)
	switch {
	case errors.Is(err, store.ErrConflict):
		// Sent again meanwhile (another tab's retry).
		return store.Message{}, fmt.Errorf("%w: %w", ErrNotRetryable, err)
	case errors.Is(err, store.ErrNotFound):
		return store.Message{}, fmt.Errorf("%w: message %s", ErrNotFound, id)
	case errors.Is(err, store.ErrClosed):
		return store.Message{}, fmt.Errorf("%w: message not sent again", ErrClosed)
	case err != nil:
		return store.Message{}, err
	}
	s.msgs.events.publish(Event{Type: EventMessageStatus, Message: up})
	// The user asked: try now, whatever the backoff.
	s.outbox.Rush(m.To)
	return up, nil
}

// message reads one message; ErrNotFound if there is none.
func (ms *messenger) message(ctx context.Context, id protocol.MsgID) (store.Message, error) {
	m, err := ms.st.Message(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return m, fmt.Errorf("%w: message %s", ErrNotFound, id)
	}
	if err != nil {
		return m, fmt.Errorf("node: message: %w", err)
	}
	return m, nil
}

// requeue seals m again for fe, with its msg_id, and queues it at the end
// of fe's queue, under fe's session lock (as sealText does, so the write
// is in seal order).
func (ms *messenger) requeue(ctx context.Context, fe *friendEntry, m store.Message) (store.Message, error) {
	ps := ms.peerSessOf(fe.f.UserID)
	t, unlock := ps.lockTurn()
	defer unlock()
	p, err := ms.sessionsFor(ctx, ps, fe)
	if err != nil {
		return store.Message{}, err
	}
	out, err := ms.sealOut(ps, fe, p, protocol.KindText, m.ID, m.Body)
	if err != nil {
		return store.Message{}, fmt.Errorf("node: seal: %w", err)
	}
	ps.inTurn(t, out.update)
	e := store.OutboxEntry{MsgID: m.ID, Recipient: fe.f.UserID, Envelope: out.raw, Session: out.session}
	return ms.st.RequeueFailed(ctx, e, out.update)
}

// DeleteMessage deletes a message from this node (see above); the
// message is withdrawn from the outbox if it is still queued.
// ErrNotFound for an unknown message.
func (n *Node) DeleteMessage(ctx context.Context, id protocol.MsgID) error {
	s, err := n.running()
	if err != nil {
		return err
	}
	m, err := s.msgs.message(ctx, id)
	if err != nil {
		return err
	}
	del := func(ctx context.Context) error {
		var err error
		m, err = s.st.DeleteMessage(ctx, id)
		return err
	}
	if _, qerr := s.st.OutboxEntry(ctx, id); m.Direction == store.Out && qerr == nil {
		onWire, werr := s.outbox.Withdraw(ctx, m.To, id, del)
		if onWire {
			s.log.Debug("deleted message was on the wire already", "msg", id.String())
		}
		err = werr
	} else {
		err = del(ctx)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: message %s", ErrNotFound, id)
	case errors.Is(err, store.ErrClosed):
		return fmt.Errorf("%w: message not deleted", ErrClosed)
	case err != nil:
		return fmt.Errorf("node: delete message: %w", err)
	}
	s.msgs.events.publish(Event{Type: EventMessageDeleted, Message: m})
	return nil
}
