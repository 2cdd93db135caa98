package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// PrekeyRecord is a prekey with its private half and its life cycle: it
// is current until retired, and its private half is deleted at DeleteAt
// (PurgePrekeys), which is what gives old messages forward secrecy.
type PrekeyRecord struct {
	Prekey    *protocol.Prekey
	CreatedAt time.Time
	RetiredAt time.Time // zero while current
	DeleteAt  time.Time // zero until retired
}

// Current reports whether the prekey has not been retired.
func (r *PrekeyRecord) Current() bool { return r.RetiredAt.IsZero() }

type prekeyRec struct {
	Prekey    []byte `json:"prekey"` // protocol.Prekey.Marshal: holds the private half
	CreatedAt int64  `json:"created_at"`
	RetiredAt int64  `json:"retired_at,omitempty"`
	DeleteAt  int64  `json:"delete_at,omitempty"`
}

func (r *prekeyRec) record(id uint64) (PrekeyRecord, error) {
	pk, err := protocol.ParsePrekey(r.Prekey)
	clear(r.Prekey)
	if err != nil {
		return PrekeyRecord{}, corrupt(rowPrekey, err.Error())
	}
	if pk.ID() != id {
		return PrekeyRecord{}, corrupt(rowPrekey, "prekey under another ID")
	}
	return PrekeyRecord{
		Prekey:    pk,
		CreatedAt: fromNanos(r.CreatedAt),
		RetiredAt: fromNanos(r.RetiredAt),
		DeleteAt:  fromNanos(r.DeleteAt),
	}, nil
}

func (s *Store) putPrekeyRec(txn *badger.Txn, r *PrekeyRecord) error {
	rec := &prekeyRec{
		Prekey:    r.Prekey.Marshal(),
		CreatedAt: nanos(r.CreatedAt),
		RetiredAt: nanos(r.RetiredAt),
		DeleteAt:  nanos(r.DeleteAt),
	}
	defer clear(rec.Prekey)
	return s.putRecordWith(txn, s.secrets, prekeyKey(r.Prekey.ID()), rec)
}

func (s *Store) getPrekey(txn *badger.Txn, id uint64) (PrekeyRecord, error) {
	var rec prekeyRec
	if err := s.getRecordWith(txn, s.secrets, rowPrekey, prekeyKey(id), &rec); err != nil {
		if errors.Is(err, ErrNotFound) {
			return PrekeyRecord{}, fmt.Errorf("%w: prekey %d", ErrNotFound, id)
		}
		return PrekeyRecord{}, err
	}
	return rec.record(id)
}

// PutPrekey stores a new, current prekey (sealed with the secrets key). A
// prekey ID already stored is ErrDuplicate.
func (s *Store) PutPrekey(ctx context.Context, pk *protocol.Prekey) error {
	if pk == nil {
		return fmt.Errorf("%w: nil prekey", ErrInvalid)
	}
	now := s.now()
	return s.update(ctx, func(txn *badger.Txn) error {
		ok, err := exists(txn, prekeyKey(pk.ID()))
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%w: prekey %d", ErrDuplicate, pk.ID())
		}
		return s.putPrekeyRec(txn, &PrekeyRecord{Prekey: pk, CreatedAt: now})
	})
}

// Prekey returns the prekey with ID id, or ErrNotFound (never had, or
// already deleted).
func (s *Store) Prekey(ctx context.Context, id uint64) (PrekeyRecord, error) {
	var r PrekeyRecord
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		r, err = s.getPrekey(txn, id)
		return err
	})
	return r, err
}

// Prekeys returns every stored prekey, current and retired, oldest first.
func (s *Store) Prekeys(ctx context.Context) ([]PrekeyRecord, error) {
	var out []PrekeyRecord
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.secrets, rowPrekey, []byte{kPrekey}, func() any { return new(prekeyRec) },
			func(key []byte, rec any) error {
				if len(key) != 9 {
					return corrupt(rowPrekey, "key size")
				}
				r, err := rec.(*prekeyRec).record(getUint64(key[1:]))
				if err != nil {
					return err
				}
				out = append(out, r)
				return nil
			})
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b PrekeyRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// RetirePrekey marks a prekey retired now (keeping the first retirement
// time if it already was) and schedules its deletion at deleteAt.
func (s *Store) RetirePrekey(ctx context.Context, id uint64, deleteAt time.Time) (PrekeyRecord, error) {
	if err := checkTime("deletion time", deleteAt); err != nil {
		return PrekeyRecord{}, err
	}
	now := s.now()
	var r PrekeyRecord
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if r, err = s.getPrekey(txn, id); err != nil {
			return err
		}
		if r.RetiredAt.IsZero() {
			r.RetiredAt = now
		}
		r.DeleteAt = deleteAt
		return s.putPrekeyRec(txn, &r)
	})
	if err != nil {
		return PrekeyRecord{}, err
	}
	return r, nil
}

// DeletePrekey deletes a prekey (ErrNotFound if there is none).
func (s *Store) DeletePrekey(ctx context.Context, id uint64) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		ok, err := exists(txn, prekeyKey(id))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: prekey %d", ErrNotFound, id)
		}
		return s.del(txn, prekeyKey(id))
	})
}

// PurgePrekeys deletes every retired prekey whose deletion time has come
// by the store's clock, and returns their IDs (in ascending order).
func (s *Store) PurgePrekeys(ctx context.Context) ([]uint64, error) {
	now := s.now()
	var purged []uint64
	err := s.update(ctx, func(txn *badger.Txn) error {
		purged = purged[:0]
		var due []uint64
		err := s.scanRecords(txn, s.secrets, rowPrekey, []byte{kPrekey}, func() any { return new(prekeyRec) },
			func(key []byte, rec any) error {
				r := rec.(*prekeyRec)
				clear(r.Prekey)
				if len(key) == 9 && r.RetiredAt != 0 && r.DeleteAt != 0 && !now.Before(fromNanos(r.DeleteAt)) {
					due = append(due, getUint64(key[1:]))
				}
				return nil
			})
		if err != nil {
			return err
		}
		for _, id := range due {
			if err := s.del(txn, prekeyKey(id)); err != nil {
				return err
			}
		}
		purged = append(purged, due...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return purged, nil
}
