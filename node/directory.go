package node

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/parley-chat/parley/directory"
	"github.com/parley-chat/parley/protocol"
)

// DirectoryEntry is a verified directory record, as the API shows it.
type DirectoryEntry struct {
	UserID      protocol.ID
	Name        string
	Fingerprint string
	Devices     []peer.ID
	Seq         uint64
	ExpiresAt   time.Time
}

// SearchResult is one user who claims a name, with a verified record.
type SearchResult struct {
	UserID      protocol.ID
	Name        string
	Fingerprint string
	Friend      bool // already a friend (accepted or asked)
}

func entryOf(rec *directory.Record) DirectoryEntry {
	return DirectoryEntry{
		UserID:      rec.UserID(),
		Name:        rec.Name(),
		Fingerprint: rec.UserID().Fingerprint(),
		Devices:     rec.DevicePeers(),
		Seq:         rec.Seq(),
		ExpiresAt:   rec.ExpiresAt(),
	}
}

// LookupUser finds a user's record in the directory and verifies it
// (ErrNotFound when there is no valid one).
func (n *Node) LookupUser(ctx context.Context, id protocol.ID) (DirectoryEntry, error) {
	s, err := n.running()
	if err != nil {
		return DirectoryEntry{}, err
	}
	rec, err := s.lookup(ctx, id)
	if err != nil {
		return DirectoryEntry{}, err
	}
	return entryOf(rec), nil
}

// lookup returns id's verified record: the own one from memory, anyone
// else's from the DHT.
func (u *unlocked) lookup(ctx context.Context, id protocol.ID) (*directory.Record, error) {
	if id == u.me {
		if rec := u.pub.own(); rec != nil {
			return rec, nil
		}
	}
	rec, err := u.dir.Lookup(ctx, id)
	if errors.Is(err, directory.ErrNotFound) {
		return nil, fail(ErrNotFound, "no valid directory record for %s", id)
	}
	if err != nil {
		return nil, fail(ErrUnavailable, "%v", err)
	}
	return rec, nil
}

// SearchName returns every user who claims name, each checked against
// their signed record, told apart by fingerprint.
func (n *Node) SearchName(ctx context.Context, name string) ([]SearchResult, error) {
	s, err := n.running()
	if err != nil {
		return nil, err
	}
	if directory.NormalizeName(name) == "" {
		return nil, fail(ErrInvalid, "empty name")
	}
	recs, err := s.dir.Search(ctx, name)
	if err != nil {
		return nil, fail(ErrUnavailable, "%v", err)
	}
	out := make([]SearchResult, 0, len(recs))
	for _, rec := range recs {
		if rec.UserID() == s.me {
			continue
		}
		r := SearchResult{UserID: rec.UserID(), Name: rec.Name(), Fingerprint: rec.UserID().Fingerprint()}
		if fe := s.friends.friend(rec.UserID()); fe != nil {
			r.Friend = fe.isContact()
		}
		out = append(out, r)
	}
	return out, nil
}
