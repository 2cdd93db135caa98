package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Trust on first use. The first key seen for a friend (on their card or
// their directory record) is pinned in their store.Friend. A later record
// is applied by applyRecord:
//
//   - a lower or equal sequence number than the last applied: ignored (a
//     rollback, or nothing new);
//   - the pinned key: devices and prekey are refreshed;
//   - a key that follows from the pinned one through the record's signed
//     rotation chain: the new key is pinned, and EventFriendKeyRotated
//     tells the user;
//   - any other key: the friend is marked key_changed (store.Friend
//     ChangedKey), EventFriendKeyChanged warns the user, and Send refuses
//     with ErrKeyChanged until VerifyFriend pins the new key.
//
// Before that, a record is checked against the friend's stored record and
// card for a fork (forks.go): a different record at the same sequence
// number, or a rotation that contradicts one known at its sequence
// number, is kept as evidence and holds sends (ErrKeyFork). A record that
// forks at the same sequence number is not applied.

// AddFriendByID adds a user by user ID alone: their record is looked up in
// the directory and verified, and then it goes as with an invite card.
func (n *Node) AddFriendByID(ctx context.Context, id protocol.ID) (Friend, error) {
	s, err := n.running()
	if err != nil {
		return Friend{}, err
	}
	if id == s.me {
		return Friend{}, fail(ErrInvalid, "that is your own user ID")
	}
	if fe := s.friends.friend(id); fe != nil && fe.f.Status != store.FriendBlocked && fe.f.Status != store.FriendRemovedByPeer {
		// Known already: refresh what the directory says, accept a pending
		// request, and otherwise leave things as they are.
		if rec, err := s.lookup(ctx, id); err == nil {
			s.friends.applyRecord(ctx, rec)
		}
		if fe.f.Status == store.FriendPendingIn {
			return n.AcceptFriend(ctx, id)
		}
		return s.friends.getView(ctx, id)
	}
	rec, err := s.lookup(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	return s.friends.addContact(ctx, contact{
		UserID: rec.UserID(), Name: rec.Name(), Key: rec.Key(), Genesis: rec.Genesis(),
		Record: rec.Marshal(), RecordSeq: rec.Seq(),
	})
}

func (fr *friendBook) getView(ctx context.Context, id protocol.ID) (Friend, error) {
	f, err := fr.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	return fr.view(f), nil
}

// applyRecord applies a verified record of a friend (see above). It
// returns whether anything changed.
func (fr *friendBook) applyRecord(ctx context.Context, rec *directory.Record) bool {
	fr.changeMu.Lock()
	defer fr.changeMu.Unlock()
	f, err := fr.st.Friend(ctx, rec.UserID())
	if err != nil {
		return false
	}
	if rec.Seq() < f.RecordSeq {
		return false
	}
	forks := fr.forksOf(f, rec, rec.Chain(), "directory")
	forked := fr.keepForks(ctx, &f, forks)
	if rec.Seq() == f.RecordSeq {
		// Nothing new, or a fork: the first record stays.
		if !forked {
			return false
		}
		if f, err = fr.st.PutFriend(ctx, f); err != nil {
			fr.log.Warn("friend fork not saved", "friend", rec.UserID().String(), "err", err)
			return false
		}
		fr.cacheFriend(f)
		fr.forkEvent(f)
		return true
	}
	pinned := mustKey(f.PublicKey)
	if pinned != nil && !rec.Key().Equal(pinned) && retiredByCard(f, rec.Key().ID()) {
		// A record from before a rotation we already follow (their new
		// card came first): its key is one their chain retired.
		return false
	}
	var ev EventType
	switch {
	case pinned != nil && rec.Key().Equal(pinned):
		f.ChangedKey = nil
	case pinned != nil && rec.HasKey(pinned.ID()):
		f.PublicKey, f.ChangedKey, ev = rec.Key().Bytes(), nil, EventFriendKeyRotated
		fr.log.Info("friend rotated their key", "friend", f.UserID.String(), "key", rec.Key().ID().String())
	default:
		if k := mustKey(f.ChangedKey); k == nil || !k.Equal(rec.Key()) {
			ev = EventFriendKeyChanged
		}
		f.ChangedKey = rec.Key().Bytes()
		fr.log.Warn("friend's key changed without a rotation signed by the pinned key", "friend", f.UserID.String())
	}
	if rec.Genesis() != nil && !rec.Genesis().Equal(rec.Key()) {
		f.Genesis = rec.Genesis().Bytes()
	}
	f.Record, f.RecordSeq = rec.Marshal(), rec.Seq()
	if f, err = fr.st.PutFriend(ctx, f); err != nil {
		fr.log.Warn("friend record not saved", "friend", rec.UserID().String(), "err", err)
		return false
	}
	fr.cacheFriend(f)
	if forked {
		fr.forkEvent(f)
	}
	if ev != "" {
		fr.events.publish(Event{Type: ev, Friend: fr.view(f)})
	}
	if f.Status == store.FriendAccepted && f.ChangedKey == nil && !f.Forked {
		fr.outbox.Rush(f.UserID)
	}
	return true
}

// refreshFriend looks up one friend's record and applies it; other
// records at the same sequence number that DHT servers hold (forks) are
// checked after it, and so become evidence against it.
func (fr *friendBook) refreshFriend(ctx context.Context, id protocol.ID) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rec, forks, err := fr.dir.LookupAll(ctx, id)
	if err != nil {
		fr.log.Debug("friend record not found", "friend", id.String(), "err", err)
		return
	}
	fr.applyRecord(ctx, rec)
	for _, f := range forks {
		fr.applyRecord(ctx, f)
	}
}

// unknownSenderKey is the resolver's answer for an envelope signed by a
// key of a friend that is not the pinned one: the friend's record is
// looked up in the background (they may have rotated), and the sender is
// told to retry (AckUnavailable) rather than to give up.
func (fr *friendBook) unknownSenderKey(user protocol.ID) error {
	if fr.lookups.due(user, fr.cfg.Now(), keyLookupEvery) {
		fr.spawn(func(ctx context.Context) { fr.refreshFriend(ctx, user) })
	}
	return fmt.Errorf("%w: signed by a key not pinned for %s; looking up their record", errRetryLater, user)
}

// keyLookupEvery limits directory lookups that unknown sender keys cause,
// per friend.
const keyLookupEvery = 5 * time.Second

// errRetryLater marks a refusal the sender should retry (AckUnavailable).
var errRetryLater = errors.New("node: retry later")

// serve looks up every friend's record every Config.FriendRecheck, until
// ctx ends.
func (fr *friendBook) serve(ctx context.Context) error {
	t := time.NewTicker(fr.cfg.FriendRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, fe := range fr.having((*friendEntry).isContact) {
			if ctx.Err() != nil {
				return nil
			}
			fr.refreshFriend(ctx, fe.f.UserID)
		}
	}
}

// perFriend rate-limits something done for a friend (a directory lookup,
// a session reset). Its lock guards its map only.
type perFriend struct {
	mu   sync.Mutex
	last map[protocol.ID]time.Time
}

// due reports whether the last time recorded for id is at least every
// before now, and if so records now.
func (p *perFriend) due(id protocol.ID, now time.Time, every time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.last[id]) < every {
		return false
	}
	if p.last == nil {
		p.last = make(map[protocol.ID]time.Time)
	}
	p.last[id] = now
	return true
}

// retiredByCard reports whether the friend's stored card carries a
// rotation away from the key with ID id: a key of their past.
func retiredByCard(f store.Friend, id protocol.ID) bool {
	c, err := protocol.ParseCardURI(f.Card)
	if f.Card == "" || err != nil || c.UserID != f.UserID {
		return false
	}
	for _, r := range c.Chain {
		if r.OldKey == id {
			return true
		}
	}
	return false
}
