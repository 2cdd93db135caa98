package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Friend is another user this node knows.
type Friend struct {
	UserID    protocol.ID
	Name      string // a label the user chose or the friend announced
	PublicKey []byte // pinned SubjectPublicKeyInfo DER
	Card      string // the friend's last contact card, as received
	Status    FriendStatus
	Verified  bool // fingerprint checked out of band
	// Genesis is the friend's genesis key (SubjectPublicKeyInfo DER), whose
	// hash is their user ID and over which safety numbers are computed;
	// empty while it equals PublicKey (they never rotated).
	Genesis []byte
	// Record is the friend's last verified directory record, RecordSeq its
	// sequence number: a record with a lower one is ignored.
	Record    []byte
	RecordSeq uint64
	// ChangedKey is set when the directory showed a key for the friend that
	// does not follow from the pinned one by a signed rotation: sending is
	// held until the user verifies again, which pins ChangedKey.
	ChangedKey []byte
	// Forked is set when the friend's key was seen to sign two histories
	// (two different statements at one sequence number; the evidence is
	// in KeyForks): sending is held until the user verifies again.
	Forked    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

type friendRec struct {
	UserID    []byte `json:"user_id"`
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key,omitempty"`
	Card      string `json:"card,omitempty"`
	Status    string `json:"status"`
	Verified  bool   `json:"verified,omitempty"`
	Genesis   []byte `json:"genesis,omitempty"`
	Record    []byte `json:"record,omitempty"`
	RecordSeq uint64 `json:"record_seq,omitempty"`
	Changed   []byte `json:"changed_key,omitempty"`
	Forked    bool   `json:"key_fork,omitempty"`
	CreatedAt int64  `json:"created_at"`
	UpdatedAt int64  `json:"updated_at"`
}

func (r *friendRec) friend() (Friend, error) {
	f := Friend{
		Name:       r.Name,
		PublicKey:  r.PublicKey,
		Card:       r.Card,
		Status:     FriendStatus(r.Status),
		Verified:   r.Verified,
		Genesis:    r.Genesis,
		Record:     r.Record,
		RecordSeq:  r.RecordSeq,
		ChangedKey: r.Changed,
		Forked:     r.Forked,
		CreatedAt:  fromNanos(r.CreatedAt),
		UpdatedAt:  fromNanos(r.UpdatedAt),
	}
	if len(r.UserID) != protocol.IDSize {
		return f, corrupt(rowFriend, "user ID")
	}
	f.UserID = protocol.ID(r.UserID)
	return f, nil
}

// PutFriend adds f or replaces the friend with the same user ID. It keeps
// an existing friend's CreatedAt, sets UpdatedAt to now, and returns what
// it stored.
func (s *Store) PutFriend(ctx context.Context, f Friend) (Friend, error) {
	if f.UserID.IsZero() {
		return Friend{}, fmt.Errorf("%w: friend without user ID", ErrInvalid)
	}
	if !f.Status.Valid() {
		return Friend{}, fmt.Errorf("%w: friend status %q", ErrInvalid, f.Status)
	}
	now := s.now()
	var out Friend
	err := s.update(ctx, func(txn *badger.Txn) error {
		key := friendKey(f.UserID)
		out = f
		var old friendRec
		switch err := s.getRecord(txn, rowFriend, key, &old); {
		case err == nil:
			out.CreatedAt = fromNanos(old.CreatedAt)
		case errors.Is(err, ErrNotFound):
			if out.CreatedAt.IsZero() {
				out.CreatedAt = now
			}
		default:
			return err
		}
		out.UpdatedAt = now
		return s.putRecord(txn, key, &friendRec{
			UserID:    f.UserID[:],
			Name:      out.Name,
			PublicKey: out.PublicKey,
			Card:      out.Card,
			Status:    string(out.Status),
			Verified:  out.Verified,
			Genesis:   out.Genesis,
			Record:    out.Record,
			RecordSeq: out.RecordSeq,
			Changed:   out.ChangedKey,
			Forked:    out.Forked,
			CreatedAt: nanos(out.CreatedAt),
			UpdatedAt: nanos(out.UpdatedAt),
		})
	})
	if err != nil {
		return Friend{}, err
	}
	return out, nil
}

// Friend returns the friend with user ID id, or ErrNotFound.
func (s *Store) Friend(ctx context.Context, id protocol.ID) (Friend, error) {
	var f Friend
	err := s.view(ctx, func(txn *badger.Txn) error {
		var rec friendRec
		if err := s.getRecord(txn, rowFriend, friendKey(id), &rec); err != nil {
			return err
		}
		var err error
		f, err = rec.friend()
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Friend{}, fmt.Errorf("%w: friend %s", ErrNotFound, id)
	}
	return f, err
}

// Friends returns every friend, in user ID order.
func (s *Store) Friends(ctx context.Context) ([]Friend, error) {
	var out []Friend
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.rows, rowFriend, []byte{kFriend}, func() any { return new(friendRec) },
			func(_ []byte, rec any) error {
				f, err := rec.(*friendRec).friend()
				if err != nil {
					return err
				}
				out = append(out, f)
				return nil
			})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteFriend removes the friend with user ID id (ErrNotFound if there is
// none). Its conversation and messages stay.
func (s *Store) DeleteFriend(ctx context.Context, id protocol.ID) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		key := friendKey(id)
		ok, err := exists(txn, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: friend %s", ErrNotFound, id)
		}
		return s.del(txn, key)
	})
}
