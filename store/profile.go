package store

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// Profile is the user's own settings that are not keys: what the node
// announces about its user.
type Profile struct {
	Name string // display name, as on the user's card
	// RecordSeq is the sequence number of the last directory record the
	// node signed; the next one must be higher.
	RecordSeq uint64
	UpdatedAt time.Time
}

type profileRec struct {
	Name      string `json:"name"`
	RecordSeq uint64 `json:"record_seq,omitempty"`
	UpdatedAt int64  `json:"updated_at"`
}

// PutProfile stores the user's profile, replacing the previous one. The
// store's clock sets UpdatedAt.
func (s *Store) PutProfile(ctx context.Context, p Profile) (Profile, error) {
	if !utf8.ValidString(p.Name) {
		return Profile{}, fmt.Errorf("%w: profile name is not UTF-8", ErrInvalid)
	}
	p.UpdatedAt = s.now()
	rec := &profileRec{Name: p.Name, RecordSeq: p.RecordSeq, UpdatedAt: nanos(p.UpdatedAt)}
	err := s.update(ctx, func(txn *badger.Txn) error {
		return s.putRecord(txn, profileKey(), rec)
	})
	if err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Profile returns the stored profile, or ErrNotFound before the first
// PutProfile.
func (s *Store) Profile(ctx context.Context) (Profile, error) {
	var rec profileRec
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.getRecord(txn, rowProfile, profileKey(), &rec)
	})
	if errors.Is(err, ErrNotFound) {
		return Profile{}, fmt.Errorf("%w: profile", ErrNotFound)
	}
	if err != nil {
		return Profile{}, err
	}
	return Profile{Name: rec.Name, RecordSeq: rec.RecordSeq, UpdatedAt: fromNanos(rec.UpdatedAt)}, nil
}
