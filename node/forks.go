package node

import (
	"context"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
	"github.com/parley-chat/parley/store"
)

// Forks are evidence, not noise. A friend's statements form a chain
// (directory records by sequence number, rotations by their sequence
// number, each signed by the key before it); two different valid
// statements at one place in it mean their key signed two histories — a
// stolen key or a misbehaving device (see directory.Record.Conflicts and
// directory.ChainFork). When a record from the directory (or from one of
// the DHT servers a lookup asks, directory.LookupAll) or a card in a
// contact envelope contradicts what the node knows of the friend (their
// last record and card):
//
//   - both sides are stored as evidence (store.KeyFork), once per pair;
//   - the friend is marked forked (store.Friend Forked) and no longer
//     verified, EventKeyFork warns the user, and the first statement
//     stays in force (a contradicting record at the same sequence number
//     is not applied, nor is a contradicting card);
//   - Send refuses with ErrKeyFork until VerifyFriend: the user compared
//     the safety number again.

// forksOf returns the forks between what f's stored record and card say
// and a newly verified record (rec, or nil) or rotation chain.
func (fr *friendBook) forksOf(f store.Friend, rec *directory.Record, chain []*protocol.Rotation, source string) []store.KeyFork {
	var out []store.KeyFork
	var known [][]*protocol.Rotation
	if len(f.Record) > 0 {
		if old, err := directory.ParseRecord(f.Record); err == nil && old.UserID() == f.UserID {
			// It was verified when it was stored; it may have expired
			// since, which does not make it less of a statement.
			if rec != nil && rec.Conflicts(old) {
				out = append(out, store.KeyFork{
					UserID: f.UserID, Kind: store.ForkRecord, Seq: rec.Seq(), Source: source,
					First: old.Marshal(), Second: rec.Marshal(),
				})
			}
			known = append(known, old.Chain())
		}
	}
	if f.Card != "" {
		if c, err := protocol.ParseCardURI(f.Card); err == nil && c.UserID == f.UserID {
			known = append(known, c.Chain)
		}
	}
	for _, k := range known {
		if rf, ok := directory.ChainFork(k, chain); ok {
			out = append(out, store.KeyFork{
				UserID: f.UserID, Kind: store.ForkRotation, Seq: rf.A.Seq, Source: source,
				First: rf.A.Marshal(), Second: rf.B.Marshal(),
			})
		}
	}
	return out
}

// keepForks stores the evidence in forks and, if any of it is new, marks
// f forked and no longer verified. It reports whether it did; the caller
// (holding changeMu) saves f and then calls forkEvent. Evidence seen
// before does not hold sends again once the user verified.
func (fr *friendBook) keepForks(ctx context.Context, f *store.Friend, forks []store.KeyFork) bool {
	added := false
	for _, k := range forks {
		isNew, err := fr.st.PutKeyFork(ctx, k)
		if err != nil {
			fr.log.Warn("key fork evidence not saved", "friend", f.UserID.String(), "err", err)
			// Not saved, but seen: hold sends all the same.
			isNew = true
		}
		if isNew {
			fr.log.Warn("friend's key signed two histories; sending is held until they are verified again",
				"friend", f.UserID.String(), "kind", k.Kind, "seq", k.Seq, "source", k.Source)
		}
		added = added || isNew
	}
	if added {
		f.Forked, f.Verified = true, false
	}
	return added
}

// forkEvent tells the user that f's key signed two histories.
func (fr *friendBook) forkEvent(f store.Friend) {
	fr.events.publish(Event{Type: EventKeyFork, Friend: fr.view(f)})
}

// KeyForks returns the evidence stored for a friend's forks, oldest
// statement first in each.
func (n *Node) KeyForks(ctx context.Context, id protocol.ID) ([]store.KeyFork, error) {
	u, err := n.running()
	if err != nil {
		return nil, err
	}
	return u.st.KeyForks(ctx, id)
}
