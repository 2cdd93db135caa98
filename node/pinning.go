package node

import (
	"context"
	"errors"
	"fmt"
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

// AddFriendByID adds a user by user ID alone: their record is looked up in
// the directory and verified, and then it goes as with an invite card.
func (n *Node) AddFriendByID(ctx context.Context, id protocol.ID) (Friend, error) {
	s, err := n.session()
	if err != nil {
		return Friend{}, err
	}
	if id == s.me {
		return Friend{}, fmt.Errorf("%w: that is your own user ID", ErrInvalid)
	}
	if fe := s.friend(id); fe != nil && fe.f.Status != store.FriendBlocked {
		// Known already: refresh what the directory says, accept a pending
		// request, and otherwise leave things as they are.
		if rec, err := s.lookup(ctx, id); err == nil {
			s.applyRecord(ctx, rec)
		}
		if fe.f.Status == store.FriendPendingIn {
			return n.AcceptFriend(ctx, id)
		}
		return s.getView(ctx, id)
	}
	rec, err := s.lookup(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	return s.addContact(ctx, contact{
		UserID: rec.UserID(), Name: rec.Name(), Key: rec.Key(), Genesis: rec.Genesis(),
		Record: rec.Marshal(), RecordSeq: rec.Seq(),
	})
}

func (s *session) getView(ctx context.Context, id protocol.ID) (Friend, error) {
	f, err := s.getFriend(ctx, id)
	if err != nil {
		return Friend{}, err
	}
	return s.view(f), nil
}

// applyRecord applies a verified record of a friend (see above). It
// returns whether anything changed.
func (s *session) applyRecord(ctx context.Context, rec *directory.Record) bool {
	s.friendMu.Lock()
	defer s.friendMu.Unlock()
	f, err := s.st.Friend(ctx, rec.UserID())
	if err != nil {
		return false
	}
	if rec.Seq() <= f.RecordSeq {
		return false
	}
	pinned := mustKey(f.PublicKey)
	var ev EventType
	switch {
	case pinned != nil && rec.Key().Equal(pinned):
		f.ChangedKey = nil
	case pinned != nil && rec.HasKey(pinned.ID()):
		f.PublicKey, f.ChangedKey, ev = rec.Key().Bytes(), nil, EventFriendKeyRotated
		s.log.Info("friend rotated their key", "friend", f.UserID.String(), "key", rec.Key().ID().String())
	default:
		if k := mustKey(f.ChangedKey); k == nil || !k.Equal(rec.Key()) {
			ev = EventFriendKeyChanged
		}
		f.ChangedKey = rec.Key().Bytes()
		s.log.Warn("friend's key changed without a rotation signed by the pinned key", "friend", f.UserID.String())
	}
	if rec.Genesis() != nil && !rec.Genesis().Equal(rec.Key()) {
		f.Genesis = rec.Genesis().Bytes()
	}
	f.Record, f.RecordSeq = rec.Marshal(), rec.Seq()
	if f, err = s.st.PutFriend(ctx, f); err != nil {
		s.log.Warn("friend record not saved", "friend", rec.UserID().String(), "err", err)
		return false
	}
	s.cacheFriend(f)
	if ev != "" {
		s.n.events.publish(Event{Type: ev, Friend: s.view(f)})
	}
	if f.Status == store.FriendAccepted && f.ChangedKey == nil {
		s.outbox.Rush(f.UserID)
	}
	return true
}

// refreshFriend looks up one friend's record and applies it.
func (s *session) refreshFriend(ctx context.Context, id protocol.ID) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rec, err := s.dir.Lookup(ctx, id)
	if err != nil {
		s.log.Debug("friend record not found", "friend", id.String(), "err", err)
		return
	}
	s.applyRecord(ctx, rec)
}

// unknownSenderKey is the resolver's answer for an envelope signed by a
// key of a friend that is not the pinned one: the friend's record is
// looked up in the background (they may have rotated), and the sender is
// told to retry (AckUnavailable) rather than to give up.
func (s *session) unknownSenderKey(user protocol.ID) error {
	if s.due(s.lookedUp, user, keyLookupEvery) {
		s.track.goFunc(func() { s.refreshFriend(s.life, user) })
	}
	return fmt.Errorf("%w: signed by a key not pinned for %s; looking up their record", errRetryLater, user)
}

// keyLookupEvery limits directory lookups that unknown sender keys cause,
// per friend.
const keyLookupEvery = 5 * time.Second

// errRetryLater marks a refusal the sender should retry (AckUnavailable).
var errRetryLater = errors.New("node: retry later")

// friendRecheckLoop looks up every friend's record every
// Config.FriendRecheck.
func (s *session) friendRecheckLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.FriendRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var ids []protocol.ID
		for id, fe := range s.friends {
			if fe.isContact() {
				ids = append(ids, id)
			}
		}
		s.mu.Unlock()
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			s.refreshFriend(ctx, id)
		}
	}
}

// due rate-limits something done for a friend: it reports whether the
// time recorded in last (under s.mu) is at least every ago, and if so
// records now.
func (s *session) due(last map[protocol.ID]time.Time, id protocol.ID, every time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if now.Sub(last[id]) < every {
		return false
	}
	last[id] = now
	return true
}
