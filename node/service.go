package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/semaphore"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Bounds on what one inbound stream may cost.
const (
	// streamIdle is how long a stream may sit without a frame.
	streamIdle = 2 * time.Minute
	// ackWriteTimeout bounds writing one acknowledgement.
	ackWriteTimeout = 10 * time.Second
	// pipelineBytes is what one stream's pipeline may hold at once
	// (frames being opened, or opened and waiting to be stored), reserved
	// from the resource manager when the stream starts: room for eight
	// frames of the largest size, so memory per stream stays bounded.
	pipelineBytes = 8 * protocol.MaxDeliverySize
	// pipelineDepth is how many envelopes of one stream may be in the
	// pipeline at once, however small. Chat messages are small, and a
	// deep pipeline keeps the processors busy opening while the
	// committer waits for a processor or a sync (measured with
	// BenchmarkReceive: 8 left them idle about a tenth of the run).
	pipelineDepth = 32
	// maxRejects is how many envelopes one stream may have rejected
	// before it is closed: an honest sender has none or a few.
	maxRejects = 32
)

// inbound is one envelope on its way through a stream's pipeline: opened
// (or rejected) by a worker, then committed and acknowledged in order.
type inbound struct {
	ready chan struct{} // closed once opened or rejected
	ack   protocol.Ack
	err   error // why it was rejected (for the audit log)
	from  protocol.ID
	msg   *protocol.Message
	card  *protocol.Card // a contact request's or accept's card
	// sm is a session message, checked but not opened: the committer
	// opens it, in order, under the sender's session lock.
	sm *protocol.SessionMessage
	// remote is the device the stream comes from.
	remote peer.ID
	// budget is the stream's pipeline budget, of which cost bytes are
	// this envelope's until it leaves the pipeline (leave); nil for one
	// not read from a stream.
	budget *semaphore.Weighted
	cost   int64
}

// leave gives the envelope's bytes back to its stream's budget once it is
// stored and acknowledged, or dropped.
func (in *inbound) leave() {
	if in.budget != nil && in.cost > 0 {
		in.budget.Release(in.cost)
		in.cost = 0
	}
}

// deliveryCost is what a delivery frame holds in the pipeline: its
// payload (the frame's few bytes of framing aside).
func deliveryCost(d *protocol.Delivery) int64 {
	return int64(len(d.Envelope) + len(d.SenderCard) + len(d.Session))
}

// rejected is an inbound that was refused before opening.
func rejected(code protocol.AckCode, detail string, err error) *inbound {
	in := &inbound{ready: make(chan struct{}), err: err}
	in.ack = protocol.Ack{Code: code, Detail: detail}
	close(in.ready)
	return in
}

// handleStream serves one /parley/msg/1.0.0 stream: a sequence of
// Delivery frames, each answered by an Ack once the envelope is stored or
// rejected. Envelopes are opened in parallel (RSA decryption is what
// limits the inbound rate) and stored and acknowledged in stream order.
func (ms *messenger) handleStream(str network.Stream) {
	if !ms.track.enter() {
		str.Reset()
		return
	}
	defer ms.track.leave()
	remote := str.Conn().RemotePeer()
	if err := str.Scope().ReserveMemory(pipelineBytes, network.ReservationPriorityAlways); err != nil {
		ms.log.Warn("inbound stream refused: memory limit", "peer", remote.String(), "err", err)
		str.Reset()
		return
	}
	defer str.Scope().ReleaseMemory(pipelineBytes)

	ctx, cancel := context.WithCancel(ms.life)
	defer cancel()
	queue := make(chan *inbound, pipelineDepth)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ms.commitLoop(ctx, str, remote, queue)
	}()
	ms.readLoop(ctx, str, remote, queue)
	close(queue)
	<-done
	str.Close()
}

// readLoop reads frames until the stream ends or fails, queues each in
// order and has a worker open it, at most GOMAXPROCS at a time.
func (ms *messenger) readLoop(ctx context.Context, str network.Stream, remote peer.ID, queue chan<- *inbound) {
	br := bufio.NewReaderSize(str, 4096)
	workers := make(chan struct{}, runtime.GOMAXPROCS(0))
	budget := semaphore.NewWeighted(pipelineBytes)
	push := func(in *inbound) bool {
		select {
		case queue <- in:
			return true
		case <-ctx.Done():
			in.leave()
			return false
		}
	}
	for {
		// Room for a frame of the largest size before reading one; what
		// the frame does not use goes back at once.
		if budget.Acquire(ctx, protocol.MaxDeliverySize) != nil {
			return
		}
		str.SetReadDeadline(time.Now().Add(streamIdle))
		d, err := protocol.ReadDelivery(br)
		if err != nil {
			budget.Release(protocol.MaxDeliverySize)
		}
		switch {
		case err == nil:
		case errors.Is(err, protocol.ErrTooLarge), errors.Is(err, protocol.ErrFraming):
			// The frame is not read, so the stream cannot go on.
			code := protocol.AckCodeFor(err)
			push(rejected(code, code.String(), err))
			return
		case errors.Is(err, protocol.ErrMalformed):
			if !push(rejected(protocol.AckMalformed, "frame does not parse", err)) {
				return
			}
			continue
		default:
			// EOF, a cut stream, a reset, the idle deadline, or the
			// committer closed it: nothing to answer.
			return
		}
		in := &inbound{ready: make(chan struct{}), remote: remote, budget: budget, cost: deliveryCost(d)}
		budget.Release(protocol.MaxDeliverySize - in.cost)
		if !push(in) {
			return
		}
		select {
		case workers <- struct{}{}:
		case <-ctx.Done():
			in.ack.Code = protocol.AckUnavailable
			close(in.ready)
			return
		}
		go func() {
			defer func() { <-workers }()
			ms.open(ctx, d, in)
			close(in.ready)
		}()
	}
}

// commitLoop stores opened envelopes in stream order and writes their
// acks. A failed write ends the stream, and so does the maxRejects-th
// rejected envelope.
func (ms *messenger) commitLoop(ctx context.Context, str network.Stream, remote peer.ID, queue <-chan *inbound) {
	bw := bufio.NewWriter(str)
	rejects := 0
	var pending *inbound // read from the queue but not committed yet
	for {
		in := pending
		pending = nil
		if in == nil {
			var ok bool
			if in, ok = <-queue; !ok {
				break
			}
		}
		<-in.ready
		batch := []*inbound{in}
		// Chat messages of one sender that are already here are stored
		// in one transaction: one synced write for a burst.
		if batchable(in) {
			for len(batch) < maxCommitBatch && len(queue) > 0 {
				next := <-queue
				if !joins(in, next) {
					pending = next
					break
				}
				batch = append(batch, next)
			}
		}
		switch {
		case len(batch) > 1 && in.sm != nil:
			ms.commitSessionBatch(ctx, batch)
		case len(batch) > 1:
			ms.commitEnvelopeBatch(ctx, batch)
		case in.ack.Code == protocol.AckOK:
			ms.commit(ctx, in)
		}
		var err error
		for _, in := range batch {
			if in.ack.Code != protocol.AckOK {
				ms.audit(remote, in.from, in.ack.Code, in.err)
				rejects++
			}
			str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
			err = protocol.WriteAck(bw, &in.ack)
			in.leave()
			if err != nil {
				break
			}
		}
		if err == nil && ((len(queue) == 0 && pending == nil) || rejects >= maxRejects) {
			err = bw.Flush() // batch the acks of a burst
		}
		if err != nil || rejects >= maxRejects {
			if err != nil {
				str.Reset()
			} else {
				str.CloseWrite() // the sender sees the end after the last ack
				str.CloseRead()  // and the reader stops
			}
			for _, in := range batch {
				in.leave()
			}
			if pending != nil {
				<-pending.ready
				pending.leave()
			}
			drain(queue)
			return
		}
	}
	str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	bw.Flush()
}

// drain waits out the envelopes still in the pipeline of a stream that is
// ending, without storing or answering them.
func drain(queue <-chan *inbound) {
	for in := range queue {
		<-in.ready
		in.leave()
	}
}

// audit logs a rejected envelope: who, which code, why; never content.
func (ms *messenger) audit(remote peer.ID, from protocol.ID, code protocol.AckCode, err error) {
	attrs := []any{"peer", remote.String(), "code", code.String()}
	if !from.IsZero() {
		attrs = append(attrs, "sender", from.String())
	}
	if err != nil {
		attrs = append(attrs, "reason", err.Error())
	}
	ms.log.Warn("envelope rejected", attrs...)
	ms.events.publish(Event{Type: EventEnvelopeRefused, Peer: remote, User: from, Code: code.String()})
}

// errSeen is an envelope whose msg_id was seen before (AckReplay).
var errSeen = errors.New("msg_id seen before")

// errNotAFriend rejects an envelope from someone who may not send it.
var errNotAFriend = errors.New("sender may not send this to us")

// errTooManyRequests defers a stranger's contact request while
// Config.MaxPendingRequests requests wait for an answer: the sender
// retries later.
var errTooManyRequests = errors.New("too many contact requests waiting for an answer")

// open checks and decrypts one delivered envelope into in, without
// storing it.
func (ms *messenger) open(ctx context.Context, d *protocol.Delivery, in *inbound) {
	if len(d.Session) > 0 {
		ms.checkSession(ctx, d, in)
		return
	}
	env, err := protocol.ParseEnvelope(d.Envelope)
	if err != nil {
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	in.ack.MsgID, in.from = env.MsgID, env.Sender
	if env.Recipient != ms.me {
		in.reject(protocol.AckNotForMe, protocol.ErrNotForMe)
		return
	}
	key, err := ms.senderKey(env, d.SenderCard)
	if errors.Is(err, errTooManyRequests) {
		in.reject(protocol.AckUnavailable, err)
		return
	}
	if err != nil {
		in.reject(protocol.AckNotAFriend, err)
		return
	}
	op := protocol.Opener{
		UserID:  ms.me,
		Key:     ms.keys.identity(),
		OldKey:  ms.keys.oldKey,
		Retired: ms.keys.retiredPast,
		// The seen-ID check comes after the signature: nobody learns
		// whether a msg_id arrived by sending an envelope they could
		// not sign, and a replay costs no RSA decryption.
		Seen: func(id protocol.MsgID) error {
			// A repeated request from a stranger whose request already
			// waits for the user is answered as a replay here, signed
			// but not decrypted again (requests.go).
			if env.Kind == protocol.KindContactRequest && ms.friends.pendingRequest(env.Sender) {
				return fmt.Errorf("%w: %w", errSeen, errDuplicateRequest)
			}
			seen, err := ms.st.Seen(ctx, id)
			switch {
			case err != nil:
				return err
			case seen:
				return errSeen
			}
			return nil
		},
		SenderKey: func(user, keyID protocol.ID) (*protocol.PublicKey, error) {
			switch {
			case user != env.Sender:
				return nil, protocol.ErrUnknownSender
			case keyID != key.ID() && ms.friends.friend(user) != nil:
				// A friend signing with another key may have rotated:
				// look up their record, and have them retry.
				return nil, ms.friends.unknownSenderKey(user)
			case keyID != key.ID():
				return nil, protocol.ErrUnknownSender
			}
			return key, nil
		},
		Prekey: ms.keys.prekeyByID,
		MaxAge: ms.cfg.MaxAge,
		Now:    ms.cfg.Now,
	}
	start := time.Now()
	m, err := op.Open(d.Envelope)
	ms.stats.openNanos.Add(int64(time.Since(start)))
	ms.stats.opened.Add(1)
	switch {
	case errors.Is(err, errSeen):
		in.reject(protocol.AckReplay, err)
		return
	case errors.Is(err, protocol.ErrKeyRetired):
		// Signed by the friend, sealed to a key of ours whose grace is
		// over: they have not learnt the new one. Retryable; the card
		// tells them, and their outbox seals it again (anchors.go).
		ms.pushCard(ctx, ms.friends.friend(env.Sender), in.remote)
		in.reject(protocol.AckUnavailable, err)
		return
	case err != nil:
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	in.msg = m
	if m.Kind == protocol.KindContactRequest || m.Kind == protocol.KindContactAccept {
		c, err := protocol.ParseCard(m.Body)
		if err != nil || c.UserID != env.Sender || !c.Key.Equal(key) {
			in.reject(protocol.AckMalformed, fmt.Errorf("contact card does not match the sender: %v", err))
			return
		}
		in.card = c
	}
}

func (in *inbound) reject(code protocol.AckCode, err error) {
	in.ack.Code, in.err = code, err
	in.ack.Detail = code.String()
}

// senderKey picks the key that must have signed env: a friend's pinned
// key, or for a first contact request the key on the card that came with
// it. Chat messages and receipts come only from accepted friends, accepts
// only from those we asked, and nothing from those we blocked.
func (ms *messenger) senderKey(env *protocol.Envelope, cardBytes []byte) (*protocol.PublicKey, error) {
	fe := ms.friends.friend(env.Sender)
	if fe != nil && fe.key == nil {
		return nil, fmt.Errorf("%w: stored key does not parse", errNotAFriend)
	}
	switch env.Kind {
	case protocol.KindText, protocol.KindReceipt, protocol.KindDelivered, protocol.KindSessionStart:
		// From a friend, or from someone we asked whose accept may be
		// just ahead of this envelope on the stream: commit decides, in
		// order, once that accept has taken effect.
		if fe == nil || (fe.f.Status != store.FriendAccepted && fe.f.Status != store.FriendPendingOut) {
			return nil, errNotAFriend
		}
		return fe.key, nil
	case protocol.KindContactAccept, protocol.KindSessionReset:
		if fe == nil || (fe.f.Status != store.FriendPendingOut && fe.f.Status != store.FriendAccepted) {
			return nil, errNotAFriend
		}
		return rotatedKey(fe, env, cardBytes, env.Kind == protocol.KindContactAccept), nil
	case protocol.KindGroupState, protocol.KindSenderKey, protocol.KindGroupLeave:
		// Group controls come from accepted friends, with their pinned
		// key, or from members of a roster with their card (group_roster.go).
		switch {
		case fe != nil && fe.f.Status == store.FriendAccepted:
			return fe.key, nil
		case fe != nil && fe.f.Status == store.FriendBlocked:
			return nil, fmt.Errorf("%w: blocked", errNotAFriend)
		}
		return ms.rosterKey(env, cardBytes)
	case protocol.KindFriendRemoved:
		// Only an accepted friend can remove us, with their pinned key.
		if fe == nil || fe.f.Status != store.FriendAccepted {
			return nil, errNotAFriend
		}
		return fe.key, nil
	case protocol.KindContactRequest:
		if fe != nil {
			if fe.f.Status == store.FriendBlocked {
				return nil, fmt.Errorf("%w: blocked", errNotAFriend)
			}
			return rotatedKey(fe, env, cardBytes, true), nil
		}
		if len(cardBytes) == 0 {
			return nil, fmt.Errorf("%w: unknown sender without a card", errNotAFriend)
		}
		if ms.friends.pendingIn() >= ms.cfg.MaxPendingRequests {
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
func (ms *messenger) commit(ctx context.Context, in *inbound) {
	if in.sm != nil {
		ms.commitSession(ctx, in)
		return
	}
	m := in.msg
	if m.Kind == protocol.KindSessionStart {
		ms.acceptStart(ctx, in)
		return
	}
	if m.Kind == protocol.KindText || m.Kind == protocol.KindReceipt || m.Kind == protocol.KindDelivered {
		if fe := ms.friends.friend(m.Sender); fe == nil || fe.f.Status != store.FriendAccepted {
			in.reject(protocol.AckNotAFriend, errNotAFriend)
			return
		}
	}
	var err error
	switch m.Kind {
	case protocol.KindText:
		var stored store.Message
		stored, err = ms.st.StoreReceived(ctx, textMessage(m))
		if errors.Is(err, store.ErrDuplicate) {
			in.reject(protocol.AckReplay, err)
			return
		}
		if err == nil {
			ms.events.publish(Event{Type: EventMessage, Message: stored})
		}
	case protocol.KindReceipt:
		err = ms.receiveReceipt(ctx, m)
	case protocol.KindDelivered:
		err = ms.receiveDelivered(ctx, m)
	case protocol.KindContactRequest, protocol.KindContactAccept:
		err = ms.friends.receiveContact(ctx, m, in.card)
	case protocol.KindSessionReset:
		err = ms.receiveReset(ctx, m) // marks it seen with the state
	case protocol.KindFriendRemoved:
		err = ms.friends.receiveRemoval(ctx, m)
	case protocol.KindGroupState, protocol.KindSenderKey, protocol.KindGroupLeave:
		ms.toGroups(m) // marked seen below
	default:
		err = fmt.Errorf("%w: kind %d", protocol.ErrMalformed, m.Kind)
	}
	if err == nil && m.Kind != protocol.KindText && m.Kind != protocol.KindSessionReset {
		err = ms.st.MarkSeen(ctx, m.MsgID)
	}
	if err != nil {
		code := protocol.AckUnavailable
		switch {
		case errors.Is(err, protocol.ErrMalformed):
			code = protocol.AckMalformed
		case errors.Is(err, errNotAFriend):
			code = protocol.AckNotAFriend
		}
		in.reject(code, err)
	}
}

// kindText is the store's kind for chat messages.
const kindText = "text"

// checkSession checks a delivered session message as far as it can be
// checked without its session state (which the committer holds): form,
// addressing, time, and that the sender may send it. The seen-ID check
// is not here: it would answer (AckReplay) before any signature was
// checked, and tell anyone whether a msg_id had arrived. The committer
// asks it only of a message whose signature verified (signedByPeer),
// and the store refuses a second copy of a stored message in the
// transaction that would store it (store.ErrDuplicate, AckReplay).
func (ms *messenger) checkSession(ctx context.Context, d *protocol.Delivery, in *inbound) {
	sm, err := protocol.ParseSessionMessage(d.Session)
	if err != nil {
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	in.ack.MsgID, in.from = sm.MsgID, sm.Sender
	if sm.Recipient != ms.me {
		in.reject(protocol.AckNotForMe, protocol.ErrNotForMe)
		return
	}
	if err := sm.CheckTime(ms.cfg.Now(), ms.cfg.MaxAge, protocol.DefaultMaxSkew); err != nil {
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	if fe := ms.friends.friend(sm.Sender); fe == nil || fe.key == nil ||
		(fe.f.Status != store.FriendAccepted && fe.f.Status != store.FriendPendingOut) {
		in.reject(protocol.AckNotAFriend, errNotAFriend)
		return
	}
	in.sm = sm
}

// rotatedKey is the key a friend's contact envelope must be signed with:
// the pinned one, or, when the envelope names another key and carries a
// card whose rotation chain leads from the pinned key to it, the card's
// key (the friend rotated; receiveContact then pins it). For a contact
// request or accept (contact), any card whose chain is verified back to
// the user's genesis key will do: receiveContact keeps it as evidence if
// it forks from what the node knows of them (forks.go) and refuses it if
// it does not lead from the pinned key. A card that proves neither leaves
// the pinned key, which then fails to verify.
func rotatedKey(fe *friendEntry, env *protocol.Envelope, cardBytes []byte, contact bool) *protocol.PublicKey {
	if fe.key == nil || env.SenderKey == fe.key.ID() || len(cardBytes) == 0 {
		return fe.key
	}
	c, err := protocol.ParseCard(cardBytes)
	if err != nil || c.UserID != env.Sender || c.Key.ID() != env.SenderKey {
		return fe.key
	}
	if cardLeadsFrom(c, fe.key) || (contact && len(c.Chain) > 0) {
		return c.Key
	}
	return fe.key
}

// cardLeadsFrom reports whether c's (verified) rotation chain passes
// through key: its genesis key or one of the keys it rotated to.
func cardLeadsFrom(c *protocol.Card, key *protocol.PublicKey) bool {
	if len(c.Chain) == 0 || c.Genesis == nil {
		return false
	}
	return slices.ContainsFunc(protocol.ChainKeys(c.Genesis, c.Chain), key.Equal)
}
