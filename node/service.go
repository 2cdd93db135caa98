package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Bounds on what one inbound stream may cost.
const (
	// streamIdle is how long a stream may sit without a frame.
	streamIdle = 2 * time.Minute
	// ackWriteTimeout bounds writing one acknowledgement.
	ackWriteTimeout = 10 * time.Second
	// pipelineDepth is how many opened envelopes may wait for storage on
	// one stream, so verification of the next overlaps with storing the
	// last.
	pipelineDepth = 8
	// maxRejects is how many envelopes one stream may have rejected
	// before it is closed: an honest sender has none or a few.
	maxRejects = 32
)

// inbound is one envelope on its way through a stream's pipeline: opened
// (or rejected) by the reader, then committed and acknowledged in order.
type inbound struct {
	ack  protocol.Ack
	err  error // why it was rejected (for the audit log)
	from protocol.ID
	msg  *protocol.Message
	card *protocol.Card // a contact request's or accept's card
}

// handleStream serves one /parley/msg/1.0.0 stream: a sequence of
// Delivery frames, each answered by an Ack once the envelope is stored or
// rejected. Reading and opening run ahead of storing by pipelineDepth.
func (s *session) handleStream(str network.Stream) {
	if !s.track.enter() {
		str.Reset()
		return
	}
	defer s.track.leave()
	remote := str.Conn().RemotePeer()
	if err := str.Scope().ReserveMemory(protocol.MaxDeliverySize, network.ReservationPriorityAlways); err != nil {
		s.log.Warn("inbound stream refused: memory limit", "peer", remote.String(), "err", err)
		str.Reset()
		return
	}
	defer str.Scope().ReleaseMemory(protocol.MaxDeliverySize)

	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	queue := make(chan *inbound, pipelineDepth)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.commitLoop(ctx, str, remote, queue)
	}()
	s.readLoop(ctx, str, remote, queue)
	close(queue)
	<-done
	str.Close()
}

// readLoop reads and opens frames until the stream ends or fails, or
// until it has rejected maxRejects of them.
func (s *session) readLoop(ctx context.Context, str network.Stream, remote peer.ID, queue chan<- *inbound) {
	br := bufio.NewReaderSize(str, 4096)
	for rejects := 0; rejects < maxRejects; {
		str.SetReadDeadline(time.Now().Add(streamIdle))
		d, err := protocol.ReadDelivery(br)
		switch {
		case err == nil:
		case errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrFraming):
			// The frame is not read, so the stream cannot go on.
			code := protocol.AckCodeFor(err)
			s.audit(remote, protocol.ID{}, code, err)
			in := &inbound{ack: protocol.Ack{Code: code, Detail: code.String()}}
			select {
			case queue <- in:
			case <-ctx.Done():
			}
			return
		case errors.Is(err, protocol.ErrMalformed):
			in := &inbound{ack: protocol.Ack{Code: protocol.AckMalformed, Detail: "frame does not parse"}}
			s.audit(remote, protocol.ID{}, protocol.AckMalformed, err)
			rejects++
			select {
			case queue <- in:
				continue
			case <-ctx.Done():
				return
			}
		default:
			// EOF, a cut stream, a reset, the idle deadline: nothing to answer.
			return
		}
		in := s.open(ctx, d)
		if in.ack.Code != protocol.AckOK {
			s.audit(remote, in.from, in.ack.Code, in.err)
			rejects++
		}
		select {
		case queue <- in:
		case <-ctx.Done():
			return
		}
	}
}

// commitLoop stores opened envelopes in order and writes their acks. A
// failed write ends the stream.
func (s *session) commitLoop(ctx context.Context, str network.Stream, remote peer.ID, queue <-chan *inbound) {
	bw := bufio.NewWriter(str)
	for in := range queue {
		if in.ack.Code == protocol.AckOK {
			s.commit(ctx, in)
			if in.ack.Code != protocol.AckOK {
				s.audit(remote, in.from, in.ack.Code, in.err)
			}
		}
		str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
		err := protocol.WriteAck(bw, &in.ack)
		if err == nil && len(queue) == 0 {
			err = bw.Flush() // batch the acks of a burst
		}
		if err != nil {
			str.Reset()
			cancelDrain(queue)
			return
		}
	}
	str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	bw.Flush()
}

// cancelDrain empties queue so the reader never blocks on a dead stream.
func cancelDrain(queue <-chan *inbound) {
	go func() {
		for range queue {
		}
	}()
}

// audit logs a rejected envelope: who, which code, why; never content.
func (s *session) audit(remote peer.ID, from protocol.ID, code protocol.AckCode, err error) {
	attrs := []any{"peer", remote.String(), "code", code.String()}
	if !from.IsZero() {
		attrs = append(attrs, "sender", from.String())
	}
	if err != nil {
		attrs = append(attrs, "reason", err.Error())
	}
	s.log.Warn("envelope rejected", attrs...)
}

// errNotAFriend rejects an envelope from someone who may not send it.
var errNotAFriend = errors.New("sender may not send this to us")

// errTooManyRequests defers a stranger's contact request while
// Config.MaxPendingRequests requests wait for an answer: the sender
// retries later.
var errTooManyRequests = errors.New("too many contact requests waiting for an answer")

// pendingIn counts the contact requests waiting for the user.
func (s *session) pendingIn() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, fe := range s.friends {
		if fe.f.Status == store.FriendPendingIn {
			n++
		}
	}
	return n
}

// open checks and decrypts one delivered envelope, without storing it.
func (s *session) open(ctx context.Context, d *protocol.Delivery) *inbound {
	in := &inbound{}
	env, err := protocol.ParseEnvelope(d.Envelope)
	if err != nil {
		in.reject(protocol.AckCodeFor(err), err)
		return in
	}
	in.ack.MsgID, in.from = env.MsgID, env.Sender
	if env.Recipient != s.me {
		in.reject(protocol.AckNotForMe, protocol.ErrNotForMe)
		return in
	}
	if seen, err := s.st.Seen(ctx, env.MsgID); err != nil {
		in.reject(protocol.AckUnavailable, err)
		return in
	} else if seen {
		in.reject(protocol.AckReplay, errors.New("msg_id seen before"))
		return in
	}
	key, err := s.senderKey(env, d.SenderCard)
	if errors.Is(err, errTooManyRequests) {
		in.reject(protocol.AckUnavailable, err)
		return in
	}
	if err != nil {
		in.reject(protocol.AckNotAFriend, err)
		return in
	}
	op := protocol.Opener{
		UserID: s.me,
		Key:    s.key,
		SenderKey: func(user, keyID protocol.ID) (*protocol.PublicKey, error) {
			if user != env.Sender || keyID != key.ID() {
				return nil, protocol.ErrUnknownSender
			}
			return key, nil
		},
		Prekey: s.prekeyByID,
		MaxAge: s.cfg.MaxAge,
		Now:    s.cfg.Now,
	}
	start := time.Now()
	m, err := op.Open(d.Envelope)
	s.stats.openNanos.Add(int64(time.Since(start)))
	s.stats.opened.Add(1)
	if err != nil {
		in.reject(protocol.AckCodeFor(err), err)
		return in
	}
	in.msg = m
	if m.Kind == protocol.KindContactRequest || m.Kind == protocol.KindContactAccept {
		c, err := protocol.ParseCard(m.Body)
		if err != nil || c.UserID != env.Sender || !c.Key.Equal(key) {
			in.reject(protocol.AckMalformed, fmt.Errorf("contact card does not match the sender: %v", err))
			return in
		}
		in.card = c
	}
	return in
}

func (in *inbound) reject(code protocol.AckCode, err error) {
	in.ack.Code, in.err = code, err
	in.ack.Detail = code.String()
}

// senderKey picks the key that must have signed env: a friend's pinned
// key, or for a first contact request the key on the card that came with
// it. Chat messages and receipts come only from accepted friends, accepts
// only from those we asked, and nothing from those we blocked.
func (s *session) senderKey(env *protocol.Envelope, cardBytes []byte) (*protocol.PublicKey, error) {
	fe := s.friend(env.Sender)
	if fe != nil && fe.key == nil {
		return nil, fmt.Errorf("%w: stored key does not parse", errNotAFriend)
	}
	switch env.Kind {
	case protocol.KindText, protocol.KindReceipt:
		if fe == nil || fe.f.Status != store.FriendAccepted {
			return nil, errNotAFriend
		}
		return fe.key, nil
	case protocol.KindContactAccept:
		if fe == nil || (fe.f.Status != store.FriendPendingOut && fe.f.Status != store.FriendAccepted) {
			return nil, errNotAFriend
		}
		return fe.key, nil
	case protocol.KindContactRequest:
		if fe != nil {
			if fe.f.Status == store.FriendBlocked {
				return nil, fmt.Errorf("%w: blocked", errNotAFriend)
			}
			return fe.key, nil
		}
		if len(cardBytes) == 0 {
			return nil, fmt.Errorf("%w: unknown sender without a card", errNotAFriend)
		}
		if s.pendingIn() >= s.cfg.MaxPendingRequests {
			return nil, errTooManyRequests
		}
		c, err := protocol.ParseCard(cardBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: card: %v", errNotAFriend, err)
		}
		if c.UserID != env.Sender {
			return nil, fmt.Errorf("%w: card of another user", errNotAFriend)
		}
		return c.Key, nil
	}
	return nil, fmt.Errorf("%w: kind %d", errNotAFriend, env.Kind)
}

// commit stores an opened envelope and acts on it; on failure it sets the
// ack's code. A chat message is stored with its seen ID in one synced
// transaction before the ack; control envelopes are idempotent, so their
// seen ID is marked after they took effect.
func (s *session) commit(ctx context.Context, in *inbound) {
	m := in.msg
	var err error
	switch m.Kind {
	case protocol.KindText:
		var stored store.Message
		stored, err = s.st.StoreReceived(ctx, store.Message{
			ID:           m.MsgID,
			Conversation: store.DirectConversation(m.Sender),
			Direction:    store.In,
			From:         m.Sender,
			To:           m.Recipient,
			Kind:         kindText,
			Body:         m.Body,
			SentAt:       m.Time(),
			Path:         store.PathDirect,
		})
		if errors.Is(err, store.ErrDuplicate) {
			in.reject(protocol.AckReplay, err)
			return
		}
		if err == nil {
			s.n.events.publish(Event{Type: EventMessage, Message: stored})
		}
	case protocol.KindReceipt:
		err = s.receiveReceipt(ctx, m)
	case protocol.KindContactRequest, protocol.KindContactAccept:
		err = s.receiveContact(ctx, m, in.card)
	default:
		err = fmt.Errorf("%w: kind %d", protocol.ErrMalformed, m.Kind)
	}
	if err == nil && m.Kind != protocol.KindText {
		err = s.st.MarkSeen(ctx, m.MsgID)
	}
	if err != nil {
		code := protocol.AckUnavailable
		if errors.Is(err, protocol.ErrMalformed) {
			code = protocol.AckMalformed
		}
		in.reject(code, err)
	}
}

// kindText is the store's kind for chat messages.
const kindText = "text"
