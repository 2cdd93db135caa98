package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Sessions (protocol.PeerSessions): chat messages and receipts to a friend
// go in a double-ratchet session once one exists. The first message to a
// friend with a valid prekey starts one: an RSA-signed suite-2 envelope
// that carries the message. Later messages are session messages (Ed25519
// and AES-GCM, no RSA). Each friend's sessions are one sealed blob in the
// store, written in the same transaction as the message whose sealing or
// opening advanced them, under that friend's lock (peerSess.mu), which
// also orders the seals.
//
// A receiver that cannot open a session message for want of state
// answers AckStale and, when the stream comes from one of the friend's
// devices, queues an RSA-signed session reset; the sender, on
// AckStale for a session message, seals it again, with the same msg_id,
// in a new session (resealSession). Contact requests and accepts stay
// single envelopes, and so does everything to a friend without a valid
// prekey.

// state parses the friend's sessions; ps.mu must be held. A stored blob
// that does not parse is dropped (logged): the friend's next session
// message gets a reset, and a new session starts.
func (ms *messenger) state(ctx context.Context, ps *peerSess, peer protocol.ID) (*protocol.PeerSessions, error) {
	if !ps.loaded {
		b, ver, err := ms.st.SessionsVersion(ctx, peer)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("node: sessions: %w", err)
		}
		ps.blob, ps.version, ps.loaded = b, ver, true
	}
	if ps.blob == nil {
		return protocol.NewPeerSessions(ms.me, peer), nil
	}
	p, err := protocol.ParsePeerSessions(ps.blob, ms.me, peer)
	if err != nil {
		ms.log.Error("stored sessions do not parse; starting afresh", "friend", peer.String(), "err", err)
		return protocol.NewPeerSessions(ms.me, peer), nil
	}
	return p, nil
}

// sealed is a message sealed for the outbox.
type sealed struct {
	raw     []byte
	id      protocol.MsgID
	stamp   int64 // unix ms
	kind    protocol.Kind
	session bool                 // raw is a session message
	update  *store.SessionUpdate // the session state to store with it, or nil
	// unsigned, when set, is the session message, sealed without its
	// RSA signature (strict mode, sealOutLater): raw is empty until
	// sign has added it with signer.
	unsigned *protocol.SessionMessage
	signer   protocol.Signer
}

// sign adds the RSA signature to a session message sealed without it,
// and encodes it; it needs no lock.
func (out *sealed) sign() error {
	if out.unsigned == nil {
		return nil
	}
	if err := out.unsigned.SignIdentity(out.signer); err != nil {
		return err
	}
	out.raw, out.unsigned = out.unsigned.Marshal(), nil
	return nil
}

// sealOut seals kind/body (with msg_id id; zero: a new one) for fe: in
// the current session; or as a new session's start when none is usable
// and fe has a valid prekey; or as a single envelope. ps (fe's holder)
// may be nil; its mu must be held when it is not, and when p is not nil;
// p is then advanced, and the caller stores out.update with the message
// and records it (peerSess.inTurn, or stored).
func (ms *messenger) sealOut(ps *peerSess, fe *friendEntry, p *protocol.PeerSessions, kind protocol.Kind, id protocol.MsgID, body []byte) (sealed, error) {
	return ms.seal(ps, fe, p, kind, id, body, false)
}

// sealOutLater is sealOut that, in --strict-rsa-signatures mode, leaves
// a session message's RSA signature to out.sign, which the caller runs
// without ps.mu.
func (ms *messenger) sealOutLater(ps *peerSess, fe *friendEntry, p *protocol.PeerSessions, kind protocol.Kind, id protocol.MsgID, body []byte) (sealed, error) {
	return ms.seal(ps, fe, p, kind, id, body, true)
}

func (ms *messenger) seal(ps *peerSess, fe *friendEntry, p *protocol.PeerSessions, kind protocol.Kind, id protocol.MsgID, body []byte, later bool) (sealed, error) {
	now := ms.cfg.Now()
	if ps != nil {
		now = ps.stamp(now)
	}
	out := sealed{kind: kind}
	if p != nil && ms.usable(p, fe, now) {
		strict := ms.strictSigner()
		var m *protocol.SessionMessage
		var err error
		if later && strict != nil {
			m, err = p.SealUnsigned(kind, id, body, now, strict)
			out.unsigned, out.signer = m, strict
		} else {
			m, err = p.SealWithID(kind, id, body, now, strict)
		}
		if err != nil {
			return sealed{kind: kind}, err
		}
		if out.unsigned == nil {
			out.raw = m.Marshal()
		}
		out.id, out.stamp, out.session = m.MsgID, m.Timestamp, true
		out.update = ps.next(fe.f.UserID, p)
		return out, nil
	}
	rcpt := ms.friends.recipient(fe)
	// A first message too big to ride in the start goes as an envelope;
	// the next one starts the session.
	if p != nil && rcpt.Prekey != nil && len(body) <= protocol.MaxStartBody {
		env, err := p.StartWithID(ms.keys.sender(), rcpt, kind, id, body, now)
		if err != nil {
			return out, err
		}
		out.raw, out.id, out.stamp = env.Marshal(), env.MsgID, env.Timestamp
		out.update = ps.next(fe.f.UserID, p)
		return out, nil
	}
	return ms.sealEnvelope(fe, kind, id, body, now)
}

// sealEnvelope seals kind/body (with msg_id id; zero: a new one) for fe
// as a single RSA envelope, at now. It touches no session state, so it
// needs no lock.
func (ms *messenger) sealEnvelope(fe *friendEntry, kind protocol.Kind, id protocol.MsgID, body []byte, now time.Time) (sealed, error) {
	out := sealed{kind: kind}
	rcpt := ms.friends.recipient(fe)
	var env *protocol.Envelope
	var err error
	if id.IsZero() {
		env, err = protocol.Seal(ms.keys.sender(), rcpt, kind, body, now)
	} else {
		env, err = protocol.SealWithID(ms.keys.sender(), rcpt, kind, id, body, now)
	}
	if err != nil {
		return out, err
	}
	out.raw, out.id, out.stamp = env.Marshal(), env.MsgID, env.Timestamp
	return out, nil
}

// usable reports whether the current session with fe can carry the next
// message: it exists, is not due for re-keying, and both identity keys
// are still the ones it started with (after a rotation a new one starts).
func (ms *messenger) usable(p *protocol.PeerSessions, fe *friendEntry, now time.Time) bool {
	c := p.Current()
	if c == nil || p.NeedsStart(now) {
		return false
	}
	mine, theirs := c.Keys()
	return mine == ms.keys.identity().Public().ID() && fe.key != nil && theirs == fe.key.ID()
}

// strictSigner is the identity key in --strict-rsa-signatures mode, nil
// otherwise.
func (ms *messenger) strictSigner() protocol.Signer {
	if !ms.cfg.StrictRSASignatures {
		return nil
	}
	return ms.keys.identity()
}

// sessionsFor returns fe's session state for sealing, or nil when
// sessions are off.
func (ms *messenger) sessionsFor(ctx context.Context, ps *peerSess, fe *friendEntry) (*protocol.PeerSessions, error) {
	if ms.cfg.DisableSessions {
		return nil, nil
	}
	return ms.state(ctx, ps, fe.f.UserID)
}

// commitSession opens a session message (in stream order, under the
// sender's lock) and stores it with the advanced state in one
// transaction.
func (ms *messenger) commitSession(ctx context.Context, in *inbound) {
	sm := in.sm
	fe := ms.friends.friend(sm.Sender)
	if fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil {
		in.reject(protocol.AckNotAFriend, errNotAFriend)
		return
	}
	ps := ms.peerSessOf(sm.Sender)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := ms.state(ctx, ps, sm.Sender)
	if err != nil {
		in.reject(protocol.AckUnavailable, err)
		return
	}
	start := time.Now()
	m, err := p.OpenWith(sm, ms.anchors(fe, p, sm.Session), ms.cfg.Now())
	ms.stats.openNanos.Add(int64(time.Since(start)))
	ms.stats.opened.Add(1)
	if err != nil {
		if signedByPeer(err) && ms.seenNow(ctx, sm.MsgID) {
			// A copy of a message stored before (a resend racing its
			// first copy, or a replay): not lost state.
			in.reject(protocol.AckReplay, err)
			return
		}
		if wantsReset(err) {
			ms.requestReset(ctx, fe, ps, p, sm.Session, in.remote)
		}
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	in.msg = m
	upd := ps.next(sm.Sender, p)
	if ms.storeOpened(ctx, in, m, upd) {
		ps.stored(upd)
	}
}

// commitSessionBatch opens several chat messages of one sender, in order,
// and stores them with the final state in one transaction.
func (ms *messenger) commitSessionBatch(ctx context.Context, batch []*inbound) {
	sender := batch[0].sm.Sender
	fe := ms.friends.friend(sender)
	if fe == nil || fe.f.Status != store.FriendAccepted || fe.key == nil {
		for _, in := range batch {
			in.reject(protocol.AckNotAFriend, errNotAFriend)
		}
		return
	}
	ps := ms.peerSessOf(sender)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := ms.state(ctx, ps, sender)
	if err != nil {
		for _, in := range batch {
			in.reject(protocol.AckUnavailable, err)
		}
		return
	}
	var (
		msgs   []store.Message
		opened []*inbound
		inThis = make(map[protocol.MsgID]bool, len(batch))
		ids    = make([]protocol.SessionID, 0, 1)
	)
	for _, in := range batch {
		if !slices.Contains(ids, in.sm.Session) {
			ids = append(ids, in.sm.Session)
		}
	}
	anchors := ms.anchors(fe, p, ids...)
	for _, in := range batch {
		start := time.Now()
		m, err := p.OpenWith(in.sm, anchors, ms.cfg.Now())
		ms.stats.openNanos.Add(int64(time.Since(start)))
		ms.stats.opened.Add(1)
		if err != nil {
			// A copy of one opened earlier in this batch, or stored
			// before (see commitSession): a replay, not lost state.
			if signedByPeer(err) && (inThis[in.sm.MsgID] || ms.seenNow(ctx, in.sm.MsgID)) {
				in.reject(protocol.AckReplay, err)
				continue
			}
			if wantsReset(err) {
				ms.requestReset(ctx, fe, ps, p, in.sm.Session, in.remote)
			}
			in.reject(protocol.AckCodeFor(err), err)
			continue
		}
		in.msg = m
		inThis[m.MsgID] = true
		msgs = append(msgs, textMessage(m))
		opened = append(opened, in)
	}
	if len(opened) == 0 {
		return
	}
	upd := ps.next(sender, p)
	results, err := ms.st.StoreReceivedBatchWith(ctx, msgs, upd)
	if err != nil {
		for _, in := range opened {
			in.reject(protocol.AckUnavailable, err)
		}
		return
	}
	ps.stored(upd)
	ms.storedBatch(opened, msgs, results)
}

// storeOpened stores an opened chat message or receipt with upd in one
// transaction and reports whether upd was stored.
func (ms *messenger) storeOpened(ctx context.Context, in *inbound, m *protocol.Message, upd *store.SessionUpdate) bool {
	var err error
	switch m.Kind {
	case protocol.KindText:
		var stored store.Message
		stored, err = ms.st.StoreReceivedWith(ctx, textMessage(m), upd)
		if err == nil {
			ms.events.publish(Event{Type: EventMessage, Message: stored})
		}
	case protocol.KindReceipt:
		if err = ms.receiveReceipt(ctx, m); err == nil {
			err = ms.st.MarkSeenWith(ctx, m.MsgID, upd)
		}
	case protocol.KindDelivered:
		if err = ms.receiveDelivered(ctx, m); err == nil {
			err = ms.st.MarkSeenWith(ctx, m.MsgID, upd)
		}
	case 0: // a session start without a first message
		err = ms.st.MarkSeenWith(ctx, m.MsgID, upd)
	case protocol.KindGroupState, protocol.KindSenderKey, protocol.KindGroupLeave:
		if err = ms.st.MarkSeenWith(ctx, m.MsgID, upd); err == nil {
			ms.toGroups(m)
		}
	default:
		err = fmt.Errorf("%w: kind %d in a session", protocol.ErrMalformed, m.Kind)
	}
	switch {
	case errors.Is(err, store.ErrDuplicate):
		in.reject(protocol.AckReplay, err)
	case errors.Is(err, protocol.ErrMalformed):
		in.reject(protocol.AckMalformed, err)
	case err != nil:
		in.reject(protocol.AckUnavailable, err)
	}
	return err == nil
}

// textMessage is an opened chat message as the store keeps it.
func textMessage(m *protocol.Message) store.Message {
	return store.Message{
		ID:           m.MsgID,
		Conversation: store.DirectConversation(m.Sender),
		Direction:    store.In,
		From:         m.Sender,
		To:           m.Recipient,
		Kind:         kindText,
		Body:         m.Body,
		SentAt:       m.Time(),
		Path:         store.PathDirect,
	}
}

// acceptStart takes in a session start (an opened KindSessionStart
// envelope) and stores its first message with the new state.
func (ms *messenger) acceptStart(ctx context.Context, in *inbound) {
	env := in.msg
	fe := ms.friends.friend(env.Sender)
	if fe == nil || fe.f.Status != store.FriendAccepted {
		in.reject(protocol.AckNotAFriend, errNotAFriend)
		return
	}
	prekey, err := ms.keys.prekeyByID(env.PrekeyID)
	if err != nil {
		in.reject(protocol.AckStale, err)
		return
	}
	ps := ms.peerSessOf(env.Sender)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := ms.state(ctx, ps, env.Sender)
	if err != nil {
		in.reject(protocol.AckUnavailable, err)
		return
	}
	// A start sealed to a retired key in its grace (the friend had not
	// learnt the new one) is accepted with that key, which then certifies
	// this side of the session (anchors.go).
	me := ms.keys.signerFor(env.RecipientKey)
	if me == nil {
		in.reject(protocol.AckUnavailable, fmt.Errorf("%w: start sealed to key %s", protocol.ErrKeyRetired, env.RecipientKey))
		return
	}
	first, err := p.Accept(env, prekey, me, ms.cfg.Now())
	if err != nil {
		if ms.seenNow(ctx, env.MsgID) {
			// A copy of a start stored since it was opened (it came both
			// directly and from a mailbox; its RSA signature verified in
			// open): a replay, not a stale session.
			in.reject(protocol.AckReplay, err)
			return
		}
		in.reject(protocol.AckCodeFor(err), err)
		return
	}
	if first == nil {
		first = &protocol.Message{Header: env.Header}
		first.Kind = 0
	}
	upd := ps.next(env.Sender, p)
	if ms.storeOpened(ctx, in, first, upd) {
		ps.stored(upd)
	}
}

// resetEvery limits the session resets asked of one friend.
const resetEvery = 5 * time.Second

// requestReset queues an RSA-signed session reset for fe's session id: the
// sender then starts a new session, and seals again what we could not
// open. The session is refused from now on (a late start or message of
// it is never accepted), in the same transaction. ps.mu must be held; p
// is fe's state, which the refusal changes (a batch stores it again with
// what follows).
//
// Only a stream from one of fe's devices (remote) makes the node sign,
// store and queue anything: a message naming an unknown session carries
// no signature the node can check, so from anyone else it is refused
// (AckStale, which an honest sender answers with a new session) and
// nothing else happens.
func (ms *messenger) requestReset(ctx context.Context, fe *friendEntry, ps *peerSess, p *protocol.PeerSessions, id protocol.SessionID, remote peer.ID) {
	if !fromDevice(fe, remote) {
		ms.log.Debug("session reset not asked: the stream is not from a device of the friend", "friend", fe.f.UserID.String(), "peer", remote.String())
		return
	}
	if !ms.resets.due(fe.f.UserID, ms.cfg.Now(), resetEvery) {
		return
	}
	ms.log.Info("session state missing; asking for a new session", "friend", fe.f.UserID.String(), "session", id.String())
	p.Refuse(id, ms.cfg.Now())
	upd := ps.next(fe.f.UserID, p)
	env, err := protocol.Seal(ms.keys.sender(), ms.friends.recipient(fe), protocol.KindSessionReset, protocol.MarshalSessionReset(id), ms.cfg.Now())
	if err == nil {
		e := store.OutboxEntry{MsgID: env.MsgID, Recipient: fe.f.UserID, Envelope: env.Marshal()}
		if err = ms.st.AddControlWith(ctx, e, upd); err == nil {
			ps.stored(upd)
			ms.outbox.Notify(fe.f.UserID)
		}
	}
	if err != nil {
		ms.log.Warn("session reset not queued", "friend", fe.f.UserID.String(), "err", err)
	}
}

// seenNow reports whether id was stored (or marked seen) by now. For a
// session message it is asked only after the signature verified (see
// signedByPeer and checkSession).
func (ms *messenger) seenNow(ctx context.Context, id protocol.MsgID) bool {
	seen, err := ms.st.Seen(ctx, id)
	return err == nil && seen
}

// signedByPeer reports an error that a session's Open returns only after
// the message's signature verified: only then may the seen-ID check
// answer (AckReplay), so that nobody learns whether a msg_id arrived by
// sending a message they could not sign.
func signedByPeer(err error) bool {
	return errors.Is(err, protocol.ErrMessageKeyGone) || errors.Is(err, protocol.ErrSkipLimit)
}

// wantsReset reports an error after which the session cannot go on: the
// receiver asks for a new one.
func wantsReset(err error) bool {
	return errors.Is(err, protocol.ErrSessionUnknown) || errors.Is(err, protocol.ErrMessageKeyGone) ||
		errors.Is(err, protocol.ErrSkipLimit)
}

// receiveReset drops the session a friend could not open: our next
// message to them starts a new one.
func (ms *messenger) receiveReset(ctx context.Context, m *protocol.Message) error {
	id, err := protocol.ParseSessionReset(m.Body)
	if err != nil {
		return err
	}
	ps := ms.peerSessOf(m.Sender)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, err := ms.state(ctx, ps, m.Sender)
	if err != nil {
		return err
	}
	if !p.Reset(id, ms.cfg.Now()) {
		return ms.st.MarkSeen(ctx, m.MsgID)
	}
	upd := ps.next(m.Sender, p)
	if err := ms.st.MarkSeenWith(ctx, m.MsgID, upd); err != nil {
		return err
	}
	ps.stored(upd)
	ms.log.Info("friend asked for a new session", "friend", m.Sender.String(), "session", id.String())
	return nil
}

// resealSession seals again a queued session message that the recipient
// could not open (AckStale), in a new session and with the same msg_id,
// keeping its place in the queue. It reports false when the entry cannot
// be sealed again (a receipt, whose body is not kept: the next receipt
// says more).
func (ms *messenger) resealSession(ctx context.Context, e store.OutboxEntry) bool {
	fe := ms.friends.friend(e.Recipient)
	if fe == nil || fe.key == nil || e.Control {
		return false
	}
	old, err := protocol.ParseSessionMessage(e.Envelope)
	if err != nil {
		return false
	}
	m, err := ms.st.Message(ctx, e.MsgID)
	if err != nil {
		return false
	}
	ps := ms.peerSessOf(fe.f.UserID)
	t, unlock := ps.lockTurn()
	defer unlock()
	p, err := ms.state(ctx, ps, fe.f.UserID)
	if err != nil {
		return false
	}
	p.Reset(old.Session, ms.cfg.Now())
	out, err := ms.sealOut(ps, fe, p, protocol.KindText, e.MsgID, m.Body)
	if err != nil {
		ms.log.Warn("message not sealed again", "msg", e.MsgID.String(), "err", err)
		return false
	}
	ps.inTurn(t, out.update)
	if _, err := ms.st.ResealOutbox(ctx, e.MsgID, out.raw, out.session, out.update); err != nil {
		return false
	}
	ms.log.Info("message sealed again in a new session", "msg", e.MsgID.String(), "to", fe.f.UserID.String())
	return true
}
