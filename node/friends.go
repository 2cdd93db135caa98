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
	Online bool
	// SafetyNumber is the number to compare for the key being trusted:
	// over the genesis keys normally, over their changed key when
	// ChangedKey is set (verifying then accepts that key).
	SafetyNumber string
	// KeyRotated is true when their key in use is not their genesis key
	// but follows from it by a verified rotation chain.
	KeyRotated bool
}

// StatusKeyChanged is the status a friend shows while their key changed
// without a rotation signed by the pinned one (ChangedKey is set): sending
// is held (ErrKeyChanged) until VerifyFriend accepts the new key. It is
// never stored; ShownStatus computes it.
const StatusKeyChanged store.FriendStatus = "key_changed"

// ShownStatus is the friend's status as the user sees it: the stored one
// (pending_out, pending_in, accepted, blocked), or StatusKeyChanged while
// their key change waits for the user.
func (f Friend) ShownStatus() store.FriendStatus {
	if f.ChangedKey != nil {
		return StatusKeyChanged
	}
	return f.Status
}

// Friends lists every friend, in the store's order.
func (n *Node) Friends(ctx context.Context) ([]Friend, error) {
	u, err := n.running()
	if err != nil {
		return nil, err
	}
	return u.friends.list(ctx)
}

func (fr *friendBook) list(ctx context.Context) ([]Friend, error) {
	// Under friendMu, as every change is: a friend shown accepted is
	// accepted in the cache that Send reads too.
	fr.changeMu.Lock()
	fs, err := fr.st.Friends(ctx)
	fr.changeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("node: friends: %w", err)
	}
	out := make([]Friend, 0, len(fs))
	for _, f := range fs {
		out = append(out, fr.view(f))
	}
	return out, nil
}

// Friend returns one friend.
func (n *Node) Friend(ctx context.Context, id protocol.ID) (Friend, error) {
	u, err := n.running()
	if err != nil {
		return Friend{}, err
	}
	return u.friends.get(ctx, id)
}

func (fr *friendBook) get(ctx context.Context, id protocol.ID) (Friend, error) {
	fr.changeMu.Lock() // see Friends
	f, err := fr.getFriend(ctx, id)
	fr.changeMu.Unlock()
	if err != nil {
		return Friend{}, err
	}
	return fr.view(f), nil
}

func (fr *friendBook) getFriend(ctx context.Context, id protocol.ID) (store.Friend, error) {
	f, err := fr.st.Friend(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return f, fail(ErrNotFound, "no friend %s", id)
	}
	if err != nil {
		return f, fmt.Errorf("node: friend: %w", err)
	}
	return f, nil
}

func (fr *friendBook) view(f store.Friend) Friend {
	v := Friend{Friend: f}
	v.Online = fr.online(f.UserID)
	mine := fr.keys.genesisKey()
	// Safety numbers are over the genesis keys, whose hashes are the user
	// IDs: chained rotations do not change them. A key that changed
	// without a chain from the pinned one is what verifying accepts, so
	// the number is over that key (protocol.ChangedKeySafetyNumber).
	g := f.Genesis
	if len(g) == 0 {
		g = f.PublicKey
	}
	k, err := protocol.ParsePublicKey(g)
	if err != nil || k.ID() != f.UserID {
		return v
	}
	// Genesis is stored only from a card or record whose chain verified.
	v.KeyRotated = len(f.Genesis) > 0 && !k.Equal(mustKey(f.PublicKey))
	switch {
	case f.ChangedKey == nil:
		v.SafetyNumber = protocol.SafetyNumber(fr.me, mine, f.UserID, k)
	default:
		if ck := mustKey(f.ChangedKey); ck != nil {
			v.SafetyNumber = protocol.ChangedKeySafetyNumber(fr.me, mine, f.UserID, ck)
		}
	}
	return v
}

// AddFriend adds the user of an invite: a card link, or a short invite
// whose card is fetched from the inviter's device (invite.go). A stranger gets a contact
// request (and becomes pending_out); a pending request from them is
// accepted (both become accepted); an existing friend's card is updated.
func (n *Node) AddFriend(ctx context.Context, invite string) (Friend, error) {
	s, err := n.running()
	if err != nil {
		return Friend{}, err
	}
	if protocol.IsInviteURI(invite) {
		return n.addByInvite(ctx, s, invite)
	}
	c, err := protocol.ParseCardURI(invite)
	if err != nil {
		return Friend{}, fail(ErrBadInvite, "%v", err)
	}
	return s.friends.addContact(ctx, contact{UserID: c.UserID, Name: c.Name, Key: c.Key, Genesis: c.Genesis, Card: c.URI()})
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

func (fr *friendBook) addContact(ctx context.Context, c contact) (Friend, error) {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	if c.UserID == fr.me {
		return Friend{}, fail(ErrInvalid, "that is your own invite")
	}
	f, err := fr.st.Friend(ctx, c.UserID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		f = store.Friend{UserID: c.UserID, Status: store.FriendPendingOut}
	case err != nil:
		return Friend{}, fmt.Errorf("node: friend: %w", err)
	case !c.Key.Equal(mustKey(f.PublicKey)):
		return Friend{}, fail(ErrInvalid, "this invite carries a different key than the one pinned for %s", c.UserID)
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
	case store.FriendBlocked, store.FriendRemovedByPeer:
		f.Status = store.FriendPendingOut
	}
	f, err = fr.st.PutFriend(ctx, f)
	if err != nil {
		return Friend{}, fmt.Errorf("node: save friend: %w", err)
	}
	fe := fr.cacheFriend(f)
	if kind != 0 {
		if err := fr.sendCard(ctx, fe, kind); err != nil {
			return Friend{}, err
		}
	}
	if prev == store.FriendPendingIn {
		fr.events.publish(Event{Type: EventFriendAccepted, Friend: fr.view(f)})
	}
	fr.dial(fe)
	return fr.view(f), nil
}

// AcceptFriend accepts a pending request by user ID.
func (n *Node) AcceptFriend(ctx context.Context, id protocol.ID) (Friend, error) {
	u, err := n.running()
	if err != nil {
		return Friend{}, err
	}
	return u.friends.accept(ctx, id)
}

func (fr *friendBook) accept(ctx context.Context, id protocol.ID) (Friend, error) {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	switch f.Status {
	case store.FriendAccepted:
		return fr.view(f), nil
	case store.FriendPendingIn:
	default:
		return Friend{}, fail(ErrNotFound, "no pending request from %s", id)
	}
	f.Status = store.FriendAccepted
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		return Friend{}, fmt.Errorf("node: save friend: %w", err)
	}
	fe := fr.cacheFriend(f)
	if err := fr.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
		return Friend{}, err
	}
	fr.events.publish(Event{Type: EventFriendAccepted, Friend: fr.view(f)})
	fr.dial(fe)
	return fr.view(f), nil
}

// RemoveFriend forgets a friend (or declines their request): their
// messages are refused from now on, what is still queued for them fails,
// and an accepted friend gets a signed removal notice (removal.go).
func (n *Node) RemoveFriend(ctx context.Context, id protocol.ID) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	return u.friends.remove(ctx, id)
}

func (fr *friendBook) remove(ctx context.Context, id protocol.ID) error {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.getFriend(ctx, id)
	if err != nil {
		return err
	}
	fe := fr.friend(id)
	if err := fr.st.DeleteFriend(ctx, id); err != nil {
		return fmt.Errorf("node: remove friend: %w", err)
	}
	fr.forgetFriend(id)
	// What was queued for them fails; then they are told, if they were a
	// friend (removal.go: why in this order).
	fr.dropQueued(ctx, id, removalReason)
	if f.Status == store.FriendAccepted && fe != nil {
		fr.farewell(ctx, fe)
	}
	fr.events.publish(Event{Type: EventFriendRemoved, Friend: Friend{Friend: f}})
	return nil
}

// BlockFriend keeps a user's record as blocked: their messages and
// requests are refused, and what is still queued for them fails.
func (n *Node) BlockFriend(ctx context.Context, id protocol.ID) (Friend, error) {
	u, err := n.running()
	if err != nil {
		return Friend{}, err
	}
	return u.friends.block(ctx, id)
}

func (fr *friendBook) block(ctx context.Context, id protocol.ID) (Friend, error) {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	f.Status = store.FriendBlocked
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		return Friend{}, fmt.Errorf("node: block friend: %w", err)
	}
	fr.cacheFriend(f)
	fr.dropQueued(ctx, id, "friend blocked")
	fr.events.publish(Event{Type: EventFriendRemoved, Friend: fr.view(f)})
	return fr.view(f), nil
}

// VerifyFriend records that the user compared the safety number. number is
// the number the user confirmed (spaces between groups allowed; optional for a friend whose
// key did not change): when given, it must be the friend's SafetyNumber
// now, and for a friend whose key changed without a chain (ChangedKey) it
// is required, since verifying then accepts the new key. Otherwise the
// answer is ErrSafetyNumber and nothing changes.
func (n *Node) VerifyFriend(ctx context.Context, id protocol.ID, number ...string) error {
	u, err := n.running()
	if err != nil {
		return err
	}
	if len(number) > 1 {
		return fail(ErrInvalid, "more than one safety number")
	}
	confirmed := ""
	if len(number) == 1 {
		confirmed = digitsOnly(number[0])
	}
	return u.friends.verify(ctx, id, confirmed)
}

func (fr *friendBook) verify(ctx context.Context, id protocol.ID, confirmed string) error {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.getFriend(ctx, id)
	if err != nil {
		return err
	}
	// Checked under changeMu, against the key the verification accepts:
	// a key change between showing the number and confirming it fails.
	current := fr.view(f).SafetyNumber
	switch {
	case confirmed != "" && confirmed != current:
		return fail(ErrSafetyNumber, "for %s", id)
	case confirmed == "" && f.ChangedKey != nil:
		return fail(ErrSafetyNumber, "%s changed key; compare the new safety number", id)
	}
	if f.Verified && f.ChangedKey == nil && !f.Forked {
		return nil
	}
	if f.ChangedKey != nil {
		// The user compared the new safety number, over the key the
		// directory shows now, and accepts that key.
		f.PublicKey, f.ChangedKey = f.ChangedKey, nil
		fr.log.Info("changed key accepted after verification", "friend", id.String())
	}
	f.Forked = false // the user compared again: what a fork held is released (forks.go)
	f.Verified = true
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		return fmt.Errorf("node: verify friend: %w", err)
	}
	fr.cacheFriend(f)
	fr.outbox.Rush(id)
	return nil
}

// receiveContact acts on a contact request or accept whose signature and
// card were checked. Requests are limited per sender, and a repeated one
// from a pending stranger changes nothing (requests.go); a card that
// contradicts the friend's known history is kept as evidence and not
// applied (forks.go).
func (fr *friendBook) receiveContact(ctx context.Context, m *protocol.Message, c *protocol.Card) error {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.st.Friend(ctx, m.Sender)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !known {
		f = store.Friend{UserID: m.Sender, Status: store.FriendPendingIn}
	}
	prev := f.Status
	if known {
		if forks := fr.forksOf(f, nil, c.Chain, "card"); len(forks) > 0 {
			if !fr.keepForks(ctx, &f, forks) {
				return nil // evidence kept before; the first history stays
			}
			if f, err = fr.st.PutFriend(ctx, f); err != nil {
				return err
			}
			fr.cacheFriend(f)
			fr.forkEvent(f)
			return nil
		}
		if prev == store.FriendPendingIn && m.Kind == protocol.KindContactRequest {
			fr.log.Debug("duplicate contact request ignored", "sender", m.Sender.String())
			return nil
		}
	}
	// Duplicates are not counted: a sender's retries of one request do
	// not use up their limit.
	if m.Kind == protocol.KindContactRequest && !fr.requests.admit(m.Sender, fr.cfg.Now()) {
		return fmt.Errorf("%w: from %s", errTooManyRequests, m.Sender)
	}
	if pinned := mustKey(f.PublicKey); known && pinned != nil && !c.Key.Equal(pinned) && !cardLeadsFrom(c, pinned) {
		// Signed by a key of theirs whose chain neither passes through the
		// pinned key nor forks from what we know of them.
		return fmt.Errorf("%w: card's key does not follow from the pinned one", errNotAFriend)
	}
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
	case m.Kind == protocol.KindContactRequest && prev == store.FriendRemovedByPeer:
		// They removed us and now ask again: a new request.
		f.Status, ev = store.FriendPendingIn, EventFriendRequest
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
		fr.outbox.Rush(f.UserID)
	}
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		return err
	}
	fe := fr.cacheFriend(f)
	if reply {
		if err := fr.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
			return err
		}
	}
	if ev != "" {
		fr.events.publish(Event{Type: ev, Friend: fr.view(f)})
	}
	if rotated {
		// The card's chain led from the pinned key (rotatedKey).
		fr.log.Info("friend rotated their key", "friend", f.UserID.String(), "key", c.Key.ID().String())
		fr.events.publish(Event{Type: EventFriendKeyRotated, Friend: fr.view(f)})
	}
	return nil
}

// announceCard sends the own card to every accepted friend (after a
// prekey rotation), so they seal to the new prekey.
func (fr *friendBook) announceCard(ctx context.Context) {
	accepted := fr.having(func(fe *friendEntry) bool { return fe.f.Status == store.FriendAccepted })
	for _, fe := range accepted {
		if err := fr.sendCard(ctx, fe, protocol.KindContactAccept); err != nil {
			fr.log.Warn("card update not queued", "friend", fe.f.UserID.String(), "err", err)
		}
	}
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
func (fr *friendBook) dropQueued(ctx context.Context, id protocol.ID, reason string) {
	if err := fr.outbox.Drop(ctx, id, reason); err != nil {
		fr.log.Error("queued messages not dropped", "friend", id.String(), "err", err)
	}
}
