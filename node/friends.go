package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Friend is a friend as the node shows it: what is stored, whether a
// device of theirs is connected, and the safety number to compare.
type Friend struct {
	store.Friend
	Online       bool
	SafetyNumber string
}

// Friends lists every friend, in the store's order.
func (n *Node) Friends(ctx context.Context) ([]Friend, error) {
	s, err := n.session()
	if err != nil {
		return nil, err
	}
	// Under friendMu, as every change is: a friend shown accepted is
	// accepted in the cache that Send reads too.
	s.friendMu.Lock()
	fs, err := s.st.Friends(ctx)
	s.friendMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("node: friends: %w", err)
	}
	out := make([]Friend, 0, len(fs))
	for _, f := range fs {
		out = append(out, s.view(f))
	}
	return out, nil
}

// Friend returns one friend.
func (n *Node) Friend(ctx context.Context, id protocol.ID) (Friend, error) {
	s, err := n.session()
	if err != nil {
		return Friend{}, err
	}
	s.friendMu.Lock() // see Friends
	f, err := s.getFriend(ctx, id)
	s.friendMu.Unlock()
	if err != nil {
		return Friend{}, err
	}
	return s.view(f), nil
}

func (s *session) getFriend(ctx context.Context, id protocol.ID) (store.Friend, error) {
	f, err := s.st.Friend(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return f, fmt.Errorf("%w: no friend %s", ErrNotFound, id)
	}
	if err != nil {
		return f, fmt.Errorf("node: friend: %w", err)
	}
	return f, nil
}

func (s *session) view(f store.Friend) Friend {
	v := Friend{Friend: f}
	s.mu.Lock()
	v.Online = s.online[f.UserID]
	mine := s.genesis
	s.mu.Unlock()
	// Safety numbers are over the genesis keys, whose hashes are the user
	// IDs: rotations do not change them.
	g := f.Genesis
	if len(g) == 0 {
		g = f.PublicKey
	}
	if k, err := protocol.ParsePublicKey(g); err == nil && k.ID() == f.UserID {
		v.SafetyNumber = protocol.SafetyNumber(s.me, mine, f.UserID, k)
	}
	return v
}

// AddFriend adds the user of an invite card. A stranger gets a contact
// request (and becomes pending_out); a pending request from them is
// accepted (both become accepted); an existing friend's card is updated.
func (n *Node) AddFriend(ctx context.Context, invite string) (Friend, error) {
	s, err := n.session()
	if err != nil {
		return Friend{}, err
	}
	c, err := protocol.ParseCardURI(invite)
	if err != nil {
		return Friend{}, fmt.Errorf("%w: invite: %v", ErrInvalid, err)
	}
	return s.addContact(ctx, contact{UserID: c.UserID, Name: c.Name, Key: c.Key, Genesis: c.Genesis, Card: c.URI()})
}

// contact is a user to add, from a verified card or directory record.
type contact struct {
	UserID    protocol.ID
	Name      string
	Key       *protocol.PublicKey
	Genesis   *protocol.PublicKey // nil when it is Key
	Card      string              // the card's link, or ""
	Record    []byte              // the directory record, or nil
	RecordSeq uint64
}

func (s *session) addContact(ctx context.Context, c contact) (Friend, error) {
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	if c.UserID == s.me {
		return Friend{}, fmt.Errorf("%w: that is your own invite", ErrInvalid)
	}
	f, err := s.st.Friend(ctx, c.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		f = store.Friend{UserID: c.UserID, Status: store.FriendPendingOut}
	case err != nil:
		return Friend{}, fmt.Errorf("node: friend: %w", err)
	case !c.Key.Equal(mustKey(f.PublicKey)):
		return Friend{}, fmt.Errorf("%w: this invite carries a different key than the one pinned for %s", ErrInvalid, c.UserID)
	}
	prev := f.Status
	f.Name, f.PublicKey = c.Name, c.Key.Bytes()
	if c.Card != "" {
		f.Card = c.Card
	}
	if c.Record != nil && c.RecordSeq > f.RecordSeq {
		f.Record, f.RecordSeq = c.Record, c.RecordSeq
	}
	if c.Genesis != nil && !c.Genesis.Equal(c.Key) {
		f.Genesis = c.Genesis.Bytes()
	}
	kind := protocol.KindContactRequest
	switch prev {
	case store.FriendPendingIn:
		f.Status, kind = store.FriendAccepted, protocol.KindContactAccept
	case store.FriendAccepted:
		kind = 0 // a card update; nothing to send
	case store.FriendBlocked:
		f.Status = store.FriendPendingOut
	}
	f, err = s.st.PutFriend(ctx, f)
	if err != nil {
		return Friend{}, fmt.Errorf("node: save friend: %w", err)
	}
	fe := s.cacheFriend(f)
	if kind != 0 {
		if err := s.sendCard(ctx, fe, kind); err != nil {
			return Friend{}, err
		}
	}
	if prev == store.FriendPendingIn {
		s.n.events.publish(Event{Type: EventFriendAccepted, Friend: s.view(f)})
	}
	s.dialFriend(fe)
	return s.view(f), nil
}

// AcceptFriend accepts a pending request by user ID.
func (n *Node) AcceptFriend(ctx context.Context, id protocol.ID) (Friend, error) {
	s, err := n.session()
	if err != nil {
		return Friend{}, err
	}
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	switch f.Status {
	case store.FriendAccepted:
		return s.view(f), nil
	case store.FriendPendingIn:
	default:
		return Friend{}, fmt.Errorf("%w: no pending request from %s", ErrNotFound, id)
	}
	f.Status = store.FriendAccepted
	if f, err = s.st.PutFriend(ctx, f); err != nil {
		return Friend{}, fmt.Errorf("node: save friend: %w", err)
	}
	fe := s.cacheFriend(f)
	if err := s.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
		return Friend{}, err
	}
	s.n.events.publish(Event{Type: EventFriendAccepted, Friend: s.view(f)})
	s.dialFriend(fe)
	return s.view(f), nil
}

// RemoveFriend forgets a friend (or declines their request): their
// messages are refused from now on, and what is still queued for them
// fails.
func (n *Node) RemoveFriend(ctx context.Context, id protocol.ID) error {
	s, err := n.session()
	if err != nil {
		return err
	}
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.getFriend(ctx, id)
	if err != nil {
		return err
	}
	if err := s.st.DeleteFriend(ctx, id); err != nil {
		return fmt.Errorf("node: remove friend: %w", err)
	}
	s.forgetFriend(id)
	s.dropQueued(ctx, id, "friend removed")
	s.n.events.publish(Event{Type: EventFriendRemoved, Friend: Friend{Friend: f}})
	return nil
}

// BlockFriend keeps a user's record as blocked: their messages and
// requests are refused, and what is still queued for them fails.
func (n *Node) BlockFriend(ctx context.Context, id protocol.ID) (Friend, error) {
	s, err := n.session()
	if err != nil {
		return Friend{}, err
	}
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	f.Status = store.FriendBlocked
	if f, err = s.st.PutFriend(ctx, f); err != nil {
		return Friend{}, fmt.Errorf("node: block friend: %w", err)
	}
	s.cacheFriend(f)
	s.dropQueued(ctx, id, "friend blocked")
	s.n.events.publish(Event{Type: EventFriendRemoved, Friend: s.view(f)})
	return s.view(f), nil
}

// VerifyFriend records that the user compared the safety number.
func (n *Node) VerifyFriend(ctx context.Context, id protocol.ID) error {
	s, err := n.session()
	if err != nil {
		return err
	}
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.getFriend(ctx, id)
	if err != nil {
		return err
	}
	if f.Verified && f.ChangedKey == nil {
		return nil
	}
	if f.ChangedKey != nil {
		// The user compared the safety number again and accepts the key
		// the directory shows now.
		f.PublicKey, f.ChangedKey = f.ChangedKey, nil
		s.log.Info("changed key accepted after verification", "friend", id.String())
	}
	f.Verified = true
	if f, err = s.st.PutFriend(ctx, f); err != nil {
		return fmt.Errorf("node: verify friend: %w", err)
	}
	s.cacheFriend(f)
	s.outbox.Rush(id)
	return nil
}

// receiveContact acts on a contact request or accept whose signature and
// card were checked.
func (s *session) receiveContact(ctx context.Context, m *protocol.Message, c *protocol.Card) error {
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.st.Friend(ctx, m.Sender)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !known {
		f = store.Friend{UserID: m.Sender, Status: store.FriendPendingIn}
	}
	prev := f.Status
	rotated := known && !c.Key.Equal(mustKey(f.PublicKey))
	f.Name, f.PublicKey, f.Card = c.Name, c.Key.Bytes(), c.URI()
	if c.Genesis != nil && !c.Genesis.Equal(c.Key) {
		f.Genesis = c.Genesis.Bytes()
	}
	var ev EventType
	reply := false
	switch {
	case m.Kind == protocol.KindContactRequest && !known:
		ev = EventFriendRequest
	case m.Kind == protocol.KindContactRequest && prev == store.FriendPendingOut:
		// Both sides asked. Our request may never have reached them (they
		// had blocked us, or refused it), so accept theirs explicitly.
		f.Status, ev, reply = store.FriendAccepted, EventFriendAccepted, true
	case m.Kind == protocol.KindContactAccept && prev == store.FriendPendingOut:
		f.Status, ev = store.FriendAccepted, EventFriendAccepted // their accept
	case m.Kind == protocol.KindContactRequest && prev == store.FriendAccepted:
		reply = true // they lost us (a new device, a restore): accept again
	}
	if f.Status == store.FriendAccepted {
		// Deliver what is queued for them. Asked before the store says
		// accepted, so that whoever sees that can rely on it (tests).
		s.outbox.Rush(f.UserID)
	}
	if f, err = s.st.PutFriend(ctx, f); err != nil {
		return err
	}
	fe := s.cacheFriend(f)
	if reply {
		if err := s.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
			return err
		}
	}
	if ev != "" {
		s.n.events.publish(Event{Type: ev, Friend: s.view(f)})
	}
	if rotated {
		// The card's chain led from the pinned key (rotatedKey).
		s.log.Info("friend rotated their key", "friend", f.UserID.String(), "key", c.Key.ID().String())
		s.n.events.publish(Event{Type: EventFriendKeyRotated, Friend: s.view(f)})
	}
	return nil
}

// sendCard queues a contact request or accept carrying the own card.
func (s *session) sendCard(ctx context.Context, fe *friendEntry, kind protocol.Kind) error {
	if fe.key == nil {
		return fmt.Errorf("%w: no key for %s", ErrInvalid, fe.f.UserID)
	}
	c, err := s.ownCard()
	if err != nil {
		return err
	}
	return s.queueControl(ctx, fe, kind, c.Marshal())
}

// queueControl seals a control message and queues it for delivery: a
// receipt in the current session when there is one, anything else as a
// single envelope.
func (s *session) queueControl(ctx context.Context, fe *friendEntry, kind protocol.Kind, body []byte) error {
	var (
		ps *peerSess
		p  *protocol.PeerSessions
	)
	if kind == protocol.KindReceipt && !s.cfg.DisableSessions {
		ps = s.peerSessOf(fe.f.UserID)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		var err error
		if p, err = s.state(ctx, ps, fe.f.UserID); err != nil {
			return err
		}
		if !s.usable(p, fe, s.cfg.Now()) {
			p = nil // a receipt does not start a session
		}
	}
	out, err := s.sealOut(ps, fe, p, kind, protocol.MsgID{}, body)
	if err != nil {
		return fmt.Errorf("node: seal %v: %w", kind, err)
	}
	e := store.OutboxEntry{MsgID: out.id, Recipient: fe.f.UserID, Envelope: out.raw, Session: out.session}
	if err := s.st.AddControlWith(ctx, e, out.update); err != nil {
		return fmt.Errorf("node: queue %v: %w", kind, err)
	}
	if out.update != nil {
		ps.stored(out.update)
	}
	s.outbox.Notify(fe.f.UserID)
	return nil
}

// announceCard sends the own card to every accepted friend (after a
// prekey rotation), so they seal to the new prekey.
func (s *session) announceCard(ctx context.Context) {
	s.mu.Lock()
	var fes []*friendEntry
	for _, fe := range s.friends {
		if fe.f.Status == store.FriendAccepted {
			fes = append(fes, fe)
		}
	}
	s.mu.Unlock()
	for _, fe := range fes {
		if err := s.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
			s.log.Warn("card update not queued", "friend", fe.f.UserID.String(), "err", err)
		}
	}
}

func (s *session) sender() protocol.Sender {
	return protocol.Sender{UserID: s.me, Key: s.identity(), Device: []byte(s.host.ID())}
}

// mustKey parses a stored key; a key that does not parse equals nothing.
func mustKey(b []byte) *protocol.PublicKey {
	k, err := protocol.ParsePublicKey(b)
	if err != nil {
		return nil
	}
	return k
}

// dropQueued fails everything still queued for a friend who was removed
// or blocked.
func (s *session) dropQueued(ctx context.Context, id protocol.ID, reason string) {
	if err := s.outbox.Drop(ctx, id, reason); err != nil {
		s.log.Error("queued messages not dropped", "friend", id.String(), "err", err)
	}
}
