package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/parley-chat/parley/protocol"
)

// Key rotation. The metadata's public key stays the genesis key (whose ID
// is the user ID) for ever; the identity row holds the current private
// key, and the key chain row the signed rotations that lead from the
// genesis key to it. A rotation replaces the identity, appends to the
// chain and keeps the old private key as a retired key, in one
// transaction, so a crash leaves the old identity or the new one.

// RetiredKey is an identity key replaced by a rotation, kept to open
// envelopes still sealed to it until Until.
type RetiredKey struct {
	Key   *protocol.PrivateKey
	Until time.Time
}

type chainRec struct {
	Rotations [][]byte `json:"rotations"`
}

type retiredRec struct {
	Key   []byte `json:"key"` // PKCS #8 DER
	Until int64  `json:"until"`
}

// GenesisKey returns the user's genesis public key: its ID is the user ID.
func (s *Store) GenesisKey() *protocol.PublicKey { return s.meta.pub }

// KeyChain returns the rotations from the genesis key to the current
// identity key, oldest first (nil if the user never rotated).
func (s *Store) KeyChain(ctx context.Context) ([]*protocol.Rotation, error) {
	var chain []*protocol.Rotation
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		chain, err = s.readChain(txn)
		return err
	})
	return chain, err
}

func (s *Store) readChain(txn *badger.Txn) ([]*protocol.Rotation, error) {
	var rec chainRec
	err := s.getRecordWith(txn, s.secrets, rowKeyChain, keyChainKey(), &rec)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	chain := make([]*protocol.Rotation, 0, len(rec.Rotations))
	for _, b := range rec.Rotations {
		r, err := protocol.ParseRotation(b)
		if err != nil {
			return nil, corrupt(rowKeyChain, err.Error())
		}
		chain = append(chain, r)
	}
	return chain, nil
}

// RotateIdentity makes next the identity key. r must be the signed
// rotation from the current key to next; the current key is kept as a
// retired key until retireUntil.
func (s *Store) RotateIdentity(ctx context.Context, next *protocol.PrivateKey, r *protocol.Rotation, retireUntil time.Time) error {
	cur, err := s.Identity()
	if err != nil {
		return err
	}
	if r == nil || next == nil || !r.NewKey.Equal(next.Public()) || r.UserID != s.meta.userID {
		return fmt.Errorf("%w: rotation does not lead to the new key", ErrInvalid)
	}
	if err := r.Verify(cur.Public()); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkTime("retire until", retireUntil); err != nil {
		return err
	}
	err = s.update(ctx, func(txn *badger.Txn) error {
		chain, err := s.readChain(txn)
		if err != nil {
			return err
		}
		chain = append(chain, r)
		if _, err := protocol.VerifyChain(s.meta.userID, s.meta.pub, chain); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		var rec chainRec
		for _, l := range chain {
			rec.Rotations = append(rec.Rotations, l.Marshal())
		}
		if err := s.putRecordWith(txn, s.secrets, keyChainKey(), &rec); err != nil {
			return err
		}
		old := cur.Bytes()
		defer clear(old)
		if err := s.putRecordWith(txn, s.secrets, retiredKey(cur.Public().ID()), &retiredRec{Key: old, Until: nanos(retireUntil)}); err != nil {
			return err
		}
		der := next.Bytes()
		plain := append(append(make([]byte, 0, protocol.IDSize+len(der)), s.meta.userID[:]...), der...)
		clear(der)
		defer clear(plain)
		return s.set(txn, identityKey(), s.secrets.seal(identityKey(), plain))
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.id = next
	s.mu.Unlock()
	return nil
}

// RetiredKeys returns the retired identity keys, in key ID order.
func (s *Store) RetiredKeys(ctx context.Context) ([]RetiredKey, error) {
	var out []RetiredKey
	err := s.view(ctx, func(txn *badger.Txn) error {
		return s.scanRecords(txn, s.secrets, rowRetired, []byte{kRetired}, func() any { return new(retiredRec) },
			func(_ []byte, rec any) error {
				r := rec.(*retiredRec)
				k, err := protocol.ParsePrivateKey(r.Key)
				clear(r.Key)
				if err != nil {
					return corrupt(rowRetired, err.Error())
				}
				out = append(out, RetiredKey{Key: k, Until: fromNanos(r.Until)})
				return nil
			})
	})
	return out, err
}

// PurgeRetiredKeys deletes the retired keys whose time ran out by now and
// returns how many.
func (s *Store) PurgeRetiredKeys(ctx context.Context, now time.Time) (int, error) {
	keys, err := s.RetiredKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.update(ctx, func(txn *badger.Txn) error {
		n = 0
		for _, k := range keys {
			if now.Before(k.Until) {
				continue
			}
			if err := s.del(txn, retiredKey(k.Key.Public().ID())); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// checkIdentity accepts the stored identity key k if it is the end of the
// stored, valid rotation chain: the genesis key while there is no chain. A
// rotated identity rolled back to the genesis key is refused; deleting the
// chain row as well is not detected (doc.go: deleted rows are not).
func (s *Store) checkIdentity(k *protocol.PrivateKey) error {
	var chain []*protocol.Rotation
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		chain, err = s.readChain(txn)
		return err
	})
	if err != nil {
		return err
	}
	cur, err := protocol.VerifyChain(s.meta.userID, s.meta.pub, chain)
	if err != nil || !cur.Equal(k.Public()) {
		return &RowError{Kind: rowIdentity, Err: fmt.Errorf("%w: identity does not match the metadata and key chain", ErrTampered)}
	}
	return nil
}
