package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Send seals text to an accepted friend and queues it durably before it
// returns; delivery happens in the background. The message starts
// pending. It goes in the current session with the friend, or starts one
// (an RSA-signed suite-2 envelope) when their prekey is known; without one
// it is a single envelope (suite 1).
func (n *Node) Send(ctx context.Context, to protocol.ID, text string) (store.Message, error) {
	s, err := n.running()
	if err != nil {
		return store.Message{}, err
	}
	switch {
	case len(text) > protocol.MaxBodySize:
		return store.Message{}, fail(ErrTooLarge, "%d bytes (max %d)", len(text), protocol.MaxBodySize)
	case !utf8.ValidString(text):
		return store.Message{}, fail(ErrInvalid, "message is not UTF-8")
	case strings.TrimSpace(text) == "":
		return store.Message{}, ErrEmptyMessage
	}
	fe, err := s.friends.sendable(to)
	if err != nil {
		return store.Message{}, err
	}
	m, pending, err := s.msgs.sealText(ctx, fe, text)
	if err == nil {
		// Only a durable message goes on the wire: the courier reads it
		// from the store once this write is committed.
		if err = pending.Wait(); err != nil {
			err = fmt.Errorf("node: queue message (not sent): %w", err)
		}
	}
	switch {
	case errors.Is(err, store.ErrClosed):
		// Close came while this send was on its way: nothing was written.
		return store.Message{}, fail(ErrClosed, "message not sent")
	case err != nil:
		return store.Message{}, err
	}
	s.outbox.Notify(to)
	return m, nil
}

// sendable returns the friend to send to, or why nothing may be sent to
// them now.
func (fr *friendBook) sendable(to protocol.ID) (*friendEntry, error) {
	fe := fr.friend(to)
	switch {
	case fe != nil && fe.f.Status == store.FriendRemovedByPeer:
		return nil, fail(ErrRemovedByPeer, "%s", to)
	case fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil:
		return nil, fail(ErrNotFriend, "%s", to)
	case fe.f.ChangedKey != nil:
		return nil, fail(ErrKeyChanged, "%s; verify their safety number again", to)
	case fe.f.Forked:
		return nil, fail(ErrKeyFork, "%s; compare safety numbers again", to)
	}
	return fe, nil
}

// sealText seals text for fe and queues its write (message, outbox entry
// and session state in one transaction) in the friend's turn, under the
// friend's lock, so that the writes, which the commit queue keeps in
// order, are in the order of the messages' timestamps. The next seal
// starts from the new session state at once; Send waits for the write
// outside the lock, so concurrent sends share their syncs. An RSA
// signature is made outside the lock (peerSess): without sessions the
// whole envelope is sealed there, and in --strict-rsa-signatures mode a
// session message is signed there, so concurrent sends to one friend
// sign in parallel.
func (ms *messenger) sealText(ctx context.Context, fe *friendEntry, text string) (store.Message, *store.Pending, error) {
	ps := ms.peerSessOf(fe.f.UserID)
	t, unlock := ps.lockTurn()
	defer unlock()
	var (
		out sealed
		err error
	)
	if ms.cfg.DisableSessions {
		now := ps.stamp(ms.cfg.Now())
		ps.mu.Unlock()
		out, err = ms.sealTimed(func() (sealed, error) {
			return ms.sealEnvelope(fe, protocol.KindText, protocol.MsgID{}, []byte(text), now)
		})
		ps.mu.Lock()
		ps.await(t)
	} else {
		var p *protocol.PeerSessions
		if p, err = ms.state(ctx, ps, fe.f.UserID); err != nil {
			return store.Message{}, nil, err
		}
		out, err = ms.sealTimed(func() (sealed, error) {
			return ms.sealOutLater(ps, fe, p, protocol.KindText, protocol.MsgID{}, []byte(text))
		})
		if err == nil && out.update != nil {
			// The next seal goes on from this state at once; the store
			// keeps the newest version written (store.SessionUpdate),
			// and if this write fails, the state is still ahead of what
			// the friend will see, which a ratchet tolerates (a skipped
			// message key).
			ps.stored(out.update)
		}
		if err == nil && out.unsigned != nil {
			// --strict-rsa-signatures: the RSA signature needs no
			// session state.
			ps.mu.Unlock()
			start := time.Now()
			err = out.sign()
			ms.stats.sealNanos.Add(int64(time.Since(start)))
			ps.mu.Lock()
		}
		ps.await(t)
	}
	if err != nil {
		return store.Message{}, nil, fmt.Errorf("node: seal: %w", err)
	}
	to := fe.f.UserID
	m, pending, err := ms.st.QueueOutgoing(ctx, store.Message{
		ID:           out.id,
		Conversation: store.DirectConversation(to),
		Direction:    store.Out,
		From:         ms.me,
		To:           to,
		Kind:         kindText,
		Body:         []byte(text),
		SentAt:       time.UnixMilli(out.stamp),
		Status:       store.StatusPending,
	}, store.OutboxEntry{MsgID: out.id, Recipient: to, Envelope: out.raw, Session: out.session}, out.update)
	if err != nil {
		return store.Message{}, nil, fmt.Errorf("node: queue message (not sent): %w", err)
	}
	return m, pending, nil
}

// sealTimed runs seal and adds its time to the node's seal figures.
func (ms *messenger) sealTimed(seal func() (sealed, error)) (sealed, error) {
	start := time.Now()
	out, err := seal()
	ms.stats.sealNanos.Add(int64(time.Since(start)))
	ms.stats.sealed.Add(1)
	return out, err
}

// Messages returns a page of the conversation with a friend, newest first,
// and the cursor of the next (older) page ("" at the end).
func (n *Node) Messages(ctx context.Context, with protocol.ID, before store.Cursor, limit int) ([]store.Message, store.Cursor, error) {
	s, err := n.running()
	if err != nil {
		return nil, "", err
	}
	ms, next, err := s.st.Messages(ctx, store.DirectConversation(with), before, limit)
	if errors.Is(err, store.ErrInvalid) {
		return nil, "", fail(ErrInvalid, "%v", err)
	}
	if err != nil {
		return nil, "", fmt.Errorf("node: messages: %w", err)
	}
	return ms, next, nil
}

// Conversation is one entry of the conversation list.
type Conversation struct {
	store.Conversation
	With protocol.ID
	Name string
	Last *store.Message // the newest message, nil if none
}

// Conversations lists the 1:1 conversations, newest first.
func (n *Node) Conversations(ctx context.Context) ([]Conversation, error) {
	s, err := n.running()
	if err != nil {
		return nil, err
	}
	cs, err := s.st.Conversations(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: conversations: %w", err)
	}
	out := make([]Conversation, 0, len(cs))
	for _, c := range cs {
		v := Conversation{Conversation: c, With: protocol.ID(c.ID)}
		if fe := s.friends.friend(v.With); fe != nil {
			v.Name = fe.f.Name
		}
		if !c.LastMessage.IsZero() {
			m, err := s.st.Message(ctx, c.LastMessage)
			if err != nil {
				return nil, fmt.Errorf("node: last message of %s: %w", v.With, err)
			}
			v.Last = &m
		}
		out = append(out, v)
	}
	return out, nil
}

// MarkRead marks the conversation with a friend read and sends them a read
// receipt up to upTo (the newest message they sent when upTo is zero).
func (n *Node) MarkRead(ctx context.Context, with protocol.ID, upTo protocol.MsgID) error {
	s, err := n.running()
	if err != nil {
		return err
	}
	conv := store.DirectConversation(with)
	var last *store.Message
	if upTo.IsZero() {
		if last, err = s.msgs.newestIncoming(ctx, conv); err != nil {
			return err
		}
	} else {
		m, err := s.st.Message(ctx, upTo)
		if errors.Is(err, store.ErrNotFound) || (err == nil && m.Conversation != conv) {
			return fail(ErrNotFound, "message %s in this conversation", upTo)
		}
		if err != nil {
			return fmt.Errorf("node: message: %w", err)
		}
		if m.Direction == store.In {
			last = &m
		}
	}
	if err := s.st.MarkRead(ctx, conv); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("node: mark read: %w", err)
	}
	if last == nil {
		return nil
	}
	fe := s.friends.friend(with)
	if fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil || fe.f.ChangedKey != nil {
		return nil // nobody to tell
	}
	return s.msgs.sendReceipt(ctx, fe, last.ID)
}

// sendReceipt queues a read receipt up to last for fe, unless the last
// one sent named it already.
func (ms *messenger) sendReceipt(ctx context.Context, fe *friendEntry, last protocol.MsgID) error {
	ms.mu.Lock()
	dup := ms.receipts[fe.f.UserID] == last
	ms.receipts[fe.f.UserID] = last
	ms.mu.Unlock()
	if dup {
		return nil
	}
	return ms.queueControl(ctx, fe, protocol.KindReceipt, protocol.MarshalReceipt(last))
}

// newestIncoming finds the newest message the friend sent, paging back
// through the conversation; nil if they sent none.
func (ms *messenger) newestIncoming(ctx context.Context, conv store.ConversationID) (*store.Message, error) {
	var cursor store.Cursor
	for {
		page, next, err := ms.st.Messages(ctx, conv, cursor, 200)
		if err != nil {
			return nil, fmt.Errorf("node: messages: %w", err)
		}
		for i := range page {
			if page[i].Direction == store.In {
				return &page[i], nil
			}
		}
		if next == "" {
			return nil, nil
		}
		cursor = next
	}
}

// receiveReceipt marks our messages to the sender read, up to the one the
// receipt names: every outgoing message in the conversation not newer
// than it, stopping at the first that was already read.
func (ms *messenger) receiveReceipt(ctx context.Context, m *protocol.Message) error {
	upTo, err := protocol.ParseReceipt(m.Body)
	if err != nil {
		return err
	}
	ref, err := ms.st.Message(ctx, upTo)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a message we no longer have
	}
	if err != nil {
		return err
	}
	conv := store.DirectConversation(m.Sender)
	if ref.Conversation != conv || ref.Direction != store.Out {
		return nil // not ours to them: ignore
	}
	limit := ref.SortTime()
	var cursor store.Cursor
	for {
		page, next, err := ms.st.Messages(ctx, conv, cursor, 200)
		if err != nil {
			return err
		}
		for _, x := range page {
			if x.Direction != store.Out || x.SortTime().After(limit) {
				continue
			}
			if x.Status == store.StatusRead {
				return nil
			}
			if x.Status == store.StatusFailed {
				continue
			}
			up, err := ms.st.UpdateStatus(ctx, x.ID, store.StatusRead, "", "")
			if err != nil {
				return err
			}
			ms.events.publish(Event{Type: EventMessageStatus, Message: up})
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
