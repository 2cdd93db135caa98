package directory

import (
	"bytes"
	"context"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"

	"github.com/parley-chat/parley/protocol"
)

// A user's records form a chain: each has a sequence number above the one
// before, and each key after the genesis key is reached by a rotation
// signed by the key before it. Two valid statements of one user at the
// same place in that chain — two records with the same sequence number,
// or two rotations with the same sequence number, that say different
// things — mean the user's key signed two histories: a stolen key or a
// misbehaving device. Such a pair is a fork; the node keeps both sides as
// evidence. Signatures (RSA-PSS) are randomised, so the same statement
// signed twice is not a fork: records are compared by what they sign,
// rotations by the keys they link.

// Conflicts reports whether r and o are two different statements of the
// same user at the same sequence number: the same user and Seq, but
// different signed contents. Both must have been verified by the caller.
func (r *Record) Conflicts(o *Record) bool {
	return r.userID == o.userID && r.seq == o.seq && !bytes.Equal(r.canonical(), o.canonical())
}

// RotationFork is two rotations of one user with the same sequence number
// that link different keys.
type RotationFork struct {
	A, B *protocol.Rotation
}

// ChainFork finds the first place where chains a and b, two verified
// rotation chains of the same user, hold rotations with the same sequence
// number from or to different keys. ok is false if they agree wherever
// both have a rotation.
func ChainFork(a, b []*protocol.Rotation) (f RotationFork, ok bool) {
	bySeq := make(map[uint64]*protocol.Rotation, len(b))
	for _, r := range b {
		bySeq[r.Seq] = r
	}
	for _, r := range a {
		o := bySeq[r.Seq]
		if o == nil || r.UserID != o.UserID {
			continue
		}
		if r.OldKey != o.OldKey || !r.NewKey.Equal(o.NewKey) {
			return RotationFork{A: r, B: o}, true
		}
	}
	return RotationFork{}, false
}

// LookupAll is Lookup that also asks each of the DHT servers closest to the
// user's key for the record it holds, so that a fork stored on some of
// them is not hidden by the DHT's choice of one best record. It returns the
// best record (as Lookup) and every other valid record with the same
// sequence number that Conflicts with it, each once.
//
// The servers are asked before the lookup: a lookup sends its best record
// to the servers that answered with another one (kad-dht's put
// corrections), which would erase the other side of a fork.
func (d *DHT) LookupAll(ctx context.Context, user protocol.ID) (best *Record, forks []*Record, err error) {
	held := d.heldRecords(ctx, user)
	best, err = d.Lookup(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range held {
		if !r.Conflicts(best) {
			continue
		}
		dup := false
		for _, f := range forks {
			dup = dup || !f.Conflicts(r)
		}
		if !dup {
			forks = append(forks, r)
		}
	}
	return best, forks, nil
}

// heldRecords asks each of the DHT servers closest to user's key for the
// record it holds, and returns those that are valid now. Failures leave a
// server out: this is a search for evidence, not the lookup.
func (d *DHT) heldRecords(ctx context.Context, user protocol.ID) []*Record {
	key := Key(user)
	peers, err := d.dht.GetClosestPeers(ctx, key)
	if err != nil {
		d.log.Debug("fork check: no closest peers", "user", user.String(), "err", err)
		return nil
	}
	pm, err := dhtpb.NewProtocolMessenger(d.dht.MessageSender())
	if err != nil {
		d.log.Debug("fork check: no messenger", "err", err)
		return nil
	}
	var out []*Record
	for _, p := range peers {
		if ctx.Err() != nil {
			break
		}
		rec, _, err := pm.GetValue(ctx, p, key)
		if err != nil || rec == nil || len(rec.GetValue()) == 0 {
			continue
		}
		r, err := VerifyRecord(rec.GetValue(), d.now())
		if err != nil || r.UserID() != user {
			continue
		}
		out = append(out, r)
	}
	return out
}
